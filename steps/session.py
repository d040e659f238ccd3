"""Where a step gets its RemoteSite from.

Steps take a plain site *name* (so Prefect can hash and persist their inputs) and
resolve it here to one RemoteSite per process: a flow run reuses one connection for
all of its steps.

Resolution of a name:
- ``TOPUP_SITES_DIR/<name>.json`` if that file exists (written by ``topup-sim up``
  or by an operator), overlaid by the ``TOPUP_*`` environment;
- otherwise, for ``default``, the environment alone (IHEP defaults).
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

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
            return SiteSettings(**data)
    if name != "default":
        raise LookupError(f"unknown site {name!r} (no {name}.json in TOPUP_SITES_DIR)")
    return SiteSettings()


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
