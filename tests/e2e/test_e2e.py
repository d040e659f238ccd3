"""End to end, once per database: server, worker, facade and the simulated site are real
processes; the standard workflow for 250624 runs from the deployment ``prefect deploy --all``
made from prefect.yaml, started and followed through the facade.

Each test reads the one run of its database (fixture ``completed``) from another side: the
facade's API, the Prefect API, the database itself, and the Prefect UI in headless Chromium.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import TaskRun

from flows.definitions import load as load_definition
from steps import download_folders
from tests.e2e import browser
from tests.e2e.conftest import DATE, E2E, ROUND, VERSION, WORKFLOW, Completed
from topup_cli.stack import deployment_names

# The first test of each database also waits for the stack and the run (module fixtures).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Steps whose merged reports are downloaded: 1.4, 2.5, 5.4, 6.2 one PDF each, 4.2 four.
PDF_STEPS = {"step1_4", "step2_5", "step4_2", "step5_4", "step6_2"}
PDF_COUNT = 8


def definition_tasks() -> dict[str, list[str]]:
    """Step id -> the Prefect task names of that step (20 steps, 20 tasks: 1.1 - 7)."""
    d = load_definition(WORKFLOW, VERSION)
    return {s.id: list(s.tasks) for s in d.steps}


def task_runs(e2e: E2E, flow_run_id: str) -> list[TaskRun]:
    with e2e.stack.sync_client() as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
            limit=200,
        )


def base_name(task: TaskRun) -> str:
    """``step1_1`` of the task run named ``step1_1-a3f``."""
    return task.task_key.rsplit("-", 1)[0]


def test_facade_reports_the_run_its_outputs_and_pdfs(e2e: E2E, completed: Completed) -> None:
    steps = definition_tasks()
    with e2e.client() as c:
        progress = c.get(f"/api/tasks/{completed.task_id}/progress").json()
        assert progress["status"] == "success"
        assert progress["progress_percentage"] == 100
        assert progress["completed_steps"] == progress["total_steps"] == len(steps) == 20

        detail = c.get(f"/api/tasks/{completed.task_id}").json()["task"]
        assert detail["state_name"] == "Completed"
        assert detail["date_param"] == DATE

        executions = c.get(f"/api/executions/{completed.task_id}").json()["executions"]
        # one record per task run, named by its step
        assert Counter(e["step_name"] for e in executions) == {
            step: len(tasks) for step, tasks in steps.items()
        }
        assert {e["status"] for e in executions} == {"success"}
        first = next(e for e in executions if e["step_name"] == "step1_1")
        assert first["step_result_json"]["runs_complete"] == e2e.sim.runs(ROUND, DATE)

        # outputs endpoint: step 1.4's merged IST report, downloaded with its sha256
        merged = next(e for e in executions if e["step_name"] == "step1_4")
        outputs = c.get(f"/api/executions/{merged['id']}/outputs").json()["outputs"]
        pdf_rows = [o for o in outputs if o["metadata"]["role"] == "download"]
        assert len(pdf_rows) == 1 and pdf_rows[0]["file_name"].startswith("mergedd_IST")
        assert pdf_rows[0]["content_type"] == "application/pdf"

        pdf = c.get(f"/api/downloads/task/{completed.task_id}", params={"file_type": "merged_pdf"})
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        assert hashlib.sha256(pdf.content).hexdigest() == pdf_rows[0]["file_hash"]

        listed = c.get("/api/downloads/list", params={"task_id": completed.task_id}).json()
        files = [f["filename"] for f in listed["files"]]
        assert len(files) == PDF_COUNT and all(f.endswith(".pdf") for f in files)
        # one folder per run: <round>/<date>/<flow run name>
        folder = download_folders.relative_folder(e2e.downloads, completed.flow_run_id)
        assert folder.startswith(f"{ROUND}/{DATE}/") and len(folder.split("/")) == 3
        assert {f.rsplit("/", 1)[0] for f in files} == {folder}

        # another caller, without a token, sees nothing
        anonymous = c.get(
            f"/api/downloads/{files[0]}", headers={"Authorization": "Bearer not-a-token"}
        )
        assert anonymous.status_code == 401


def test_prefect_api_shows_the_completed_run_tasks_and_artifacts(
    e2e: E2E, completed: Completed
) -> None:
    with e2e.stack.sync_client() as client:
        run = client.read_flow_run(UUID(completed.flow_run_id))
        assert run.deployment_id is not None
        deployment = client.read_deployment(run.deployment_id)
        deployed = {d.name for d in client.read_deployments()}
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])),
            limit=200,
        )
    assert run.state is not None and run.state.name == "Completed"
    # the deployment the facade started is one of those prefect.yaml declares, all deployed
    assert deployed == set(deployment_names())
    assert deployment.name == f"{WORKFLOW}-{VERSION}"
    assert f"facade-task:{completed.task_id}" in run.tags
    assert f"workflow:{WORKFLOW}@{VERSION}" in run.tags
    assert run.parameters["date"] == DATE and run.parameters["site"] == e2e.site

    # 20 steps, every one of its tasks completed exactly once
    steps = definition_tasks()
    runs = [t for t in task_runs(e2e, completed.flow_run_id) if t.task_key.startswith("step")]
    counts = Counter(base_name(t) for t in runs)
    assert counts == Counter(t for ts in steps.values() for t in ts)
    assert {t.state.name for t in runs if t.state} == {"Completed"}
    assert all(any(counts[t] for t in ts) for ts in steps.values()) and len(steps) == 20

    by_type: dict[str, list[Any]] = {}
    for a in artifacts:
        by_type.setdefault(a.type or "", []).append(a)
    # the progress artifact reached 100 %
    assert [float(a.data) for a in by_type["progress"]] == [100.0]
    # a files table per step that produced files
    table_keys = {a.key for a in by_type["table"]}
    assert f"{ROUND}-{DATE}-s1-1-step1-1-files" in table_keys
    assert f"{ROUND}-{DATE}-s6-2-step6-2-files" in table_keys
    # the PDF links (link artifacts are stored as markdown "[name](url)"), to the facade
    links = {a.key: str(a.data) for a in by_type["markdown"] if (a.key or "").endswith("-pdf")}
    assert len(links) == PDF_COUNT
    # signed, expiring links into the run's folder <round>/<date>/<flow run name>/
    folder = download_folders.relative_folder(e2e.downloads, completed.flow_run_id)
    facade_prefix = f"({e2e.facade.base_url}/api/downloads/{folder}/"
    assert all(facade_prefix in v and ".pdf?expires=" in v and "&sig=" in v for v in links.values())
    ist = links[f"{ROUND}-{DATE}-s1-4-mergedd-ist-{DATE}-pdf"]
    url = ist[ist.index("(") + 1 : ist.rindex(")")]
    with e2e.client() as c:
        body = c.get(url)
    assert body.status_code == 200 and body.content.startswith(b"%PDF")
    with httpx.Client(timeout=30) as browser_like:  # no token: the signature is enough
        opened = browser_like.get(url)
        assert opened.status_code == 200 and opened.content == body.content
        assert browser_like.get(url.replace("IST", "Hist")).status_code == 403
    # a date's run ends after the reset: nothing reached the (simulated) offline database
    assert e2e.sim.db_ledger() == []


def _rows(e2e: E2E, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    if e2e.database.kind == "postgresql":
        with psycopg.connect(e2e.database.dsn, connect_timeout=5) as conn:
            return list(conn.execute(sql.replace("?", "%s"), args).fetchall())
    path = e2e.stack.topup_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql, args).fetchall())


def test_outputs_and_facade_rows_landed_in_the_database(e2e: E2E, completed: Completed) -> None:
    fid = completed.flow_run_id
    assert _rows(
        e2e, "SELECT workflow, version, status FROM workflow_runs WHERE flow_run_id = ?", fid
    ) == [(WORKFLOW, VERSION, "completed")]
    outcomes = _rows(
        e2e, "SELECT outcome, count(*) FROM step_runs WHERE flow_run_id = ? GROUP BY outcome", fid
    )
    assert outcomes == [("success", 20)]
    verified = _rows(e2e, "SELECT status, reset_done FROM date_records WHERE date = ?", DATE)
    assert verified == [("verified", True)] or verified == [("verified", 1)]
    pdfs = _rows(
        e2e,
        "SELECT task_name, local_path FROM step_outputs WHERE flow_run_id = ? AND role = ?",
        fid,
        "download",
    )
    assert {t for t, _ in pdfs} == PDF_STEPS and len(pdfs) == PDF_COUNT
    folder = download_folders.folder(e2e.downloads, fid)
    assert all(Path(p).parent == folder for _, p in pdfs)
    assert _rows(e2e, "SELECT flow_run_id FROM facade_task WHERE id = ?", completed.task_id) == [
        (fid,)
    ]
    if e2e.database.kind == "postgresql":
        # Prefect's own tables are in the same PostgreSQL database ...
        assert _rows(e2e, "SELECT count(*) FROM flow_run WHERE id = ?", fid) == [(1,)]
        # ... and nothing fell back to a SQLite file (server, flow runs, facade).
        stray = [p for p in e2e.stack.data_dir.rglob("*.db*") if p.is_file()]
        assert not stray, stray


@pytest.mark.skipif(browser.available() is not None, reason=str(browser.available()))
def test_prefect_ui_shows_the_run_its_task_runs_and_pdf_artifacts(
    e2e: E2E, completed: Completed
) -> None:
    names = sorted(t.name for t in task_runs(e2e, completed.flow_run_id))
    assert len(names) == 20
    with e2e.stack.sync_client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(completed.flow_run_id)])
            ),
            limit=200,
        )
    pdf_keys = sorted(a.key for a in artifacts if (a.key or "").endswith("-pdf"))
    assert len(pdf_keys) == PDF_COUNT

    base = e2e.stack.api_url.removesuffix("/api")
    with browser.chromium(e2e.stack.log_dir / "chromedriver.log") as driver:
        driver.get(f"{base}/runs/flow-run/{completed.flow_run_id}")
        browser.wait_page(
            driver,
            lambda text: "Completed" in text and f"{len(names)} Task runs" in text,
            timeout=120,
            what="the run Completed with its 20 task runs",
        )
        browser.click_when_present(driver, "#task-runs", timeout=60)
        text = browser.wait_page(
            driver,
            lambda text: all(n in text for n in names),
            timeout=90,
            what=f"the task runs {names}",
            action=lambda: browser.scroll_to_bottom(driver),
        )
        assert f"({len(names)} Completed)" in text
        browser.click_when_present(driver, "#artifacts", timeout=60)
        browser.wait_page(
            driver,
            lambda text: all(k in text for k in pdf_keys),
            timeout=90,
            what=f"the PDF artifacts {pdf_keys}",
            action=lambda: browser.scroll_to_bottom(driver),
        )
        driver.save_screenshot(str(e2e.stack.log_dir / "ui-artifacts.png"))

        # The IST report's link artifact, as the UI shows it: its link opens in the browser,
        # which sends no token, and it is the PDF.
        ist = next(a for a in artifacts if a.key == f"{ROUND}-{DATE}-s1-4-mergedd-ist-{DATE}-pdf")
        driver.get(f"{base}/artifacts/artifact/{ist.id}")
        anchor = browser.element_when_present(driver, "a[href*='sig=']", timeout=90)
        href = str(anchor.get_attribute("href"))
        assert href in str(ist.data) and "/api/downloads/" in href
        driver.get(href)
        opened = browser.open_document(driver, timeout=60)
        driver.save_screenshot(str(e2e.stack.log_dir / "ui-signed-pdf.png"))
    assert opened["contentType"] == "application/pdf", opened
    assert opened["status"] == 200 and opened["head"] == "%PDF-", opened
