"""The simulated BESIII site: builds the file tree and drives it from Python.

`build_site(root)` lays out, under ``root``, the real absolute paths of the site
(``root/besfs5/...``, ``root/bes3fs/...``, ``root/afs/...``, ``root/cvmfs/...``) with the raw
data, the legacy scripts of every stage (templates in ``sim/scripts``), the batch system and
the ROOT / ImageMagick stand-ins in ``root/sim/bin``, and the simulator's own state in
``root/.sim`` (faults, submissions, job states, DB ledger). Everything in the tree is bash,
GNU tools and ``/usr/bin/python3`` with the standard library, so it runs as the SSH user.

`SimSite` is the handle tests and the CLI use: settings pointing into the tree, faults,
the submission log, active jobs, and `stop_jobs()` which leaves no process behind.

This module is the package's public entry point for a site: the work is done in
``sim/tree_files.py`` (templates, fixed places), ``sim/tree_builder.py`` (layout -> files),
``sim/batch_jobs.py`` (submissions, jobs, processes of a tree) and ``sim/fabricate.py``
(fabricated stage state); their public names used elsewhere are imported here so that
``from sim.site import ...`` keeps working.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sim import batch_jobs
from sim.fabricate import prepare_date
from sim.faults import Faults, read_faults, update_faults, write_faults
from sim.layout import SiteLayout, default_layout
from sim.tree_builder import SITE_USER, TreeBuilder, hand_over
from sim.tree_files import (
    CHECK_DB_ALG_REL,
    PLACEHOLDERS,
    PYTHON,
    SAFE_ROOT_RE,
    SCRIPTS,
    STAGE_DIRS,
    SiteBuildError,
    write,
)
from steps.config import SiteSettings

__all__ = [
    "CHECK_DB_ALG_REL",
    "PLACEHOLDERS",
    "PYTHON",
    "SAFE_ROOT_RE",
    "SCRIPTS",
    "SITE_USER",
    "STAGE_DIRS",
    "SimSite",
    "SiteBuildError",
    "build_site",
    "remove_site",
]


@dataclass
class SimSite:
    """Handle on a built tree (see the module docstring)."""

    root: Path
    layout: SiteLayout = field(default_factory=default_layout)

    # ------------------------------------------------------------------ paths
    @property
    def topup_root(self) -> Path:
        return self.root / "besfs5/groups/cal/topup"

    @property
    def data_root(self) -> Path:
        return self.root / "bes3fs/offline/data/cal"

    @property
    def calib_const_root(self) -> Path:
        return self.root / "afs/ihep.ac.cn/bes3/offline/CalibConst/OfflineEvtFilter"

    @property
    def check_db_alg_dir(self) -> Path:
        return self.root / CHECK_DB_ALG_REL

    @property
    def env_script(self) -> Path:
        return self.root / "home/w720"

    @property
    def container_cmd(self) -> Path:
        return self.root / "cvmfs/container.ihep.ac.cn/bin/hep_container"

    @property
    def control_dir(self) -> Path:
        return self.root / "home/.topup/ctl"

    @property
    def bin_dir(self) -> Path:
        return self.root / "sim/bin"

    @property
    def state_dir(self) -> Path:
        return self.root / ".sim"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "db_ledger.log"

    def base(self, round: str = "round18") -> Path:
        return self.topup_root / round / "DataValid"

    def inj(self, round: str = "round18") -> Path:
        return self.base(round) / "InjSigTimeCal"

    def hist(self, round: str = "round18") -> Path:
        return self.base(round) / "hist"

    def stage_dir(self, name: str, round: str = "round18") -> Path:
        """``search_peak``, ``checkShieldCalib``, ``ETS_cut`` or ``check_ETScut_CalibConst``."""
        return self.base(round) / STAGE_DIRS[name][0]

    def data(self, round: str = "round18", date: str | None = None) -> Path:
        path = self.data_root / round
        return path / date if date else path

    def runs(self, round: str, date: str) -> list[int]:
        return self.layout.round(round).date(date).runs

    # --------------------------------------------------------------- settings
    def settings(
        self, transport: Literal["local", "ssh"] = "local", **overrides: Any
    ) -> SiteSettings:
        """SiteSettings whose remote paths all point into this tree."""
        values: dict[str, Any] = {
            "transport": transport,
            "topup_root": str(self.topup_root),
            "data_root": str(self.data_root),
            "env_script": str(self.env_script),
            "container_cmd": str(self.container_cmd),
            "calib_const_root": str(self.calib_const_root),
            "check_db_alg_dir": str(self.check_db_alg_dir),
            "control_dir": str(self.control_dir),
            "batch_query_cmd": str(self.bin_dir / "hep_q"),
            "boss_version": self.layout.boss_version,
        }
        if transport == "local":
            values["jump"] = None
        values.update(overrides)
        return SiteSettings(**values)

    # ----------------------------------------------------------------- faults
    def faults(self) -> Faults:
        return read_faults(self.root)

    def set_faults(self, **changes: Any) -> Faults:
        """Merge ``changes`` into faults.json (e.g. ``set_faults(fail={"1": [85383]})``)."""
        return update_faults(self.root, **changes)

    def reset_faults(self) -> Faults:
        faults = Faults(noise_runs=self.layout.noise_runs)
        write_faults(self.root, faults)
        return faults

    # ------------------------------------------------------------ batch state
    def submissions(self) -> list[dict[str, Any]]:
        """Every batch submission so far, one dict per job, in submission order."""
        return batch_jobs.submissions(self.state_dir)

    def db_ledger(self) -> list[dict[str, Any]]:
        """Every simulated DB insert (genInsertCmd.sh -sub_switch 1)."""
        return batch_jobs.db_ledger(self.ledger_path)

    def active_jobs(self) -> list[dict[str, Any]]:
        """Jobs idle, held or running (what ``hep_q`` lists), oldest first."""
        return batch_jobs.active_jobs(self.root, self.state_dir)

    def wait_jobs(self, timeout: float = 30.0, poll: float = 0.05) -> bool:
        """Wait until no job is idle or running; False on timeout."""
        return batch_jobs.wait_jobs(self.root, self.state_dir, timeout, poll)

    def tree_processes(self) -> list[int]:
        """Processes working in this tree (cwd or an argument inside it)."""
        return batch_jobs.tree_processes(self.root)

    def stop_jobs(self, timeout: float = 5.0) -> int:
        """Remove every job and kill every process of the tree; returns how many were hit."""
        return batch_jobs.stop_jobs(self.root, self.state_dir, timeout)

    # ------------------------------------------------------------------- misc
    def bash(
        self,
        command: str,
        cwd: Path | str | None = None,
        env_script: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in a non-interactive bash in the tree (local), env sourced first."""
        script = f"source {self.env_script} && {command}" if env_script else command
        return subprocess.run(
            ["/bin/bash", "-c", script],
            cwd=str(cwd) if cwd else str(self.root),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def prepare(self, date: str, round: str = "round18", through: Literal["1", "2"] = "2") -> None:
        """Fabricate the state a date has after steps 1.1-1.3 (``through="1"``) or 1-2.4
        (``"2"``), without running jobs; see ``sim.fabricate.prepare_date``."""
        prepare_date(self, date, round, through)

    @classmethod
    def open(cls, root: Path) -> SimSite:
        """The handle of an existing tree (layout read from ``.sim/layout.json``)."""
        root = Path(root).resolve()
        layout_file = root / ".sim" / "layout.json"
        if not layout_file.is_file():
            raise FileNotFoundError(f"{root} holds no simulated site (no .sim/layout.json)")
        return cls(root, SiteLayout.model_validate_json(layout_file.read_text()))


def build_site(root: Path, layout: SiteLayout | None = None) -> SimSite:
    """Create the simulated site under ``root`` (which must be empty or absent)."""
    root = Path(root).resolve()
    text = str(root)
    if not SAFE_ROOT_RE.match(text) or any(p in text for p in PLACEHOLDERS):
        raise SiteBuildError(f"unsuitable root path for the simulated site: {text!r}")
    if root.exists() and any(root.iterdir()):
        raise SiteBuildError(f"{root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    site = SimSite(root, layout or default_layout())
    TreeBuilder(site).build()
    write_faults(root, Faults(noise_runs=site.layout.noise_runs))
    write(site.state_dir / "layout.json", site.layout.model_dump_json(indent=1) + "\n")
    hand_over(root)
    return site


def remove_site(site: SimSite) -> None:
    """Stop everything of the tree, then delete it."""
    site.stop_jobs()
    shutil.rmtree(site.root, ignore_errors=True)
