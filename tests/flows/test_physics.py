"""Physics at a glance, end to end: two dates of round18 run for real (Prefect API, sshd,
simulated site); the date summary artifact, then the facade's summary and trends over real
HTTP, every number checked against the simulated site's own files (Interval_run{run}.txt,
window.dat, ets_cut.txt), read directly here.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

from PIL import Image
from prefect import get_client, tags
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL

from flows.recording import artifact_key
from flows.topup_standard import topup_standard
from tests.facade.served import local_settings, serve, wait_for
from tests.flows.conftest import FAST, ROUND, FlowEnv

DATES = {"250625": [85410, 85411, 85412, 85413, 85414], "250626": [85420, 85421, 85422]}
NOISE = [85411, 85413, 85421]  # runs that get 50 Hz windows and ETS cuts
USER = "carol"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- the site's own files
def site_ist(sim: Any, date: str, run: int) -> dict[str, int]:
    text = (sim.inj(ROUND) / date / f"Interval_run{run}.txt").read_text()
    return {m[0]: int(m[1]) for m in re.findall(r"(interval_\w+)\s+(\d+)", text)}


def first_lines(path: Path) -> dict[int, list[list[float]]]:
    """The first line of each run, as the checkers read it, as [lo, hi] pairs."""
    out: dict[int, list[list[float]]] = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) > 1 and f[0].isdigit() and int(f[0]) not in out:
            v = [float(x) for x in f[1:]]
            out[int(f[0])] = [[a, b] for a, b in zip(v[0::2], v[1::2], strict=True)]
    return out


def check_png(data: bytes) -> None:
    assert data.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
        assert img.format == "PNG" and img.size[0] > 100


def latest_markdown(key: str) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key}"
    return str(max(found, key=lambda a: a.created).data)  # type: ignore[arg-type, return-value]


def embedded_png(markdown: str) -> bytes:
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert m, "no embedded PNG"
    return base64.b64decode(m.group(1))


# ----------------------------------------------------------------- the test
def test_summary_artifact_and_facade_physics_match_the_site_files(flow_env: FlowEnv) -> None:
    sim = flow_env.sim
    sim.set_faults(noise_runs=NOISE)
    flow_runs: dict[str, str] = {}
    for date, runs in DATES.items():
        assert sim.runs(ROUND, date) == runs
        with tags(f"facade-user:{USER}"):
            state = topup_standard(
                date=date, **FAST, approve_reset=True, approved_by=USER, return_state=True
            )
        assert state.is_completed(), state.message
        flow_runs[state.result()["flow_run_id"]] = date

    windows = first_lines(sim.stage_dir("search_peak", ROUND) / "window.dat")
    cuts = first_lines(sim.stage_dir("ETS_cut", ROUND) / "ets_cut.txt")
    assert set(NOISE) <= set(windows) and set(NOISE) <= set(cuts)  # the files hold numbers

    # the date's summary artifact: one table row per run, numbers as in the site's files
    last = "250626"
    markdown = latest_markdown(artifact_key(ROUND, last, "physics-summary"))
    assert "date status **verified**" in markdown  # published again once the run ended
    rows = {
        int(cells[0]): cells
        for line in markdown.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0].isdigit()
    }
    assert sorted(rows) == DATES[last]
    for run, cells in rows.items():
        ist = site_ist(sim, last, run)
        order = ("interval_From_DB", "interval_before_sorting", "interval_after_sorting")
        assert cells[1] == " / ".join(str(ist[k]) for k in order)
        want_w = ", ".join(f"{a:.2f}–{b:.2f}" for a, b in windows.get(run, [])) or "none"
        want_c = ", ".join(f"{a:.3f}–{b:.3f}" for a, b in cuts.get(run, [])) or "none"
        assert cells[2:6] == [want_w, want_c, "yes", "–"], cells
    check_png(embedded_png(markdown))
    trends_md = latest_markdown(artifact_key(ROUND, "physics-trends"))
    assert "250625, 250626" in trends_md and f"**{last}** highlighted" in trends_md
    check_png(embedded_png(trends_md))

    # the facade, over real HTTP on the same store and Prefect API
    settings = local_settings(
        Path(flow_env.db_url.removeprefix("sqlite:///")),
        flow_env.downloads.parent / "facade-downloads",
        prefect_api_url=PREFECT_API_URL.value(),
    )
    with serve(settings) as served:
        carol = served.client(USER)
        assert served.client().get("/api/rounds/round18/trends").status_code == 401

        def tasks() -> dict[str, int] | None:
            listed = carol.get("/api/tasks", params={"limit": 100}).json()["tasks"]
            by_date = {
                flow_runs[t["flow_run_id"]]: t["id"]
                for t in listed
                if t["flow_run_id"] in flow_runs
            }
            return by_date if set(DATES) <= set(by_date) else None

        task_ids = wait_for(tasks, timeout=30, what="carol's two runs as tasks")
        for date, runs in DATES.items():
            res = carol.get(f"/api/tasks/{task_ids[date]}/summary")
            assert res.status_code == 200, res.text
            summary = res.json()["summary"]
            assert (summary["round"], summary["date"], summary["status"]) == (
                ROUND,
                date,
                "verified",
            )
            assert [r["run"] for r in summary["runs"]] == runs
            assert summary["runs_to_database"] == runs and summary["anomalies"] == 0
            for r in summary["runs"]:
                assert r["ist"] == site_ist(sim, date, r["run"])
                assert r["windows"] == windows.get(r["run"], [])
                assert r["ets_cuts"] == cuts.get(r["run"], [])
            png = carol.get(f"/api/tasks/{task_ids[date]}/summary.png")
            assert png.headers["content-type"] == "image/png"
            check_png(png.content)
        # another user's task is not found
        assert served.client("bob").get(f"/api/tasks/{task_ids[last]}/summary").status_code == 404

        trends = carol.get("/api/rounds/round18/trends").json()["trends"]
        assert trends["dates"] == sorted(DATES) and trends["highlight"] == last
        points = {p["run"]: p for p in trends["points"]}
        assert sorted(points) == sorted(r for rs in DATES.values() for r in rs)
        for run, p in points.items():
            assert p["windows"] == windows.get(run, []) and p["ets_cuts"] == cuts.get(run, [])
            assert p["date"] == next(d for d, rs in DATES.items() if run in rs)
        older = carol.get("/api/rounds/round18/trends", params={"highlight": "250625"}).json()
        assert older["trends"]["highlight"] == "250625"
        png = carol.get("/api/rounds/round18/trends.png")
        assert png.headers["content-type"] == "image/png"
        check_png(png.content)
        assert carol.get("/api/rounds/round18/trends", params={"highlight": "x"}).status_code == 422
        assert carol.get("/api/rounds/nope/trends").status_code == 422
        empty = carol.get("/api/rounds/round17/trends").json()["trends"]
        assert empty["points"] == [] and empty["highlight"] is None
