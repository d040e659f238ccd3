"""``prefect deploy --all`` from prefect.yaml, and the pool/limit set-up, on a real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.states import Scheduled

from deployments.setup import POOL_NAME, ensure_all
from tests.fixtures_stack import StackRuns
from topup_cli.stack import PROJECT_DIR, PrefectStack, deployment_names

pytestmark = pytest.mark.slow

EXPECTED = {
    "topup-standard/topup-standard-1.0.0": "1.0.0",
    "topup-standard/topup-standard-1.1.0": "1.1.0",
    "available-dates/available-dates": None,
    "backfill/backfill": None,
}


def test_every_deployment_of_prefect_yaml_exists_on_the_pool(stack: PrefectStack) -> None:
    assert sorted(deployment_names()) == sorted(n.split("/")[1] for n in EXPECTED)
    with stack.sync_client() as client:
        for full_name, workflow_version in EXPECTED.items():
            dep = client.read_deployment_by_name(full_name)
            assert dep.work_pool_name == POOL_NAME
            assert dep.entrypoint and dep.entrypoint.startswith("flows/")
            # The pull step moves each flow run into the checkout deploy ran in.
            assert dep.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_DIR)}}
            ]
            if workflow_version:
                assert dep.version == workflow_version
                assert dep.parameters == {"workflow_version": workflow_version}
                assert "workflow_version" in dep.parameter_openapi_schema["properties"]


def test_redeploy_updates_in_place_and_keeps_existing_flow_runs(
    stack: PrefectStack, stack_runs: StackRuns
) -> None:
    name = "topup-standard/topup-standard-1.1.0"
    with stack.sync_client() as client:
        ids = {n: client.read_deployment_by_name(n).id for n in EXPECTED}
        before = client.read_deployment_by_name(name)
    # Scheduled an hour ahead: the worker leaves it alone while we redeploy.
    later = datetime.now(UTC) + timedelta(hours=1)
    run = stack_runs.start(
        name, state=Scheduled(scheduled_time=later), date="250626", site="nowhere"
    )

    output = stack.deploy()
    assert output.count("successfully created") == len(EXPECTED)

    with stack.sync_client() as client:
        for n, dep_id in ids.items():
            assert client.read_deployment_by_name(n).id == dep_id, f"{n} was recreated"
        after = client.read_deployment_by_name(name)
        kept = client.read_flow_run(run.id)
    assert after.updated > before.updated
    assert kept.deployment_id == ids[name]
    assert kept.state is not None and kept.state.is_scheduled()
    assert kept.parameters["date"] == "250626"


def test_setup_is_idempotent_and_repairs_a_changed_limit(stack: PrefectStack) -> None:
    async def scenario() -> None:
        async with stack.client() as client:
            again = await ensure_all(client, POOL_NAME, ["round18", "round17"])
            assert not again.pool_created and not again.pool_updated
            assert again.limits_created == [] and again.limits_updated == []

            await client.update_global_concurrency_limit(
                "topup-round-round17", GlobalConcurrencyLimitUpdate(limit=3)
            )
            fixed = await ensure_all(client, POOL_NAME, ["round17", "round99"])
            assert fixed.limits_updated == ["topup-round-round17"]
            assert fixed.limits_created == ["topup-round-round99"]
            for name in ("topup-round-round17", "topup-round-round99"):
                limit = await client.read_global_concurrency_limit_by_name(name)
                assert (limit.limit, limit.active) == (1, True)
            pool = await client.read_work_pool(POOL_NAME)
            assert pool.type == "process"
            await client.delete_global_concurrency_limit_by_name("topup-round-round99")

    asyncio.run(scenario())


def test_prefect_yaml_deploys_only_on_the_process_pool() -> None:
    spec = yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())
    pulls = spec["pull"]
    assert list(pulls[0]) == ["prefect.deployments.steps.set_working_directory"]
    for dep in spec["deployments"]:
        assert dep["work_pool"]["name"] == POOL_NAME
        module, _, func = dep["entrypoint"].partition(":")
        assert (PROJECT_DIR / module).is_file() and func
