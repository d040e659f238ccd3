"""Signed download links over real HTTP: a browser's way to a report, with no bearer token.

The run folder is laid out as the flows lay it (``steps.download_folders.claim``) and the links
are made as the flows make them (``flows.download_links`` with the key the facade finds in the
downloads root), so these tests check the two sides agree.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import Session

from facade.models import Task
from flows import download_links, recording
from flows.definitions import load
from steps import download_folders
from store import repository
from store.db import reset_engines
from tests.facade.served import Served

PDF = b"%PDF-1.4\n" + b"1" * 50_000 + b"\n%%EOF\n"
NAME = "mergedd_IST_250624.pdf"


def _run_with_report(served: Served, owner: str = "alice") -> tuple[int, str, str]:
    """A task with one run whose report sits in its ``<round>/<date>/<run name>/`` folder."""
    with served.client(owner) as c:
        task_id = c.post(
            "/api/tasks", json={"workflow_name": "topup-standard", "parameters": {"date": "250624"}}
        ).json()["task_id"]
    run_id = str(uuid.uuid4())
    with Session(served.app.state.engine) as session:  # type: ignore[attr-defined]
        task = session.get(Task, task_id)
        assert task is not None
        task.flow_run_history = [run_id]
        session.add(task)
        session.commit()
    root: Path = served.settings.downloads_dir
    folder = download_folders.claim(
        root, run_id, round="round18", date="250624", run_name="round18-250624-topup-standard-1.2.0"
    )
    (folder / NAME).write_bytes(PDF)
    relative = f"{folder.relative_to(root).as_posix()}/{NAME}"
    return task_id, run_id, relative


def _signed(served: Served, relative: str, ttl: int = 3600) -> str:
    key = download_links.load_key(served.settings.downloads_dir)
    return download_links.signed_url(f"{served.base_url}/api/downloads", relative, key, ttl)


def test_a_signed_link_opens_without_a_token(offline_facade: Served) -> None:
    _, _, relative = _run_with_report(offline_facade)
    assert relative == f"round18/250624/round18-250624-topup-standard-1.2.0/{NAME}"
    url = _signed(offline_facade, relative)
    with httpx.Client(timeout=30) as browser:  # no Authorization header at all
        r = browser.get(url)
        assert r.status_code == 200, r.text
        assert r.content == PDF
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["content-disposition"].startswith("inline")
        assert browser.head(url).status_code == 200
        # without the signature it is an ordinary request: a token is needed
        assert browser.get(url.split("?", 1)[0]).status_code == 401


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


@pytest.mark.parametrize("tamper", ["path", "signature", "expiry", "no-signature", "junk-expiry"])
def test_a_tampered_link_answers_403(offline_facade: Served, tamper: str) -> None:
    _, _, relative = _run_with_report(offline_facade)
    _, _, other = _run_with_report(offline_facade, "bob")  # another run's report exists too
    url = _signed(offline_facade, relative)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    expires = parse_qs(urlsplit(url).query)["expires"][0]
    bad = {
        "path": url.replace(relative, other),
        "signature": _with(url, sig=("0" if sig[0] != "0" else "1") + sig[1:]),
        "expiry": _with(url, expires=str(int(expires) + 3600)),
        "no-signature": url.split("&sig=")[0],
        "junk-expiry": _with(url, expires="soon"),
    }[tamper]
    with httpx.Client(timeout=30) as browser:
        r = browser.get(bad)
    assert r.status_code == 403, (tamper, r.status_code, r.text)
    assert r.json() == {"success": False, "error": "Invalid or expired download link"}
    assert b"%PDF" not in r.content


def test_an_expired_link_answers_403(offline_facade: Served) -> None:
    _, _, relative = _run_with_report(offline_facade)
    key = download_links.load_key(offline_facade.settings.downloads_dir)
    # signed correctly, but its time ran out a second ago (the link as it will be tomorrow)
    query = download_links.signed_query(key, relative, ttl_seconds=-1)
    with httpx.Client(timeout=30) as browser:
        r = browser.get(f"{offline_facade.base_url}/api/downloads/{relative}?{query}")
    assert r.status_code == 403
    assert r.json()["error"] == "Invalid or expired download link"


def test_bearer_tokens_still_work_on_the_new_layout(offline_facade: Served) -> None:
    task_id, run_id, relative = _run_with_report(offline_facade)
    with offline_facade.client("alice") as alice, offline_facade.client("bob") as bob:
        listed = alice.get("/api/downloads/list").json()["files"]
        assert [(f["filename"], f["task_id"]) for f in listed] == [(relative, task_id)]
        own = alice.get(f"/api/downloads/{relative}")
        assert own.status_code == 200 and own.content == PDF
        assert own.headers["content-disposition"].startswith("attachment")
        # the name by flow-run id still reaches the file in its new folder
        assert alice.get(f"/api/downloads/{run_id}/{NAME}").content == PDF
        by_task = alice.get(f"/api/downloads/task/{task_id}", params={"file_type": "merged_pdf"})
        assert by_task.status_code == 200 and by_task.content == PDF
        assert alice.get(f"/api/downloads/check/{relative}").json()["exists"] is True
        # another user's token does not open it; an unsigned request without one is refused
        assert bob.get(f"/api/downloads/{relative}").status_code == 404
        assert bob.get("/api/downloads/list").json()["files"] == []
    with httpx.Client(timeout=30) as anonymous:
        assert (
            anonymous.get(f"{offline_facade.base_url}/api/downloads/{relative}").status_code == 401
        )


def test_the_key_is_made_once_kept_hidden_and_never_served(offline_facade: Served) -> None:
    root: Path = offline_facade.settings.downloads_dir
    first = download_links.load_key(root)
    assert download_links.load_key(root) == first and len(first) >= 32
    key_file = root / download_links.KEY_FILE_NAME
    assert key_file.stat().st_mode & 0o077 == 0
    with offline_facade.client("root", admin=True) as adm:
        assert adm.get(f"/api/downloads/{download_links.KEY_FILE_NAME}").status_code == 400
        listed = adm.get("/api/downloads/list").json()["files"]
    assert all(first.decode() not in str(f) for f in listed)


def test_claim_keeps_a_folder_per_run(tmp_path: Path) -> None:
    ids = [str(uuid.uuid4()) for _ in range(2)]
    name = "round18-250624-topup-standard-1.2.0"
    a = download_folders.claim(tmp_path, ids[0], round="round18", date="250624", run_name=name)
    # the same run again (a retry, a rescheduled run) gets the same folder
    again = download_folders.claim(tmp_path, ids[0], round="round18", date="250624", run_name="x")
    b = download_folders.claim(tmp_path, ids[1], round="round18", date="250624", run_name=name)
    assert a == again == tmp_path / "round18" / "250624" / name
    assert b == tmp_path / "round18" / "250624" / f"{name}-{ids[1][:8]}"
    assert download_folders.folder(tmp_path, ids[1]) == b
    assert download_folders.owner(tmp_path, f"round18/250624/{name}") == ids[0]
    assert download_folders.run_folders(tmp_path) == {
        ids[0]: f"round18/250624/{name}",
        ids[1]: f"round18/250624/{name}-{ids[1][:8]}",
    }
    # a run never claimed keeps the legacy folder; a hostile name stays one safe component
    assert download_folders.folder(tmp_path, "legacy-run") == tmp_path / "legacy-run"
    odd = download_folders.claim(tmp_path, "r3", round="../r", date="25/06", run_name="$(x) y")
    assert odd.relative_to(tmp_path).parts == ("r", "25-06", "x-y")


def test_the_approval_form_links_open_in_a_browser(
    offline_facade: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 7's approval says "review the reports first": its list links each report."""
    _, run_id, relative = _run_with_report(offline_facade)
    root: Path = offline_facade.settings.downloads_dir
    local = root / relative
    url = offline_facade.settings.database_url
    repository.record_step(
        flow_run_id=run_id,
        step_id="step1_4",
        task_name="step1_4",
        label="1.4",
        outcome="success",
        date="250624",
        round="round18",
        files=[
            {
                "path": f"/remote/{NAME}",
                "size": len(PDF),
                "sha256": hashlib.sha256(PDF).hexdigest(),
                "content_type": "application/pdf",
                "run": None,
                "role": "download",
                "local_path": str(local),
            }
        ],
        url=url,
    )
    monkeypatch.setenv("TOPUP_DATABASE_URL", url)
    reset_engines()
    rec = recording.RunRecord(
        flow_run_id=run_id, definition=load("topup-standard"), round="round18", date="250624"
    )
    rec.downloads_root = root

    # without the facade's address, the form names the report and shows no server path
    monkeypatch.delenv("TOPUP_DOWNLOADS_BASE_URL", raising=False)
    bare = recording.reports_markdown(rec)
    assert f"`{NAME}`" in bare and str(root) not in bare

    monkeypatch.setenv("TOPUP_DOWNLOADS_BASE_URL", f"{offline_facade.base_url}/api/downloads")
    form = recording.reports_markdown(rec)
    links = re.findall(r"\[([^\]]+)\]\(([^)]+)\)", form)
    assert [name for name, _ in links] == [NAME] and str(root) not in form
    with httpx.Client(timeout=30) as browser:
        opened = browser.get(links[0][1])
    assert opened.status_code == 200 and opened.content == PDF
