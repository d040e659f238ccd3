"""The facade's view of a pause form while Prefect stores it.

A run turns Paused first; Prefect then stores the form's schema and, in a second request,
its description. A read between those writes must not show a question without its text
(the operator would decide blind) nor a 404: it shows no form yet. The moments are made for
real on the test stack's server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prefect import flow

from facade.prefect_gateway import PrefectGateway
from tests.fixtures_stack import paused_without_form

PAUSE_KEY = "step1-3-ist-1"


@flow(name="facade-pause-form-check")
def _pause_form_check() -> None:
    """Never runs: the test only needs a flow to create a run of."""


def test_no_form_until_schema_and_description_are_stored(prefect_stack: Any) -> None:
    schema = {"type": "object", "properties": {"action": {"type": "string"}}}
    with prefect_stack.sync_client() as client:
        run, keyset = paused_without_form(client, _pause_form_check, PAUSE_KEY)

        async def form() -> Any:
            gw = PrefectGateway(prefect_stack.api_url)
            await gw.open()
            try:
                return await gw.pause_form(await gw.client.read_flow_run(run.id))
            finally:
                await gw.close()

        assert asyncio.run(form()) is None  # paused, nothing stored yet
        client.create_flow_run_input(run.id, keyset["schema"], json.dumps(schema))
        assert asyncio.run(form()) is None  # the schema alone: the text is still coming
        client.create_flow_run_input(run.id, keyset["description"], json.dumps("check IST"))
        assert asyncio.run(form()) == (schema, "check IST")
