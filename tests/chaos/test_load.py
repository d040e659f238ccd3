"""Load: 20 tasks across 4 rounds submitted at once through the facade, on the real stack.

The rounds share nothing but the machine; the dates of one round share the round's
cumulative files, so the per-round slot (flows/round_slot.py) must serialise them while the
rounds run side by side. The short workflow ``topup-standard-steps`` (1.1 - 1.4) keeps the
suite's time down and still appends to the round's cumulative ``INJ/interval.txt`` (step
1.3), which is where interference between two dates would show.

"When a run worked" is taken from Prefect: the first step's start to the last step's end of
each flow run. The flow run itself is Running while it waits for its round's slot, so its own
start/end would overlap by design; the steps run only while the slot is held.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from sim import users
from sim.layout import generated_layout
from sim.site import build_site
from sim.sshd import SshPair
from tests.chaos.conftest import write_site_file
from tests.chaos.faults_helpers import SIM_CHAOS, duplicate_submissions, wait_no_orphans
from tests.chaos.report import record
from tests.facade.served import Served, wait_for
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import interval, overlap, state_name
from topup_cli.stack import PrefectStack

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

ROUNDS = 4
DATES_PER_ROUND = 5
RUNS_PER_DATE = 2
WORKFLOW = "topup-standard-steps"
FINAL = {"success", "failed", "cancelled"}


@pytest.fixture
def load_site(site_root: Path, sim_ssh: SshPair) -> Any:
    """A simulated site with 4 rounds × 5 dates (generated layout), jobs fast."""
    layout = generated_layout(
        rounds=ROUNDS, dates_per_round=DATES_PER_ROUND, runs_per_date=RUNS_PER_DATE
    )
    site = build_site(site_root, layout)
    users.chown_tree(site_root, "topup")
    site.set_faults(**SIM_CHAOS)
    sim_ssh.set_sftp_fail(False)
    sim_ssh.start()
    try:
        yield site
    finally:
        site.stop_jobs()


def _cumulative(site: Any, round: str) -> dict[str, str]:
    """The round's cumulative files (absent: empty)."""
    out = {}
    for label, path in (
        ("interval.txt", site.inj(round) / "interval.txt"),
        ("window.dat", site.stage_dir("search_peak", round) / "window.dat"),
        ("ets_cut.txt", site.stage_dir("ETS_cut", round) / "ets_cut.txt"),
    ):
        out[label] = path.read_text() if path.exists() else ""
    return out


def _start(c: httpx.Client, task_id: int, attempts: int = 4) -> tuple[int, list[int]]:
    """Start the task as a careful client does: a 503 or a timeout is retried (the facade
    creates flow runs with an idempotency key, so a repeat cannot start a second run); a 400
    after a failed attempt means that attempt did start it. Returns (status, the status of
    every failed attempt)."""
    status, failed = 0, []
    for attempt in range(attempts):
        try:
            status = c.post(f"/api/tasks/{task_id}/start").status_code
        except httpx.TimeoutException:
            status = 504
        if status < 500:
            if status == 400 and attempt:
                progress = c.get(f"/api/tasks/{task_id}/progress").json()["status"]
                status = 200 if progress != "pending" else status
            return status, failed
        failed.append(status)
        if status != 503 and status != 504:
            break  # not "busy, retry": a careful client does not repeat it
    return status, failed


def _submit_all(served: Served, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create and start every task from its own thread, all released at the same instant."""
    barrier = threading.Barrier(len(jobs))
    answers: list[dict[str, Any]] = [{} for _ in jobs]
    token = served.token_for("loader")

    def submit(i: int) -> None:
        with httpx.Client(
            base_url=served.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as c:
            barrier.wait(timeout=60)
            created = c.post("/api/tasks", json=jobs[i])
            answers[i]["create"] = created.status_code
            if created.status_code == 201:
                task_id = created.json()["task_id"]
                answers[i]["task_id"] = task_id
                answers[i]["start"], answers[i]["failed"] = _start(c, task_id)
                detail = c.get(f"/api/tasks/{task_id}").json()["task"]
                answers[i]["flow_run_id"] = detail["flow_run_id"]

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return answers


def test_twenty_tasks_four_rounds_at_once(
    stack: PrefectStack, chaos_facade: Served, load_site: Any, sim_ssh: SshPair, tmp_path: Path
) -> None:
    site = load_site
    rounds = [r.name for r in site.layout.rounds]
    dates = {r.name: [d.date for d in r.dates] for r in site.layout.rounds}
    runs_of = {(r.name, d.date): list(d.runs) for r in site.layout.rounds for d in r.dates}
    assert len(rounds) == ROUNDS and sum(len(v) for v in dates.values()) == 20
    before = {r: _cumulative(site, r) for r in rounds}
    settings = site.settings(**sim_ssh.client_overrides(auth="key")).model_copy(
        update={"downloads_dir": tmp_path / "downloads"}
    )
    site_name = write_site_file(stack, settings, secrets=False)
    # Interleaved: every round's first date, then every round's second date...
    order = [(r, dates[r][i]) for i in range(DATES_PER_ROUND) for r in rounds]
    jobs = [
        {
            "workflow_name": WORKFLOW,
            "task_name": f"load {r} {d}",
            "parameters": {
                "date": d,
                "round": r,
                "site": site_name,
                "poll_seconds": 0.2,
                "max_wait_minutes": 5,
            },
        }
        for r, d in order
    ]
    started_at = time.monotonic()
    try:
        answers = _submit_all(chaos_facade, jobs)
        assert [(a.get("create"), a.get("start")) for a in answers] == [(201, 200)] * 20, answers
        with chaos_facade.client("loader") as c:

            def all_final() -> bool:
                listed = c.get("/api/tasks", params={"limit": 100}).json()["tasks"]
                return len(listed) == 20 and all(t["status"] in FINAL for t in listed)

            wait_for(all_final, timeout=900, interval=2.0, what="all 20 tasks final")
            tasks = c.get("/api/tasks", params={"limit": 100}).json()["tasks"]
        wall = time.monotonic() - started_at
    finally:
        (stack.sites_dir / f"{site_name}.json").unlink(missing_ok=True)

    failed = [code for a in answers for code in a.get("failed", [])]
    assert set(failed) <= {503, 504}, failed  # busy or slow, never an internal error
    retries = len(failed)
    statuses = Counter(t["status"] for t in tasks)
    reader = StackRuns(stack)
    by_run = {a["flow_run_id"]: (r, d) for a, (r, d) in zip(answers, order, strict=True)}
    assert len(by_run) == 20 and None not in by_run  # one flow run per task, none doubled
    runs = {fid: reader.read(UUID(fid)) for fid in by_run}
    states = Counter(state_name(run) for run in runs.values())
    assert statuses == {"success": 20}, (statuses, tasks)
    assert states == {"Completed": 20}, states
    work: dict[str, list[tuple[str, tuple[datetime, datetime]]]] = defaultdict(list)
    for fid, (r, d) in by_run.items():
        work[r].append((d, interval(reader.task_runs(UUID(fid)))))

    # One active run per round: the step intervals of one round never overlap.
    same_round = [
        (r, a[0], b[0]) for r in rounds for a, b in combinations(work[r], 2) if overlap(a[1], b[1])
    ]
    assert same_round == [], same_round
    # Parallel across rounds: runs of different rounds worked at the same time.
    cross = sum(
        overlap(a[1], b[1])
        for r1, r2 in combinations(rounds, 2)
        for a in work[r1]
        for b in work[r2]
    )
    assert cross > 0, "the rounds ran one after another"

    # No cross-round interference: each round's interval.txt holds exactly its own runs,
    # date by date in the order the dates ran; window.dat and ets_cut.txt were not touched.
    rows_expected = rows_present = 0
    for r in rounds:
        ran = [d for d, _ in sorted(work[r], key=lambda x: x[1][0])]
        expected = [f"{run} 15000000" for d in ran for run in sorted(runs_of[(r, d)])]
        after = _cumulative(site, r)
        lines = [ln.strip() for ln in after["interval.txt"].splitlines() if ln.strip()]
        rows_expected += len(expected)
        rows_present += len(set(lines) & set(expected))
        assert lines == expected, (r, lines, expected)
        assert after["window.dat"] == before[r]["window.dat"]
        assert after["ets_cut.txt"] == before[r]["ets_cut.txt"]

    submissions = site.submissions()
    duplicates = duplicate_submissions(submissions, site.root)
    per_round = Counter(
        next((r for r in rounds if f"/{r}/" in str(s.get("cwd", ""))), "?") for s in submissions
    )
    assert duplicates == 0
    # Every round submitted the same number of jobs (same runs per date), at least one per run.
    assert set(per_round) == set(rounds) and len(set(per_round.values())) == 1, per_round
    assert per_round[rounds[0]] >= DATES_PER_ROUND * RUNS_PER_DATE
    leftovers = wait_no_orphans(site)
    assert leftovers == []
    record(
        group="load",
        scenario="20 tasks across 4 rounds at once",
        injected="20 create+start requests (4 rounds × 5 dates, 2 runs each, workflow "
        f"{WORKFLOW}) released together from 20 threads through the facade",
        outcome=f"all 20 Completed in {wall:.0f} s; per round no two runs' step intervals "
        f"overlapped; {cross} cross-round overlaps (rounds in parallel); each interval.txt "
        "holds exactly its own runs in run order, window.dat/ets_cut.txt untouched",
        submissions=len(submissions),
        duplicate_submissions=duplicates,
        rows_lost=rows_expected - rows_present,
        orphans=len(leftovers),
        details=f"submissions per round {dict(per_round)}; start requests retried by the "
        f"client after a 503/timeout: {retries} (the facade answers 503 + Retry-After when "
        "Prefect is busy); 20 flow runs, one per task",
    )
