"""Steps 1-2 on the simulated site: the legacy command lines reproduce the spec's files."""

from __future__ import annotations

import re

from sim.layout import DEFAULT_RUNS
from sim.site import SimSite
from tests.sim.test_site_helpers import (
    SITE_USER,
    bash,
    fast,
    png_size,
    runs_of,
    wait_for,
)

DATE = "250624"
RUNS = list(DEFAULT_RUNS)
SIX = (
    "rec{r}_1.txt",
    "rec{r}_1.txt.bosserr",
    "rec{r}_1.txt.bosslog",
    "InjSigTime_00{r}_720.root",
    "Interval_run{r}.png",
    "Interval_run{r}.txt",
)


def complete_runs(sim: SimSite, date: str) -> list[int]:
    d = sim.inj() / date
    return [r for r in sim.runs("round18", date) if all((d / n.format(r=r)).exists() for n in SIX)]


def first_pass(sim: SimSite, date: str = DATE, user: str | None = None) -> str:
    """Step 1.1 as the legacy does it; returns genJob.sh's output."""
    res = bash(sim, f"./genJob.sh {date}", sim.inj(), user=user)
    assert res.returncode == 0, res.stderr
    return res.stdout


def finish_step1(sim: SimSite, date: str) -> None:
    """Steps 1.2 and 1.3 (the legacy commands) once the jobs are done."""
    runs = sim.runs("round18", date)
    wait_for(lambda: len(complete_runs(sim, date)) == len(runs))
    res = bash(
        sim,
        "mv InjSigTime*.root ../calibConst && mv Interval*.png ../Interval_plot",
        sim.inj() / date,
    )
    assert res.returncode == 0, res.stderr
    lines = "\n".join(f"{r} 15000000" for r in runs)
    assert bash(sim, f"echo '{lines}' >> interval.txt", sim.inj()).returncode == 0


def test_first_pass_genjob_and_jobs(sim: SimSite) -> None:
    fast(sim)
    out = first_pass(sim, user=SITE_USER)
    lines = out.splitlines()
    assert lines[-2:] == ["Total = 19 files", "DONE"]
    assert [int(x) for x in lines[:19]] == RUNS  # the runs, printed first
    assert lines.count("DONE") == 1
    assert sum("job(s) submitted to cluster" in line for line in lines) == 19
    subs = sim.submissions()
    assert len(subs) == 19
    assert {s["kind"] for s in subs} == {"boss.condor"}
    assert {s["group"] for s in subs} == {"offlinerun"}
    assert {s["owner"] for s in subs} == {SITE_USER}
    assert sorted(s["jobfile"] for s in subs) == [f"rec{r}_1.txt" for r in RUNS]
    assert len({s["cluster"] for s in subs}) == 19
    day = sim.inj() / DATE
    job = (day / "rec85391_1.txt").read_text()
    assert 'GetTIntervalAlg.output = "Interval_run85391.txt";' in job
    assert 'GetRawETS.ETS_FILE = "InjSigTime_0085391_720.root";' in job
    assert job.count("run_0085391_") == 5 and job.count('\n,"') == 4
    assert (day / "rec85391_1.txt").stat().st_mode & 0o111

    wait_for(lambda: complete_runs(sim, DATE) == RUNS)
    assert sim.wait_jobs(10)
    txt = (day / "Interval_run85391.txt").read_text()
    assert len(txt.encode()) == 179
    assert txt.splitlines() == [
        f"{85391:>25}",
        f"{'interval_before_sorting':>25}{15000000:>25}",
        f"{'interval_From_DB':>25}{15000000:>25}",
        f"{'interval_after_sorting':>25}{15000000:>25}",
    ]
    assert (day / "rec85391_1.txt.bosserr").stat().st_size == 141
    log = (day / "rec85391_1.txt.bosslog").read_text()
    assert 11_000 < len(log) < 13_000
    for needle in (
        "submitted at",
        "BOSS version: 7.2.0",
        "GetRawETS::execute() m_interval = 60",
        "[RawFile] Prepare for reading:",
        "[RawFile] Congratulations. Reach end of data file list !",
        "ApplicationMgr Stopped successfully",
    ):
        assert needle in log, needle
    assert png_size(day / "Interval_run85391.png") == (996, 772)
    assert (day / "InjSigTime_0085391_720.root").stat().st_size > 0
    assert not (day / "Interval_run0.png").exists()


def test_first_pass_guards_print_no_done(sim: SimSite) -> None:
    usage = bash(sim, "./genJob.sh", sim.inj())
    assert "Usage" in usage.stdout and "DONE" not in usage.stdout
    (sim.inj() / DATE).mkdir()
    exists = bash(sim, f"./genJob.sh {DATE}", sim.inj())
    assert exists.stdout.strip() == f"ERROR: {DATE} exists"
    assert sim.submissions() == []


def test_first_pass_with_empty_data_is_the_legacy_behaviour(sim: SimSite) -> None:
    res = bash(sim, "./genJob.sh 250627", sim.inj())
    assert res.returncode == 0
    assert res.stdout.splitlines()[-2:] == ["Total = 1 files", "DONE"]
    assert "rec*.txt" in res.stderr  # chmod and boss.condor fail on the literal glob
    assert list((sim.inj() / "250627").iterdir()) == []
    assert sim.submissions() == []


def test_first_pass_faults(sim: SimSite) -> None:
    fast(
        sim,
        ist={"85410": 14000000, "85411": [15000000, 20000000, 15000000]},
        interval_run0=["250625"],
        fail={"1": [85412]},
        empty_output={"1": [85413]},
    )
    first_pass(sim, "250625")
    day = sim.inj() / "250625"
    wait_for(lambda: (day / "rec85414_1.txt.bosslog").exists() and not sim.active_jobs())
    assert (day / "Interval_run0.png").exists()
    v10 = (day / "Interval_run85410.txt").read_text()
    assert re.findall(r"\d{8}", v10) == ["14000000"] * 3
    v11 = (day / "Interval_run85411.txt").read_text().splitlines()
    assert v11[1].endswith("15000000") and v11[2].endswith("20000000")
    # fail: no outputs, the break line in the error log, the log written
    assert "*** Break *** segmentation violation" in (day / "rec85412_1.txt.bosserr").read_text()
    assert (day / "rec85412_1.txt.bosslog").exists()
    assert not (day / "Interval_run85412.txt").exists()
    assert not (day / "InjSigTime_0085412_720.root").exists()
    # empty_output: every output there with size 0, logs normal
    for name in ("Interval_run85413.txt", "Interval_run85413.png", "InjSigTime_0085413_720.root"):
        assert (day / name).stat().st_size == 0, name
    assert (day / "rec85413_1.txt.bosserr").stat().st_size > 0


def test_second_pass_genjob_jobs_merge_and_draw(sim: SimSite) -> None:
    fast(sim)
    date = "250625"
    first_pass(sim, date)
    finish_step1(sim, date)
    res = bash(sim, f"./genJob.sh {date}", sim.base(), user=SITE_USER)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[-2:] == [" Total = 25 files", "DONE"]
    assert f"{date} Run 85410 5 1" in lines and f"{date} Run 85414 5 5" in lines
    day = sim.base() / date
    assert sorted(p.name for p in day.iterdir() if p.is_dir()) == [
        str(r) for r in range(85410, 85415)
    ]
    merge = (day / "mergeHist.sh").read_text().splitlines()
    assert merge == [f"hadd  hist{r}.root  {r}/*root  " for r in range(85410, 85415)] + [
        " sleep 2 ",
        " rm */hist*_*.root -f ",
        " du -sh * ",
        " ls */*core* ",
        " mv  hist*.root ../hist ",
    ]
    assert (day / "mergeHist.sh").stat().st_mode & 0o111
    job = (day / "85412/rec85412_3").read_text()
    assert "ResetEtsAlg.InjSigInterval = 60;" in job
    assert "OfflineEvtFilterCalibAlg.InjSigInterval = 60;" in job
    assert "DATAFILE='hist85412_3.root'" in job
    assert "INTERVAL" not in job and "RUNNO" not in job
    assert "calibConst/InjSigTime_0085412_720.root" in job
    subs = [
        s
        for s in sim.submissions()
        if s["jobfile"].startswith("rec") and "_1.txt" not in s["jobfile"]
    ]
    assert len(subs) == 25

    def hists() -> int:
        return sum(len(list((day / str(r)).glob("hist*_*.root"))) for r in range(85410, 85415))

    wait_for(lambda: hists() == 25 and not sim.active_jobs())
    log = (day / "85412/rec85412_3.bosslog").read_text()
    assert "Application Manager Terminated successfully" in log
    assert "TCling::LoadPCM" in (day / "85412/rec85412_3.bosserr").read_text()

    merged = bash(sim, "./mergeHist.sh", day, user=SITE_USER)
    assert merged.returncode == 0, merged.stderr
    assert "hadd Target file: hist85410.root" in merged.stdout
    hist = sim.hist()
    assert sorted(p.name for p in hist.glob("hist*.root")) == [
        f"hist{r}.root" for r in range(85410, 85415)
    ]
    assert list(day.glob("*/hist*_*.root")) == []
    parts = sum((day / "85410" / f"rec85410_{i}").exists() for i in range(5))
    assert parts == 5 and (hist / "hist85410.root").stat().st_size > 5 * 6000
    # not idempotent: the rerun finds no inputs, hadd leaves no target, mv fails
    again = bash(sim, "./mergeHist.sh", day)
    assert again.returncode != 0
    assert "does not exist" in again.stderr
    assert (hist / "hist85410.root").stat().st_size > 0

    drawn = bash(sim, "./01go.sh", hist, env=False)
    assert drawn.returncode == 0, drawn.stderr
    assert [line.strip() for line in drawn.stdout.splitlines() if "Run" in line] == [
        f"Run  {r}" for r in range(85410, 85415)
    ]
    wait_for(lambda: len(list(hist.glob("check*.png"))) == 5)
    assert png_size(hist / "check85412.png") == (1796, 772)


def test_second_pass_job_without_interval_fails_like_boss(sim: SimSite) -> None:
    fast(sim)
    date = "250626"
    first_pass(sim, date)
    wait_for(lambda: len(complete_runs(sim, date)) == 3)
    bash(sim, "mv InjSigTime*.root ../calibConst", sim.inj() / date)
    # no interval.txt line for 85422: the INTERVAL placeholder stays, the job aborts
    bash(sim, "echo '85420 15000000\n85421 15000000' >> interval.txt", sim.inj())
    assert bash(sim, f"./genJob.sh {date}", sim.base()).returncode == 0
    run_dir = sim.base() / date / "85422"
    assert "= INTERVAL;" in (run_dir / "rec85422_0").read_text()
    wait_for(lambda: (run_dir / "rec85422_4.bosslog").exists() and not sim.active_jobs())
    assert list(run_dir.glob("hist*.root")) == []
    assert "FATAL" in (run_dir / "rec85422_0.bosslog").read_text()
    assert "INTERVAL" in (run_dir / "rec85422_0.bosserr").read_text()
    assert len(list((sim.base() / date / "85421").glob("hist*_*.root"))) == 5


def test_run_numbers_come_from_the_raw_file_names(sim: SimSite) -> None:
    fast(sim)
    out = first_pass(sim, "250626")
    assert runs_of(out.split(), r"rec(\d+)_1\.txt") == [85420, 85421, 85422]


def test_second_pass_round_comes_from_round_number(sim: SimSite) -> None:
    """DataValid/genJob.sh reads round${ROUND_NUMBER}: w720 exports 18 (legacy hazard)."""
    fast(sim)
    base17 = sim.base("round17")
    wrong = bash(sim, "./genJob.sh 240502", base17)
    assert wrong.stdout.splitlines()[-2:] == [" Total = 0 files", "DONE"]  # no round18 240502
    assert "round18/240502" in wrong.stderr
    bash(sim, "rm -rf 240502", base17)
    right = bash(sim, "export ROUND_NUMBER=17 && ./genJob.sh 240502", base17)
    assert right.stdout.splitlines()[-2:] == [" Total = 15 files", "DONE"]
    assert sorted(p.name for p in (base17 / "240502").iterdir() if p.is_dir()) == [
        "80010",
        "80011",
        "80012",
    ]
    assert sim.wait_jobs(20)
