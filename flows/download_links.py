"""Signed, expiring download links: what a browser can open without a bearer token.

Why: the PDF links of the Prefect UI's artifacts and of the approval forms are opened in a
browser, which cannot send the facade's bearer token. A link carries ``expires`` (Unix time)
and ``sig`` = HMAC-SHA256 over the file's name under the downloads root and that expiry, so
the facade can serve exactly that file until then, and nothing else.

The key comes from ``TOPUP_DOWNLOAD_LINK_KEY``; without it, from the key file
(``TOPUP_DOWNLOAD_LINK_KEY_FILE``, default ``<downloads root>/.link-key``, a hidden entry the
facade never serves), generated there on first use. The flows (signing) and the facade
(checking) share the downloads root, hence the key. The key is never logged or returned.
Pure code: no Prefect, no HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

KEY_FILE_NAME = ".link-key"
MIN_KEY_BYTES = 16


class DownloadLinkSettings(BaseSettings):
    """Settings of the signed links (environment prefix ``TOPUP_DOWNLOAD_LINK_``)."""

    model_config = SettingsConfigDict(env_prefix="TOPUP_DOWNLOAD_LINK_", extra="ignore")

    key: SecretStr | None = None
    key_file: Path | None = None  # default: <downloads root>/.link-key
    # 8 days: longer than an operator's default 24 h to answer, and a week of UI history.
    ttl_seconds: int = Field(8 * 24 * 3600, ge=60, le=366 * 24 * 3600)


class LinkKeyError(RuntimeError):
    """No usable key (too short, or the key file cannot be read or written)."""


def load_key(downloads_root: Path, settings: DownloadLinkSettings | None = None) -> bytes:
    """The signing key: the setting, else the key file (created with a random key if absent)."""
    settings = settings or DownloadLinkSettings()
    if settings.key is not None:
        key = settings.key.get_secret_value().encode()
        if len(key) < MIN_KEY_BYTES:
            raise LinkKeyError(f"TOPUP_DOWNLOAD_LINK_KEY needs at least {MIN_KEY_BYTES} bytes")
        return key
    path = settings.key_file or downloads_root / KEY_FILE_NAME
    try:
        return _read_or_create(path)
    except OSError as exc:
        raise LinkKeyError(f"download link key file not usable: {type(exc).__name__}") from None


def _read_or_create(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return _read_or_create(path)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        key = path.read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise LinkKeyError("the download link key file holds too short a key")
    return key


def signature(key: bytes, name: str, expires: int) -> str:
    """HMAC-SHA256 (hex) over the file's name under the downloads root and the expiry."""
    message = f"{name}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_query(key: bytes, name: str, ttl_seconds: int, now: float | None = None) -> str:
    """``expires=…&sig=…`` for ``name``, valid for ``ttl_seconds`` from ``now``."""
    expires = int(now if now is not None else time.time()) + ttl_seconds
    return urlencode({"expires": expires, "sig": signature(key, name, expires)})


def signed_url(base: str, name: str, key: bytes, ttl_seconds: int) -> str:
    """``<base>/<name>?expires=…&sig=…`` (``base``: the facade's ``…/api/downloads``)."""
    return f"{base.rstrip('/')}/{quote(name)}?{signed_query(key, name, ttl_seconds)}"


def verify(
    key: bytes, name: str, expires: int | None, sig: str | None, now: float | None = None
) -> bool:
    """The link is intact (constant-time comparison) and has not expired."""
    if expires is None or not sig:
        return False
    if expires < int(now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature(key, name, expires), sig.lower())
