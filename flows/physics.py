"""Physics at a glance: keep the numbers the steps read, publish the date's summary and the
round's trends as Prefect artifacts.

Why: an operator spots a bad run or a drifting detector from IST, the 50 Hz windows and the
ETS cuts, not from PDFs. Steps 1.3, 3.2 and 5.2 already parse them (``StepResult.data``);
``record`` stores them (``store.physics``) and ``publish`` draws the summary (Markdown table
plus PNG) and the trend plot once a producing step has run. A drawing failure is logged and
never fails the run: the numbers stay in the store and the facade can draw them later.
"""

from __future__ import annotations

import base64
from typing import Any

from prefect.artifacts import MarkdownArtifact

from flows.recording import RunRecord, artifact_key
from steps.results import StepResult
from steps.step_log import step_logger
from store import physics

# The steps whose results carry physics numbers, and what each one carries.
PRODUCERS = {"step1_3": "ist", "step3_2": "windows", "step5_2": "ets_cuts"}


def _runs(result: StepResult) -> list[int]:
    return sorted({*result.runs_complete, *result.runs_incomplete})


def _per_run(values: dict[str, Any]) -> dict[int, Any]:
    return {int(r): v for r, v in values.items() if str(r).isdigit()}


def record(rec: RunRecord, task_name: str, result: StepResult) -> bool:
    """Store the numbers of a producing step; True when something was recorded."""
    kind = PRODUCERS.get(task_name)
    data = result.data or {}
    date = result.date or rec.date
    if kind is None or date is None or kind not in data:
        return False
    values = _per_run(data[kind])
    if kind == "ist":
        registered = [*data.get("appended_runs", []), *data.get("already_present_runs", [])]
        physics.record_ist(rec.round, date, rec.flow_run_id, values, registered)
    elif kind == "windows":
        # a run whose shield file is missing stays unknown (None), not "no window"
        missing = {int(r) for r in data.get("shield_runs_missing", [])}
        runs = [r for r in (_runs(result) or sorted(values)) if r not in missing]
        physics.record_windows(rec.round, date, rec.flow_run_id, runs, values)
    else:
        # 5.2 lists only the runs with a shield file; the others of the date have no cut
        known = [r.run for r in physics.rows(rec.round, date)]
        runs = sorted({*known, *_runs(result), *values})
        physics.record_ets_cuts(rec.round, date, rec.flow_run_id, runs, values)
    return True


def _pairs(windows: list[list[float]] | None, digits: int) -> str:
    if windows is None:
        return "–"
    return ", ".join(f"{lo:.{digits}f}–{hi:.{digits}f}" for lo, hi in windows) or "none"


# The IST column's order (step 1.3's field names).
IST_COLUMNS = ("interval_From_DB", "interval_before_sorting", "interval_after_sorting")


def _ist(values: dict[str, int | None] | None) -> str:
    if not values:
        return "–"
    shown = [values.get(k) for k in IST_COLUMNS]
    return " / ".join("?" if v is None else str(v) for v in shown)


def data_uri(png: bytes) -> str:
    """A PNG inside the Markdown itself: the artifact needs no link the browser can't open."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def summary_markdown(summary: physics.DateSummary, image: str | None) -> str:
    """The date's table (one row per run), then the plot (``image``: a data URI or a link)."""
    head = (
        f"# Physics of {summary.round} {summary.date}\n\n"
        f"{len(summary.runs)} runs, **{len(summary.runs_to_database)} to the database**, "
        f"{summary.anomalies} with anomalies"
        + (f"; date status **{summary.status}**" if summary.status else "")
        + f". IST expected {summary.expected_ist} (interval from DB / before sorting / "
        "after sorting); windows in ms (window.dat), ETS cuts in s (ets_cut.txt).\n\n"
        "| run | IST | 50 Hz windows (ms) | ETS cuts (s) | to database | anomalies |\n"
        "|---|---|---|---|---|---|\n"
    )
    rows = "".join(
        f"| {r.run} | {_ist(r.ist)} | {_pairs(r.windows, 2)} | {_pairs(r.ets_cuts, 3)} | "
        f"{'yes' if r.to_database else 'no'} | {'; '.join(r.anomalies) or '–'} |\n"
        for r in summary.runs
    )
    return head + rows + (f"\n![physics of {summary.date}]({image})\n" if image else "")


def trends_markdown(trends: physics.RoundTrends, image: str | None) -> str:
    text = (
        f"# Trends of {trends.round}\n\n50 Hz windows and ETS cuts per run against the run "
        f"number, {len(trends.dates)} dates ({', '.join(trends.dates)}); "
        f"**{trends.highlight}** highlighted.\n"
    )
    return text + (f"\n![trends of {trends.round}]({image})\n" if image else "")


def publish(rec: RunRecord, trends: bool = True) -> None:
    """The date's summary artifact, and the round's trend artifact (same keys each time, so
    the UI keeps their history). Drawn in the artifact thread: matplotlib takes a few hundred
    milliseconds a picture, which the steps need not wait for."""
    if rec.date is None:
        return
    round_, date, summary_key = rec.round, rec.date, rec.key("physics-summary")

    def build() -> list[MarkdownArtifact]:
        try:
            from store import physics_plots  # matplotlib only where a picture is drawn

            summary = physics.date_summary(round_, date)
            built = [
                MarkdownArtifact(
                    markdown=summary_markdown(
                        summary, data_uri(physics_plots.summary_png(summary))
                    ),
                    key=summary_key,
                    description=f"physics of {date}: IST, windows, ETS cuts, runs to the database",
                )
            ]
            if trends:
                view = physics.round_trends(round_, highlight=date)
                built.append(
                    MarkdownArtifact(
                        markdown=trends_markdown(view, data_uri(physics_plots.trends_png(view))),
                        key=artifact_key(round_, "physics-trends"),
                        description=f"{round_}: windows and cuts per run across dates",
                    )
                )
            return built
        except Exception as exc:  # a picture must never stop the procedure
            step_logger().warning("physics summary not published: %s", type(exc).__name__)
            return []

    rec.sender.create_built(f"physics summary of {date}", build)


def after_step(rec: RunRecord, task_name: str, result: StepResult) -> None:
    """Called for every recorded step result: keep its numbers, then publish."""
    try:
        recorded = record(rec, task_name, result)
    except Exception as exc:
        step_logger().warning("physics numbers of %s not kept: %s", task_name, type(exc).__name__)
        return
    if recorded:
        publish(rec, trends=task_name != "step1_3")


def publish_final(rec: RunRecord) -> None:
    """At the run's end: the summary once more, now with the date's final status (verified,
    unverified, failed), when this run recorded numbers of its date."""
    try:
        mine = rec.date is not None and any(
            r.flow_run_id == rec.flow_run_id for r in physics.rows(rec.round, rec.date)
        )
    except Exception as exc:
        step_logger().warning("physics summary not published: %s", type(exc).__name__)
        return
    if mine:
        publish(rec, trends=False)
