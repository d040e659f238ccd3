"""``prefect deploy --all`` from prefect.yaml, and the pool/limit set-up, on a real server.

The expected deployments are derived from the workflow definition files: adding a definition
without its deployment (or with one the facade would not find) fails here."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.states import Scheduled

from deployments.setup import POOL_NAME, ensure_all
from facade.workflows import deployment_names as facade_deployment_names
from flows.definitions.loader import PACKAGED_DIR
from flows.definitions.models import WorkflowDefinition
from tests.fixtures_stack import StackRuns
from topup_cli.stack import PROJECT_DIR, PrefectStack, deployment_names

pytestmark = pytest.mark.slow


def packaged_definitions() -> list[WorkflowDefinition]:
    """Every definition file of the checkout (not TOPUP_WORKFLOWS_DIR: those are site-local)."""
    return [
        WorkflowDefinition.model_validate(json.loads(f.read_text()))
        for f in sorted(PACKAGED_DIR.glob("*.json"))
    ]


def declared() -> dict[str, dict[str, Any]]:
    """The deployments prefect.yaml declares, by name."""
    spec = yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def flow_default(entrypoint: str, parameter: str) -> Any:
    """The default of a flow parameter (what a deployment without that parameter runs)."""
    module, _, func = entrypoint.partition(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), func)
    return inspect.signature(flow.fn).parameters[parameter].default


def pinned_definition(entrypoint: str, parameters: dict[str, Any]) -> tuple[str, str] | None:
    """(workflow, version) a topup-standard deployment runs; None for other flows, whose
    ``workflow``/``workflow_version`` parameters (backfill) name the child workflow."""
    if not entrypoint.startswith("flows/topup_standard.py:"):
        return None
    name = parameters.get("workflow", flow_default(entrypoint, "workflow"))
    version = parameters.get("workflow_version", flow_default(entrypoint, "workflow_version"))
    return name, version


def test_prefect_yaml_declares_a_deployment_for_every_definition() -> None:
    deployments = declared()
    defs = packaged_definitions()
    assert defs, f"no definition files in {PACKAGED_DIR}"
    for defn in defs:
        # The facade starts a definition's runs on the first of these names that exists.
        names = [n.split("/", 1)[1] for n in facade_deployment_names(defn)]
        found = next((deployments[n] for n in names if n in deployments), None)
        assert found is not None, f"no deployment for {defn.tag} (facade looks for {names})"
        assert str(found["version"]) == defn.version, f"{defn.tag} -> {found['name']}"
        pinned = pinned_definition(found["entrypoint"], found.get("parameters") or {})
        assert pinned in (None, defn.key), f"{found['name']} runs {pinned}, not {defn.key}"
        assert found["entrypoint"].split(":")[0].endswith(defn.flow.replace("-", "_") + ".py")


def server_deployments(stack: PrefectStack) -> dict[str, Any]:
    """``<flow>/<deployment>`` -> deployment, of every deployment on the stack's server."""
    with stack.sync_client() as client:
        deps = client.read_deployments()
        flows = {d.flow_id: client.read_flow(d.flow_id).name for d in deps}
    return {f"{flows[d.flow_id]}/{d.name}": d for d in deps}


def test_every_deployment_exists_on_the_pool_and_runs_its_definition(
    stack: PrefectStack,
) -> None:
    assert sorted(deployment_names()) == sorted(declared())
    on_server = server_deployments(stack)
    assert set(declared()) <= {n.split("/")[1] for n in on_server}
    for defn in packaged_definitions():
        name = next((n for n in facade_deployment_names(defn) if n in on_server), None)
        assert name is not None, f"the facade finds no deployment for {defn.tag}"
        dep = on_server[name]
        assert dep.work_pool_name == POOL_NAME
        assert dep.version == defn.version
        assert dep.entrypoint and dep.entrypoint.startswith("flows/")
        # The pull step moves each flow run into the checkout deploy ran in.
        assert dep.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_DIR)}}
        ]
        pinned = pinned_definition(dep.entrypoint, dep.parameters)
        assert pinned in (None, defn.key), f"{name} runs {pinned}, not {defn.key}"
        if pinned is not None:
            assert {"workflow", "workflow_version"} <= set(
                dep.parameter_openapi_schema["properties"]
            )


def test_redeploy_updates_in_place_and_keeps_existing_flow_runs(
    stack: PrefectStack, stack_runs: StackRuns
) -> None:
    name = "topup-standard/topup-standard-1.1.0"
    ids = {n: d.id for n, d in server_deployments(stack).items() if d.name in declared()}
    assert len(ids) == len(declared())
    with stack.sync_client() as client:
        before = client.read_deployment_by_name(name)
    # Scheduled an hour ahead: the worker leaves it alone while we redeploy.
    later = datetime.now(UTC) + timedelta(hours=1)
    run = stack_runs.start(
        name, state=Scheduled(scheduled_time=later), date="250626", site="nowhere"
    )

    output = stack.deploy()
    assert output.count("successfully created") == len(declared())

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
