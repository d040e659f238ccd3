"""The terminal's pause prompt and the moment Prefect stores the pause form.

A run turns Paused before Prefect stores its RunInput's schema; a poll in between read a 404
and the CLI ended with "cannot reach the Prefect API" (seen once in CI). Here that moment is
made for real on the test stack's server: a run put in a Paused state whose form is not
stored yet, then stored.
"""

from __future__ import annotations

import json

from prefect import flow
from rich.console import Console

from flows.definitions import load
from tests.fixtures_stack import paused_without_form
from topup_cli.progress import RunWatcher
from topup_cli.stack import PrefectStack

PAUSE_KEY = "step1-3-ist-1"


@flow(name="pause-form-check")
def _pause_form_check() -> None:
    """Never runs: the test only needs a flow to create a run of."""


def test_no_request_until_the_form_is_stored_then_the_form(prefect_stack: PrefectStack) -> None:
    with prefect_stack.sync_client() as client:
        run, keyset = paused_without_form(client, _pause_form_check, PAUSE_KEY)
        watcher = RunWatcher(
            client, run.id, load("topup-standard-steps"), Console(file=None, quiet=True)
        )

        assert watcher.pause_request(client.read_flow_run(run.id)) is None

        schema = {"type": "object", "properties": {"action": {"type": "string"}}}
        client.create_flow_run_input(run.id, keyset["schema"], json.dumps(schema))
        # Prefect stores the description second: a schema alone is not a whole form yet.
        assert watcher.pause_request(client.read_flow_run(run.id)) is None

        client.create_flow_run_input(run.id, keyset["description"], json.dumps("check IST"))
        request = watcher.pause_request(client.read_flow_run(run.id))
        assert request is not None
        assert (request.key, request.schema, request.description) == (
            PAUSE_KEY,
            schema,
            "check IST",
        )
