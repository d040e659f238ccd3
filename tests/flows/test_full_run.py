"""The full procedure for one date (250624, 19 runs) on a real Prefect API, over real SSH:
topup-standard 1.2.0, steps 1.1 - 7 (the database submission is its own flow)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import pytest
from prefect import get_client, tags
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.sorting import ArtifactSort

from flows import download_links
from flows.definitions import load
from flows.topup_standard import topup_standard
from steps import download_folders
from store import dates as date_store
from store import repository
from tests.flows.conftest import FAST, ROUND, FlowEnv, settled_task_runs, unique_tag

DATE = "250624"
PDF_STEPS = {"step1_4", "step2_5", "step4_2", "step5_4", "step6_2"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pages(pdf: Path) -> int:
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-"), f"{pdf} is not a PDF"
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", data))


def _by_name(root: Path) -> dict[str, list[Path]]:
    """Every file of the simulated tree by name (to find files later steps moved)."""
    index: dict[str, list[Path]] = {}
    for p in root.rglob("*"):
        if p.is_file():
            index.setdefault(p.name, []).append(p)
    return index


FACADE_BASE = "http://127.0.0.1:9/api/downloads"  # where the links point (no facade needed)


def test_full_procedure_records_outputs_pdfs_and_artifacts(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPUP_DOWNLOADS_BASE_URL", FACADE_BASE)
    sim = flow_env.sim
    runs = sim.runs(ROUND, DATE)
    assert len(runs) == 19
    tag = unique_tag()
    with tags(tag):
        state = topup_standard(
            date=DATE,
            **FAST,
            approve_reset=True,
            approved_by="alice",
            return_state=True,
        )
    assert state.is_completed(), state.message
    assert state.message == "completed; every required output verified"
    summary = state.result()
    assert summary["status"] == "completed" and summary["workflow_version"] == "1.2.0"
    assert set(summary["steps"].values()) == {"success"}
    assert len(summary["steps"]) == 20
    run_id = summary["flow_run_id"]

    # every step's task ran once and completed; each task run is named by the step's label
    # and title, as operators say it
    runs_of_tasks = settled_task_runs(UUID(run_id))
    names = [t.task_key.rsplit("-", 1)[0] for t in runs_of_tasks]
    assert len(names) == 20 and len(set(names)) == len(names)
    definition = load("topup-standard", "1.2.0")
    assert sorted(t.name for t in runs_of_tasks) == sorted(
        f"{s.label} {s.title}" for s in definition.steps
    )
    assert "1.4 Merge the interval plots into a PDF and download it" in {
        t.name for t in runs_of_tasks
    }

    # outputs: rows per step, the right runs, the right sha256 (files moved later by 1.2 or
    # the reset are found under their new directory with the same content)
    steps = {s.task_name: s for s in repository.step_runs(run_id)}
    assert all(s.outcome == "success" and not s.missing_required for s in steps.values())
    outs = repository.outputs(run_id)
    by_task: dict[str, list] = {}
    for o in outs:
        by_task.setdefault(o.task_name, []).append(o)
    assert len(by_task["step1_1"]) == 6 * len(runs)
    assert {o.run for o in by_task["step1_1"]} == set(runs)
    assert {o.run for o in by_task["step2_2"]} == set(runs)
    assert {o.run for o in by_task["step6_1"]} == set(runs)
    index = _by_name(sim.root)
    deleted_by_reset = set(steps["step7"].data.get("deleted", []))
    checked = 0
    for o in outs:
        if o.role == "download":
            continue
        path = Path(o.path)
        if path.exists():
            assert _sha(path) == o.sha256, o.path
        elif o.task_name == "step2_1" and o.name not in index:
            continue  # per-job ntuples: mergeHist.sh (2.2) merges and removes them
        elif o.path in deleted_by_reset:
            continue  # the check plots: reset.sh (7) deletes them, and says so
        else:
            assert any(_sha(p) == o.sha256 for p in index.get(o.name, [])), o.path
        checked += 1
    assert checked > len(outs) // 2

    # the merged reports: downloaded per run, hash verified, one page per PNG of this date
    downloads = [o for o in outs if o.role == "download"]
    assert {o.task_name for o in downloads} == PDF_STEPS
    assert len(downloads) == 8  # 1.4, 2.5, 5.4, 6.2 and the four of 4.2
    folder = download_folders.folder(flow_env.downloads, run_id)
    for o in downloads:
        local = Path(o.local_path or "")
        assert local.parent == folder
        assert _sha(local) == o.sha256
    pages = {Path(o.local_path or "").name: _pages(Path(o.local_path or "")) for o in downloads}
    assert pages[f"mergedd_IST_{DATE}.pdf"] == len(runs)
    assert pages[f"mergedd_Hist_{DATE}.pdf"] == len(runs)
    assert pages[f"mergedd_ETS_raw_{DATE}.pdf"] == 2 * len(runs)
    assert pages[f"mergedd_ETS_checkall_{DATE}.pdf"] == len(runs)
    shield_pngs = [o.name for o in by_task["step4_2"] if o.role == "verified"]
    for family in ("cut_detail", "after_cut", "before_cut", "check"):
        expected = sum(n.endswith(f"_{family}.png") for n in shield_pngs)
        assert expected > 0 and pages[f"{family}_{DATE}.pdf"] == expected

    # the date is verified (every report hash-checked), reset by the pre-approval; nothing
    # reached the database: that is the submit-constants flow's business
    assert sim.db_ledger() == []
    decisions = repository.decisions(run_id)
    assert [(d.step_id, d.kind, d.decided_by) for d in decisions] == [
        ("step7", "pre-approval", "alice")
    ]
    record = date_store.date_record(ROUND, DATE)
    assert record is not None and (record.status, record.reset_done, record.missing) == (
        "verified",
        True,
        [],
    )
    assert record.runs == runs and record.registered_runs == runs
    wf = repository.workflow_run(run_id)
    assert wf is not None and (wf.workflow, wf.version, wf.status) == (
        "topup-standard",
        "1.2.0",
        "completed",
    )

    # Prefect: the workflow tag, the artifacts, the round slot released
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        assert "workflow:topup-standard@1.2.0" in run.tags and tag in run.tags
        # the reports' folder: <downloads>/<round>/<date>/<flow run name>/
        assert folder == flow_env.downloads / ROUND / DATE / run.name
        # named by what it is; one round and one date tag
        assert run.name == f"{ROUND}-{DATE}-topup-standard-1.2.0"
        assert [t for t in run.tags if t.startswith(("round:", "date:"))] == [
            f"round:{ROUND}",
            f"date:{DATE}",
        ]
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])),
            sort=ArtifactSort.KEY_ASC,
            limit=200,
        )
        limit = client.read_global_concurrency_limit_by_name(f"topup-round-{ROUND}")
    kinds: dict[str, list] = {}
    for a in arts:
        kinds.setdefault(a.type or "", []).append(a)
    assert max(float(a.data) for a in kinds["progress"]) == 100.0  # type: ignore[arg-type]
    table_keys = {a.key for a in kinds["table"]}
    assert f"{ROUND}-{DATE}-s1-1-step1-1-files" in table_keys
    # link artifacts are stored as markdown "[name](link)"
    links = {a.key: str(a.data) for a in kinds["markdown"] if (a.key or "").endswith("-pdf")}
    assert len(links) == 8
    ist_link = links[f"{ROUND}-{DATE}-s1-4-mergedd-ist-{DATE}-pdf"]
    # a signed, expiring link to the facade, valid for that file only
    url = urlsplit(ist_link[ist_link.index("(") + 1 : ist_link.rindex(")")])
    name = unquote(url.path.removeprefix(urlsplit(FACADE_BASE).path + "/"))
    assert name == f"{ROUND}/{DATE}/{run.name}/mergedd_IST_{DATE}.pdf"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    key = download_links.load_key(flow_env.downloads)
    assert download_links.verify(key, name, int(query["expires"]), query["sig"])
    assert not download_links.verify(
        key, name.replace("IST", "Hist"), int(query["expires"]), query["sig"]
    )
    assert any("topup-standard@1.2.0" in str(a.data) for a in kinds["markdown"])
    assert limit.limit == 1 and limit.active_slots == 0
    # sorted by key, the artifacts read in procedure order: the run's overview, each step's
    # by its label (the description starts with it), the transcript last; task results
    # (type "result", no key) are not shown among a run's artifacts
    # the date's own artifacts (the round's trend plot, round18-physics-trends, is the round's)
    # and the physics summary, which is the date's, not a step's, are left out of the order)
    keyed = [
        a
        for a in arts
        if (a.key or "").startswith(f"{ROUND}-{DATE}-") and "-physics-" not in (a.key or "")
    ]
    keys = [a.key for a in keyed]
    assert keys[:2] == [f"{ROUND}-{DATE}-a-progress", f"{ROUND}-{DATE}-a-workflow"]
    assert keys[-1] == f"{ROUND}-{DATE}-z-transcript"
    position = {s.label: i for i, s in enumerate(definition.steps)}
    labels = [(a.description or "").split(" ", 1)[0] for a in keyed[2:-1]]
    assert set(labels) <= set(position), labels
    assert [position[x] for x in labels] == sorted(position[x] for x in labels), labels
    assert len(labels) >= 20
