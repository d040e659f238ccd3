"""Facade settings, read from the environment.

Why one place: every deployment difference (database, Prefect server, who may call us from a
browser, where the PDFs are) is a setting, so the same code runs in tests, the demo and
production. Secure by default: no CORS origin is allowed and every API route needs a token
unless the explicit development switch is on *and* the server binds to loopback.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str | None) -> bool:
    """True for a loopback host name or address (used by the dev switch)."""
    if not host:
        return False
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FacadeSettings(BaseSettings):
    """Settings of the REST facade (environment prefix ``TOPUP_FACADE_`` unless noted)."""

    model_config = SettingsConfigDict(
        env_prefix="TOPUP_FACADE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Shared with the flows' outputs store, hence the project-wide name.
    database_url: str = Field(
        "sqlite:///var/topup.db",
        validation_alias=AliasChoices("TOPUP_DATABASE_URL", "database_url"),
    )
    # Falls back to Prefect's own variable so one PREFECT_API_URL configures everything.
    prefect_api_url: str = Field(
        "http://127.0.0.1:4200/api",
        validation_alias=AliasChoices(
            "TOPUP_FACADE_PREFECT_API_URL", "PREFECT_API_URL", "prefect_api_url"
        ),
    )
    # Same variable as SiteSettings.downloads_dir: the flows write there, we serve from there.
    downloads_dir: Path = Field(
        Path("var/downloads"),
        validation_alias=AliasChoices("TOPUP_DOWNLOADS_DIR", "downloads_dir"),
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dev_mode: bool = False
    dev_user: str = "dev"
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_download_bytes: int = Field(500 * 1024 * 1024, ge=1)
    # Prefect's limit on one page of runs/logs; stats page through with this size.
    page_size: int = Field(200, ge=10, le=200)
    stats_default_hours: float = Field(24 * 7, gt=0)
    # Reuse a flow run's Prefect reads for this long (facade.read_cache); 0 = always read.
    prefect_read_ttl_seconds: float = Field(1.0, ge=0, le=10)
    # ... and this long while Prefect's event stream drops changed runs (facade.cache_feed).
    prefect_live_read_ttl_seconds: float = Field(30.0, ge=0, le=600)
    # GET /api/tasks looks for flow runs started outside the facade at most this often.
    adopt_interval_seconds: float = Field(1.0, ge=0, le=600)
    # Database connections per process (pool + overflow); unset: 20 + 80 for a SQLite file,
    # 5 + 10 for a server database (PostgreSQL counts every process's connections).
    database_pool_size: int | None = Field(None, ge=1, le=200)
    database_max_overflow: int | None = Field(None, ge=0, le=200)
    # Engine.IO heartbeat; a long-polling client waits up to interval + timeout on close.
    socketio_ping_interval: float = Field(25.0, gt=0)
    socketio_ping_timeout: float = Field(20.0, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # "a,b" in the environment, or a JSON-style list from code.
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("cors_origins: '*' is not allowed, list the origins explicitly")
        return value

    @model_validator(mode="after")
    def _dev_only_on_loopback(self) -> FacadeSettings:
        if self.dev_mode and not is_loopback(self.host):
            raise ValueError(
                "dev_mode relaxes authentication and may only be used with a loopback host"
            )
        return self

    @property
    def prefect_api_url_clean(self) -> str:
        return self.prefect_api_url.rstrip("/")


@lru_cache
def get_settings() -> FacadeSettings:
    """The process settings (tests build their own FacadeSettings and pass it to create_app)."""
    return FacadeSettings()
