"""Download routes without Prefect: containment, symlinks, types, ownership, streaming."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlmodel import Session

from facade import downloads
from facade.models import Task
from tests.facade.served import Served

PDF = b"%PDF-1.4\n" + b"0" * 200_000 + b"\n%%EOF\n"


def _task_with_run(served: Served, owner: str, date: str = "250624") -> tuple[int, str]:
    """A task row whose flow run folder exists (the flows write there)."""
    with served.client(owner) as c:
        task_id = c.post(
            "/api/tasks", json={"workflow_name": "topup-standard", "parameters": {"date": date}}
        ).json()["task_id"]
    run_id = str(uuid.uuid4())
    with Session(served.app.state.engine) as session:  # type: ignore[attr-defined]
        task = session.get(Task, task_id)
        assert task is not None
        # A finished earlier run: the row only records its id (its state lives in Prefect).
        task.flow_run_history = [run_id]
        session.add(task)
        session.commit()
    (served.settings.downloads_dir / run_id).mkdir()
    return task_id, run_id


def test_serves_own_files_streamed_with_type(offline_facade: Served) -> None:
    task_id, run_id = _task_with_run(offline_facade, "alice")
    root: Path = offline_facade.settings.downloads_dir
    (root / run_id / "mergedd_IST_250624.pdf").write_bytes(PDF)
    (root / run_id / "notes.txt").write_text("hello\n")
    (root / run_id / ".hidden.pdf").write_bytes(PDF)
    (root / run_id / "script.sh").write_text("echo\n")
    with offline_facade.client("alice") as c:
        listing = c.get("/api/downloads/list").json()
        names = [f["filename"] for f in listing["files"]]
        assert sorted(names) == sorted([f"{run_id}/mergedd_IST_250624.pdf", f"{run_id}/notes.txt"])
        assert {f["task_id"] for f in listing["files"]} == {task_id}
        only_pdf = c.get("/api/downloads/list", params={"file_type": "pdf"}).json()
        assert [f["filename"] for f in only_pdf["files"]] == [f"{run_id}/mergedd_IST_250624.pdf"]
        with c.stream("GET", f"/api/downloads/{run_id}/mergedd_IST_250624.pdf") as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/pdf"
            assert "attachment" in r.headers["content-disposition"]
            body = b"".join(r.iter_bytes())
        assert body == PDF
        head = c.head(f"/api/downloads/{run_id}/mergedd_IST_250624.pdf")
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(PDF)
        txt = c.get(f"/api/downloads/{run_id}/notes.txt")
        assert txt.headers["content-type"].startswith("text/plain") and txt.text == "hello\n"
        by_task = c.get(
            f"/api/downloads/task/{task_id}", params={"file_type": "merged_pdf", "date": "250624"}
        )
        assert by_task.status_code == 200 and by_task.content == PDF
        # The date defaults to the task's own.
        assert c.get(f"/api/downloads/task/{task_id}?file_type=merged_pdf").content == PDF
        check = c.get(f"/api/downloads/check/{run_id}/mergedd_IST_250624.pdf").json()
        assert check["exists"] is True and check["size"] == len(PDF)
        gone = c.get(f"/api/downloads/check/{run_id}/nothing.pdf")
        assert gone.status_code == 404 and gone.json()["exists"] is False
        assert c.get(f"/api/downloads/{run_id}/script.sh").json()["error"] == (
            "File type .sh is not allowed"
        )
        assert c.get(f"/api/downloads/{run_id}/nothing.pdf").status_code == 404


def test_other_users_files_are_invisible(offline_facade: Served) -> None:
    task_id, run_id = _task_with_run(offline_facade, "alice")
    root: Path = offline_facade.settings.downloads_dir
    (root / run_id / "mergedd_IST_250624.pdf").write_bytes(PDF)
    with offline_facade.client("bob") as bob, offline_facade.client("root", admin=True) as adm:
        assert bob.get("/api/downloads/list").json()["files"] == []
        assert bob.get(f"/api/downloads/{run_id}/mergedd_IST_250624.pdf").status_code == 404
        assert bob.get(f"/api/downloads/check/{run_id}/mergedd_IST_250624.pdf").status_code == 404
        assert bob.get(f"/api/downloads/task/{task_id}?file_type=merged_pdf").status_code == 404
        assert adm.get(f"/api/downloads/{run_id}/mergedd_IST_250624.pdf").content == PDF


@pytest.mark.parametrize(
    "name",
    [
        "..%2Ffacade.db",
        "%2e%2e/facade.db",
        "RUN/%2e%2e/%2e%2e/facade.db",
        "RUN/.hidden.pdf",
        "RUN/sub/deeper.pdf",
        "%2Fetc%2Fpasswd",
        "RUN/escape.pdf",  # a symlink pointing outside the root
        "RUN/inside-link.pdf",  # a symlink to another run's file
        "link-dir/x.pdf",  # a symlinked folder
    ],
)
def test_traversal_and_symlink_escapes_are_refused(offline_facade: Served, name: str) -> None:
    _, run_id = _task_with_run(offline_facade, "alice")
    _, other_run = _task_with_run(offline_facade, "bob")
    root: Path = offline_facade.settings.downloads_dir
    secret = root.parent / "secret.pdf"
    secret.write_bytes(b"%PDF- secret")
    (root / other_run / "bob.pdf").write_bytes(b"%PDF- bob")
    os.symlink(secret, root / run_id / "escape.pdf")
    os.symlink(root / other_run / "bob.pdf", root / run_id / "inside-link.pdf")
    os.symlink(root.parent, root / "link-dir")
    (root.parent / "x.pdf").write_bytes(b"%PDF- x")
    path = name.replace("RUN", run_id)
    with offline_facade.client("alice") as c, offline_facade.client("root", admin=True) as adm:
        for client in (c, adm):
            r = client.get(f"/api/downloads/{path}")
            assert r.status_code == 400, (path, r.status_code)
            assert r.json()["error"] == "Invalid filename"
            chk = client.get(f"/api/downloads/check/{path}")
            assert chk.status_code == 400
        listed = adm.get("/api/downloads/list").json()["files"]
    assert all("escape" not in f["filename"] and "link" not in f["filename"] for f in listed)


def test_locate_resolves_inside_the_root_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "run" / "a.pdf").write_bytes(b"x")
    os.symlink(tmp_path, root / "run" / "up")
    assert downloads.locate(root, "run/a.pdf").path == (root / "run" / "a.pdf").resolve()
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "run/../../x",
        "run\\a.pdf",
        "run/up/x",
        ".env",
        "run/a.pdf\x00",
        "a/b/c",
    ]:
        with pytest.raises(downloads.UnsafePath):
            downloads.locate(root, bad)


def test_task_download_query_errors(offline_facade: Served) -> None:
    task_id, run_id = _task_with_run(offline_facade, "alice")
    with offline_facade.client("alice") as c:
        base = f"/api/downloads/task/{task_id}"
        assert c.get(base).json()["error"] == "file_type parameter is required"
        unknown = c.get(base, params={"file_type": "png"})
        assert unknown.status_code == 400  # legacy wording
        assert unknown.json() == {"success": False, "error": "Unknown file_type: png"}
        bad_date = c.get(base, params={"file_type": "merged_pdf", "date": "/../1_4/x"})
        assert bad_date.status_code == 400 and "Invalid date" in bad_date.json()["error"]
        missing = c.get(base, params={"file_type": "merged_pdf", "date": "250101"})
        assert missing.status_code == 404
        assert missing.json()["error"] == "File not found: mergedd_IST_250101.pdf"
        assert (
            c.get(base, params={"file_type": "merged_pdf", "step_id": "x/../y"}).status_code == 422
        )
