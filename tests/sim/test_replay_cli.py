"""`topup-sim replay`: commands recorded on one simulated tree (through the remote layer's
transcript hook, over SSH) replayed on a fresh tree started with `topup-sim up`: exit 0 with
no difference; on a tree whose genJob.sh fails, exit 1 naming that command."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sim.cli import app
from steps.config import SiteSettings
from steps.remote import transcript
from steps.remote.site import RemoteSite
from steps.remote.transcript import CommandRecord, ExportedCommand, TranscriptExport

runner = CliRunner()
DATE = "250626"
PATHS = ("topup_root", "data_root", "env_script", "container_cmd", "calib_const_root",
         "check_db_alg_dir", "control_dir")  # fmt: skip


@pytest.fixture
def recorded(sim: Any, ssh_password_settings: SiteSettings, tmp_path: Path) -> Path:
    """Step 1.1's remote work for DATE, recorded: genJob detached, then a poll of outputs."""
    records: list[CommandRecord] = []
    previous = transcript.set_recorder(records.append)
    site = RemoteSite(ssh_password_settings)
    try:
        inj = str(sim.inj())
        site.start_detached("rp-genjob", f"./genJob.sh {DATE}", inj, round="round18")
        assert site.wait_detached("rp-genjob", timeout=60, poll=0.05).exit_code == 0
        assert sim.wait_jobs(60)
        runs = sim.runs("round18", DATE)
        site.poll_files(f"{inj}/{DATE}", {str(r): [f"*{r}*.bosslog"] for r in runs})
        site.run(f"cd {inj} && test -d {DATE}")
    finally:
        site.close()
        transcript.set_recorder(previous)
    export = TranscriptExport(
        flow_run_id="recorded-on-the-sim",
        paths={k: str(getattr(ssh_password_settings, k)) for k in PATHS},
        commands=[ExportedCommand.model_validate(asdict(r)) for r in records],
    )
    assert records[-2].answer["found"], "the poll found the jobs' logs"
    path = tmp_path / "transcript.json"
    path.write_text(export.model_dump_json())
    return path


@pytest.fixture
def fresh_root() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="topup-replay-cli-", dir="/tmp"))
    parent.chmod(0o755)
    try:
        yield parent / "site"
    finally:
        if (parent / "site/.sim/layout.json").exists():
            runner.invoke(app, ["down", "--root", str(parent / "site")])
        shutil.rmtree(parent, ignore_errors=True)


def test_replay_cli_no_difference(recorded: Path, fresh_root: Path) -> None:
    up = runner.invoke(app, ["up", "--root", str(fresh_root)])  # passwords, as IHEP
    assert up.exit_code == 0, up.output
    res = runner.invoke(app, ["replay", str(recorded), "--root", str(fresh_root), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["differences"] == [] and report["compared"] >= 3


def test_replay_cli_names_the_changed_script(recorded: Path, fresh_root: Path) -> None:
    assert runner.invoke(app, ["build", "--root", str(fresh_root)]).exit_code == 0
    fault = runner.invoke(
        app, ["faults", "--root", str(fresh_root), "--set", 'script_exit={"genJob.sh": 3}']
    )
    assert fault.exit_code == 0, fault.output
    assert runner.invoke(app, ["up", "--root", str(fresh_root)]).exit_code == 0
    res = runner.invoke(app, ["replay", str(recorded), "--root", str(fresh_root)])
    assert res.exit_code == 1, res.output
    first = [ln for ln in res.output.splitlines() if ln.startswith("#")][0]
    assert "start detached rp-genjob: detached exit status recorded 0, sim 3" in first


def test_replay_cli_refuses_bad_input(recorded: Path, fresh_root: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["build", "--root", str(fresh_root)])
    not_up = runner.invoke(app, ["replay", str(recorded), "--root", str(fresh_root)])
    assert not_up.exit_code == 2 and "not up" in not_up.output
    junk = tmp_path / "junk.json"
    junk.write_text("{")
    assert runner.invoke(app, ["replay", str(junk), "--root", str(fresh_root)]).exit_code == 2
