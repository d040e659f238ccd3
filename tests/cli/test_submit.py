"""`topup submit`: step 8 of a round through its own deployment; bad input never reaches
Prefect (nothing listens on port 9 in the refusal cases)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from topup_cli.main import app

runner = CliRunner()
NOWHERE = ["--api-url", "http://127.0.0.1:9/api"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--round", "r18"], "round"),
        (["--round", "round18", "--from", "12"], "run_from"),
        (["--round", "round18", "--to", "-5"], "run_to"),
        (["--round", "round18", "--approve", "--approved-by", "x;rm -rf /"], "approved_by"),
    ],
)
def test_submit_refuses_bad_parameters_before_any_call(args: list[str], field: str) -> None:
    res = runner.invoke(app, ["submit", *args, *NOWHERE])
    assert res.exit_code == 2, res.output
    assert "invalid parameters" in res.output and field in res.output, res.output
    assert "Traceback" not in res.output


def test_submit_without_a_stack_says_so() -> None:
    res = runner.invoke(app, ["submit", "--round", "round18", "--no-watch", *NOWHERE])
    assert res.exit_code == 1, res.output
    assert "error:" in res.output and "Traceback" not in res.output
