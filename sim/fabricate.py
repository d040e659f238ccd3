"""Fabricated stage state: what a date's files look like after steps 1.1-1.3 or 1-2.4.

Why: tests of later steps start from that state without running the earlier jobs; the earlier
steps are covered by running the real scripts. ``SimSite.prepare`` calls ``prepare_date``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sim.tree_files import put, simimg

if TYPE_CHECKING:
    from sim.site import SimSite


def prepare_date(
    site: SimSite, date: str, round: str = "round18", through: Literal["1", "2"] = "2"
) -> None:
    """Fabricate, without running jobs, the state a date has after steps 1.1-1.3
    (``through="1"``: ``INJ/{date}`` with job files, logs and Interval files, the IST
    files in calibConst, the interval plots in Interval_plot, the ``{run} 15000000``
    lines in interval.txt) or after steps 1-2.4 (``"2"``: also ``BASE/{date}`` with its
    job files, ``HIST/hist{run}.root`` and ``HIST/check{run}.png``).

    For tests of later steps; earlier steps are covered by running the real scripts.
    Files get the tree owner's uid, like files written over SSH.
    """
    img = simimg()
    runs = site.runs(round, date)
    if not runs:
        raise ValueError(f"{round}/{date} has no runs")
    bosse = site.layout.bosse
    inj = site.inj(round)
    day = inj / date
    day.mkdir(exist_ok=True)
    made: list[Path] = [day]
    for run in runs:
        made += [
            put(day / f"rec{run}_1.txt", f"// first-pass job options of run {run}\n", 0o755),
            put(day / f"rec{run}_1.txt.bosslog", "ApplicationMgr Stopped successfully\n"),
            put(
                day / f"rec{run}_1.txt.bosserr",
                "Error in <TGraphPainter::PaintGraph>: illegal number of points (0)\n"
                f"Info in <TCanvas::Print>: png file Interval_run{run}.png has been created\n",
            ),
            put(day / f"Interval_run{run}.txt", _interval_text(run)),
            put(inj / "calibConst" / f"InjSigTime_00{run}_{bosse}.root", f"root IST {run}\n"),
            put(
                inj / "Interval_plot" / f"Interval_run{run}.png",
                img.plot_png(996, 772, run, f"Interval run{run}", salt=1),
            ),
        ]
    with open(inj / "interval.txt", "a") as fh:
        fh.write("".join(f"{run} 15000000\n" for run in runs))
    if through == "2":
        second = site.base(round) / date
        second.mkdir(exist_ok=True)
        made.append(second)
        hist = site.hist(round)
        for run in runs:
            run_dir = second / str(run)
            run_dir.mkdir(exist_ok=True)
            made.append(run_dir)
            for i in range(len(site.layout.streams)):
                made.append(put(run_dir / f"rec{run}_{i}", f"// job {run} {i}\n", 0o755))
                made.append(
                    put(
                        run_dir / f"rec{run}_{i}.bosslog",
                        "Application Manager Terminated successfully\n",
                    )
                )
                made.append(put(run_dir / f"rec{run}_{i}.bosserr", ""))
            made.append(put(hist / f"hist{run:05d}.root", f"root merged ntuple {run}\n" * 64))
            made.append(
                put(
                    hist / f"check{run}.png",
                    img.plot_png(1796, 772, run, f"run{run}", panels=3),
                )
            )
        made.append(put(second / "mergeHist.sh", "", 0o755))
    owner = site.root.stat()
    for path in made:
        os.chown(path, owner.st_uid, owner.st_gid)


def _interval_text(run: int, value: int = 15000000) -> str:
    names = ("interval_before_sorting", "interval_From_DB", "interval_after_sorting")
    return f"{run:>25}\n" + "".join(f"{n:>25}{value:>25}\n" for n in names)
