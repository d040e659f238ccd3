"""Step 8's three parts (8.1 – 8.3) as data: each part's sub-steps, in the legacy order.

Every sub-step is one remote action ``cd <dir> && source ~/w720 && <action>`` (spec
steps-7-8.md §2). A part is split in two: ``prepare``, up to and including the dry run
(``genInsertCmd.sh ... -sub_switch 0``), and ``submit``, the real, irreversible submission
(``-sub_switch 1``; for 8.3 then ``reset_root.sh``). Each sub-step runs as a detached command
keyed by flow run, part, range and sub-step (``part_prefix``); ``steps.step8_substeps`` runs
them, ``prepare_part`` and ``submit_part`` (``steps.step8_database``) are a part's two halves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from steps.batch_jobs import detached_key
from steps.config import SitePaths
from steps.remote import validate
from steps.remote.validate import q

CCOMPARE_ERROR_RE = re.compile(r"error:\s+(repeat|order|miss)", re.IGNORECASE)


Check = Callable[[str], str | None]


def ccompare_check(output: str) -> str | None:
    """8.3.3: the comparison reports repeated, out-of-order or missing runs."""
    m = CCOMPARE_ERROR_RE.search(output)
    return f"output contains {m.group(0)!r}" if m else None


def silent_check(output: str) -> str | None:
    """8.3.6: the checker prints nothing when the generated files are right."""
    text = output.strip()
    return f"unexpected output: {text[:300]!r}" if text else None


@dataclass(frozen=True)
class SubStep:
    """One remote action of a part; ``{F}``/``{T}``/``{B}`` = run_from, run_to, BOSS (720)."""

    id: str  # "8.1.2a"
    purpose: str  # key part, e.g. "s2a_compile"
    cwd: Callable[[SitePaths], str]
    command: str  # template, values are substituted already quoted
    what: str  # for messages
    check: Check | None = None
    submission: bool = False  # a -sub_switch 1: never repeated, a lost result is manual

    def render(self, run_from: int, run_to: int, bosse: str) -> str:
        return self.command.format(F=q(str(run_from)), T=q(str(run_to)), B=q(bosse))


def _insert(switch: int) -> str:
    return "bash genInsertCmd.sh -runfrom {F} -runto {T} -sub_switch " + str(switch)


def _dry_run(sub_id: str, purpose: str, cwd: Callable[[SitePaths], str], table: str) -> SubStep:
    """A part's last preparing sub-step: what the real submission would insert, not inserted."""
    return SubStep(sub_id, purpose, cwd, _insert(0), f"{table} dry run (-sub_switch 0)")


def _submission(sub_id: str, purpose: str, cwd: Callable[[SitePaths], str], table: str) -> SubStep:
    """A part's real, irreversible submission."""
    what = f"{table} database submission (-sub_switch 1)"
    return SubStep(sub_id, purpose, cwd, _insert(1), what, submission=True)


PART_1_PREPARE = (
    SubStep("8.1.1", "s1_clean", lambda p: p.inj, "bash clean_interval.sh", "clean_interval.sh"),
    SubStep(
        "8.1.2a",
        "s2a_compile",
        lambda p: p.gen_const,
        "g++ -Wall genConst.cpp",
        "compiling genConst.cpp",
    ),
    SubStep("8.1.2b", "s2b_genconst", lambda p: p.gen_const, "./a.out {F}", "./a.out run_from"),
    SubStep("8.1.3", "s3_copy", lambda p: p.gen_const, "chmod +x copy.sh && ./copy.sh", "copy.sh"),
    SubStep(
        "8.1.4",
        "s4_rootmove",
        lambda p: p.const_run_from_run_to,
        "./rootmove.sh",
        "const_runForm_runTo/rootmove.sh",
    ),
    _dry_run("8.1.5", "s5_dryrun", lambda p: p.inj_sig_interval_db, "InjSigInterval"),
)
PART_1_SUBMIT = (
    _submission("8.1.6", "s6_submit", lambda p: p.inj_sig_interval_db, "InjSigInterval"),
)
PART_2_PREPARE = (
    SubStep(
        "8.2.1",
        "s1_rootmove",
        lambda p: p.calib_const,
        "./rootmove.sh",
        "calibConst/rootmove.sh",
    ),
    _dry_run("8.2.2", "s2_dryrun", lambda p: p.inj_sig_time_db, "InjSigTime"),
)
PART_2_SUBMIT = (_submission("8.2.3", "s3_submit", lambda p: p.inj_sig_time_db, "InjSigTime"),)
PART_3_PREPARE = (
    SubStep("8.3.1", "s1_cp3", lambda p: p.offline_evt, "./cp_3files.sh", "cp_3files.sh"),
    SubStep(
        "8.3.2",
        "s2_duration",
        lambda p: f"{p.offline_evt}/duration_caculate",
        "./a.out",
        "duration_caculate/a.out",
    ),
    SubStep(
        "8.3.3",
        "s3_ccompare",
        lambda p: f"{p.offline_evt}/ccompare",
        "./a.out 2>&1",
        "ccompare/a.out",
        check=ccompare_check,
    ),
    SubStep("8.3.4", "s4_gen", lambda p: p.offline_evt, "./a.out {B} {F} {T}", "a.out BOSS F T"),
    SubStep(
        "8.3.5",
        "s5_filelist",
        lambda p: f"{p.offline_evt}/check",
        "ls ../OfflineEvtFilter_00*.root > file.txt 2>/dev/null",
        "listing OfflineEvtFilter_00*.root into file.txt",
    ),
    SubStep(
        "8.3.6",
        "s6_check",
        lambda p: f"{p.offline_evt}/check",
        "./a.out {B} {F} {T} 2>&1",
        "check/a.out",
        check=silent_check,
    ),
    SubStep("8.3.7", "s7_rootmove", lambda p: p.offline_evt, "./rootmove.sh", "rootmove.sh"),
    _dry_run("8.3.8", "s8_dryrun", lambda p: p.offline_evt_db, "OfflineEvtFilter"),
)
PART_3_SUBMIT = (
    _submission("8.3.9", "s9_submit", lambda p: p.offline_evt_db, "OfflineEvtFilter"),
    SubStep(
        "8.3.10",
        "s10_reset_root",
        lambda p: p.check_db_alg,
        "bash reset_root.sh",
        "reset_root.sh",
    ),
)

PARTS: dict[str, tuple[str, tuple[SubStep, ...], tuple[SubStep, ...]]] = {
    "8.1": ("InjSigInterval", PART_1_PREPARE, PART_1_SUBMIT),
    "8.2": ("InjSigTime", PART_2_PREPARE, PART_2_SUBMIT),
    "8.3": ("OfflineEvtFilter", PART_3_PREPARE, PART_3_SUBMIT),
}


def part_prefix(run_key: str, part: str, run_from: int, run_to: int) -> str:
    """The key every detached command of ``part`` for this range starts with."""
    return detached_key(run_key, part.replace(".", "_"), f"r{run_from}-{run_to}")


def submission_key(run_key: str, part: str, run_from: int, run_to: int, attempt: int = 1) -> str:
    """The remote key of attempt ``attempt`` of ``part``'s real submission (for the ledger)."""
    purpose = next(s for s in PARTS[part][2] if s.submission).purpose
    base = f"{part_prefix(run_key, part, run_from, run_to)}.{purpose}"
    return validate.job_key(base if attempt == 1 else f"{base}-{attempt}")


def is_submission_key(key: str) -> bool:
    """A detached command that is a real submission: never killed, never restarted."""
    purposes = {s.purpose for _, _, subs in PARTS.values() for s in subs if s.submission}
    last = key.rsplit(".", 1)[-1]
    return last.split("-", 1)[0] in purposes
