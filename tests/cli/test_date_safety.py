"""Issue 14, date safety in the CLI: a date without raw data in the round is refused before a
flow run exists (exit 2, naming the date and the round), and a date already processed needs
``--rerun``. The flow runs are counted through the Prefect API before and after."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST
from topup_cli.main import app

pytestmark = pytest.mark.slow

RUN_ID = re.compile(r"started flow run \S+ \(([0-9a-f-]{36})\)")
EMPTY = "250627"  # round18: in DATA, without any raw file
ABSENT = "250629"  # round18: no directory in DATA
DATE = "250626"  # round18: three runs


def _count(stack: Any) -> int:
    with stack.sync_client() as client:
        return client.count_flow_runs()


def _text(output: str) -> str:
    return " ".join(output.split())  # the console wraps long lines


def test_run_and_backfill_refuse_a_date_without_raw_data(
    stack: Any, sim: Any, stack_site: str, stack_runs: StackRuns, tmp_path: Path
) -> None:
    runner = CliRunner(
        env={
            "TOPUP_DATABASE_URL": stack.topup_database_url,
            "TOPUP_STACK_DATA_DIR": str(tmp_path / "cli"),
        }
    )
    site = ["--round", "round18", "--site", stack_site, "--api-url", stack.api_url]
    # step 0 lists the round on this site (its listing is what the check reads)
    listed = runner.invoke(app, ["dates", *site])
    assert listed.exit_code == 0, listed.output
    before = _count(stack)
    for date, why in ((EMPTY, f"DATA/{EMPTY} has no raw file"), (ABSENT, f"no directory {ABSENT}")):
        res = runner.invoke(app, ["run", "--date", date, *site, "--no-watch"])
        text = _text(res.output)
        assert res.exit_code == 2, res.output
        assert f"date {date} has no raw data in round18" in text and why in text, text
        assert "started flow run" not in text and "Traceback" not in text
    res = runner.invoke(app, ["backfill", "--dates", f"{DATE},{EMPTY}", *site, "--no-watch"])
    assert res.exit_code == 2, res.output
    assert f"date {EMPTY} has no raw data in round18" in _text(res.output)
    assert _count(stack) == before, "a refused date created a flow run"


def test_a_processed_date_needs_rerun(
    stack: Any, sim: Any, stack_site: str, stack_runs: StackRuns, tmp_path: Path
) -> None:
    sim.set_faults(**SIM_FAST)
    runner = CliRunner(
        env={
            "TOPUP_DATABASE_URL": stack.topup_database_url,
            "TOPUP_STACK_DATA_DIR": str(tmp_path / "cli"),
        }
    )
    args = [
        "run",
        "--date",
        DATE,
        "--round",
        "round18",
        "--site",
        stack_site,
        "--workflow",
        "topup-standard-steps",
        "--poll-seconds",
        "0.2",
        "--max-wait-minutes",
        "2",
        "--timeout",
        "300",
        "--api-url",
        stack.api_url,
    ]
    first = runner.invoke(app, args)
    found = RUN_ID.search(first.output)
    assert found, first.output
    stack_runs.created.append(UUID(found.group(1)))
    # steps 1.1 - 1.4 only: the date ends processed but unverified (the run fails Unverified)
    assert "flow run" in first.output and "Traceback" not in first.output

    before = _count(stack)
    again = runner.invoke(app, [*args, "--no-watch"])
    text = _text(again.output)
    assert again.exit_code == 2, again.output
    # (unverified here; verified when another test of this stack ran the whole date before)
    assert f"date {DATE} of round18 was already processed (" in text, text
    assert "--rerun" in text and "started flow run" not in text
    assert _count(stack) == before

    rerun = runner.invoke(app, [*args, "--no-watch", "--rerun"])
    found = RUN_ID.search(rerun.output)
    assert rerun.exit_code == 0 and found, rerun.output
    stack_runs.created.append(UUID(found.group(1)))
    assert "was already processed" in _text(rerun.output)  # said, then done
    assert _count(stack) == before + 1
