"""Download routes: the PDFs the flows fetched (per flow run folder) and task reports.

A file is served to the bearer of a token who may see its run, or to anyone holding a signed,
unexpired link to it (``flows.download_links``: what a browser opens from the Prefect UI's
artifacts and the approval forms). A tampered or expired link answers 403.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from facade import downloads, legacy, outputs, redact
from facade.deps import (
    GatewayDep,
    SessionDep,
    UserDep,
    authenticate,
    bearer,
    owned_task,
    visible_tasks_query,
)
from facade.errors import ApiError
from facade.models import Task, User
from facade.responses import LegacyJSONResponse, iso
from facade.schemas import error_example, example
from facade.snapshots import snapshot
from flows import download_links

router = APIRouter(prefix="/api/downloads", tags=["downloads"])
FILE_ITEM = {
    "filename": "0b7f3c9e-5a51-4d0e-9d43-2f3c7b0e8f11/mergedd_IST_250624.pdf",
    "size": 52311,
    "modified_time": 1772872786.95,
    "url": "/api/downloads/0b7f3c9e-5a51-4d0e-9d43-2f3c7b0e8f11/mergedd_IST_250624.pdf",
    "task_id": 1,
}
FILE_RESPONSES: dict[int | str, Any] = {
    200: {"description": "The file", "content": {"application/pdf": {}}},
    400: example(error_example("Invalid filename"), "Unsafe name or type not allowed"),
    403: example(error_example("Invalid or expired download link"), "A bad signed link"),
    404: example(error_example("File not found"), "Missing, or not yours"),
}


def _run_owners(session: Session, user: User) -> dict[str, int]:
    """Flow run folder → task id, for every task the user may see."""
    owners: dict[str, int] = {}
    for task in session.exec(visible_tasks_query(user)).all():
        for fid in task.all_flow_run_ids():
            owners[fid] = task.id  # type: ignore[assignment]
    return owners


def _check_access(
    request: Request, session: Session, user: User, located: downloads.Located
) -> None:
    if user.is_admin:
        return
    fid = downloads.owner(request.app.state.settings.downloads_dir, located)
    if fid is None or fid not in _run_owners(session, user):
        raise ApiError(404, "File not found")


def _locate_or_400(request: Request, name: str) -> downloads.Located:
    try:
        return downloads.locate(request.app.state.settings.downloads_dir, name)
    except downloads.UnsafePath:
        raise ApiError(400, "Invalid filename") from None


def _serve(request: Request, located: downloads.Located, media_type: str) -> FileResponse:
    size = located.path.stat().st_size
    limit = request.app.state.settings.max_download_bytes
    if size > limit:
        raise ApiError(400, f"File size exceeds maximum allowed size of {limit} bytes")
    return FileResponse(
        located.path, media_type=media_type, filename=located.path.name, stat_result=None
    )


@router.get(
    "/list",
    responses={200: example({"files": [FILE_ITEM], "success": True, "total": 1})},
)
async def list_downloads(
    request: Request,
    session: SessionDep,
    user: UserDep,
    task_id: Annotated[int | None, Query(ge=1)] = None,
    file_type: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,8}$")] = None,
) -> dict[str, Any]:
    """Files in the run folders of your tasks (or of one task), newest first."""
    owners = _run_owners(session, user)
    root = request.app.state.settings.downloads_dir
    if task_id is not None:
        task = owned_task(session, user, task_id)
        folders: list[str] | None = list(downloads.run_folders(root, task.all_flow_run_ids()))
    else:
        folders = None if user.is_admin else list(downloads.run_folders(root, list(owners)))
    folder_runs = await run_in_threadpool(downloads.all_run_folders, root)
    found = await run_in_threadpool(downloads.list_files, root, folders, file_type)
    files = []
    for loc in found:
        stat = loc.path.stat()
        files.append(
            {
                "filename": loc.relative,
                "size": stat.st_size,
                "modified_time": stat.st_mtime,
                "url": f"/api/downloads/{loc.relative}",
                "task_id": owners.get(folder_runs.get(loc.run_folder or "", "")),
            }
        )
    return {"files": files, "success": True, "total": len(files)}


@router.get(
    "/check/{filename:path}",
    responses={
        200: example(
            {
                "download_url": FILE_ITEM["url"],
                "exists": True,
                "filename": FILE_ITEM["filename"],
                "modified_time": 1772872786.95,
                "size": 52311,
                "success": True,
            }
        ),
        404: example({"exists": False, "filename": "x.pdf", "success": False}, "No such file"),
    },
)
async def check_download(
    filename: str, request: Request, session: SessionDep, user: UserDep
) -> Response:
    """Whether a downloadable file exists (only files you could download are reported)."""
    located = _locate_or_400(request, filename)
    missing = {"exists": False, "filename": filename, "success": False}
    try:
        _check_access(request, session, user, located)
    except ApiError:
        return _json(missing, 404)
    path = located.path
    if not path.is_file() or downloads.content_type(path.name) is None:
        return _json(missing, 404)
    stat = path.stat()
    body = {
        "download_url": f"/api/downloads/{located.relative}",
        "exists": True,
        "filename": located.relative,
        "modified_time": stat.st_mtime,
        "size": stat.st_size,
        "success": True,
    }
    return _json(body, 200)


FILE_TYPES = ("merged_pdf", "log", "output")


def _json(body: dict[str, Any], status: int) -> Response:
    return LegacyJSONResponse(body, status_code=status)


async def _merged_pdf(
    request: Request, task: Task, date: str, step_id: str
) -> downloads.Located | None:
    """This task's merged PDF of ``step_id`` for ``date``, newest flow run first."""
    url = request.app.state.settings.database_url
    root = request.app.state.settings.downloads_dir
    stem = downloads.MERGED_PDF_STEMS.get(step_id)
    folders = {
        fid: folder for folder, fid in downloads.run_folders(root, task.all_flow_run_ids()).items()
    }
    for fid in reversed(task.all_flow_run_ids()):
        rows = await run_in_threadpool(outputs.files, url, fid)
        names = [
            r.local_path.rsplit("/", 1)[-1]
            for r in rows
            if r.local_path
            and r.step_id == step_id
            and r.name.endswith(".pdf")
            and (r.date in (None, date))
        ]
        if stem:
            names.append(f"{stem}_{date}.pdf")
        for name in dict.fromkeys(names):
            try:
                located = downloads.locate(root, f"{folders.get(fid, fid)}/{name}")
            except downloads.UnsafePath:
                continue
            if located.path.is_file():
                return located
    return None


@router.head("/task/{task_id}", include_in_schema=False)
@router.get(
    "/task/{task_id}",
    responses={
        **FILE_RESPONSES,
        400: example(error_example("file_type parameter is required"), "Bad query"),
    },
)
async def download_task_file(
    task_id: int,
    request: Request,
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    file_type: Annotated[str | None, Query(max_length=32)] = None,
    date: Annotated[str | None, Query(max_length=16)] = None,
    step_id: Annotated[str, Query(pattern=r"^step\d+(_\d+)?$")] = "step1_4",
) -> Response:
    """``merged_pdf``: a step's merged PDF (default step1_4) for ``date`` (default: the
    task's date); ``log``: the task's Prefect logs as text; ``output``: a step summary."""
    task = owned_task(session, user, task_id)
    if file_type is None:
        raise ApiError(400, "file_type parameter is required")
    if file_type not in FILE_TYPES:
        raise ApiError(400, f"Unknown file_type: {file_type}")
    if file_type == "merged_pdf":
        date = date or legacy.date_param(task)
        if not date:
            raise ApiError(400, "date parameter is required for merged_pdf")
        if not downloads.DATE_RE.match(date):
            raise ApiError(400, "Invalid date: expected yymmdd (6 digits)")
        located = await _merged_pdf(request, task, date, step_id)
        if located is None:
            name = f"{downloads.MERGED_PDF_STEMS.get(step_id, step_id)}_{date}.pdf"
            raise ApiError(404, f"File not found: {name}", filename=name)
        return _serve(request, located, "application/pdf")
    if file_type == "log":
        logs = await gateway.logs(task.all_flow_run_ids(), limit=20000, newest_first=False)
        text = "\n".join(
            f"{iso(lg.timestamp)} {legacy.level_name(lg.level).upper():7} {lg.name}: {redact.clean(lg.message)}"
            for lg in logs
        )
        return _text(text, f"task_{task_id}.log")
    snap = await snapshot(gateway, task)
    lines = [
        f"{e['step_name']}\t{e['status']}\t{e['start_time']}\t{e['end_time']}\t"
        f"{e['error_details'] or e['output_summary'] or ''}"
        for e in legacy.executions(task, snap.defn, snap.task_runs)
    ]
    return _text("\n".join(lines), f"task_{task_id}_output.txt")


def _text(body: str, filename: str) -> Response:
    return Response(
        body + "\n",
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _link_key(request: Request) -> bytes:
    """The signing key of download links (read or made once per app; never shown)."""
    key: bytes | None = getattr(request.app.state, "download_link_key", None)
    if key is None:
        try:
            key = download_links.load_key(request.app.state.settings.downloads_dir)
        except download_links.LinkKeyError:
            raise ApiError(403, "Invalid or expired download link") from None
        request.app.state.download_link_key = key
    return key


def _check_link(request: Request, filename: str, expires: str | None, sig: str | None) -> None:
    """403 unless ``expires``/``sig`` sign ``filename`` and the link has not expired."""
    ok = (
        expires is not None
        and expires.isdigit()
        and len(expires) <= 12
        and download_links.verify(_link_key(request), filename, int(expires), sig)
    )
    if not ok:
        raise ApiError(403, "Invalid or expired download link")


@router.head("/{filename:path}", include_in_schema=False)
@router.get("/{filename:path}", responses=FILE_RESPONSES)
async def download_file(
    filename: str,
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    expires: Annotated[str | None, Query(max_length=20)] = None,
    sig: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """A file by the name ``/list`` reported (``<run folder>/<file>``): with a bearer token,
    or with a signed link (``?expires=…&sig=…``, no token needed; opened inline)."""
    signed = expires is not None or sig is not None
    user: User | None = None
    if signed:
        _check_link(request, filename, expires, sig)
    else:  # the token decides first, as for every other route
        host = request.client.host if request.client else None
        token = credentials.credentials if credentials is not None else None
        user = authenticate(session, request.app.state.settings, token, host)
        request.state.user_name = user.name
    located = _locate_or_400(request, filename)
    media = downloads.content_type(located.path.name)
    if media is None:
        ext = located.path.suffix
        raise ApiError(400, f"File type {ext or '(none)'} is not allowed")
    if user is not None:
        _check_access(request, session, user, located)
    if not located.path.is_file():
        raise ApiError(404, "File not found")
    response = _serve(request, located, media)
    if signed:  # a browser shows it rather than saving it
        response.headers["content-disposition"] = response.headers["content-disposition"].replace(
            "attachment", "inline", 1
        )
    return response
