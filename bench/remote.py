"""Figure 2: remote commands and SSH sessions, per poll cycle and per flow run, against the
legacy engine's way (one ``ls`` per file per run, one session per task).

Poll cycle: a stage directory with N runs × 6 expected files (+ 1 failure log per run) is
polled once with ``RemoteSite.poll_files`` — as the waits do it, asking the batch system
(``hep_q``) about the step's N recorded jobs in the same command — and once the legacy way,
counted by the remote layer's hook. Flow run: the standard flow on a fresh tree with the new engine, then with the
legacy engine; sessions are counted by the client and cross-checked in both sshd logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.flowrun import FlowMeasure
from bench.legacy import legacy_poll
from bench.overhead import measure_flows
from bench.probe import Recorder, watching
from bench.results import BenchResult, Figure, median
from bench.site_env import fresh_site, ssh_pair
from sim import users
from steps.remote.site import RemoteSite

RUN_COUNTS = (1, 19, 100)
FILES = ("hist{r}.root", "Interval{r}.png", "cnt{r}.txt", "ist{r}.txt", "job{r}.out", "{r}.log")


def _jobs_file(root: str, runs: int) -> str:
    """The step's recorded cluster ids (one per run), as ``steps.batch_jobs.step_jobs_file`` holds."""
    from pathlib import Path

    path = Path(root) / f"bench-poll-{runs}.jobs"
    path.write_text("".join(f"{52100000 + i}\n" for i in range(runs)))
    users.chown_tree(path, "topup")
    return str(path)


def _stage(root: str, runs: int) -> tuple[str, dict[int, list[str]], dict[int, list[str]]]:
    """A directory where every run's outputs exist: a complete poll (the worst case for the
    legacy way, which stops at nothing)."""
    from pathlib import Path

    directory = Path(root) / f"bench-poll-{runs}"
    directory.mkdir()
    expected: dict[int, list[str]] = {}
    logs: dict[int, list[str]] = {}
    for i in range(runs):
        run = 85000 + i
        names = [f.format(r=run) for f in FILES]
        for n in names:
            (directory / n).write_text("x" * 64)
        (directory / f"job{run}.err").write_text("")
        expected[run] = names
        logs[run] = [f"job{run}.err"]
    users.chown_tree(directory, "topup")
    return str(directory), expected, logs


def poll_cycles(repeat: int, say: Callable[[str], None]) -> list[dict]:
    rows = []
    with ssh_pair() as pair, fresh_site(pair) as bench_site:
        site = RemoteSite(bench_site.settings)
        try:
            site.run("true")  # the session is open before counting
            for runs in RUN_COUNTS:
                directory, expected, logs = _stage(str(bench_site.sim.root), runs)
                jobs = _jobs_file(str(bench_site.sim.root), runs)
                new_cmds, old_cmds, new_t, old_t = [], [], [], []
                for _ in range(repeat):
                    for legacy in (False, True):
                        rec = Recorder()
                        with watching(rec):
                            t0 = time.perf_counter()
                            if legacy:
                                report = legacy_poll(site, directory, expected, (), logs)
                            else:
                                report = site.poll_files(
                                    directory, expected, (), logs, jobs_file=jobs
                                )
                                assert report.batch is not None and report.batch.ok, report
                            spent = time.perf_counter() - t0
                        assert sorted(report.complete) == sorted(expected), report
                        (old_cmds if legacy else new_cmds).append(len(rec.of("command")))
                        (old_t if legacy else new_t).append(spent)
                row = {
                    "runs": runs,
                    "files per run": len(FILES) + 1,
                    "commands (new)": median(new_cmds),
                    "commands (legacy)": median(old_cmds),
                    "ms per cycle (new)": round(1000 * median(new_t), 1),
                    "ms per cycle (legacy)": round(1000 * median(old_t), 1),
                }
                say(f"  poll of {runs} runs: {row}")
                rows.append(row)
        finally:
            site.close()
    return rows


def run(repeat: int, say: Callable[[str], None]) -> BenchResult:
    result = BenchResult(name="remote", title="Remote efficiency", repeat=repeat)
    rows = poll_cycles(repeat, say)
    result.tables["one poll cycle"] = rows
    for row in rows:
        result.add(
            Figure(
                label=f"commands per poll cycle, {row['runs']} runs",
                unit="commands",
                samples=[row["commands (new)"]],
                baseline=row["commands (legacy)"],
                target="<= 1",
            )
        )
    flows = measure_flows(repeat, say, ("new", "legacy"))
    _flow_figures(result, flows["new"], flows["legacy"])
    return result


def _flow_figures(result: BenchResult, new: list[FlowMeasure], old: list[FlowMeasure]) -> None:
    def med(runs: list[FlowMeasure], attr: str) -> float:
        return median([float(getattr(m, attr)) for m in runs])

    def versus_legacy(label: str, unit: str, attr: str, **target_and_note: str) -> None:
        """The new engine's samples of ``attr``, the legacy engine's median as the baseline."""
        samples = [getattr(m, attr) for m in new]
        result.add(
            Figure(
                label=label, unit=unit, samples=samples, baseline=med(old, attr), **target_and_note
            )
        )

    versus_legacy(
        "SSH sessions to the login node per flow run",
        "sessions",
        "sessions",
        target="<= 1",
        note="opened by the client; each also logs in once on the jump host",
    )
    versus_legacy(
        "jump-host logins per flow run (sshd log)", "logins", "jump_logins", target="<= 1"
    )
    versus_legacy("remote commands per flow run", "commands", "commands")
    versus_legacy("poll commands per flow run", "commands", "poll_commands")
    versus_legacy("flow wall time", "s", "wall")
    result.tables["per flow run (median)"] = [
        {
            "engine": name,
            "commands": med(runs, "commands"),
            "poll commands": med(runs, "poll_commands"),
            "login sessions": med(runs, "sessions"),
            "jump logins (sshd)": med(runs, "jump_logins"),
            "login-node logins (sshd)": med(runs, "login_logins"),
            "wall s": round(med(runs, "wall"), 1),
            "remote s": round(med(runs, "remote"), 1),
        }
        for name, runs in (("new", new), ("legacy", old))
    ]
