"""The sim in IHEP's shape: the jump host forwards to the login node by its site name
(``beslogin``), and the tree sits at the real absolute paths (/besfs5, /bes3fs, /cvmfs, /afs)
inside the login node's private mount namespace, so IHEP's default settings and scripts
written for IHEP work unchanged, over password authentication."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim import users
from sim.site import build_site
from sim.sshd import SshPair
from steps.config import SiteSettings
from steps.doctor import DoctorOptions, run_doctor
from steps.remote.site import RemoteSite
from tests.conftest import SIM_USER

INJ = "/besfs5/groups/cal/topup/round18/DataValid/InjSigTimeCal"


@pytest.fixture(scope="module")
def ihep_like() -> Iterator[tuple[Any, SshPair]]:
    root = Path(tempfile.mkdtemp(prefix="topup-ihep-", dir="/tmp"))
    os.chmod(root, 0o755)
    site = build_site(root)
    users.chown_tree(root, SIM_USER)
    pair = SshPair(user=SIM_USER, login_name="beslogin", real_paths=root)
    try:
        pair.start()
        yield site, pair
    finally:
        pair.close()
        site.stop_jobs()
        shutil.rmtree(root, ignore_errors=True)


def test_ihep_defaults_reach_the_tree_by_name(ihep_like: tuple[Any, SshPair]) -> None:
    site, pair = ihep_like
    settings = SiteSettings(**pair.client_overrides())  # paths: IHEP's defaults, untouched
    assert settings.login.host == "beslogin" and settings.login.password is not None
    assert settings.topup_root == "/besfs5/groups/cal/topup" and settings.env_script == "~/w720"
    remote = RemoteSite(settings)
    try:
        # a script written for IHEP: absolute paths, ~/w720, hadd on the plain PATH
        res = remote.run(
            f"cd {INJ} && source ~/w720 && ./genJob.sh 250626 && "
            "ls /bes3fs/offline/data/cal/round18/250626 | wc -l && command -v hadd root && "
            "test -x /cvmfs/container.ihep.ac.cn/bin/hep_container && "
            "test -d /afs/ihep.ac.cn/bes3/offline/CalibConst/OfflineEvtFilter",
            timeout=60,
        )
    finally:
        remote.close()
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    done = lines.index("DONE")
    assert lines[done - 1] == "Total = 3 files"
    raw = len(list(site.data("round18", "250626").iterdir()))
    assert lines[done + 1] == str(raw)  # the raw files of 250626, listed under /bes3fs
    assert [Path(x).name for x in lines[done + 2 :]] == ["hadd", "root"]
    assert len(site.submissions()) == 3 and (site.inj() / "250626").is_dir()
    assert f"to beslogin port {pair.login_port}" in pair.log_text("jump")
    # the mounts are the login node's own: the host's mount points stay empty
    assert not any(any(Path(f"/{top}").iterdir()) for top in ("besfs5", "bes3fs", "cvmfs", "afs"))
    assert site.wait_jobs(60)


def test_doctor_passes_with_ihep_defaults(ihep_like: tuple[Any, SshPair]) -> None:
    _, pair = ihep_like
    report = run_doctor(
        SiteSettings(**pair.client_overrides()),
        "ihep-like",
        DoctorOptions(probe_seconds=1.0, linger_seconds=0.5),
    )
    got = {c.name: c.status for c in report.checks}
    assert report.usable
    assert {k: v for k, v in got.items() if v != "pass"} == {"afs": "warn"}, report
