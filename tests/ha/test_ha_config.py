"""Configuration of the HA stack, without starting it: HAProxy's file (checked by haproxy
itself), the HA settings' validation, and ``topup up --ha`` refusing bad settings before it
starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from topup_cli.ha import HaSettings, ensure_database
from topup_cli.haproxy import Backend, Bind, HaproxyConfig, HttpService, TcpRelay, check_config
from topup_cli.main import app


def config() -> HaproxyConfig:
    return HaproxyConfig(
        http=[
            HttpService(
                name="prefect_api",
                binds=[Bind(port=4200)],
                backends=[Backend(name="api-1", port=4301), Backend(name="api-2", port=4302)],
            ),
            HttpService(
                name="facade",
                binds=[Bind(port=5000)],
                backends=[Backend(name="facade-1", port=5001)],
                sticky_cookie=True,
            ),
        ],
        tcp=[
            TcpRelay(
                name="jump",
                binds=[Bind(host="10.231.0.1", port=2222)],
                target=Backend(name="sshd", port=22),
            )
        ],
    )


def test_rendered_config_is_accepted_by_haproxy(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    text = config().render()
    path.write_text(text)
    check_config(path)  # haproxy -c: raises on a file haproxy would refuse
    assert "option httpchk GET /api/health" in text
    assert "server api-2 127.0.0.1:4302 check" in text
    assert "cookie TOPUPSRV insert indirect nocache" in text
    assert "retry-on conn-failure" in text


def test_a_broken_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config().render().replace("balance roundrobin", "balance nonsense"))
    with pytest.raises(ValueError, match="haproxy refused"):
        check_config(path)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "api\nserver evil 1.2.3.4:80", "binds": [{"port": 1}], "backends": []},
        {"name": "api", "binds": [{"host": "127.0.0.1 evil", "port": 1}], "backends": []},
        {"name": "api", "binds": [{"port": 1}], "backends": [{"name": "a", "port": 0}]},
        {"name": "api", "binds": [{"port": 1}], "backends": [{"name": "a", "port": 1}],
         "health_path": "/x\n  server evil"},
    ],
)  # fmt: skip
def test_values_reaching_the_file_are_validated(bad: dict) -> None:
    with pytest.raises(ValidationError):
        HttpService.model_validate(bad)


def test_ha_settings_need_postgres_and_plain_names() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        HaSettings(prefect_database_url="sqlite+aiosqlite:///x.db")
    with pytest.raises(ValidationError, match="plain"):
        HaSettings(prefect_database_url='postgresql+asyncpg://u@h/x"; DROP DATABASE y')
    env = HaSettings(redis_db=4).redis_env()
    assert env["PREFECT_REDIS_MESSAGING_DB"] == "4"
    assert env["PREFECT_SERVER_DOCKET_URL"].endswith("/5")
    assert env["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    with pytest.raises(ValueError):
        ensure_database("postgresql://postgres@127.0.0.1:5432/bad-name")


def test_prefect_knows_every_redis_setting_name() -> None:
    """The names used are the ones Prefect 3.9.1 and prefect-redis read (not just docs)."""
    import os

    from prefect.settings import Settings
    from prefect_redis.client import RedisMessagingSettings

    env = HaSettings(redis_db=6).redis_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        s = Settings()
        assert s.server.events.messaging_broker == "prefect_redis.messaging"
        assert s.server.events.messaging_cache == "prefect_redis.messaging"
        assert s.server.events.causal_ordering == "prefect_redis.ordering"
        assert s.server.concurrency.lease_storage == "prefect_redis.lease_storage"
        assert s.server.docket.url == "redis://127.0.0.1:6379/7"
        assert RedisMessagingSettings().db == 6
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_up_ha_refuses_bad_settings_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPUP_HA_PREFECT_DATABASE_URL", "sqlite:///secret-password@x.db")
    res = CliRunner().invoke(app, ["up", "--ha", "--data-dir", str(tmp_path / "var")])
    assert res.exit_code == 2, res.output
    assert "TOPUP_HA_PREFECT_DATABASE_URL" in res.output
    assert "secret-password" not in res.output
    assert not (tmp_path / "var").exists()
