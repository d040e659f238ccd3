"""Steps 3-6 and the SL6 container on the simulated site, with the legacy command lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sim.site import SimSite
from tests.sim.test_site_helpers import (
    SITE_USER,
    bash,
    container_convert,
    fast,
    pdf_pages,
    pdf_title,
    png_size,
    runs_of,
    wait_for,
)

DATE = "250626"  # runs 85420-85422
RUNS = [85420, 85421, 85422]
NOISE = 85421


@pytest.fixture
def ready(sim: SimSite) -> SimSite:
    """The state after steps 1-2 for DATE; 85421 is the run with 50 Hz noise."""
    fast(sim, noise_runs=[NOISE])
    sim.prepare(DATE)
    return sim


def submit_stage(sim: SimSite, stage: str) -> list[str]:
    res = bash(sim, "./genJob.sh", sim.stage_dir(stage), user=SITE_USER)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def logs_done(d: Path, jobfile: str) -> bool:
    return bool(list(d.glob(f"{jobfile}.out.*"))) and bool(list(d.glob(f"{jobfile}.err.*")))


def test_prepare_fabricates_the_state_after_step2(sim: SimSite) -> None:
    sim.prepare(DATE)
    inj = sim.inj()
    assert (
        (inj / "interval.txt")
        .read_text()
        .endswith("85420 15000000\n85421 15000000\n85422 15000000\n")
    )
    assert len((inj / DATE / "Interval_run85421.txt").read_bytes()) == 179
    assert png_size(inj / "Interval_plot/Interval_run85420.png") == (996, 772)
    assert (inj / "calibConst/InjSigTime_0085422_720.root").is_file()
    assert sorted(p.name for p in sim.hist().glob("hist*.root")) == [f"hist{r}.root" for r in RUNS]
    assert png_size(sim.hist() / "check85421.png") == (1796, 772)
    assert (sim.base() / DATE / "85420/rec85420_4").is_file()


def test_step3_search_peak_and_add(ready: SimSite) -> None:
    sp = ready.stage_dir("search_peak")
    lines = submit_stage(ready, "search_peak")
    assert lines[-2:] == ["Total = 3 files", "DONE"]
    assert [int(x) for x in lines if x.isdigit()] == RUNS
    job = (sp / "run_85420_3.txt").read_text()
    assert job == f"{sp}/a.out {ready.hist()}/ 85420 \n"  # hist path with its slash, trailing space
    assert runs_of([s["jobfile"] for s in ready.submissions()], r"run_(\d+)_3\.txt") == RUNS
    assert {s["kind"] for s in ready.submissions()} == {"hep_sub"}
    wait_for(lambda: all(logs_done(sp, f"run_{r}_3.txt") for r in RUNS))
    assert (sp / "shield_run85420.txt").read_text() == "85420\n"
    noisy = (sp / f"shield_run{NOISE}.txt").read_text()
    assert re.fullmatch(rf"{NOISE}( {{5}}\d+\.\d\d){{6}}\n", noisy)
    assert (sp / f"run{NOISE}.root").exists() and not (sp / "run85420.root").exists()
    (out,) = sp.glob("run_85420_3.txt.out.*")
    assert "This is a non-topup run" in out.read_text()
    before = (sp / "window.dat").read_text()
    add = bash(ready, "./add.sh", sp, env=False, user=SITE_USER)
    assert add.returncode == 0, add.stderr
    appended = (sp / "window.dat").read_text()[len(before) :]
    assert appended == "85420\n" + noisy + "85422\n"  # lexical glob order
    clean = bash(
        ready,
        r"sed '/^[0-9]\+$/d' window.dat > window.dat.tmp && mv window.dat.tmp window.dat",
        sp,
        env=False,
    )
    assert clean.returncode == 0
    assert (sp / "window.dat").read_text() == before + noisy


def test_step3_job_without_hist_leaves_an_empty_shield(ready: SimSite) -> None:
    sp = ready.stage_dir("search_peak")
    (ready.hist() / "hist85499.root").write_text("")  # an empty ntuple: cannot be read
    submit_stage(ready, "search_peak")
    wait_for(lambda: logs_done(sp, "run_85499_3.txt"))
    assert (sp / "shield_run85499.txt").stat().st_size == 0
    (out,) = sp.glob("run_85499_3.txt.out.*")
    assert "can not access the file" in out.read_text()


def test_add_scripts_fail_without_inputs(sim: SimSite) -> None:
    assert bash(sim, "./add.sh", sim.stage_dir("search_peak"), env=False).returncode != 0
    ets = sim.stage_dir("ETS_cut")
    assert bash(sim, "./add_shield.sh", ets, env=False).returncode != 0
    (ets / "ets_cut.txt").unlink()
    (ets / "shield85421.txt").write_text("85421   1.000   2.000\n")
    assert bash(sim, "./add_shield.sh", ets, env=False).returncode == 0
    assert (ets / "ets_cut.txt").read_text() == "85421   1.000   2.000\n"  # created


def test_step4_plots_only_for_runs_with_windows(ready: SimSite) -> None:
    sp = ready.stage_dir("search_peak")
    with open(sp / "window.dat", "a") as fh:
        fh.write(f"{NOISE}     0.50     4.20     21.80     22.40\n")
    d = ready.stage_dir("checkShieldCalib")
    lines = submit_stage(ready, "checkShieldCalib")
    assert lines[-2:] == ["Total = 3 files", "DONE"]
    assert not [x for x in lines if x.isdigit()]  # no per-run echo in this generator
    assert (d / "run_85420_4.txt").read_text() == f"{d}/a.out {ready.hist()} 85420 \n"
    wait_for(lambda: all(logs_done(d, f"run_{r}_4.txt") for r in RUNS))
    kinds = ("cut_detail", "after_cut", "before_cut", "check")
    assert sorted(p.name for p in d.glob("*.png")) == sorted(f"run{NOISE}_{k}.png" for k in kinds)
    (out,) = d.glob(f"run_{NOISE}_4.txt.out.*")
    assert "remove ratio:" in out.read_text()
    res = container_convert(ready, d, [f"convert *{k}.png {k}.pdf" for k in kinds])
    assert res.returncode == 0, res.stderr
    for k in kinds:
        assert pdf_pages(d / f"{k}.pdf") == [png_size(d / f"run{NOISE}_{k}.png")]


def test_step5_ets_cut_add_shield_and_tidy(ready: SimSite) -> None:
    d = ready.stage_dir("ETS_cut")
    lines = submit_stage(ready, "ETS_cut")
    assert lines[-2:] == ["Total = 3 files", "DONE"]
    assert (d / "plot_ETS_85420.txt").stat().st_mode & 0o777 == 0o755
    wait_for(lambda: all(logs_done(d, f"plot_ETS_{r}.txt") for r in RUNS))
    for r in RUNS:
        assert png_size(d / f"run{r}_cut.png") == (1196, 672)
        assert png_size(d / f"run{r}_total.png") == (1296, 672)
    assert sorted(p.name for p in d.glob("shield*")) == [f"shield{NOISE}.txt"]
    assert sorted(p.name for p in d.glob("run*.root")) == [f"run{NOISE}.root"]
    shield = (d / f"shield{NOISE}.txt").read_text()
    assert re.fullmatch(rf"{NOISE}( {{3}}\d+\.\d{{3}}){{4}}\n", shield)
    assert bash(ready, "./add_shield.sh", d, env=False).returncode == 0
    assert (d / "ets_cut.txt").read_text() == "85001   1200.500   1201.700\n" + shield
    res = container_convert(ready, d, ["convert ./run*.png mergedd_ETS_raw.pdf"])
    assert res.returncode == 0, res.stderr
    pages = pdf_pages(d / "mergedd_ETS_raw.pdf")
    assert pages == [(1196, 672), (1296, 672)] * 3  # per run: cut then total
    assert pdf_title(d / "mergedd_ETS_raw.pdf") == "mergedd_ETS_raw"


def test_step6_check_and_windows_label(ready: SimSite) -> None:
    ets = ready.stage_dir("ETS_cut")
    (ets / "ets_cut.txt").write_text(f"{NOISE}   10.000   11.000   20.000   21.000\n")
    d = ready.stage_dir("check_ETScut_CalibConst")
    lines = submit_stage(ready, "check_ETScut_CalibConst")
    assert lines[-1] == "DONE" and not any(line.startswith("Total") for line in lines)
    wait_for(lambda: all(logs_done(d, f"ETScut_check_{r}.txt") for r in RUNS))
    for r in RUNS:
        assert png_size(d / f"run{r}.png") == (1496, 1172)
        assert (d / f"run{r}.root").stat().st_size > 0
    (out,) = d.glob(f"ETScut_check_{NOISE}.txt.out.*")
    assert "windows:2" in out.read_text()
    (out0,) = d.glob("ETScut_check_85420.txt.out.*")
    assert "windows:0" in out0.read_text()
    (err,) = d.glob(f"ETScut_check_{NOISE}.txt.err.*")
    assert f"png file run{NOISE}.png has been created" in err.read_text()


def test_step6_without_ets_cut_file_writes_nothing(ready: SimSite) -> None:
    (ready.stage_dir("ETS_cut") / "ets_cut.txt").unlink()
    d = ready.stage_dir("check_ETScut_CalibConst")
    submit_stage(ready, "check_ETScut_CalibConst")
    wait_for(lambda: all(logs_done(d, f"ETScut_check_{r}.txt") for r in RUNS))
    assert list(d.glob("run*")) == []
    (out,) = d.glob("ETScut_check_85420.txt.out.*")
    assert "ERROR: Cannot open" in out.read_text()


@pytest.mark.parametrize("stage", ["3", "5"])
def test_stage_faults_empty_output_and_never_finish(ready: SimSite, stage: str) -> None:
    name = {"3": "search_peak", "5": "ETS_cut"}[stage]
    job = {"3": "run_{r}_3.txt", "5": "plot_ETS_{r}.txt"}[stage]
    ready.set_faults(empty_output={stage: [NOISE]}, never_finish={stage: [85422]})
    d = ready.stage_dir(name)
    submit_stage(ready, name)
    wait_for(lambda: logs_done(d, job.format(r=NOISE)) and logs_done(d, job.format(r=85420)))
    outputs = [
        p for p in d.iterdir() if str(NOISE) in p.name and p.suffix in (".txt", ".png", ".root")
    ]
    outputs = [
        p
        for p in outputs
        if ".out." not in p.name and ".err." not in p.name and p.name != job.format(r=NOISE)
    ]
    assert outputs and all(p.stat().st_size == 0 for p in outputs)
    # (a finished job leaves hep_q a moment after its logs appear)
    wait_for(lambda: [j["jobfile"] for j in ready.active_jobs()] == [job.format(r=85422)])
    q = bash(ready, "hep_q -u topup", d)
    assert job.format(r=85422) in q.stdout


def test_container_merges_pngs_into_one_pdf(ready: SimSite) -> None:
    plot = ready.inj() / "Interval_plot"
    res = container_convert(ready, plot, ["convert *.png mergedd_IST.pdf"])
    assert res.returncode == 0, res.stderr
    pdf = plot / "mergedd_IST.pdf"
    assert pdf_pages(pdf) == [(996, 772)] * 3
    assert pdf_title(pdf) == "mergedd_IST"
    assert b"ImageMagick 6.7.2-7" in pdf.read_bytes()
    # the image stream is the PNG's own IDAT data (FlateDecode with PNG predictors)
    png = (plot / "Interval_run85420.png").read_bytes()
    assert b"/Predictor 15" in pdf.read_bytes()
    idat = png[png.index(b"IDAT") + 4 : png.index(b"IDAT") + 64]
    assert idat in pdf.read_bytes()
    # explicit file list, as our merge steps use it: only these pages, in that order
    res = container_convert(
        ready, ready.hist(), ["convert check85422.png check85420.png mergedd_Hist.pdf"]
    )
    assert res.returncode == 0
    assert pdf_pages(ready.hist() / "mergedd_Hist.pdf") == [(1796, 772)] * 2


def test_container_failures(ready: SimSite) -> None:
    d = ready.stage_dir("checkShieldCalib")
    res = container_convert(ready, d, ["convert *check.png check.pdf"])
    assert res.returncode != 0
    assert "unable to open image" in res.stderr and not (d / "check.pdf").exists()
    plot = ready.inj() / "Interval_plot"
    ready.set_faults(container_exit=3)
    res = container_convert(ready, plot, ["convert *.png mergedd_IST.pdf"])
    assert res.returncode == 3
    assert pdf_pages(plot / "mergedd_IST.pdf") == [(996, 772)] * 3  # it ran, then exited 3
    ready.set_faults(container_exit=None)
    partial = container_convert(ready, plot, ["convert Interval_run85420.png missing.png two.pdf"])
    assert partial.returncode == 1  # like ImageMagick: error, but the PDF of what it read
    assert pdf_pages(plot / "two.pdf") == [(996, 772)]
    usage = bash(ready, f"{ready.container_cmd} run", plot, env=False)
    assert usage.returncode != 0
