"""PNG plots of a date's summary and of a round's trends (matplotlib, Agg backend).

Why in one place: the flow's artifacts, the facade's PNG routes and the docs' screenshots
draw the same pictures from the same views (``store.physics``). No display is needed.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, safe in worker processes and threads

from matplotlib.figure import Figure  # noqa: E402

from store.physics import EXPECTED_IST, DateSummary, RoundTrends  # noqa: E402

DPI = 80
OK, ODD, DB, OTHER, CURRENT = "#2b6cb0", "#c53030", "#2f855a", "#a0aec0", "#dd6b20"
# Figure objects are independent, but matplotlib's font cache and text layout are shared:
# one drawing at a time keeps the facade's threadpool from racing on them.
_draw = threading.Lock()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with _draw:
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _spans(ax: Any, x: float, windows: list[list[float]] | None, color: str, width: float) -> None:
    """One vertical bar per [lo, hi] window at ``x``, with a marker at its middle: a window of
    a second on a scale of half an hour would otherwise be thinner than a pixel."""
    for lo, hi in windows or []:
        ax.vlines(x, lo, hi, colors=color, linewidth=width)
    mids = [(lo + hi) / 2 for lo, hi in windows or []]
    ax.plot([x] * len(mids), mids, "D", color=color, ms=width + 1, linestyle="none")


def summary_png(summary: DateSummary) -> bytes:
    """Three panels over the date's runs: IST values, 50 Hz windows, ETS cuts; runs that
    go to the database in green on the axis, runs with an anomaly in red."""
    runs = summary.runs
    fig = Figure(figsize=(max(8.0, 0.45 * len(runs) + 2), 8), layout="constrained")
    ist_ax, win_ax, cut_ax = fig.subplots(3, 1, sharex=True)
    xs = list(range(len(runs)))
    for x, r in zip(xs, runs, strict=True):
        color = ODD if r.anomalies else OK
        values = [v for v in (r.ist or {}).values() if v is not None]
        ist_ax.plot([x] * len(values), [v / 1e6 for v in values], "o", color=color, ms=5)
        _spans(win_ax, x, r.windows, color, 6)
        _spans(cut_ax, x, r.ets_cuts, color, 6)
    ist_ax.axhline(EXPECTED_IST / 1e6, color=OTHER, linestyle="--", linewidth=1)
    ist_ax.set_ylabel("IST (10⁶)")
    win_ax.set_ylabel("50 Hz windows (ms)")
    cut_ax.set_ylabel("ETS cuts (s)")
    fig.suptitle(
        f"{summary.round} {summary.date}: {len(runs)} runs, "
        f"{len(summary.runs_to_database)} to the database, {summary.anomalies} with anomalies"
        + (f" ({summary.status})" if summary.status else "")
    )
    cut_ax.set_xticks(xs, [str(r.run) for r in runs], rotation=60, fontsize=8)
    for label, r in zip(cut_ax.get_xticklabels(), runs, strict=True):
        label.set_color(ODD if r.anomalies else (DB if r.to_database else OTHER))
    if not runs:
        ist_ax.text(0.5, 0.5, "no numbers recorded yet", ha="center", transform=ist_ax.transAxes)
    return _png(fig)


def trends_png(trends: RoundTrends) -> bytes:
    """Windows and cuts per run against the run number, every date of the round, the
    highlighted (current) date in orange."""
    fig = Figure(figsize=(11, 7), layout="constrained")
    win_ax, cut_ax = fig.subplots(2, 1, sharex=True)
    for p in trends.points:
        current = p.date == trends.highlight
        color, width = (CURRENT, 3.0) if current else (OTHER, 2.0)
        _spans(win_ax, p.run, p.windows, color, width)
        _spans(cut_ax, p.run, p.ets_cuts, color, width)
    win_ax.set_ylabel("50 Hz windows (ms)")
    cut_ax.set_ylabel("ETS cuts (s)")
    cut_ax.set_xlabel("run")
    cut_ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    fig.suptitle(
        f"{trends.round}: {len(trends.dates)} dates, {len(trends.points)} runs"
        + (f"; {trends.highlight} highlighted" if trends.highlight else "")
    )
    handles = [
        win_ax.plot([], [], color=CURRENT, linewidth=3, label=trends.highlight or "current")[0],
        win_ax.plot([], [], color=OTHER, linewidth=2, label="other dates")[0],
    ]
    win_ax.legend(handles=handles, loc="upper right", fontsize=8)
    if not trends.points:
        win_ax.text(0.5, 0.5, "no numbers recorded yet", ha="center", transform=win_ax.transAxes)
    return _png(fig)
