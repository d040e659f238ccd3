"""Bearer tokens, roles, ownership, the dev switch and the token CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select

from facade.config import FacadeSettings
from facade.models import ApiToken
from facade.tokens import hash_token
from tests.facade.served import Served, serve

DATES = {"workflow_name": "available-dates", "parameters": {"round": "round18"}}


def test_api_routes_need_a_valid_token(offline_facade: Served) -> None:
    with offline_facade.client() as anonymous:
        r = anonymous.get("/api/tasks")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"success": False, "error": "Authentication required"}
        bad = anonymous.get("/api/tasks", headers={"Authorization": "Bearer tpu_forged"})
        assert bad.status_code == 401
        assert anonymous.post("/api/tasks", json=DATES).status_code == 401


def test_tokens_are_stored_hashed(offline_facade: Served) -> None:
    token = offline_facade.token_for("alice")
    with Session(offline_facade.app.state.engine) as session:  # type: ignore[attr-defined]
        rows = session.exec(select(ApiToken)).all()
    assert [r.token_hash for r in rows] == [hash_token(token)]
    assert all(token not in (r.token_hash, r.prefix, r.label) for r in rows)


def test_users_see_and_control_only_their_tasks(offline_facade: Served) -> None:
    with offline_facade.client("alice") as alice, offline_facade.client("bob") as bob:
        created = alice.post("/api/tasks", json=DATES)
        assert created.status_code == 201
        task_id = created.json()["task_id"]
        assert created.json()["task"]["user_id"] == "alice"
        for method, path in [
            ("GET", f"/api/tasks/{task_id}"),
            ("GET", f"/api/tasks/{task_id}/progress"),
            ("GET", f"/api/tasks/{task_id}/logs"),
            ("POST", f"/api/tasks/{task_id}/start"),
            ("POST", f"/api/tasks/{task_id}/pause"),
            ("POST", f"/api/tasks/{task_id}/resume"),
            ("POST", f"/api/tasks/{task_id}/cancel"),
            ("GET", f"/api/executions/{task_id}"),
            ("GET", f"/api/logs/{task_id}"),
            ("GET", f"/api/downloads/task/{task_id}?file_type=log"),
        ]:
            r = bob.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"] == "Task not found"
        assert bob.get("/api/tasks").json()["total"] == 0
        assert bob.get("/api/tasks", params={"user_id": "alice"}).status_code == 403
        # Creating for somebody else is refused too.
        assert bob.post("/api/tasks", json={**DATES, "user_id": "alice"}).status_code == 403
        # Bob's cancel attempt did nothing: alice's task is still pending.
        assert alice.get(f"/api/tasks/{task_id}/progress").json()["status"] == "pending"


def test_admin_sees_everyone(offline_facade: Served) -> None:
    with offline_facade.client("alice") as alice, offline_facade.client("root", admin=True) as root:
        alice_task = alice.post("/api/tasks", json=DATES).json()["task_id"]
        for_bob = root.post("/api/tasks", json={**DATES, "user_id": "bob"})
        assert for_bob.status_code == 201 and for_bob.json()["task"]["user_id"] == "bob"
        assert root.get(f"/api/tasks/{alice_task}").status_code == 200
        assert root.get("/api/tasks").json()["total"] == 2
        only_alice = root.get("/api/tasks", params={"user_id": "alice"}).json()
        assert [t["id"] for t in only_alice["tasks"]] == [alice_task]


def test_dev_switch_only_on_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        FacadeSettings(dev_mode=True, host="0.0.0.0")
    settings = FacadeSettings(
        database_url=f"sqlite:///{tmp_path / 'dev.db'}",
        prefect_api_url="http://127.0.0.1:9/api",
        downloads_dir=tmp_path,
        dev_mode=True,
        dev_user="dev",
    )
    with serve(settings) as served, served.client() as anonymous:
        r = anonymous.post("/api/tasks", json=DATES)
        assert r.status_code == 201
        assert r.json()["task"]["user_id"] == "dev"


def test_cli_issues_a_working_token_once(offline_facade: Served) -> None:
    env = {**os.environ, "TOPUP_DATABASE_URL": offline_facade.settings.database_url}
    out = subprocess.run(
        [sys.executable, "-m", "facade.cli", "token", "create", "--user", "carol", "--admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    token = out.stdout.strip()
    assert token.startswith("tpu_") and len(token) > 40
    with offline_facade.client() as c:
        c.headers["Authorization"] = f"Bearer {token}"
        assert c.get("/api/tasks").status_code == 200
    listing = subprocess.run(
        [sys.executable, "-m", "facade.cli", "token", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "carol" in listing and "admin" in listing and token not in listing
    subprocess.run(
        [sys.executable, "-m", "facade.cli", "token", "revoke", "--user", "carol"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with offline_facade.client() as c:
        c.headers["Authorization"] = f"Bearer {token}"
        assert c.get("/api/tasks").status_code == 401
