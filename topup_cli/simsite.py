"""The simulated site as part of a stack: tree, sshd pair, and the site files flow runs read.

Why here and not in ``sim.cli``: ``topup up --sim`` owns the pair for its lifetime (stopped
with the stack), and must hand the flow runs a site file in the stack's own
``TOPUP_SITES_DIR``. The layout matches ``topup-sim`` (``<root>/.sim/sshd``,
``<root>/.sim/sshd.json``), so ``topup-sim status|faults --root <data>/sim`` work alongside.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from sim import users
from sim.site import SimSite, build_site
from sim.sshd import SshPair

SIM_USER = "topup"


def sshd_dir(root: Path) -> Path:
    return root / ".sim" / "sshd"


def _traversable(path: Path) -> None:
    """The login user must reach the tree: every directory above it needs o+x."""
    for p in [path, *path.parents]:
        if p == Path("/"):
            break
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, mode | stat.S_IXOTH)


class SimStack:
    """Build (or reuse) the simulated site under ``root`` and serve it through an sshd pair."""

    def __init__(self, root: Path, sites_dir: Path, downloads_dir: Path, name: str) -> None:
        self.root = root.resolve()
        self.sites_dir = sites_dir
        self.downloads_dir = downloads_dir.resolve()
        self.name = name
        self.site: SimSite | None = None
        self.pair: SshPair | None = None
        self.site_files: list[Path] = []

    def build(self, fresh: bool = False) -> SimSite:
        """A fresh tree (``fresh``: the old one is removed first) or the existing one."""
        if fresh and self.root.exists():
            if (self.root / ".sim/layout.json").is_file():
                SimSite.open(self.root).stop_jobs()
            shutil.rmtree(self.root)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        _traversable(self.root.parent)
        if (self.root / ".sim/layout.json").is_file():
            self.site = SimSite.open(self.root)
        else:
            self.site = build_site(self.root)
            users.chown_tree(self.root, SIM_USER)
        return self.site

    def start(self, fresh: bool = False) -> SimStack:
        site = self.site or self.build(fresh)
        self.pair = SshPair(workdir=sshd_dir(self.root), user=SIM_USER, stop_at_exit=True)
        self.pair.start()
        self.pair.follow_faults(self.root / ".sim" / "faults.json")
        (self.root / ".sim" / "sshd.json").write_text(
            json.dumps({"jump": self.pair.jump_port, "login": self.pair.login_port})
        )
        # Passwords on both hops, as at IHEP (the file is root-only, 0600, like IHEP's
        # SSH_PASS_* variables; keys would work too).
        settings = site.settings(
            **self.pair.client_overrides(auth="password"), downloads_dir=self.downloads_dir
        )
        data: dict[str, Any] = settings.model_dump(
            mode="json", exclude={"jump_password", "login_password"}
        )
        for hop in ("jump", "login"):
            data[hop]["password"] = self.pair.password
        self.sites_dir.mkdir(parents=True, exist_ok=True)
        # Under its own name, and as this stack's "default" site: runs started from the
        # facade (which names no site) then use the simulation too.
        for name in dict.fromkeys((self.name, "default")):
            path = self.sites_dir / f"{name}.json"
            path.write_text(json.dumps(data, indent=1) + "\n")
            path.chmod(0o600)
            self.site_files.append(path)
        return self

    def listener_pids(self) -> dict[str, int]:
        if self.pair is None:
            return {}
        return {role: pid for role in ("jump", "login") if (pid := self.pair.pid(role))}

    def ports(self) -> dict[str, int]:
        if self.pair is None:
            return {}
        return {"jump": self.pair.jump_port, "login": self.pair.login_port}

    def stop(self) -> bool:
        """Stop the pair and every job of the tree, remove the site files; True if clean."""
        for path in self.site_files:
            path.unlink(missing_ok=True)
        self.site_files.clear()
        if self.pair is not None:
            self.pair.stop()
            self.pair = None
        clean = True
        if self.site is not None:
            self.site.stop_jobs()
            clean = not self.site.tree_processes()
        return clean and not stop_leftovers(self.root)


def stop_leftovers(root: Path) -> list[int]:
    """Stop what an earlier, killed supervisor left of the site; the pids still alive."""
    if not (root / ".sim/layout.json").is_file():
        return []
    if sshd_dir(root).is_dir():
        SshPair(workdir=sshd_dir(root), user=SIM_USER, stop_at_exit=False).stop()
    site = SimSite.open(root)
    site.stop_jobs()
    return site.tree_processes()
