"""The transcript of a flow run: every remote command in the store (step, masked text, cwd,
exit status, duration, sizes), as a Prefect artifact and through `topup transcript`, and its
replay against a fresh simulated site (real sshd pair): zero differences for an unchanged
site, and the changed script's command reported when one sim script is changed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from typer.testing import CliRunner

from flows.topup_standard import topup_standard
from sim import users
from sim.replay import replay, wait_settled
from sim.site import build_site
from sim.sshd import SshPair
from steps.remote.site import RemoteSite
from steps.remote.transcript import TranscriptExport
from tests.conftest import SIM_USER
from tests.flows.conftest import FAST, SIM_FAST, FlowEnv
from topup_cli.main import app
from topup_cli.transcript import export

DATE = "250624"


@pytest.fixture
def recorded(flow_env: FlowEnv, sim_ssh: SshPair) -> TranscriptExport:
    """Steps 1.1-1.4 of DATE on the simulated site, over SSH with passwords."""
    settings = flow_env.sim.settings(
        **sim_ssh.client_overrides(auth="password"), downloads_dir=flow_env.downloads
    )
    sites = Path(os.environ["TOPUP_SITES_DIR"])
    data = json.loads(settings.model_dump_json())
    for hop in ("jump", "login"):
        data[hop]["password"] = sim_ssh.password
    (sites / "default.json").write_text(json.dumps(data))
    state = topup_standard(
        date=DATE, workflow="topup-standard-steps", workflow_version="1.0.2", **FAST,
        return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message
    return export(state.result()["flow_run_id"], flow_env.db_url)


def test_every_command_is_recorded_masked_and_shown(
    recorded: TranscriptExport, flow_env: FlowEnv, sim_ssh: SshPair
) -> None:
    t = recorded
    assert t.site == "default" and t.paths["topup_root"] == str(flow_env.sim.topup_root)
    steps = {c.step for c in t.commands}
    assert {"step1_1", "step1_2", "step1_3", "step1_4"} <= steps
    kinds = {c.kind for c in t.commands}
    assert {"run", "detached-start", "detached-status", "poll", "download"} <= kinds
    genjob = next(c for c in t.commands if c.kind == "detached-start")
    assert genjob.step == "step1_1" and genjob.answer["command"].startswith("./genJob.sh")
    assert genjob.answer["cwd"] == str(flow_env.sim.inj()) and genjob.exit_code == 0
    assert all(c.duration >= 0 and c.stdout_bytes >= 0 for c in t.commands)
    assert any(c.answer.get("found") for c in t.commands if c.kind == "poll")
    # the hops' password never reaches a record
    assert sim_ssh.password not in t.model_dump_json()
    # the run's artifact lists the same commands
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(t.flow_run_id)])
            )
        )
    table = next(a for a in arts if a.key and a.key.endswith("transcript"))
    assert len(json.loads(table.data)) == len(t.commands)  # type: ignore[arg-type]
    # and the CLI shows it (table, and JSON equal to the export)
    runner = CliRunner()
    out = runner.invoke(app, ["transcript", t.flow_run_id, "--db-url", flow_env.db_url])
    assert out.exit_code == 0, out.output
    assert f"{len(t.commands)} commands" in out.output
    js = runner.invoke(app, ["transcript", t.flow_run_id, "--db-url", flow_env.db_url, "--json"])
    assert TranscriptExport.model_validate_json(js.output) == t


def test_replay_on_a_fresh_sim_finds_no_difference_then_the_changed_script(
    recorded: TranscriptExport, sim_ssh: SshPair
) -> None:
    with fresh_site(sim_ssh) as (site, remote):
        report = replay(recorded, remote, wait_settled(site))
        assert report.compared > 10, report
        assert report.differences == [], report.model_dump_json(indent=1)
    with fresh_site(sim_ssh) as (site, remote):
        script = site.inj() / "genJob.sh"
        lines = script.read_text().splitlines(keepends=True)
        script.write_text(lines[0] + "echo 'changed on purpose' >&2; exit 3\n" + "".join(lines[1:]))
        report = replay(recorded, remote, wait_settled(site))
    first = report.differences[0]
    assert first.step == "step1_1" and first.kind == "detached-start"
    assert "genJob.sh" in first.command or "genjob" in first.command
    assert (first.field, first.recorded, first.replayed) == ("detached exit status", 0, 3)


class fresh_site:
    """A newly built default site over the sshd pair (passwords), removed afterwards."""

    def __init__(self, pair: SshPair) -> None:
        self.pair = pair

    def __enter__(self) -> tuple[Any, RemoteSite]:
        self.root = Path(tempfile.mkdtemp(prefix="topup-replay-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.site = build_site(self.root)
        users.chown_tree(self.root, SIM_USER)
        self.site.set_faults(**SIM_FAST)
        self.remote = RemoteSite(self.site.settings(**self.pair.client_overrides("password")))
        return self.site, self.remote

    def __exit__(self, *exc: object) -> None:
        self.remote.close()
        self.site.stop_jobs()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_recorder_left() -> Iterator[None]:
    """The flow installs the process-wide recorder; replay commands run outside any flow."""
    yield
    from steps.remote import transcript

    transcript.set_recorder(None)
