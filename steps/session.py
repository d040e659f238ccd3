"""Where a step gets its RemoteSite from.

Steps take a plain site *name* (so Prefect can hash and persist their inputs) and
resolve it here to one RemoteSite per process: a flow run reuses one connection for
all of its steps.

Resolution of a name:
- ``TOPUP_SITES_DIR/<name>.json`` if that file exists (written by ``topup-sim up``
  or by an operator), overlaid by the ``TOPUP_*`` environment;
- otherwise, for ``default``, the environment alone (IHEP defaults).

A hop with ``password_secret_block`` and no password gets the password from that Prefect
Secret block here, so passwords need not sit in the worker's environment or a site file.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from pydantic import SecretStr

from steps.config import SiteSettings
from steps.remote.site import RemoteSite

SITE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_lock = threading.Lock()
_sites: dict[str, RemoteSite] = {}


def load_settings(name: str = "default") -> SiteSettings:
    if not SITE_NAME_RE.match(name):
        raise ValueError(f"invalid site name: {name!r}")
    sites_dir = os.environ.get("TOPUP_SITES_DIR")
    if sites_dir:
        path = Path(sites_dir) / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            # Environment variables still win over the file (pydantic-settings order:
            # init kwargs > env), so only pass keys the environment does not set.
            return with_secret_passwords(SiteSettings(**data))
    if name != "default":
        raise LookupError(f"unknown site {name!r} (no {name}.json in TOPUP_SITES_DIR)")
    return with_secret_passwords(SiteSettings())


def with_secret_passwords(settings: SiteSettings) -> SiteSettings:
    """Fill each hop's missing password from its Prefect Secret block, if it names one."""
    updates = {}
    for hop in ("jump", "login"):
        host = getattr(settings, hop)
        if host is None or host.password is not None or not host.password_secret_block:
            continue
        from prefect.blocks.system import Secret  # only when a block is named

        value = Secret.load(host.password_secret_block).get()
        updates[hop] = host.model_copy(update={"password": SecretStr(str(value))})
    return settings.model_copy(update=updates) if updates else settings


def open_site(name: str = "default") -> RemoteSite:
    """The process-wide RemoteSite for ``name`` (created on first use)."""
    with _lock:
        site = _sites.get(name)
        if site is None:
            site = RemoteSite(load_settings(name))
            _sites[name] = site
        return site


def close_sites() -> None:
    with _lock:
        for site in _sites.values():
            site.close()
        _sites.clear()
