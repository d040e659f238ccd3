"""`topup backfill` against the session's Prefect stack: the backfill deployment runs one
topup-standard subflow per date, one after the other, and the CLI follows them.

The simulated site gets a round of its own (round32, in no other test file) so that no other
test's run holds the round's slot (one active run per round) while this one works.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from typer.testing import CliRunner

from sim.layout import DateSpec, RoundSpec
from tests.cli.helpers import site_with_round
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST
from topup_cli.main import app
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.slow

runner = CliRunner()
ROUND = "round32"
DATES = ["240621", "240622"]
BACKFILL_ID = re.compile(r"started backfill \S+ \(([0-9a-f-]{36})\)")


# Two short dates and one left out of the backfill.
EXTRA_ROUND = RoundSpec(
    name=ROUND,
    dates=[
        DateSpec(date=DATES[0], runs=[81201, 81202]),
        DateSpec(date=DATES[1], runs=[81211, 81212]),
        DateSpec(date="240623", runs=[81221]),
    ],
)


@pytest.fixture
def sim(site_root: Path) -> Iterator[Any]:
    with site_with_round(site_root, EXTRA_ROUND) as site:
        yield site


def test_backfill_runs_each_date_after_the_other(
    stack: PrefectStack, sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    sim.set_faults(**SIM_FAST)
    res = runner.invoke(
        app,
        [
            "backfill",
            "--round",
            ROUND,
            "--dates",
            ",".join(DATES),
            "--workflow",
            "topup-standard-steps",  # steps 1.1-1.4 per date: the backfill is the point here
            "--version",
            "1.0.2",
            "--site",
            stack_site,
            "--approve",
            "--approved-by",
            "cli-test",
            "--poll-seconds",
            "0.2",
            "--max-wait-minutes",
            "1",
            "--timeout",
            "600",
            "--api-url",
            stack.api_url,
        ],
    )
    found = BACKFILL_ID.search(res.output)
    assert found, res.output
    backfill_id = UUID(found.group(1))
    stack_runs.created.append(backfill_id)  # cancelled at teardown should the test fail
    assert res.exit_code == 0, res.output

    # The CLI showed each date's run and the backfill's end.
    for date in DATES:
        name = f"{ROUND}-{date}-topup-standard-steps-1.0.2"
        assert re.search(rf"^  {name}: Completed$", res.output, re.M), res.output
    assert "240623" not in res.output  # not asked for
    assert re.search(r"^backfill \S+: Completed$", res.output, re.M), res.output
    assert res.output.index(f"{ROUND}-{DATES[0]}") < res.output.index(f"{ROUND}-{DATES[1]}")

    with stack.sync_client() as client:
        backfill = client.read_flow_run(backfill_id)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[backfill_id])
            )
        )
        flows = {client.read_flow(c.flow_id).name for c in children}
    assert backfill.state_name == "Completed"
    assert backfill.parameters["round"] == ROUND and backfill.parameters["dates"] == "240621,240622"
    assert backfill.parameters.get("propose_submission", True) is True  # the default proposes
    # One topup-standard run per date, oldest first, the second started after the first ended.
    assert flows == {"topup-standard"}
    children.sort(key=lambda r: r.start_time)  # type: ignore[arg-type, return-value]
    assert [c.parameters["date"] for c in children] == DATES
    assert [c.name for c in children] == [f"{ROUND}-{d}-topup-standard-steps-1.0.2" for d in DATES]
    assert all(c.state_name == "Completed" for c in children), [c.state for c in children]
    assert all(c.parameters["workflow"] == "topup-standard-steps" for c in children)
    first, second = children
    assert first.end_time is not None and second.start_time is not None
    assert first.end_time <= second.start_time, (first.end_time, second.start_time)


@pytest.mark.parametrize(
    ("args", "field"),
    [(["--round", "r18"], "round"), (["--round", ROUND, "--dates", "2506"], "dates")],
)
def test_bad_input_is_refused_before_any_run(
    stack: PrefectStack, args: list[str], field: str
) -> None:
    res = runner.invoke(app, ["backfill", *args, "--api-url", stack.api_url])
    assert res.exit_code == 2, res.output
    assert "invalid parameters" in res.output and field in res.output, res.output
    assert "Traceback" not in res.output
    # No backfill run carries these parameters (other tests' backfills may exist).
    bad = dict(zip(args[::2], args[1::2], strict=True))
    with stack.sync_client() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["backfill"])), limit=200
        )
    assert not [
        r
        for r in runs
        if r.parameters.get("round") == bad["--round"]
        and r.parameters.get("dates") == bad.get("--dates")
    ], "a flow run was created for refused parameters"
