"""Step 7 (reset.sh) and the step-8 programs of the simulated site."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sim.site import SimSite
from tests.sim.test_site_helpers import SITE_USER, bash

DATE = "250626"
RUNS = [85420, 85421, 85422]


def today() -> str:
    return time.strftime("%y%m%d")


def test_reset_moves_the_files_and_prints_done(sim: SimSite) -> None:
    sim.prepare(DATE)
    base, inj, hist = sim.base(), sim.inj(), sim.hist()
    sp, ck = sim.stage_dir("search_peak"), sim.stage_dir("checkShieldCalib")
    ets, ce = sim.stage_dir("ETS_cut"), sim.stage_dir("check_ETScut_CalibConst")
    for path, text in (
        (sp / "run_85420_3.txt", "job"),
        (sp / "shield_run85420.txt", "85420\n"),
        (ck / "run85421_check.png", "png"),
        (ck / "check.pdf", "pdf"),
        (ets / "plot_ETS_85420.txt", "job"),
        (ets / "run85420_cut.png", "png"),
        (ets / "shield85421.txt", "85421   1.000   2.000\n"),
        (ce / "ETScut_check_85420.txt", "job"),
        (ce / "run85420.png", "png"),
        (ce / "run85420.root", "root"),
    ):
        path.write_text(text)
    res = bash(sim, "./reset.sh", inj, env=False, user=SITE_USER)
    assert res.returncode == 0
    assert res.stdout == "done\n"
    # GNU messages for the globs that matched nothing (plot/ is empty)
    assert "mv: cannot stat 'run*': No such file or directory" in res.stderr
    day = today()
    assert (inj / "InjSigIntervalCal" / day).read_text() == (inj / "interval.txt").read_text()
    assert sorted(p.name for p in (inj / "Interval_plot/tmp").iterdir()) == [
        f"Interval_run{r}.png" for r in RUNS
    ]
    assert list(hist.glob("*.png")) == [] and list(hist.glob("hist*.root")) == []
    assert {f"hist{r}.root" for r in RUNS} <= {p.name for p in (hist / "tmp").iterdir()}
    assert (sp / "tmp/run_85420_3.txt").exists() and (
        sp / "raw_shield/shield_run85420.txt"
    ).exists()
    assert (sp / "time_final" / day).read_text() == (sp / "window.dat").read_text()
    assert (sp / "window.dat").exists() and (ets / "ets_cut.txt").exists()  # only copied
    assert (ck / "tmp/run85421_check.png").exists() and (ck / "tmp/check.pdf").exists()
    assert {p.name for p in (ets / "tmp").iterdir()} == {
        "plot_ETS_85420.txt",
        "run85420_cut.png",
        "shield85421.txt",
    }
    assert (base / "Determining_ETS_cut/ETScutCalibConst" / day).read_text() == (
        ets / "ets_cut.txt"
    ).read_text()
    assert {p.name for p in (ce / "tmp").iterdir()} == {
        "ETScut_check_85420.txt",
        "run85420.png",
        "run85420.root",
    }
    assert (inj / "calibConst/InjSigTime_0085420_720.root").exists()  # not moved
    assert (inj / DATE).is_dir()  # date dirs stay: step 0's "processed"


def test_reset_without_a_directory_acts_in_the_wrong_place(sim: SimSite) -> None:
    """No `set -e`: a missing `cd` target shifts the moves (legacy hazard, reproducible)."""
    (sim.base() / "plot/tmp").rmdir()
    (sim.base() / "plot").rmdir()
    (sim.hist() / "run_stray.txt").write_text("x")
    res = bash(sim, "./reset.sh", sim.inj(), env=False)
    assert res.returncode == 0 and res.stdout == "done\n"
    assert (sim.hist() / "tmp/run_stray.txt").exists()  # moved by plot's `mv run* tmp`


def test_clean_interval_sorts_and_deduplicates(sim: SimSite) -> None:
    inj = sim.inj()
    (inj / "interval.txt").write_text(
        "85421 15000000\n85001 15000000\n85421 15000000\n85002 15000000\n"
    )
    res = bash(sim, "bash clean_interval.sh", inj)
    assert res.returncode == 0 and res.stdout == ""
    assert (inj / "interval.txt").read_text() == "85001 15000000\n85002 15000000\n85421 15000000\n"
    sim.set_faults(script_exit={"clean_interval.sh": 4})
    assert bash(sim, "bash clean_interval.sh", inj).returncode == 4


def run8(sim: SimSite, cwd: Path | str, command: str) -> tuple[int, str, str]:
    res = bash(sim, command, Path(cwd), user=SITE_USER)
    return res.returncode, res.stdout, res.stderr


def test_step8_chain_and_the_db_ledger(sim: SimSite) -> None:
    sim.prepare(DATE)
    paths = sim.settings().paths("round18")
    first, last = "85001", "85422"
    assert run8(sim, paths.inj, "bash clean_interval.sh")[0] == 0
    lines = (Path(paths.inj) / "interval.txt").read_text().splitlines()
    assert lines[0].split()[0] == first and lines[-1].split()[0] == last
    gen = paths.gen_const
    rc, _, err = run8(sim, gen, "g++ -Wall genConst.cpp")
    assert rc == 0 and "warning" not in err
    rc, out, _ = run8(sim, gen, f"./a.out {first}")
    assert rc == 0 and f"InjSigInterval_{first}_{last}.root" in out
    assert run8(sim, gen, "chmod +x copy.sh && ./copy.sh")[0] == 0
    assert run8(sim, paths.const_run_from_run_to, "./rootmove.sh")[0] == 0
    assert (Path(paths.inj_sig_interval_db) / f"InjSigInterval_{first}_{last}.root").exists()
    assert run8(sim, paths.const_run_from_run_to, "./rootmove.sh")[0] != 0  # nothing left

    db = paths.inj_sig_interval_db
    rc, dry, _ = run8(sim, db, f"bash genInsertCmd.sh -runfrom {first} -runto {last} -sub_switch 0")
    assert rc == 0 and "insert into InjSigIntervalCalConst" in dry and "not submitted" in dry
    assert sim.db_ledger() == []  # the dry run submits nothing
    rc, real, _ = run8(
        sim, db, f"bash genInsertCmd.sh -runfrom {first} -runto {last} -sub_switch 1"
    )
    assert rc == 0 and "1 record(s) inserted" in real
    (entry,) = sim.db_ledger()
    assert entry["kind"] == "InjSigInterval" and entry["run_from"] == 85001
    assert entry["file_run_to"] == 85422 and entry["user"] == SITE_USER

    assert run8(sim, paths.calib_const, "./rootmove.sh")[0] == 0
    db_time = paths.inj_sig_time_db
    rc, dry, _ = run8(
        sim, db_time, f"bash genInsertCmd.sh -runfrom {first} -runto {last} -sub_switch 0"
    )
    assert rc == 0 and dry.count("insert into InjSigTimeCalConst") == 5  # 85001, 85002 + 3 runs

    o = Path(paths.offline_evt)
    assert run8(sim, o, "./cp_3files.sh")[0] == 0
    assert {"interval.txt", "window.dat", "ets_cut.txt"} <= {p.name for p in o.iterdir()}
    rc, out, _ = run8(sim, o / "duration_caculate", "./a.out")
    assert rc == 0 and "5 runs" in out
    rc, out, _ = run8(sim, o / "ccompare", "./a.out 2>&1")
    assert rc == 0 and "Error:" not in out
    rc, out, _ = run8(sim, o, f"./a.out 720 {first} {last}")
    assert rc == 0 and out.count("generate OfflineEvtFilter_00") == 5
    assert run8(sim, o / "check", "ls ../OfflineEvtFilter_00*.root > file.txt 2>/dev/null")[0] == 0
    rc, out, _ = run8(sim, o / "check", f"./a.out 720 {first} {last} 2>&1")
    assert rc == 0 and out.strip() == ""  # silent: w720 prints nothing either
    assert run8(sim, o, "./rootmove.sh")[0] == 0
    rc, out, _ = run8(
        sim,
        paths.offline_evt_db,
        f"bash genInsertCmd.sh -runfrom {first} -runto {last} -sub_switch 1",
    )
    assert rc == 0
    assert [e["kind"] for e in sim.db_ledger()] == ["InjSigInterval"] + ["OfflineEvtFilter"] * 5
    assert run8(sim, paths.check_db_alg, "bash reset_root.sh")[0] == 0


def test_ccompare_reports_repeat_order_and_miss(sim: SimSite) -> None:
    o = Path(sim.settings().paths("round18").offline_evt)
    (o / "interval.txt").write_text(
        "85001 15000000\n85003 15000000\n85002 15000000\n85003 15000000\n"
    )
    (o / "window.dat").write_text("85009     0.50     4.20\n")
    (o / "ets_cut.txt").write_text("")
    rc, out, _ = run8(sim, o / "ccompare", "./a.out 2>&1")
    assert rc == 0
    assert "run 85002 Error:  Order" in out
    assert "run 85003 Error:  Repeat" in out
    assert "run 85009 Error:  Miss" in out


def test_check_reports_missing_files(sim: SimSite) -> None:
    o = Path(sim.settings().paths("round18").offline_evt)
    (o / "interval.txt").write_text("85001 15000000\n85002 15000000\n")
    (o / "OfflineEvtFilter_0085001_720.root").write_text("root")
    (o / "check/file.txt").write_text("../OfflineEvtFilter_0085001_720.root\n")
    rc, out, _ = run8(sim, o / "check", "./a.out 720 85001 85002 2>&1")
    assert rc == 0 and "run 85002" in out


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        ({"script_output": {"ccompare/a.out": "run 81235 Error:  Miss"}}, "Error:  Miss"),
        ({"script_exit": {"genInsertCmd.sh:1": 2}}, None),
    ],
)
def test_step8_fault_injection(sim: SimSite, faults: dict, needle: str | None) -> None:
    sim.set_faults(**faults)
    paths = sim.settings().paths("round18")
    o = Path(paths.offline_evt)
    for name in ("interval.txt", "window.dat", "ets_cut.txt"):
        (o / name).write_text("85001 15000000\n" if name == "interval.txt" else "")
    if needle:
        rc, out, _ = run8(sim, o / "ccompare", "./a.out 2>&1")
        assert rc == 0 and needle in out
    else:
        (Path(paths.inj_sig_time_db) / "InjSigTime_0085001_720.root").write_text("root")
        db = paths.inj_sig_time_db
        assert (
            run8(sim, db, "bash genInsertCmd.sh -runfrom 85001 -runto 85001 -sub_switch 0")[0] == 0
        )
        rc, _, err = run8(sim, db, "bash genInsertCmd.sh -runfrom 85001 -runto 85001 -sub_switch 1")
        assert rc == 2 and "simulated failure" in err
        assert sim.db_ledger() == []


def test_geninsert_needs_files_and_valid_arguments(sim: SimSite) -> None:
    db = sim.settings().paths("round18").offline_evt_db
    rc, out, _ = run8(sim, db, "bash genInsertCmd.sh -runfrom 85001 -runto 85002 -sub_switch 0")
    assert rc != 0 and "no OfflineEvtFilter constant file" in out
    rc, out, _ = run8(sim, db, "bash genInsertCmd.sh -runfrom x -runto 85002 -sub_switch 1")
    assert rc != 0 and "Usage" in out
    assert sim.db_ledger() == []
