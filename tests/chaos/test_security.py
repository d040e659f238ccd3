"""Security scenarios: authentication on every control route, ownership on every task route,
the SSH passwords nowhere they could leak, and host-key mismatches refused.

Route lists are derived from the running app (its routes and its OpenAPI document), so a
route added later is covered without editing this file.
"""

from __future__ import annotations

import re
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import websockets
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
from prefect.client.schemas.filters import LogFilterFlowRunId as LogFlowRun
from pydantic import SecretStr
from websockets.sync.client import connect as ws_connect

from facade import legacy
from facade.routes.ws import CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED
from sim.sshd import SshPair
from steps.config import SiteSettings
from steps.remote.errors import HostKeyError, RemoteConnectionError, RemoteError
from steps.remote.site import RemoteSite
from tests.chaos.conftest import write_site_file
from tests.chaos.report import record
from tests.facade.served import Served, free_port, wait_for, wait_settled
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.chaos

DATES = {"workflow_name": "available-dates", "parameters": {"round": "round18"}}
PUBLIC = {"/", "/api/health"}  # the banner and the health probe are public by design
FORGED = "tpu_" + "0" * 40


# ------------------------------------------------------------------------ route discovery


def app_routes(app: Any) -> Iterator[Any]:
    """Every leaf route of the app (FastAPI keeps included routers as nested branches)."""

    def walk(routes: Iterable[Any]) -> Iterator[Any]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes)
            else:
                yield route

    yield from walk(app.router.routes)


def control_routes(app: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """``(method, path)`` of every HTTP route under ``/api`` except the public ones, and the
    paths of the WebSocket routes."""
    http: set[tuple[str, str]] = set()
    ws: list[str] = []
    for route in app_routes(app):
        path = getattr(route, "path", "")
        if not path.startswith("/api") or path in PUBLIC:
            continue
        methods = getattr(route, "methods", None)
        if methods:
            http.update((m, path) for m in methods)
        else:
            ws.append(path)
    return sorted(http), sorted(ws)


def fill(path: str, values: dict[str, str]) -> str:
    """``/api/tasks/{task_id}`` → ``/api/tasks/7`` (``{name:path}`` converters too)."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def ws_close_code(served: Served, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with ws_connect(served.ws_url(path), additional_headers=headers, open_timeout=10) as conn:
        try:
            conn.recv(timeout=10)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code
    raise AssertionError(f"{path}: the WebSocket stayed open")


# ------------------------------------------------------------------------ authentication


def test_every_control_route_needs_a_token(offline_chaos_facade: Served) -> None:
    served = offline_chaos_facade
    http, ws = control_routes(served.app)
    values = {
        "task_id": "1",
        "execution_id": "100001",
        "workflow_name": "topup-standard",
        "filename": "run/x.pdf",
        "round": "round18",
    }
    assert len(http) >= 20 and ws, (http, ws)  # the discovery really found the API
    refused: list[str] = []
    with served.client() as anonymous:
        for method, path in http:
            url = fill(path, values)
            body = {} if method in ("POST", "PUT") else None
            for headers in (
                {},
                {"Authorization": f"Bearer {FORGED}"},
                {"Authorization": "Basic x"},
            ):
                r = anonymous.request(method, url, json=body, headers=headers)
                assert r.status_code == 401, (method, url, headers, r.status_code, r.text)
                if method != "HEAD":
                    assert r.json()["success"] is False
            refused.append(f"{method} {path}")
    for path in ws:
        url = fill(path, values)
        assert ws_close_code(served, url, None) == CLOSE_UNAUTHORIZED
        assert ws_close_code(served, url, FORGED) == CLOSE_UNAUTHORIZED
        refused.append(f"WS {path}")
    # Nothing was created by the refused requests.
    with served.client("auditor", admin=True) as admin:
        assert admin.get("/api/tasks").json()["total"] == 0
    record(
        group="security",
        scenario="control routes without a token",
        injected=f"{len(refused)} routes (from the app's route table) called with no token, "
        "a forged token and a non-Bearer scheme",
        outcome="every one answered 401 (WebSocket: close code 4401); nothing was created",
        details=", ".join(refused),
    )


def task_routes(served: Served) -> list[tuple[str, str, dict[str, str]]]:
    """``(method, path, query)`` of every operation that takes a task (or execution) id,
    in its path or its query, from the app's OpenAPI document."""
    spec = served.app.openapi()  # type: ignore[attr-defined]
    found = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            names = {p["name"]: p["in"] for p in op.get("parameters", [])}
            if "task_id" in names or "execution_id" in names:
                query = {"file_type": "log"} if "file_type" in names else {}
                if names.get("task_id") == "query":
                    query["task_id"] = "{task_id}"
                found.append((method.upper(), path, query))
    return found


def test_another_users_task_is_not_found_on_every_task_route(
    offline_chaos_facade: Served,
) -> None:
    served = offline_chaos_facade
    with served.client("alice") as alice, served.client("mallory") as mallory:
        created = alice.post("/api/tasks", json=DATES)
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        values = {
            "task_id": str(task_id),
            "execution_id": str(legacy.execution_id(task_id, 1)),
        }
        routes = task_routes(served)
        assert len(routes) >= 10, routes
        checked = []
        for method, path, query in routes:
            url = fill(path, values)
            params = {k: fill(v, values) for k, v in query.items()}
            body = {} if method in ("POST", "PUT") else None
            r = mallory.request(method, url, params=params, json=body)
            assert r.status_code == 404, (method, url, params, r.status_code, r.text)
            assert str(task_id) not in r.text.replace(url, "")  # nothing about the task leaks
            checked.append(f"{method} {path}")
        _, ws = control_routes(served.app)
        for path in ws:
            token = served.token_for("mallory")
            assert ws_close_code(served, fill(path, values), token) == CLOSE_NOT_FOUND
            checked.append(f"WS {path}")
        # Mallory's requests changed nothing: alice's task is still pending and hers alone.
        progress = alice.get(f"/api/tasks/{task_id}/progress").json()
        assert progress["status"] == "pending"
        assert mallory.get("/api/tasks").json()["total"] == 0
    record(
        group="security",
        scenario="another user's task",
        injected=f"user B called {len(checked)} task routes (from the OpenAPI document) "
        "with user A's task id",
        outcome="404 'Task not found' on every route (WebSocket: close 4404); A's task untouched",
        details=", ".join(checked),
    )


# ------------------------------------------------------------------------- secret hygiene


def _corpus_hits(secret: str, corpus: dict[str, str]) -> list[str]:
    return [where for where, text in corpus.items() if secret in text]


def _run_ids(task: dict[str, Any]) -> list[str]:
    return [str(x) for x in task.get("flow_run_history") or []] or [task["flow_run_id"]]


def _start_dates_task(client: httpx.Client, site: str) -> int:
    body = {
        "workflow_name": "available-dates",
        "task_name": f"secrets {uuid.uuid4().hex[:6]}",
        "parameters": {"round": "round18", "site": site},
    }
    created = client.post("/api/tasks", json=body)
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    started = client.post(f"/api/tasks/{task_id}/start")
    assert started.status_code == 200, started.text
    return task_id


def _final_status(client: httpx.Client, task_id: int) -> str:
    status = client.get(f"/api/tasks/{task_id}/progress").json()["status"]
    return status if status in ("success", "failed", "cancelled") else ""


def _prefect_text(stack: PrefectStack, flow_run_ids: list[str]) -> dict[str, str]:
    """Every log line and artifact of the flow runs, read back from the Prefect API."""
    ids = [UUID(i) for i in flow_run_ids]
    out: dict[str, str] = {}
    with stack.sync_client() as client:

        def read() -> list[Any]:
            flt = LogFilter(flow_run_id=LogFlowRun(any_=ids))
            logs: list[Any] = []
            while page := client.read_logs(log_filter=flt, limit=200, offset=len(logs)):
                logs += page
                if len(page) < 200:
                    break
            return logs

        # Logs reach the API in batches, after the run's final state: wait (bounded) for each
        # run's last line, so the search below covers every line, not only the early ones.
        deadline = time.monotonic() + 60
        logs = read()
        while time.monotonic() < deadline and len(
            {lg.flow_run_id for lg in logs if "Finished in state" in lg.message}
        ) < len(ids):
            time.sleep(0.5)
            logs = read()
        out["prefect logs"] = "\n".join(f"{lg.name} {lg.message}" for lg in logs)
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
        out["prefect artifacts"] = "\n".join(
            f"{a.key} {a.description} {a.data} {a.metadata_}" for a in artifacts
        )
        for fid in ids:
            run = client.read_flow_run(fid)
            out[f"flow run {fid}"] = run.model_dump_json()
    return out


def _facade_text(client: httpx.Client, task_id: int) -> dict[str, str]:
    out = {}
    for path in (
        f"/api/tasks/{task_id}",
        f"/api/tasks/{task_id}/logs?limit=10000",
        f"/api/executions/{task_id}",
        f"/api/logs/{task_id}?limit=10000",
        f"/api/downloads/task/{task_id}?file_type=log",
        f"/api/downloads/task/{task_id}?file_type=output",
        "/api/tasks?limit=100",
        "/api/stats",
    ):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        out[f"facade {path}"] = r.text
    return out


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


@pytest.mark.slow
def test_site_passwords_appear_nowhere(
    stack: PrefectStack,
    sim: Any,
    sim_ssh: SshPair,
    chaos_facade: Served,
    password_site: str,
    ssh_password_settings: SiteSettings,
    site_password: str,
    tmp_path: Path,
) -> None:
    """A run that logs in with the passwords, and runs that fail to, leave no trace of them."""
    wrong = "Wr0ng-" + uuid.uuid4().hex[:12]
    bad_login = ssh_password_settings.login.model_copy(update={"password": SecretStr(wrong)})
    bad_site = write_site_file(
        stack, ssh_password_settings.model_copy(update={"login": bad_login}), secrets=True
    )
    try:
        with chaos_facade.client("alice") as alice:
            good_task = _start_dates_task(alice, password_site)
            bad_task = _start_dates_task(alice, bad_site)
            for task_id in (good_task, bad_task):
                wait_for(
                    lambda t=task_id: _final_status(alice, t),
                    timeout=240,
                    interval=0.5,
                    what=f"task {task_id} final",
                )
            assert _final_status(alice, good_task) == "success"
            assert _final_status(alice, bad_task) == "failed"
            corpus: dict[str, str] = {}
            run_ids: list[str] = []
            for task_id in (good_task, bad_task):
                wait_settled(alice, task_id)  # the step's record may lag the run's end
                corpus.update(_facade_text(alice, task_id))
                detail = alice.get(f"/api/tasks/{task_id}").json()["task"]
                run_ids += _run_ids(detail)
    finally:
        (stack.sites_dir / f"{bad_site}.json").unlink(missing_ok=True)
    corpus.update(_prefect_text(stack, run_ids))
    # Every file of the stack's log folder: server, deploy, workers (with the flow runs' output).
    for path in sorted(stack.log_dir.rglob("*")):
        if path.is_file():
            corpus[f"stack log {path.name}"] = path.read_text(errors="replace")

    # Connections that fail with the password set: wrong password, wrong host, closed port.
    failures = {
        "wrong password": {"login": bad_login},
        "unknown host": {
            "login": ssh_password_settings.login.model_copy(update={"host": "no-such-host.invalid"})
        },
        "closed port": {
            "jump": ssh_password_settings.jump.model_copy(update={"port": _closed_port()})  # type: ignore[union-attr]
        },
    }
    for label, change in failures.items():
        site = RemoteSite(
            ssh_password_settings.model_copy(update={**change, "connect_timeout": 5.0})
        )
        try:
            with pytest.raises(RemoteError) as info:
                site.run("true")
        finally:
            site.close()
        assert isinstance(info.value, RemoteConnectionError), (label, info.value)
        corpus[f"exception ({label})"] = _exception_text(info.value)

    # The corpus is real: the good run listed dates, the bad one said why it failed.
    assert "250624" in corpus["prefect artifacts"]
    assert '"status":"success"' in corpus[f"facade /api/executions/{good_task}"].replace(" ", "")
    assert "authentication failed" in corpus["prefect logs"].lower()
    assert any(k.startswith("stack log") for k in corpus) and corpus["prefect artifacts"]
    assert "authentication failed" in corpus["exception (wrong password)"].lower()

    leaks = {s: _corpus_hits(s, corpus) for s in (site_password, wrong)}
    assert leaks == {site_password: [], wrong: []}, leaks
    size = sum(len(t) for t in corpus.values())
    record(
        group="security",
        scenario="SSH passwords never leak",
        injected="password-only site: one successful run, one run with a wrong password (both "
        "through the facade on the real stack), three failing direct connections",
        outcome=f"neither the real nor the wrong password in {len(corpus)} sources "
        f"({size} characters): facade responses, Prefect logs, artifacts, flow-run records, "
        "stack log files, exception messages and tracebacks",
        details=", ".join(sorted(corpus)),
    )


def _closed_port() -> int:
    return free_port()  # bound and released at once: nothing listens there


# ---------------------------------------------------------------------------- host keys


@pytest.mark.parametrize("hop", ["jump", "login"])
def test_host_key_mismatch_is_refused_with_a_clear_error(
    sim: Any, ssh_settings: SiteSettings, sim_ssh: SshPair, tmp_path: Path, hop: str
) -> None:
    other = "login" if hop == "jump" else "jump"
    ports = {"jump": sim_ssh.jump_port, "login": sim_ssh.login_port}
    known = tmp_path / "known_hosts"
    # The hop under test is listed with the OTHER server's key: a different machine answers.
    known.write_text(
        f"[127.0.0.1]:{ports[hop]} {sim_ssh.host_public_key(other)}\n"
        f"[127.0.0.1]:{ports[other]} {sim_ssh.host_public_key(other)}\n"
    )
    before = known.read_text()
    canary = Path(sim.root) / f"hostkey-{hop}-ran"
    for accept in (False, True):  # even the opt-in for NEW keys does not accept a changed one
        site = RemoteSite(
            ssh_settings.model_copy(
                update={"known_hosts_file": known, "accept_new_host_keys": accept}
            )
        )
        try:
            with pytest.raises(HostKeyError) as info:
                site.run(f"touch {canary}")
        finally:
            site.close()
        message = str(info.value)
        assert "host key" in message and "does not match" in message, message
        assert f"127.0.0.1:{ports[hop]}" in message
        assert site.transport.stats.commands == 0
    assert not canary.exists()
    assert known.read_text() == before  # the stored keys were not replaced
    record(
        group="security",
        scenario=f"host-key mismatch ({hop} host)",
        injected=f"known_hosts lists the {hop} host with another server's key "
        "(with and without accept_new_host_keys)",
        outcome=f"HostKeyError before any command: '{message[:90]}...'; known_hosts unchanged",
    )
