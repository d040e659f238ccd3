"""The physics routes on their own (no flow run): documented, authenticated, validated,
and answering from the outputs store alone (Prefect is down in ``offline_facade``).

The numbers against a real run's site files: ``tests/flows/test_physics.py``.
"""

from __future__ import annotations

import io

from PIL import Image

from store import physics
from tests.facade.served import Served

ROUND, DATE = "round18", "250624"
IST_OK = dict.fromkeys(
    ("interval_From_DB", "interval_before_sorting", "interval_after_sorting"), 15000000
)


def _decode_png(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
        assert img.format == "PNG"
        return img.size


def _seed(url: str) -> None:
    """Two runs of DATE as the flow records them: 85002 has an odd IST and was not registered."""
    odd = {**IST_OK, "interval_before_sorting": 14999000}
    physics.record_ist(ROUND, DATE, "fr-1", {85001: IST_OK, 85002: odd}, [85001], url=url)
    physics.record_windows(ROUND, DATE, "fr-1", [85001, 85002], {85001: [[0.5, 4.2]]}, url=url)
    physics.record_ets_cuts(ROUND, DATE, "fr-1", [85001, 85002], {}, url=url)


def test_routes_are_documented_and_need_a_token(offline_facade: Served) -> None:
    with offline_facade.client() as anon:
        paths = set(anon.get("/openapi.json").json()["paths"])
        assert {
            "/api/tasks/{task_id}/summary",
            "/api/tasks/{task_id}/summary.png",
            "/api/rounds/{round}/trends",
            "/api/rounds/{round}/trends.png",
        } <= paths
        for path in ("/api/rounds/round18/trends", "/api/rounds/round18/trends.png"):
            assert anon.get(path).status_code == 401
        assert anon.get("/api/tasks/1/summary").status_code == 401


def test_summary_and_trends_from_the_store(offline_facade: Served) -> None:
    _seed(offline_facade.settings.database_url)
    with offline_facade.client("dora") as dora, offline_facade.client("eve") as eve:
        created = dora.post(
            "/api/tasks", json={"workflow_name": "topup-standard", "parameters": {"date": DATE}}
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]

        summary = dora.get(f"/api/tasks/{task_id}/summary").json()["summary"]
        assert summary["runs_to_database"] == [85001] and summary["anomalies"] == 1
        good, odd = summary["runs"]
        assert good["windows"] == [[0.5, 4.2]] and good["ets_cuts"] == [] and not good["anomalies"]
        assert odd["anomalies"] == ["interval_before_sorting=14999000", "not in interval.txt"]
        png = dora.get(f"/api/tasks/{task_id}/summary.png")
        assert png.headers["content-type"] == "image/png"
        _decode_png(png.content)
        assert eve.get(f"/api/tasks/{task_id}/summary").status_code == 404
        assert eve.get(f"/api/tasks/{task_id}/summary.png").status_code == 404

        trends = dora.get(f"/api/rounds/{ROUND}/trends").json()["trends"]
        assert trends["dates"] == [DATE] and trends["highlight"] == DATE
        assert [p["run"] for p in trends["points"]] == [85001, 85002]
        _decode_png(dora.get(f"/api/rounds/{ROUND}/trends.png").content)
        # a round with no numbers yet still draws (an empty plot saying so)
        assert dora.get("/api/rounds/round17/trends").json()["trends"]["points"] == []
        _decode_png(dora.get("/api/rounds/round17/trends.png").content)


def test_bad_round_date_and_dateless_task_are_refused(offline_facade: Served) -> None:
    with offline_facade.client("dora") as dora:
        assert dora.get("/api/rounds/..%2Fetc/trends").status_code in (404, 422)
        assert dora.get("/api/rounds/round18;ls/trends").status_code == 422
        bad = dora.get("/api/rounds/round18/trends", params={"highlight": "2506"})
        assert bad.status_code == 422 and bad.json()["success"] is False
        dates = dora.post(
            "/api/tasks", json={"workflow_name": "available-dates", "parameters": {"round": ROUND}}
        )
        assert dates.status_code == 201, dates.text
        res = dora.get(f"/api/tasks/{dates.json()['task_id']}/summary")
        assert res.status_code == 400 and res.json()["error"] == "Task has no date"
