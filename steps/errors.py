"""The legacy error dictionary: 156 codes operators know, with name, action and severity.

Why data and not classes: the codes, names and actions must stay exactly those of the legacy
dictionaries (spec steps-7-8.md §3.7) so operators recognise them; only the mapping from a
situation to a code is ours (the codes the dictionary *intends*, not the legacy matcher's).

API (stable, used by every step module):

- ``ERRORS: Mapping[int, ErrorInfo]`` — the 156 legacy entries and ours (``ADDED_CODES``:
  crash, held job and missing-job-file codes of the batch waits, 5202/5304 of steps 5.2/5.3,
  8101 of a failed real submission), keyed by code;
- ``error(code) -> ErrorInfo`` — the entry (a copy) with the action this project applies
  (``ACTION_OVERRIDES``); an unknown code gives 103 UNKNOWN_ERROR with action ``"ai"`` and a
  message naming the unknown code;
- ``REQUIRED_DOWNLOAD_CODES`` — the failed downloads of required reports (``manual`` here);
- ``step_of(code) -> str | None`` — the step the code belongs to (``"gen"``, ``"1.1"`` … ``"8"``);
- ``codes_for_step(step) -> list[int]`` — codes of one step (``"1.1"``) or step group (``"1"``).

``message`` holds the English meaning of the entry (the legacy headlines were Chinese).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from steps.results import Action, ErrorInfo, Severity

UNKNOWN_CODE = 103

# (code, step, name, action, severity, English meaning) — spec steps-7-8.md §3.7.
_TABLE: tuple[tuple[int, str, str, Action, Severity, str], ...] = (
    (0, "gen", "SUCCESS", "continue", "info", "operation succeeded"),
    (
        1,
        "gen",
        "SSH_CONNECTION_FAILED",
        "retry",
        "error",
        "cannot reach the SSH server (network, host/port, credentials, jump host)",
    ),
    (
        2,
        "gen",
        "SSH_COMMAND_FAILED",
        "retry",
        "error",
        "remote command failed (command, exit code, error)",
    ),
    (3, "gen", "SSH_TIMEOUT", "retry", "error", "remote command timed out"),
    (4, "gen", "SSH_AUTHENTICATION_FAILED", "manual", "error", "wrong user name or password"),
    (10, "gen", "FILE_NOT_FOUND", "retry", "error", "a file is missing"),
    (11, "gen", "FILE_READ_FAILED", "retry", "error", "a file cannot be read"),
    (12, "gen", "FILE_WRITE_FAILED", "retry", "error", "a file cannot be written"),
    (13, "gen", "DIRECTORY_NOT_FOUND", "retry", "error", "a directory is missing"),
    (14, "gen", "DIRECTORY_CREATE_FAILED", "retry", "error", "a directory cannot be created"),
    (20, "gen", "INVALID_PARAMETER", "manual", "error", "a parameter has an invalid value"),
    (21, "gen", "MISSING_PARAMETER", "manual", "error", "a required parameter is missing"),
    (22, "gen", "INVALID_DATE_FORMAT", "manual", "error", "the date is not 6 digits (e.g. 250519)"),
    (30, "gen", "SYSTEM_ERROR", "retry", "error", "generic system error"),
    (31, "gen", "UNKNOWN_ERROR", "retry", "error", "unknown error (same name as 103)"),
    (32, "gen", "TIMEOUT_ERROR", "retry", "error", "an operation timed out"),
    (40, "gen", "IFLOW_CLI_NOT_CONNECTED", "manual", "error", "iFlow CLI not running"),
    (41, "gen", "IFLOW_CLI_COMMUNICATION_FAILED", "retry", "error", "cannot talk to the iFlow CLI"),
    (50, "gen", "STEP_NOT_FOUND", "manual", "error", "unknown step key"),
    (51, "gen", "STEP_EXECUTION_FAILED", "retry", "error", "a step failed"),
    (52, "gen", "MAX_RETRIES_EXCEEDED", "manual", "error", "retry limit reached"),
    (60, "gen", "PROGRESS_FILE_NOT_FOUND", "manual", "error", "progress file missing"),
    (61, "gen", "PROGRESS_FILE_READ_FAILED", "retry", "error", "progress file unreadable"),
    (62, "gen", "PROGRESS_FILE_WRITE_FAILED", "retry", "error", "progress file cannot be written"),
    (
        63,
        "gen",
        "PROGRESS_FILE_CORRUPTED",
        "manual",
        "error",
        "progress file corrupt; delete it and start over",
    ),
    (70, "gen", "DATA_VALIDATION_FAILED", "manual", "error", "a validation rule failed"),
    (71, "gen", "DATA_INCOMPLETE", "retry", "error", "data incomplete"),
    (72, "gen", "DATA_INCONSISTENT", "manual", "error", "data inconsistent"),
    (80, "gen", "CONTAINER_NOT_AVAILABLE", "retry", "error", "container unavailable"),
    (
        81,
        "gen",
        "CONTAINER_COMMAND_FAILED",
        "retry",
        "error",
        "a command inside the container failed",
    ),
    (90, "gen", "ENVIRONMENT_NOT_SET", "manual", "error", "an environment variable is not set"),
    (
        91,
        "gen",
        "ENVIRONMENT_SCRIPT_FAILED",
        "retry",
        "error",
        "sourcing the environment script failed",
    ),
    (100, "gen", "CONFIG_FILE_NOT_FOUND", "manual", "error", "config file missing"),
    (101, "gen", "CONFIG_FILE_READ_FAILED", "retry", "error", "config file unreadable"),
    (102, "gen", "CONFIG_FILE_INVALID", "manual", "error", "config file malformed"),
    (103, "gen", "UNKNOWN_ERROR", "ai", "error", "unknown error; hand to the AI agent"),
    (
        1100,
        "1.1",
        "STEP1_1_DATA_CONFIRMATION_EXCEPTION",
        "manual",
        "error",
        "exception while comparing processed and available dates",
    ),
    (
        1101,
        "1.1",
        "STEP1_1_NO_AVAILABLE_DATA",
        "exit",
        "info",
        "every available date is already processed",
    ),
    (1102, "1.1", "STEP1_1_GET_PROCESSED_DIRS_FAILED", "retry", "error", "ls -1 INJ failed"),
    (1103, "1.1", "STEP1_1_GET_ALL_DIRS_FAILED", "retry", "error", "ls -1 DATA_DIR failed"),
    (
        1104,
        "1.1",
        "STEP1_1_DELETE_DIR_FAILED",
        "retry",
        "warning",
        "could not delete the old date directory",
    ),
    (1105, "1.1", "STEP1_1_GENJOB_SCRIPT_FAILED", "retry", "error", "./genJob.sh <date> failed"),
    (
        1106,
        "1.1",
        "STEP1_1_DATE_DIR_NOT_CREATED",
        "retry",
        "error",
        "date directory absent after genJob",
    ),
    (
        1107,
        "1.1",
        "STEP1_1_JOB_SUBMISSION_EXCEPTION",
        "retry",
        "error",
        "exception while submitting",
    ),
    (1108, "1.1", "STEP1_1_GET_JOB_FILES_FAILED", "retry", "error", "ls rec*_1.txt failed"),
    (1109, "1.1", "STEP1_1_NO_JOB_FILES", "retry", "error", "no rec{run}_1.txt in the date dir"),
    (
        1110,
        "1.1",
        "STEP1_1_FILE_CHECK_EXCEPTION",
        "retry",
        "error",
        "exception while polling result files",
    ),
    (
        1111,
        "1.1",
        "STEP1_1_FILE_CHECK_TIMEOUT",
        "retry",
        "warning",
        "not all 6 files per run within max-wait",
    ),
    (
        1112,
        "1.1",
        "STEP1_1_ANOMALY_FILE_DETECTED",
        "manual",
        "error",
        "Interval_run0.png appeared: the date's data is abnormal",
    ),
    (1113, "1.1", "STEP1_1_SUCCESS", "continue", "info", "1.1 succeeded"),
    (
        1200,
        "1.2",
        "STEP1_2_MOVE_ROOT_FAILED",
        "retry",
        "error",
        "moving InjSigTime*.root to calibConst failed",
    ),
    (
        1201,
        "1.2",
        "STEP1_2_MOVE_PNG_FAILED",
        "retry",
        "error",
        "moving Interval*.png to Interval_plot failed",
    ),
    (1202, "1.2", "STEP1_2_MOVE_EXCEPTION", "retry", "error", "exception while moving"),
    (1203, "1.2", "STEP1_2_SUCCESS", "continue", "info", "1.2 succeeded"),
    (
        1300,
        "1.3",
        "STEP1_3_GET_INTERVAL_FILES_FAILED",
        "retry",
        "error",
        "ls Interval_run*.txt failed",
    ),
    (1301, "1.3", "STEP1_3_NO_INTERVAL_FILES", "retry", "error", "no Interval files"),
    (
        1302,
        "1.3",
        "STEP1_3_INVALID_IST_VALUES",
        "manual",
        "warning",
        "some run's IST != 15000000, i.e. not non-topup mode",
    ),
    (
        1303,
        "1.3",
        "STEP1_3_APPEND_FAILED",
        "retry",
        "error",
        "appending to INJ/interval.txt failed",
    ),
    (1304, "1.3", "STEP1_3_ANALYSIS_EXCEPTION", "retry", "error", "exception in IST analysis"),
    (1305, "1.3", "STEP1_3_SUCCESS", "continue", "info", "all IST = 15000000; appended"),
    (
        1400,
        "1.4",
        "STEP1_4_NO_DATE_IN_PROGRESS",
        "manual",
        "error",
        "no date given or in the progress file",
    ),
    (
        1401,
        "1.4",
        "STEP1_4_MERGE_FAILED",
        "retry",
        "error",
        "SL6-container convert *.png mergedd_IST.pdf failed",
    ),
    (
        1402,
        "1.4",
        "STEP1_4_DOWNLOAD_FAILED",
        "continue",
        "warning",
        "PDF built, SFTP download failed",
    ),
    (1403, "1.4", "STEP1_4_MERGE_EXCEPTION", "retry", "error", "exception while merging"),
    (1404, "1.4", "STEP1_4_SUCCESS", "continue", "info", "PDF built and downloaded"),
    (2000, "2.1", "STEP2_1_SUCCESS", "continue", "info", "2.1 succeeded"),
    (2001, "2.2", "STEP2_2_SUCCESS", "continue", "info", "2.2 succeeded"),
    (2002, "2.3", "STEP2_3_SUCCESS", "continue", "info", "2.3 succeeded"),
    (2003, "2.4", "STEP2_4_SUCCESS", "continue", "info", "2.4 succeeded"),
    (2004, "2.5", "STEP2_5_SUCCESS", "continue", "info", "2.5 succeeded"),
    (2100, "2.1", "STEP2_1_EXECUTION_FAILED", "retry", "error", "generic 2.1 failure"),
    (2101, "2.1", "STEP2_1_DATE_NOT_FOUND", "manual", "error", "no date in the progress file"),
    (2102, "2.1", "STEP2_1_GENJOB_FAILED", "retry", "error", "genJob.sh <date> in BASE failed"),
    (2103, "2.1", "STEP2_1_DATE_DIR_NOT_CREATED", "retry", "error", "date directory not created"),
    (
        2104,
        "2.1",
        "STEP2_1_GET_RUNS_FAILED",
        "retry",
        "error",
        "listing run sub-directories failed",
    ),
    (2105, "2.1", "STEP2_1_NO_RUNS_FOUND", "manual", "error", "no run sub-directories"),
    (
        2106,
        "2.1",
        "STEP2_1_HIST_TIMEOUT",
        "retry",
        "warning",
        "hist files not complete within max-wait",
    ),
    (2107, "2.1", "STEP2_1_SUBMIT_JOB_EXCEPTION", "retry", "error", "exception while submitting"),
    (2200, "2.2", "STEP2_2_MERGE_FAILED", "retry", "error", "mergeHist.sh failed"),
    (
        2201,
        "2.2",
        "STEP2_2_MERGE_EXCEPTION",
        "retry",
        "error",
        "exception while merging hist files",
    ),
    (2300, "2.3", "STEP2_3_GENERATE_FAILED", "retry", "error", "01go.sh failed"),
    (
        2301,
        "2.3",
        "STEP2_3_GENERATE_EXCEPTION",
        "retry",
        "error",
        "exception while generating PNGs",
    ),
    (2400, "2.4", "STEP2_4_GET_HIST_FAILED", "retry", "error", "listing hist files failed"),
    (2401, "2.4", "STEP2_4_NO_HIST_FILES", "manual", "error", "no hist files"),
    (2402, "2.4", "STEP2_4_PNG_TIMEOUT", "retry", "warning", "PNGs not complete within max-wait"),
    (2403, "2.4", "STEP2_4_CHECK_EXCEPTION", "retry", "error", "exception while checking PNGs"),
    (2500, "2.5", "STEP2_5_NO_DATE_IN_PROGRESS", "manual", "error", "no date in the progress file"),
    (2501, "2.5", "STEP2_5_MERGE_FAILED", "retry", "error", "merging hist images failed"),
    (2502, "2.5", "STEP2_5_MERGE_EXCEPTION", "retry", "error", "exception while merging"),
    (2503, "2.5", "STEP2_5_DOWNLOAD_FAILED", "continue", "warning", "merged, download failed"),
    (3000, "3.1", "STEP3_1_SUCCESS", "continue", "info", "3.1 succeeded"),
    (
        3001,
        "3.2",
        "STEP3_2_SUCCESS",
        "continue",
        "info",
        "add.sh ran; window.dat cleaned of run-number-only lines",
    ),
    (3100, "3.1", "STEP3_1_GENJOB_FAILED", "retry", "error", "genJob.sh in search_peak failed"),
    (3101, "3.1", "STEP3_1_SUBMIT_JOB_EXCEPTION", "retry", "error", "exception while submitting"),
    (3102, "3.1", "STEP3_1_GET_JOB_FILES_FAILED", "retry", "error", "ls run_*_3.txt failed"),
    (3103, "3.1", "STEP3_1_NO_JOB_FILES", "manual", "error", "no run_{run}_3.txt"),
    (
        3104,
        "3.1",
        "STEP3_1_FILE_CHECK_EXCEPTION",
        "retry",
        "error",
        "exception while checking shield files",
    ),
    (
        3105,
        "3.1",
        "STEP3_1_FILE_CHECK_TIMEOUT",
        "retry",
        "warning",
        "shield files not complete within max-wait",
    ),
    (
        3106,
        "3.1",
        "STEP3_1_EXECUTION_EXCEPTION",
        "retry",
        "error",
        "exception during submission or checking",
    ),
    (3200, "3.2", "STEP3_2_SCRIPT_FAILED", "continue", "warning", "add.sh failed"),
    (
        3201,
        "3.2",
        "STEP3_2_SCRIPT_EXCEPTION",
        "continue",
        "warning",
        "exception while running add.sh",
    ),
    (
        3202,
        "3.2",
        "STEP3_2_CLEAN_WINDOW_FAILED",
        "continue",
        "warning",
        "the sed clean-up of window.dat failed",
    ),
    (
        4000,
        "4.1",
        "STEP4_1_SUCCESS_NO_CHECK",
        "continue",
        "info",
        "jobs submitted, files not checked (check=False)",
    ),
    (
        4001,
        "4.1",
        "STEP4_1_SUCCESS_WITH_CHECK",
        "continue",
        "info",
        "jobs submitted and all 4 files per run present",
    ),
    (
        4002,
        "4.2",
        "STEP4_2_SUCCESS_NO_PDF",
        "continue",
        "info",
        "no PDFs (normal in non-topup mode)",
    ),
    (
        4003,
        "4.2",
        "STEP4_2_SUCCESS_ALL_DOWNLOADED",
        "continue",
        "info",
        "all PDFs merged and downloaded",
    ),
    (
        4100,
        "4.1",
        "STEP4_1_DELETE_OLD_FILES_FAILED",
        "retry",
        "warning",
        "rm -f *.pdf && rm -f run* in checkShieldCalib failed",
    ),
    (4101, "4.1", "STEP4_1_GENJOB_SCRIPT_FAILED", "retry", "error", "genJob.sh failed"),
    (4102, "4.1", "STEP4_1_GET_JOB_FILES_FAILED", "retry", "error", "ls run_*_4.txt failed"),
    (4103, "4.1", "STEP4_1_NO_JOB_FILES", "retry", "error", "no run_{run}_4.txt"),
    (
        4104,
        "4.1",
        "STEP4_1_FILE_CHECK_TIMEOUT",
        "retry",
        "warning",
        "files not complete within max-wait",
    ),
    (
        4105,
        "4.1",
        "STEP4_1_JOB_SUBMISSION_EXCEPTION",
        "retry",
        "error",
        "exception while submitting",
    ),
    (4200, "4.2", "STEP4_2_NO_DATE_IN_PROGRESS", "manual", "error", "no date in the progress file"),
    (
        4201,
        "4.2",
        "STEP4_2_MERGE_FAILED",
        "continue",
        "warning",
        "container merge into the four PDFs failed (ignorable in non-topup mode)",
    ),
    (
        4202,
        "4.2",
        "STEP4_2_PARTIAL_DOWNLOAD_FAILED",
        "continue",
        "warning",
        "some PDFs not downloaded",
    ),
    (
        4203,
        "4.2",
        "STEP4_2_MERGE_EXCEPTION",
        "continue",
        "warning",
        "exception while merging (ignorable in non-topup mode)",
    ),
    (5000, "5.1", "STEP5_1_SUCCESS", "continue", "info", "5.1 succeeded"),
    (5001, "5.2", "STEP5_2_SUCCESS", "continue", "info", "add_shield.sh succeeded"),
    (5002, "5.3", "STEP5_3_SUCCESS", "continue", "info", "ets_cut.txt tidied"),
    (5003, "5.4", "STEP5_4_SUCCESS", "continue", "info", "ETS_cut PDF built and downloaded"),
    (
        5004,
        "5.4",
        "STEP5_4_MERGE_SUCCESS_DOWNLOAD_WARNING",
        "continue",
        "warning",
        "merged, download failed",
    ),
    (5100, "5.1", "STEP5_1_GENJOB_FAILED", "retry", "error", "genJob.sh in ETS_cut failed"),
    (5101, "5.1", "STEP5_1_CLEAN_FAILED", "continue", "warning", "rm -f plot* run* failed"),
    (5102, "5.1", "STEP5_1_GET_JOB_FILES_FAILED", "retry", "error", "ls plot_ETS_*.txt failed"),
    (5103, "5.1", "STEP5_1_NO_JOB_FILES", "manual", "error", "no plot_ETS_{run}.txt"),
    (
        5104,
        "5.1",
        "STEP5_1_FILE_CHECK_TIMEOUT",
        "retry",
        "warning",
        "cut/total PNGs not complete within max-wait",
    ),
    (5105, "5.1", "STEP5_1_FILE_CHECK_EXCEPTION", "retry", "error", "exception while checking"),
    (
        5106,
        "5.1",
        "STEP5_1_EXECUTION_EXCEPTION",
        "retry",
        "error",
        "exception during submission or checking",
    ),
    (
        5200,
        "5.2",
        "STEP5_2_SCRIPT_FAILED",
        "continue",
        "warning",
        "add_shield.sh failed (declared harmless)",
    ),
    (
        5201,
        "5.2",
        "STEP5_2_SCRIPT_EXCEPTION",
        "retry",
        "error",
        "exception while running add_shield.sh",
    ),
    (
        5300,
        "5.3",
        "STEP5_3_REMOVE_SINGLE_DIGIT_FAILED",
        "retry",
        "error",
        "removing number-only lines from ets_cut.txt failed",
    ),
    (5301, "5.3", "STEP5_3_SORT_FAILED", "retry", "error", "sort -n -k1,1 failed"),
    (5302, "5.3", "STEP5_3_REMOVE_DUPLICATE_FAILED", "retry", "error", "uniq failed"),
    (5303, "5.3", "STEP5_3_ORGANIZE_EXCEPTION", "retry", "error", "exception while tidying"),
    (5400, "5.4", "STEP5_4_NO_DATE_IN_PROGRESS", "manual", "error", "no date in the progress file"),
    (
        5401,
        "5.4",
        "STEP5_4_MERGE_FAILED",
        "retry",
        "error",
        "container convert *.png mergedd_ETSCut.pdf failed",
    ),
    (5402, "5.4", "STEP5_4_MERGE_EXCEPTION", "retry", "error", "exception while merging"),
    (5403, "5.4", "STEP5_4_DOWNLOAD_FAILED", "continue", "warning", "merged, download failed"),
    (6000, "6.1", "STEP6_1_SUCCESS", "continue", "info", "6.1 succeeded"),
    (6001, "6.2", "STEP6_2_SUCCESS", "continue", "info", "6.2 succeeded"),
    (
        6100,
        "6.1",
        "STEP6_1_JOB_SUBMISSION_FAILED",
        "retry",
        "error",
        "genJob.sh in check_ETScut_CalibConst failed",
    ),
    (
        6101,
        "6.1",
        "STEP6_1_NO_JOB_FILES",
        "retry",
        "error",
        "no ETScut_check_*.txt (also in skip mode)",
    ),
    (
        6102,
        "6.1",
        "STEP6_1_NO_JOB_FILES_WHEN_SKIP",
        "manual",
        "error",
        "submit_job=False and no existing job files",
    ),
    (
        6103,
        "6.1",
        "STEP6_1_FILE_CHECK_TIMEOUT",
        "retry",
        "warning",
        "PNG/ROOT not complete within max-wait",
    ),
    (6104, "6.1", "STEP6_1_FILE_CHECK_EXCEPTION", "retry", "error", "exception while checking"),
    (
        6200,
        "6.2",
        "STEP6_2_MERGE_FAILED",
        "retry",
        "error",
        "merging run*.png into mergedd_ETS_checkall.pdf failed",
    ),
    (6201, "6.2", "STEP6_2_NO_DATE_IN_PROGRESS", "manual", "error", "no date in the progress file"),
    (6202, "6.2", "STEP6_2_MERGE_EXCEPTION", "retry", "error", "exception while merging"),
    (6203, "6.2", "STEP6_2_DOWNLOAD_FAILED", "continue", "warning", "merged, download failed"),
    (
        7000,
        "7",
        "STEP7_SUCCESS",
        "continue",
        "info",
        "reset done; temporaries archived to tmp, key files backed up",
    ),
    (7100, "7", "STEP7_SCRIPT_FAILED", "retry", "error", "reset.sh exited non-zero"),
    (7101, "7", "STEP7_SCRIPT_NOT_FOUND", "manual", "error", "reset.sh missing in INJ"),
    (
        7102,
        "7",
        "STEP7_SCRIPT_PERMISSION_DENIED",
        "manual",
        "error",
        "reset.sh not executable (chmod +x)",
    ),
    (7103, "7", "STEP7_SCRIPT_EXCEPTION", "retry", "error", "exception while running reset.sh"),
    (7104, "7", "STEP7_BACKUP_FAILED", "retry", "warning", "a backup copy inside reset.sh failed"),
    (
        8100,
        "8",
        "STEP8_DB_SUBMISSION_FAILED",
        "retry",
        "error",
        "InjSigInterval DB submission failed",
    ),
)

# Our additions (not in the legacy dictionary): the legacy codes of the batch waits say
# TIMEOUT for every incomplete run, and ``retry``. A job that crashed, a job the batch system
# holds and a run the generator made no job file for are not fixed by waiting or retrying:
# they get their own names and go to an operator (``manual``) with the evidence at once.
# The TIMEOUT codes keep their legacy meaning: jobs still queued or running at the limit.
# Also ours: 5202/5304 (steps 5.2/5.3 passed a missing shield file or an empty ets_cut.txt
# silently) and 8101 (a failed real submission, never started again without a person).
_ADDED: tuple[tuple[int, str, str, Action, Severity, str], ...] = (
    (
        110,
        "gen",
        "BATCH_JOB_HELD",
        "manual",
        "error",
        "the batch system holds jobs (hep_q state H): release or remove them",
    ),
    (
        1114,
        "1.1",
        "STEP1_1_JOBS_CRASHED",
        "manual",
        "error",
        "jobs ended without their outputs or with a failure in their logs",
    ),
    (
        1115,
        "1.1",
        "STEP1_1_RUNS_WITHOUT_JOB_FILE",
        "manual",
        "error",
        "genJob.sh made no rec{run}_1.txt for some runs of the date",
    ),
    (
        2108,
        "2.1",
        "STEP2_1_JOBS_CRASHED",
        "manual",
        "error",
        "jobs ended without their ntuples or with a failure in their logs",
    ),
    (
        3107,
        "3.1",
        "STEP3_1_JOBS_CRASHED",
        "manual",
        "error",
        "jobs ended without their shield files or with a failure in their logs",
    ),
    (
        4106,
        "4.1",
        "STEP4_1_JOBS_CRASHED",
        "manual",
        "error",
        "jobs ended without their outputs or with a failure in their logs",
    ),
    (
        4107,
        "4.1",
        "STEP4_1_RUNS_WITHOUT_JOB_FILE",
        "manual",
        "error",
        "genJob.sh made no run_{run}_4.txt for some runs of the date",
    ),
    (
        5107,
        "5.1",
        "STEP5_1_JOBS_CRASHED",
        "manual",
        "error",
        "jobs ended without their plots or with a failure in their logs",
    ),
    (
        6105,
        "6.1",
        "STEP6_1_JOBS_CRASHED",
        "manual",
        "error",
        "jobs ended without their PNG/ROOT or with a failure in their logs",
    ),
    (
        6106,
        "6.1",
        "STEP6_1_RUNS_WITHOUT_JOB_FILE",
        "manual",
        "error",
        "genJob.sh made no ETScut_check_{run}.txt for some runs of the date",
    ),
    (
        5202,
        "5.2",
        "STEP5_2_NO_SHIELD_FILE",
        "manual",
        "error",
        "the date has topup runs but no shield file matches the site's shield_file_pattern",
    ),
    (
        5304,
        "5.3",
        "STEP5_3_EMPTY_ETS_CUT",
        "manual",
        "error",
        "ets_cut.txt is empty after tidying although the date has topup runs",
    ),
    (
        8101,
        "8",
        "STEP8_SUBMISSION_FAILED_NEEDS_DECISION",
        "manual",
        "error",
        "a real submission (-sub_switch 1) failed; it is never started again without a person",
    ),
)
ADDED_CODES: frozenset[int] = frozenset(row[0] for row in _ADDED)


def _build() -> tuple[Mapping[int, ErrorInfo], Mapping[int, str]]:
    infos: dict[int, ErrorInfo] = {}
    steps: dict[int, str] = {}
    for code, step, name, action, severity, message in (*_TABLE, *_ADDED):
        if code in infos:
            raise RuntimeError(f"duplicate error code {code}")
        infos[code] = ErrorInfo(
            code=code, name=name, action=action, severity=severity, message=message
        )
        steps[code] = step
    return MappingProxyType(infos), MappingProxyType(steps)


ERRORS, _STEP_OF = _build()


# A required report whose PDF was built but could not be downloaded (after the SSH layer's
# retries): the five report steps 1.4 (IST), 2.5, 4.2 (the four cut/check PDFs), 5.4 (ETS cut)
# and 6.2 (ETS check). The legacy dictionary says ``continue``, which let a run end "done"
# without the reports the operators validate; here the step fails and an operator decides
# (retry / abort). Codes and names stay the legacy ones; ERRORS keeps the legacy action.
REQUIRED_DOWNLOAD_CODES: frozenset[int] = frozenset({1402, 2503, 4202, 5403, 6203})
ACTION_OVERRIDES: Mapping[int, Action] = MappingProxyType(
    dict.fromkeys(REQUIRED_DOWNLOAD_CODES, "manual")
)


def error(code: int | None) -> ErrorInfo:
    """The entry for ``code`` with the action applied here (``ACTION_OVERRIDES``, else the
    legacy one); unknown codes become 103 UNKNOWN_ERROR (action ai)."""
    if code is not None and code in ERRORS:
        info = ERRORS[code].model_copy()
        if code in ACTION_OVERRIDES:
            info.action = ACTION_OVERRIDES[code]
        return info
    unknown = ERRORS[UNKNOWN_CODE]
    return unknown.model_copy(update={"message": f"{unknown.message} (unknown code {code!r})"})


def step_of(code: int) -> str | None:
    """``"gen"`` for the general codes, ``"1.1"`` … ``"8"`` for step codes, None if unknown."""
    return _STEP_OF.get(code)


def codes_for_step(step: str) -> list[int]:
    """Codes of a step (``"2.4"``) or of a whole group (``"2"`` gives 2.1 … 2.5), sorted."""
    return sorted(code for code, s in _STEP_OF.items() if s == step or s.split(".")[0] == step)
