"""`topup token create` / `topup token revoke` against a real facade over HTTP.

The CLI writes the facade's database (SQLite in the test's data dir, as an operator without a
running stack gets it); the facade, served by uvicorn on a loopback port with that database,
must accept the printed token and refuse it once revoked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from facade.db import make_engine
from facade.models import ApiToken, User
from facade.tokens import TOKEN_PREFIX, hash_token
from tests.facade.served import Served, local_settings, serve
from topup_cli.main import app

runner = CliRunner()
# Neither a stack's database nor one from the environment: the data dir's own topup.db.
NO_DB_ENV: dict[str, str | None] = {"TOPUP_DATABASE_URL": None, "TOPUP_STACK_DATA_DIR": None}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def facade(data_dir: Path, tmp_path: Path) -> Iterator[Served]:
    """The facade on the database `topup token` uses for ``data_dir`` (Prefect unreachable:
    the token routes do not need it)."""
    data_dir.mkdir()
    with serve(local_settings(data_dir / "topup.db", tmp_path / "downloads")) as served:
        yield served


def _token(args: list[str], data_dir: Path) -> tuple[int, str]:
    res = runner.invoke(app, ["token", *args, "--data-dir", str(data_dir)], env=NO_DB_ENV)
    return res.exit_code, res.output


def _status(facade: Served, token: str) -> int:
    with httpx.Client(base_url=facade.base_url, timeout=30) as c:
        return c.get("/api/tasks", headers={"Authorization": f"Bearer {token}"}).status_code


def test_create_prints_a_working_token_once_and_revoke_disables_it(
    facade: Served, data_dir: Path
) -> None:
    code, out = _token(["create", "--user", "bob", "--label", "laptop"], data_dir)
    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) == 1, out  # the token and nothing else (scripts capture it)
    token = lines[0]
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40

    assert _status(facade, token) == 200
    assert _status(facade, token[:-1] + ("A" if token[-1] != "A" else "B")) == 401

    # Stored hashed: the row holds the SHA-256 and a short prefix, the database file never
    # the token itself.
    engine = make_engine(facade.settings.database_url)
    try:
        with Session(engine) as session:
            rows = session.exec(select(ApiToken)).all()
            user = session.get(User, "bob")
        assert [(r.user_name, r.token_hash, r.label) for r in rows] == [
            ("bob", hash_token(token), "laptop")
        ]
        assert all(token not in (r.token_hash, r.prefix, r.label) for r in rows)
        assert user is not None and not user.is_admin
    finally:
        engine.dispose()
    for path in data_dir.glob("topup.db*"):  # the database and any journal next to it
        assert token.encode() not in path.read_bytes(), path

    # A second create is a new token; both work until revoked.
    code, out = _token(["create", "--user", "bob"], data_dir)
    assert code == 0, out
    second = out.strip()
    assert second != token and _status(facade, second) == 200

    code, out = _token(["revoke", "--user", "bob"], data_dir)
    assert code == 0, out
    assert "revoked 2 token(s)" in out and token not in out
    assert _status(facade, token) == 401
    assert _status(facade, second) == 401


def test_revoke_by_prefix_leaves_the_other_tokens(facade: Served, data_dir: Path) -> None:
    first = _token(["create", "--user", "bob"], data_dir)[1].strip()
    second = _token(["create", "--user", "bob"], data_dir)[1].strip()
    prefix = first[: len(TOKEN_PREFIX) + 4]
    if second.startswith(prefix):  # 1 in 64**4: the prefix cannot tell them apart
        pytest.skip("both tokens share their prefix")
    code, out = _token(["revoke", "--user", "bob", "--prefix", prefix], data_dir)
    assert code == 0 and "revoked 1 token(s)" in out, out
    assert _status(facade, first) == 401
    assert _status(facade, second) == 200


@pytest.mark.parametrize("command", ["create", "revoke"])
@pytest.mark.parametrize("name", ["bob smith", "bob/../x", "x" * 65, "", "bob;rm", "bob\n"])
def test_bad_user_names_are_refused_before_the_database(
    command: str, name: str, data_dir: Path
) -> None:
    code, out = _token([command, "--user", name], data_dir)
    assert code == 2, out
    assert "user name must be" in out and "Traceback" not in out
    assert not (data_dir / "topup.db").exists()  # refused before anything was written
