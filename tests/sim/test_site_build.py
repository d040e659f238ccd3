"""The builder lays out the real site's paths, scripts, data and pre-existing state."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from pydantic import ValidationError

from sim.layout import DEFAULT_RUNS, DateSpec, SiteLayout, default_layout, generated_layout
from sim.site import SimSite, SiteBuildError, build_site
from steps.config import SiteSettings
from tests.sim.test_site_helpers import SITE_USER, bash


def test_settings_point_into_the_tree(sim: SimSite) -> None:
    settings = sim.settings(transport="local")
    assert isinstance(settings, SiteSettings)
    assert settings.transport == "local"
    root = str(sim.root)
    for value in (
        settings.topup_root,
        settings.data_root,
        settings.env_script,
        settings.container_cmd,
        settings.calib_const_root,
        settings.check_db_alg_dir,
        settings.control_dir,
    ):
        assert value.startswith(root + "/")
    paths = settings.paths("round18")
    for attr in (
        "inj",
        "hist",
        "data",
        "calib_const",
        "interval_plot",
        "search_peak",
        "check_shield",
        "ets_cut",
        "check_ets_cut",
        "gen_const",
        "const_run_from_run_to",
        "offline_evt",
        "inj_sig_interval_db",
        "inj_sig_time_db",
        "offline_evt_db",
        "check_db_alg",
    ):
        assert Path(getattr(paths, attr)).is_dir(), attr
    assert Path(settings.container_cmd).is_file()
    ssh = sim.settings(transport="ssh", login={"host": "127.0.0.1", "port": 2222})
    assert ssh.transport == "ssh" and ssh.login.port == 2222
    assert ssh.topup_root == settings.topup_root


def test_data_dates_and_runs(sim: SimSite) -> None:
    data = sim.data("round18")
    assert sorted(p.name for p in data.iterdir()) == [
        "250101",
        "250624",
        "250625",
        "250626",
        "250627",
    ]
    raws = sorted(p.name for p in (data / "250624").iterdir())
    assert len(raws) == 19 * 5
    runs = sorted({int(name[6:11]) for name in raws})  # what genJob.sh extracts
    assert runs == list(DEFAULT_RUNS)
    assert "run_0085383_BBhabha_file001_SFO-1.raw" in raws
    assert list((data / "250627").iterdir()) == []
    assert sorted(p.name for p in sim.data("round17").iterdir()) == ["240501", "240502"]
    assert len(list((sim.data("round17") / "240502").iterdir())) == 15


def test_pre_existing_state(sim: SimSite) -> None:
    inj = sim.inj()
    for name in ("genJob.sh", "temp.txt", "reset.sh", "clean_interval.sh", "interval.txt"):
        assert (inj / name).is_file(), name
    for name in ("calibConst", "Interval_plot/tmp", "InjSigIntervalCal", "250101"):
        assert (inj / name).is_dir(), name
    assert (inj / "interval.txt").read_text() == "85001 15000000\n85002 15000000\n"
    assert (inj / "calibConst/InjSigTime_0085001_720.root").is_file()
    base = sim.base()
    for name in ("genJob.sh", "temp.txt", "hist/01go.sh", "hist/drawcheck.c"):
        assert (base / name).is_file(), name
    for name in ("hist/tmp", "plot/tmp", "Determining_ETS_cut/ETScutCalibConst"):
        assert (base / name).is_dir(), name
    for stage in ("search_peak", "checkShieldCalib", "ETS_cut", "check_ETScut_CalibConst"):
        d = sim.stage_dir(stage)
        assert os.access(d / "genJob.sh", os.X_OK) and os.access(d / "a.out", os.X_OK)
        assert (d / "tmp").is_dir()
    sp = sim.stage_dir("search_peak")
    assert (sp / "add.sh").is_file() and (sp / "raw_shield").is_dir()
    assert (sp / "time_final").is_dir()
    assert (sp / "window.dat").read_text().startswith("85001     0.50")
    assert (sim.stage_dir("ETS_cut") / "add_shield.sh").is_file()
    assert (sim.stage_dir("ETS_cut") / "ets_cut.txt").read_text() == "85001   1200.500   1201.700\n"
    gen = base / "sub_database/InjSigInterval/genConst"
    assert (gen / "genConst.cpp").is_file() and (gen / "copy.sh").is_file()
    assert (gen / "const_runForm_runTo/rootmove.sh").is_file()
    off = base / "sub_database/OfflineEvtFilter"
    for rel in ("cp_3files.sh", "rootmove.sh", "a.out", "duration_caculate/a.out"):
        assert os.access(off / rel, os.X_OK), rel
    for rel in ("ccompare/a.out", "check/a.out"):
        assert os.access(off / rel, os.X_OK), rel
    paths = sim.settings().paths("round18")
    for db in (paths.inj_sig_interval_db, paths.inj_sig_time_db, paths.offline_evt_db):
        assert (Path(db) / "genInsertCmd.sh").is_file()
    assert (Path(paths.check_db_alg) / "reset_root.sh").is_file()
    # round17 has its own complete tree, without processed dates
    assert (sim.inj("round17") / "genJob.sh").is_file()
    assert (sim.inj("round17") / "interval.txt").read_text() == ""


def test_env_script_is_silent_and_sets_the_environment(sim: SimSite) -> None:
    res = bash(sim, 'echo "R=$ROUND_NUMBER"; command -v boss.condor hep_sub hep_q hep_rm', sim.root)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "R=18"
    assert all(line.startswith(str(sim.bin_dir) + "/") for line in lines[1:])
    assert len(lines) == 5
    silent = bash(sim, "true", sim.root)
    assert silent.stdout == "" and silent.stderr == ""
    twice = bash(sim, f"source {sim.env_script} && echo $PATH", sim.root)
    assert twice.stdout.count(str(sim.bin_dir)) == 1


def test_tree_belongs_to_the_site_user(sim: SimSite) -> None:
    try:
        user = pwd.getpwnam(SITE_USER)
    except KeyError:
        pytest.skip("no site user on this machine")
    for path in (sim.root, sim.inj(), sim.state_dir / "batch/counter", sim.control_dir):
        assert path.stat().st_uid == user.pw_uid, path
    # the site user can really write where the steps write
    res = bash(
        sim, "touch probe && rm probe && mkdir 999999 && rmdir 999999", sim.inj(), user=SITE_USER
    )
    assert res.returncode == 0, res.stderr


def test_layout_validation() -> None:
    with pytest.raises(ValidationError):
        DateSpec(date="2506241", runs=[])
    with pytest.raises(ValidationError):
        DateSpec(date="250624", runs=[1234567])
    with pytest.raises(ValidationError):
        DateSpec(date="250624", runs=[9999])
    # 6-digit runs are allowed: they reproduce the site scripts' 5-character cut
    assert DateSpec(date="250624", runs=[123456]).runs == [123456]
    layout = default_layout()
    dup = layout.model_copy(update={"rounds": [layout.rounds[0], layout.rounds[0]]})
    with pytest.raises(ValidationError):
        SiteLayout.model_validate(dup.model_dump())


def test_unsuitable_roots_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SiteBuildError):
        build_site(tmp_path / "with space")
    with pytest.raises(SiteBuildError):
        build_site(tmp_path / "RUNNO")  # would be rewritten by the generators' sed
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(SiteBuildError):
        build_site(tmp_path / "full")


def test_large_generated_layout_builds(tmp_path: Path) -> None:
    layout = generated_layout(rounds=4, dates_per_round=20, runs_per_date=5)
    assert [r.name for r in layout.rounds] == ["round18", "round17", "round16", "round15"]
    site = build_site(tmp_path / "big", layout)
    for rnd in layout.rounds:
        dates = sorted(p.name for p in site.data(rnd.name).iterdir())
        assert len(dates) == 20
        assert (site.inj(rnd.name) / "genJob.sh").is_file()
    first = layout.rounds[0].dates[0]
    assert len(list(site.data("round18", first.date).iterdir())) == 5 * 5
    assert SimSite.open(site.root).layout == layout
