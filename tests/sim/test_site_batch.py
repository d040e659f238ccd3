"""The simulated batch system: submission, logs last, hep_q / hep_rm, faults, clean stop."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from sim.site import SimSite
from tests.sim.test_site_helpers import SITE_USER, bash, fast, wait_for

CLUSTER_LINE = re.compile(r"^1 job\(s\) submitted to cluster (\d+)\.$")


def write_job(sim: SimSite, d: Path, run: int) -> str:
    """A step-1 job file as INJ/genJob.sh writes it (the raw data of 250624)."""
    text = (sim.inj() / "temp.txt").read_text().replace("RUNNO", str(run))
    data = sim.data("round18", "250624")
    files = "\n,".join(f'"{p}"' for p in sorted(data.glob(f"*{run}*raw")))
    name = f"rec{run}_1.txt"
    (d / name).write_text(text.replace("INPUTFILES", files))
    return name


def submit(sim: SimSite, cwd: Path, jobfile: str, kind: str = "boss.condor") -> int:
    res = bash(sim, f"{kind} -g offlinerun {jobfile}", cwd)
    assert res.returncode == 0, res.stderr
    m = CLUSTER_LINE.match(res.stdout.strip())
    assert m, res.stdout
    return int(m.group(1))


def step1_dir(sim: SimSite) -> Path:
    d = sim.inj() / "250624"
    d.mkdir()
    return d


def test_submission_is_logged_and_returns_at_once(sim: SimSite) -> None:
    sim.set_faults(job_seconds=15)
    d = step1_dir(sim)
    name = write_job(sim, d, 85383)
    started = time.monotonic()
    # Like an SSH exec channel: the caller reads stdout until EOF. The job must not hold it.
    proc = subprocess.run(
        [
            "/bin/bash",
            "-c",
            f"cd {d} && source {sim.env_script} && boss.condor -g offlinerun {name}",
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - started < 12  # not held for the 15 s job
    m = CLUSTER_LINE.match(proc.stdout.strip())
    assert m is not None
    (sub,) = sim.submissions()
    assert sub["cluster"] == int(m.group(1))
    assert sub["cwd"] == str(d) and sub["jobfile"] == name and sub["kind"] == "boss.condor"
    assert isinstance(sub["time"], float) and abs(sub["time"] - time.time()) < 30
    assert [j["id"] for j in sim.active_jobs()] == [f"{sub['cluster']}.0"]
    q = bash(sim, "hep_q -u root", d)
    assert f"{sub['cluster']}.0" in q.stdout and name in q.stdout and str(d) in q.stdout
    assert "1 jobs;" in q.stdout
    assert not (d / "Interval_run85383.txt").exists()  # still waiting job_seconds
    wait_for(lambda: not sim.active_jobs(), 90)
    assert (d / f"{name}.bosslog").exists()
    assert "0 jobs;" in bash(sim, "hep_q", d).stdout


def test_logs_are_written_last(sim: SimSite) -> None:
    """Whenever a poll sees the log, every output is already complete."""
    fast(sim)
    d = step1_dir(sim)
    names = [write_job(sim, d, r) for r in (85383, 85384, 85385)]
    for name in names:
        submit(sim, d, name)
    outputs = ("Interval_run{r}.txt", "Interval_run{r}.png", "InjSigTime_00{r}_720.root")
    seen = set()
    deadline = time.monotonic() + 20
    while len(seen) < 3 and time.monotonic() < deadline:
        for r in (85383, 85384, 85385):
            if (d / f"rec{r}_1.txt.bosslog").exists():
                for pattern in outputs:
                    out = d / pattern.format(r=r)
                    assert out.exists() and out.stat().st_size > 0
                assert len((d / f"Interval_run{r}.txt").read_bytes()) == 179
                seen.add(r)
    assert seen == {85383, 85384, 85385}


def test_never_finish_stays_queued_until_hep_rm(sim: SimSite) -> None:
    fast(sim, never_finish={"1": [85383, 85384]})
    d = step1_dir(sim)
    c1 = submit(sim, d, write_job(sim, d, 85383))
    c2 = submit(sim, d, write_job(sim, d, 85384))
    c3 = submit(sim, d, write_job(sim, d, 85385))
    wait_for(lambda: (d / "rec85385_1.txt.bosslog").exists())
    # (a finished job leaves the queue a moment after its logs appear)
    wait_for(lambda: {j["cluster"] for j in sim.active_jobs()} == {c1, c2})
    q = bash(sim, "hep_q", d).stdout
    assert f"{c1}.0" in q and f"{c2}.0" in q and f"{c3}.0" not in q
    rm = bash(sim, f"hep_rm {c1}", d)
    assert rm.returncode == 0 and f"cluster {c1}" in rm.stdout
    wait_for(lambda: {j["cluster"] for j in sim.active_jobs()} == {c2})
    assert bash(sim, f"hep_rm {c1}", d).returncode != 0  # gone from the queue
    assert bash(sim, "hep_rm 999", d).returncode != 0
    assert bash(sim, "hep_rm -a", d).returncode == 0
    wait_for(lambda: not sim.active_jobs())
    for r in (85383, 85384):
        assert not (d / f"rec{r}_1.txt.bosslog").exists()  # removed jobs write nothing
        assert not (d / f"Interval_run{r}.txt").exists()


def test_hep_sub_job_runs_its_file_and_names_its_logs(sim: SimSite) -> None:
    fast(sim)
    sp = sim.stage_dir("search_peak")
    (sim.hist() / "hist85391.root").write_bytes(b"root placeholder" * 100)
    (sim.inj() / "interval.txt").write_text("85391 15000000\n")
    (sp / "run_85391_3.txt").write_text(f"{sp}/a.out {sim.hist()}/ 85391 \n")
    (sp / "run_85391_3.txt").chmod(0o755)
    cluster = submit(sim, sp, "run_85391_3.txt", kind="hep_sub")
    out = sp / f"run_85391_3.txt.out.{cluster}.0"
    wait_for(out.exists)
    assert (sp / f"run_85391_3.txt.err.{cluster}.0").exists()
    assert "INFO: Using ROUND_NUMBER=18" in out.read_text()
    line = (sp / "shield_run85391.txt").read_text()
    assert re.fullmatch(r"85391( {5}\d+\.\d\d)+\n", line)  # a noise run: windows
    assert (sp / "run85391.root").exists()


def test_stage_failure_writes_the_break_line(sim: SimSite) -> None:
    fast(sim, fail={"3": [85391]})
    sp = sim.stage_dir("search_peak")
    (sim.hist() / "hist85391.root").write_bytes(b"x" * 100)
    (sp / "run_85391_3.txt").write_text(f"{sp}/a.out {sim.hist()}/ 85391 \n")
    cluster = submit(sim, sp, "run_85391_3.txt", kind="hep_sub")
    err = sp / f"run_85391_3.txt.err.{cluster}.0"
    wait_for(lambda: (sp / f"run_85391_3.txt.out.{cluster}.0").exists())
    assert "*** Break *** segmentation violation" in err.read_text()
    assert not (sp / "shield_run85391.txt").exists()


def _hep_q_states(sim: SimSite, d: Path) -> dict[str, str]:
    """``hep_q`` as the waits read it: job id → state (column ST)."""
    out = bash(sim, "hep_q", d).stdout
    states = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+\.\d+)\s+\S+\s+\S+\s+\S+\s+\S+\s+([IRHCX])\s", line)
        if m:
            states[m.group(1)] = m.group(2)
    return states


def test_hep_q_reports_held_and_running_and_forgets_ended_jobs(sim: SimSite) -> None:
    fast(sim, held={"3": [85391]}, never_finish={"3": [85392]})
    sp = sim.stage_dir("search_peak")
    ids = {}
    for r in (85391, 85392, 85393):
        (sp / f"run_{r}_3.txt").write_text(f"{sp}/a.out {sim.hist()}/ {r} \n")
        ids[r] = f"{submit(sim, sp, f'run_{r}_3.txt', kind='hep_sub')}.0"
    wait_for(lambda: list(sp.glob("run_85393_3.txt.out.*")))
    # the ended job leaves the queue; the held one stays H, the running one R
    wait_for(lambda: _hep_q_states(sim, sp) == {ids[85391]: "H", ids[85392]: "R"})
    summary = bash(sim, "hep_q", sp).stdout
    assert "1 running, 1 held" in summary
    assert not list(sp.glob("run_85391_3.txt.*.*"))  # a held job never started
    assert bash(sim, f"hep_rm {ids[85391]}", sp).returncode == 0  # held jobs can be removed
    wait_for(lambda: _hep_q_states(sim, sp) == {ids[85392]: "R"})


def test_crash_fault_leaves_empty_outputs_and_its_error_line(sim: SimSite) -> None:
    fast(sim, crash={"1": [85383]}, crash_line="Error: cannot allocate 4096 MB")
    d = step1_dir(sim)
    submit(sim, d, write_job(sim, d, 85383))
    wait_for(lambda: (d / "rec85383_1.txt.bosslog").exists())
    assert (d / "rec85383_1.txt.bosserr").read_text() == "Error: cannot allocate 4096 MB\n"
    for name in ("Interval_run85383.txt", "Interval_run85383.png", "InjSigTime_0085383_720.root"):
        assert (d / name).stat().st_size == 0, name  # opened, never written
    assert "Terminated successfully" not in (d / "rec85383_1.txt.bosslog").read_text()


def test_logs_at_start_exist_while_the_job_runs(sim: SimSite) -> None:
    sim.set_faults(logs_at_start=True, job_seconds=30)
    d = step1_dir(sim)
    cluster = submit(sim, d, write_job(sim, d, 85383))
    wait_for(lambda: (d / "rec85383_1.txt.bosslog").exists())
    assert (d / "rec85383_1.txt.bosserr").exists()
    assert not (d / "Interval_run85383.txt").exists()  # the job is still running
    assert _hep_q_states(sim, d) == {f"{cluster}.0": "R"}


def test_hep_rm_kills_a_running_job_process_group(sim: SimSite) -> None:
    fast(sim)
    sp = sim.stage_dir("search_peak")
    marker = sim.root / "started"
    (sp / "run_1_3.txt").write_text(f"touch {marker}; sleep 300; echo late > {sp}/late\n")
    cluster = submit(sim, sp, "run_1_3.txt", kind="hep_sub")
    wait_for(marker.exists)
    wait_for(lambda: [p for p in sim.tree_processes() if "sleep" in " ".join(_cmdline(p))])
    assert bash(sim, f"hep_rm {cluster}.0", sp).returncode == 0
    wait_for(lambda: not sim.active_jobs())
    wait_for(lambda: not [p for p in sim.tree_processes() if "sleep" in " ".join(_cmdline(p))])
    assert not (sp / f"run_1_3.txt.out.{cluster}.0").exists()
    assert not (sp / "late").exists()


def test_array_submission_and_bad_input(sim: SimSite) -> None:
    fast(sim)
    d = step1_dir(sim)
    for r in (85383, 85384):
        name = write_job(sim, d, r)
        (d / name).rename(d / f"arr_{r - 85383}")
    res = bash(sim, "boss.condor -g offlinerun -n 2 'arr_%{ProcId}'", d)
    assert res.stdout.strip().startswith("2 job(s) submitted to cluster")
    subs = sim.submissions()
    assert [(s["proc"], s["jobfile"]) for s in subs] == [(0, "arr_0"), (1, "arr_1")]
    assert len({s["cluster"] for s in subs}) == 1
    missing = bash(sim, "boss.condor -g offlinerun nothing.txt", d)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert bash(sim, "hep_sub", d).returncode != 0
    assert bash(sim, "boss.condor -g offlinerun 'a;b'", d).returncode != 0
    assert len(sim.submissions()) == 2
    wait_for(lambda: not sim.active_jobs())


def test_stop_jobs_leaves_no_process(sim: SimSite) -> None:
    fast(sim, never_finish={"1": [85383], "3": [85391]}, slow={"add.sh": 300})
    d = step1_dir(sim)
    submit(sim, d, write_job(sim, d, 85383))
    sp = sim.stage_dir("search_peak")
    (sp / "run_85391_3.txt").write_text(f"{sp}/a.out {sim.hist()}/ 85391 \n")
    submit(sim, sp, "run_85391_3.txt", kind="hep_sub")
    slow = subprocess.Popen(
        ["/bin/bash", "-c", f"cd {sp} && ./add.sh"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: len(sim.active_jobs()) == 2 and len(sim.tree_processes()) >= 2)
    assert sim.stop_jobs() >= 1
    assert sim.active_jobs() == []
    assert sim.tree_processes() == []
    assert slow.wait(timeout=10) != 0  # killed, not finished


def test_jobs_run_as_the_submitting_user(sim: SimSite) -> None:
    fast(sim)
    d = step1_dir(sim)
    name = write_job(sim, d, 85383)
    for path in (d, d / name):
        shutil.chown(path, SITE_USER, SITE_USER)
    res = bash(sim, f"boss.condor -g offlinerun {name}", d, user=SITE_USER)
    assert res.returncode == 0, res.stderr
    wait_for(lambda: (d / f"{name}.bosslog").exists())
    assert (d / f"{name}.bosslog").owner() == SITE_USER
    assert sim.submissions()[0]["owner"] == SITE_USER


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_growing_ntuple_is_written_in_chunks_before_the_log(sim: SimSite) -> None:
    """Fault `growing`: a step-2 ntuple grows for grow_seconds, then the job logs."""
    fast(sim, growing=[85420], grow_seconds=3.0)
    sim.prepare("250626", through="1")
    res = bash(sim, "./genJob.sh 250626", sim.base())
    assert res.returncode == 0, res.stderr
    run_dir = sim.base() / "250626/85420"
    target = run_dir / "hist85420_0.root"
    wait_for(target.exists)
    sizes = set()
    deadline = time.monotonic() + 20
    while not (run_dir / "rec85420_0.bosslog").exists():
        assert time.monotonic() < deadline, "the growing job never ended"
        sizes.add(target.stat().st_size)
        time.sleep(0.02)
    final = target.stat().st_size
    assert len(sizes) >= 2 and max(sizes) <= final  # seen growing, complete at the log
    wait_for(lambda: not sim.active_jobs())


def test_slow_scripts_sleep_first(sim: SimSite) -> None:
    sp = sim.stage_dir("search_peak")
    (sp / "shield_run85420.txt").write_text("85420\n")
    sim.set_faults(slow={"add.sh": 0.6})
    started = time.monotonic()
    assert bash(sim, "./add.sh", sp, env=False).returncode == 0
    assert time.monotonic() - started >= 0.6
    sim.set_faults(slow={}, script_exit={"add.sh": 7})
    assert bash(sim, "./add.sh", sp, env=False).returncode == 7
    assert (sp / "window.dat").read_text().count("85420\n") == 1  # the failing run added nothing
