"""`topup run`, `topup logs` and `topup dates` against the session's Prefect stack: a
pre-approved run goes through the deployment and the worker, and the CLI shows its steps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from flows import definitions
from flows.definitions import load
from steps import download_folders
from tests.cli.helpers import wait_for
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST
from topup_cli.main import app
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.slow

runner = CliRunner()
RUN_ID = re.compile(r"started flow run \S+ \(([0-9a-f-]{36})\)")


def test_run_preapproved_shows_every_step_then_logs(
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim.set_faults(**SIM_FAST)
    # the CLI finds the site's downloads root as the worker does (no `topup up` state here)
    monkeypatch.setenv("TOPUP_SITES_DIR", str(stack.sites_dir))
    res = runner.invoke(
        app,
        [
            "run",
            "--date",
            "250626",
            "--round",
            "round18",
            "--site",
            stack_site,
            "--approve",
            "--approved-by",
            "cli-test",
            "--timings",  # the first-step latency is printed only on request
            "--poll-seconds",
            "0.2",
            "--max-wait-minutes",
            "1",
            "--timeout",
            "300",
            "--api-url",
            stack.api_url,
        ],
    )
    found = RUN_ID.search(res.output)
    assert found, res.output
    run_id = UUID(found.group(1))
    stack_runs.created.append(run_id)  # cancelled at teardown should the test fail
    assert res.exit_code == 0, res.output

    # One line per step as it completes, then the summary: steps 1.1 - 7, the run Completed.
    definition = load("topup-standard", "1.2.0")
    for step in definition.steps:
        assert re.search(rf"step {re.escape(step.label)}\s+{step.id}\s+Completed", res.output), (
            step.id,
            res.output,
        )
    assert re.search(r"flow run \S+: Completed", res.output)
    # ... and where the reports are: <downloads>/<round>/<date>/<run name>/
    with stack.sync_client() as client:
        run_name = client.read_flow_run(run_id).name
    folder = (tmp_path / "downloads" / "round18" / "250626" / run_name).resolve()
    assert download_folders.folder(tmp_path / "downloads", str(run_id)).resolve() == folder
    assert f"reports of this run: {folder}" in res.output, res.output
    assert (folder / "mergedd_IST_250626.pdf").read_bytes().startswith(b"%PDF")
    latency = re.search(r"first step seen ([\d.]+)s after the start", res.output)
    assert latency, res.output
    print(f"\ntopup run -> first step seen after {latency.group(1)}s")
    assert sim.db_ledger() == [], "a date's run must not reach the database"

    with stack.sync_client() as client:
        run = client.read_flow_run(run_id)
    assert run.parameters["approved_by"] == "cli-test"
    assert run.parameters["site"] == stack_site

    # Log lines are shipped in batches, the flow's own "Finished in state ..." last and
    # possibly after its final state: wait for it, so that both listings below see the
    # same, complete log.
    def complete_log() -> Any:
        res = runner.invoke(app, ["logs", str(run_id), "--api-url", stack.api_url])
        done = re.search(r"\bflow\s+Finished in state", res.output)
        return res if res.exit_code == 0 and done else None

    logs = wait_for(complete_log, timeout=60, what="the run's final log line")
    assert "step1_1" in logs.output and "step7" in logs.output
    # Also found by name, as the UI shows it.
    by_name = runner.invoke(app, ["logs", run.name, "--api-url", stack.api_url])
    assert by_name.exit_code == 0 and by_name.output == logs.output


def test_dates_lists_the_round(stack: PrefectStack, sim: Any, stack_site: str) -> None:
    res = runner.invoke(
        app,
        ["dates", "--round", "round18", "--site", stack_site, "--api-url", stack.api_url],
    )
    assert res.exit_code == 0, res.output
    assert re.search(r"250101\s*│\s*processed", res.output), res.output
    assert re.search(r"250624\s*│\s*unprocessed", res.output), res.output
    todo = re.search(r"unprocessed: (.*)", res.output)
    assert todo and {"250624", "250625", "250626"} <= set(todo.group(1).split(", "))
    assert "250101" not in todo.group(1)


@pytest.mark.parametrize("args", [["--date", "25062"], ["--date", "250624", "--round", "r18"]])
def test_run_refuses_bad_parameters_before_any_call(args: list[str]) -> None:
    # Nothing listens on port 9: the parameters are refused before the API is asked.
    res = runner.invoke(app, ["run", *args, "--api-url", "http://127.0.0.1:9/api"])
    assert res.exit_code == 2, res.output
    assert "invalid parameters" in res.output


def _known(name: str) -> str:
    return ", ".join(d.version for d in definitions.list_definitions() if d.name == name)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["dates", "--round", "../../etc"], ["round='../../etc'", "pattern", "^round"]),
        (["dates", "--site", "a/b"], ["site='a/b'", "pattern"]),
        (
            ["backfill", "--round", "round18", "--dates", "250624,250631"],
            ["dates='250624,250631'", "'250631' is not a calendar date"],
        ),
        (
            ["run", "--date", "250624", "--version", "9.9.9"],
            [f"Workflow topup-standard has no version 9.9.9; known: {_known('topup-standard')}"],
        ),
        (
            ["backfill", "--round", "round18", "--version", "9.9.9"],
            ["Workflow topup-standard has no version 9.9.9; known:"],
        ),
    ],
)
def test_bad_input_exits_2_before_any_flow_run(args: list[str], needles: list[str]) -> None:
    """Issue 11: every command validates against the definition first. Nothing listens on
    port 9, so reaching the API would be exit 1 ("cannot reach"): exit 2 proves no call."""
    res = runner.invoke(app, [*args, "--api-url", "http://127.0.0.1:9/api"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())  # the console wraps long lines
    for needle in needles:
        assert needle in text, text
    assert "Traceback" not in text


def test_run_without_a_stack_says_so() -> None:
    res = runner.invoke(app, ["run", "--date", "250624", "--api-url", "http://127.0.0.1:9/api"])
    assert res.exit_code == 1
    assert "error:" in res.output and "Traceback" not in res.output
