"""SSH passwords from Prefect Secret blocks: a site file names the blocks, not the passwords.

Real parts: the session stack's Prefect server holds the Secret blocks, the sshd pair accepts
only the password (no key in the site file), and the flow run that opens the site is a real
``available-dates`` run of the deployment, executed by the process worker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.system import Secret
from prefect.client.schemas.objects import FlowRun

from sim.sshd import SshPair
from steps.config import SiteSettings
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST, state_name
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.slow


@pytest.fixture
def secret_site(
    stack: PrefectStack, ssh_password_settings: SiteSettings, tmp_path: Path
) -> Iterator[tuple[str, list[str]]]:
    """A site file whose hops name Secret blocks that hold the pair's password."""
    tag = uuid.uuid4().hex[:8]
    blocks = {hop: f"topup-test-{hop}-pw-{tag}" for hop in ("jump", "login")}
    settings = ssh_password_settings.model_copy(update={"downloads_dir": tmp_path / "dl"})
    data = settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
    with stack.api_settings():
        for hop, block in blocks.items():
            host = getattr(settings, hop)
            Secret(value=host.password.get_secret_value()).save(block, overwrite=True)
            data[hop]["password"] = None
            data[hop]["key_file"] = None
            data[hop]["password_secret_block"] = block
    name = f"secret-{tag}"
    path = stack.sites_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    try:
        yield name, list(blocks.values())
    finally:
        path.unlink(missing_ok=True)
        with stack.sync_client() as client:
            for block in blocks.values():
                doc = client.read_block_document_by_name(block, "secret", include_secrets=False)
                client.delete_block_document(doc.id)


def accepted_passwords(pair: SshPair) -> int:
    return sum(pair.log_text(role).count("Accepted password") for role in ("jump", "login"))


def test_a_run_logs_in_with_passwords_from_secret_blocks(
    stack: PrefectStack,
    sim: Any,
    sim_ssh: SshPair,
    secret_site: tuple[str, list[str]],
    stack_runs: StackRuns,
) -> None:
    name, blocks = secret_site
    written = json.loads((stack.sites_dir / f"{name}.json").read_text())
    for hop, block in zip(("jump", "login"), blocks, strict=True):
        assert written[hop]["password"] is None and written[hop]["key_file"] is None
        assert written[hop]["password_secret_block"] == block
    sim.set_faults(**SIM_FAST)
    before = accepted_passwords(sim_ssh)

    run: FlowRun = stack_runs.start("available-dates/available-dates", site=name)
    done = stack_runs.wait(run.id, timeout=180)
    assert state_name(done) == "Completed", done.state
    # Both hops let the run in with the password read from the blocks.
    assert accepted_passwords(sim_ssh) >= before + 2
