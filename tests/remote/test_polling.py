"""poll_files: one remote command per cycle for all runs, with a correct report."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.remote.site import FAILURE_REGEX, RemoteSite
from steps.remote.validate import InvalidValue

RUNS = [*range(85383, 85394), *range(85396, 85403), 85406]  # the 19 runs of a real date


def _jobs_dir(site: RemoteSite) -> Path:
    d = Path(site.settings.control_dir).parent / "work" / "jobs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.fixture
def jobs(site: RemoteSite) -> Path:
    """19 runs of outputs; run 0 lacks a part, run 1 has an empty output, run 2 failed."""
    d = _jobs_dir(site)
    for i, run in enumerate(RUNS):
        if i != 0:
            _write(d / f"hist{run}_1.root", "root-data-1")
        _write(d / f"hist{run}_2.root", "" if i == 1 else "root-data-22")
        _write(d / f"rec{run}.out", "reconstructed\n")
        err = "*** Break *** segmentation violation\nmore\n" if i == 2 else "all fine\n"
        _write(d / f"job{run}.err.{i}", err)
    _write(d / "Interval_run0.png", "png")
    return d


def _expected(runs: list[int]) -> dict[int, list[str]]:
    return {r: [f"hist{r}_1.root", f"hist{r}_2.root", f"rec{r}.out"] for r in runs}


def test_nineteen_runs_in_one_command(site: RemoteSite, jobs: Path) -> None:
    before = site.transport.stats.commands
    report = site.poll_files(
        str(jobs),
        _expected(RUNS),
        anomalies=["Interval_run0.png", "core.*"],
        failure_logs={r: [f"job{r}.err.*"] for r in RUNS},
    )
    assert site.transport.stats.commands - before == 1

    r0, r1, r2 = RUNS[:3]
    assert report.directory_exists
    assert report.missing == {r0: [f"hist{r0}_1.root"]}
    assert report.empty == {r1: [f"hist{r1}_2.root"]}
    assert report.failed == {r2: "*** Break *** segmentation violation"}
    assert report.failed_files == {r2: f"job{r2}.err.2"}
    assert report.anomalies == ["Interval_run0.png"]
    assert report.incomplete == [r0, r1, r2]
    assert report.complete == RUNS[3:]
    assert report.present[RUNS[5]] == {
        f"hist{RUNS[5]}_1.root": 11,
        f"hist{RUNS[5]}_2.root": 12,
        f"rec{RUNS[5]}.out": 14,
    }
    assert report.present[r1][f"hist{r1}_2.root"] == 0
    assert f"hist{r0}_1.root" not in report.present[r0]


def test_one_command_for_many_cycles(site: RemoteSite, jobs: Path) -> None:
    before = site.transport.stats.commands
    for _ in range(3):
        site.poll_files(str(jobs), _expected(RUNS))
    assert site.transport.stats.commands - before == 3


def test_globs_count_as_present_when_matching(site: RemoteSite, jobs: Path) -> None:
    r = RUNS[5]
    _write(jobs / f"{r}.out.1", "a")
    _write(jobs / f"{r}.out.2", "")
    report = site.poll_files(str(jobs), {r: [f"hist{r}_*.root", f"{r}.out.*", f"{r}.missing.*"]})
    assert report.present[r] == {f"hist{r}_*.root": 23, f"{r}.out.*": 1}
    assert report.empty == {r: [f"{r}.out.*"]}  # one of its matches is empty
    assert report.missing == {r: [f"{r}.missing.*"]}
    assert report.files[r] == {
        f"hist{r}_1.root": 11,
        f"hist{r}_2.root": 12,
        f"{r}.out.1": 1,
        f"{r}.out.2": 0,
    }


def test_failure_regex_variants(site: RemoteSite, jobs: Path) -> None:
    runs = RUNS[3:8]
    lines = ["FATAL in RootCnvSvc", "Killed", "job aborted by user", "segmentation violation"]
    for r, line in zip(runs, lines, strict=False):
        _write(jobs / f"x{r}.bosserr", f"start\n{line}\nend\n")
    report = site.poll_files(
        str(jobs), _expected(runs), failure_logs={r: [f"x{r}.bosserr"] for r in runs}
    )
    assert report.failed == dict(zip(runs, lines, strict=False))
    assert report.complete == [runs[4]]
    assert FAILURE_REGEX.count("|") == 4


def test_custom_regex_with_shell_characters_is_not_executed(
    site: RemoteSite, jobs: Path, tmp_path: Path
) -> None:
    marker = Path("/tmp") / f"pwned-{tmp_path.name}"
    r = RUNS[4]
    _write(jobs / f"z{r}.log", "value: $(x) `y` 'q'\n")
    report = site.poll_files(
        str(jobs),
        {r: [f"rec{r}.out"]},
        failure_logs={r: [f"z{r}.log"]},
        failure_regex=f"\\$\\(x\\)|'; touch {marker}; '|`touch {marker}`",
    )
    assert report.failed == {r: "value: $(x) `y` 'q'"}
    assert not marker.exists()


def test_string_keys_are_kept(site: RemoteSite, jobs: Path) -> None:
    r = str(RUNS[6])
    report = site.poll_files(str(jobs), {r: [f"rec{r}.out"]})
    assert report.complete == [r]
    assert report.present == {r: {f"rec{r}.out": 14}}


def test_missing_directory(site: RemoteSite, jobs: Path) -> None:
    report = site.poll_files(str(jobs / "nope"), _expected(RUNS[:2]), anomalies=["x"])
    assert not report.directory_exists
    assert report.incomplete == RUNS[:2] and report.complete == []
    assert report.missing[RUNS[0]] == _expected(RUNS[:1])[RUNS[0]]
    assert report.anomalies == []


@pytest.mark.parametrize(
    "expected",
    [
        {"85383; touch /tmp/pwned": ["a"]},
        {"$(id)": ["a"]},
        {85383: ["../etc/passwd"]},
        {85383: ["a b"]},
        {85383: ["a;b"]},
        {85383: ["`id`"]},
        {85383: ["a\nb"]},
        {85383: ["$(touch /tmp/pwned)"]},
        {85383: ["a"], "85383": ["b"]},  # the same run twice
    ],
)
def test_invalid_inputs_rejected_before_any_command(
    site: RemoteSite, jobs: Path, expected: dict[object, list[str]]
) -> None:
    before = site.transport.stats.commands
    with pytest.raises(InvalidValue):
        site.poll_files(str(jobs), expected)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        site.poll_files(str(jobs), {85383: ["a"]}, anomalies=["x/../y"])
    with pytest.raises(InvalidValue):
        site.poll_files(str(jobs), {85383: ["a"]}, failure_logs={85384: ["a"]})
    assert site.transport.stats.commands == before


def test_names_in_sub_directories(site: RemoteSite, jobs: Path) -> None:
    """Step 2.1 keeps one sub-directory per run; still one command."""
    runs = RUNS[:3]
    for r in runs[:2]:
        (jobs / str(r)).mkdir()
        _write(jobs / str(r) / f"hist{r}_0.root", "h")
        _write(jobs / str(r) / f"rec{r}_0.bosserr", "FATAL x\n" if r == runs[1] else "ok\n")
    before = site.transport.stats.commands
    report = site.poll_files(
        str(jobs),
        {r: [f"{r}/hist{r}_*.root"] for r in runs},
        failure_logs={r: [f"{r}/rec{r}_*.bosserr"] for r in runs},
    )
    assert site.transport.stats.commands - before == 1
    assert report.complete == [runs[0]]
    assert report.failed == {runs[1]: "FATAL x"}
    assert report.failed_files == {runs[1]: f"{runs[1]}/rec{runs[1]}_0.bosserr"}
    assert report.missing == {runs[2]: [f"{runs[2]}/hist{runs[2]}_*.root"]}
    assert report.files[runs[0]] == {f"{runs[0]}/hist{runs[0]}_0.root": 1}


@pytest.mark.parametrize("name", ["a/../b", "/abs", "a//b", "./a", "a/", "a/b c"])
def test_bad_relative_names(site: RemoteSite, name: str) -> None:
    with pytest.raises(InvalidValue):
        site.poll_files("/tmp", {1: [name]})


HEP_Q = """#!/bin/bash
# A stand-in for hep_q: HTCondor's queue listing, with a job of someone else's cluster.
echo "args: $*" > "$(dirname "$0")/hep_q.args"
[ -e "$(dirname "$0")/hep_q.fail" ] && { echo "schedd not reachable" >&2; exit 2; }
echo "-- Schedd: schedd@beslogin : <127.0.0.1:9618> @ 12/06/26 10:00:00"
echo " ID          OWNER    SUBMITTED     RUN_TIME ST PRI SIZE CMD"
echo " 52032427.0  topup    12/06 10:00  0+00:01:00 R  0   0.0  run_85383_3.txt"
echo " 52032428.1  topup    12/06 10:00  0+00:00:00 H  0   0.0  rec85384_1"
echo " 520324270.0 other    12/06 10:00  0+00:01:00 R  0   0.0  someone_else"
echo ""
echo "3 jobs; 0 completed, 0 removed, 0 idle, 2 running, 1 held, 0 suspended"
"""


def test_batch_states_are_asked_in_the_same_command(site: RemoteSite, jobs: Path) -> None:
    tools = jobs.parent / "tools"
    tools.mkdir(exist_ok=True)
    tools.chmod(0o777)  # the login user writes hep_q.args
    (tools / "hep_q").write_text(HEP_Q)
    (tools / "hep_q").chmod(0o755)
    jobs_file = jobs.parent / "rk.3_1.jobs"
    jobs_file.write_text("52032427\n52032428\n52032429\n")  # the last one has ended
    site.settings.batch_query_cmd = str(tools / "hep_q")
    before = site.transport.stats.commands
    report = site.poll_files(str(jobs), _expected(RUNS[:2]), jobs_file=str(jobs_file))
    assert site.transport.stats.commands - before == 1
    assert report.batch is not None and report.batch.ok
    assert report.batch.clusters == [52032427, 52032428, 52032429]
    # only our clusters (not 520324270, which merely starts with the same digits)
    assert {j.id: j.state for j in report.batch.jobs.values()} == {
        "52032427.0": "R",
        "52032428.1": "H",
    }
    assert report.batch.jobs["52032427.0"].line.endswith("run_85383_3.txt")
    me = site.run("id -un").stdout.strip()
    assert (tools / "hep_q.args").read_text().strip() == f"args: -u {me}"
    assert report.missing[RUNS[0]] == [f"hist{RUNS[0]}_1.root"]  # the files as before

    # the query failing is reported, not taken for "no job left"
    (tools / "hep_q.fail").write_text("")
    failed = site.poll_files(str(jobs), _expected(RUNS[:2]), jobs_file=str(jobs_file))
    assert failed.batch is not None and not failed.batch.ok and failed.batch.jobs == {}
    assert failed.batch.error == "exit 2: schedd not reachable"
    # no jobs recorded: nothing to ask
    none = site.poll_files(str(jobs), _expected(RUNS[:2]), jobs_file=str(jobs.parent / "no"))
    assert none.batch is None and none.missing == report.missing
