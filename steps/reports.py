"""The PDF reports of a date: merge its PNGs in the SL6 container, download, verify.

Why its own module: steps 1.4, 2.5, 5.4 and 6.2 are the same procedure on other plots
(spec steps-0-2 §3): an explicit, validated file list for ``convert`` (never a glob that
could take a stale plot), the PDF checked on the remote, downloaded with sha256 verified
into the run's folder.

- ``date_pdf(step, site, *, date, round, run_key, directory, pngs, pdf_name, merge_code,
  download_code, merge_timeout_minutes, ...) -> StepResult`` — such a step for one date:
  its runs, their PNGs in page order, the PDF downloaded as ``{pdf stem}_{date}.pdf``.
- ``merge_and_download(step, site, *, directory, pngs=[(run, name)], pdf_name, local_name,
  run_key, merge_code, download_code, timeout=600, **fields) -> StepResult`` — a whole
  merge-and-download step: fails with ``merge_code`` or ``download_code`` (a required
  report: ``manual``, an operator decides).
- ``merge_pngs(site, directory, pngs, pdf_name, timeout=600) -> CommandResult`` and
  ``merge_png_sets(site, directory, [(pngs, pdf_name), ...], timeout=600) -> CommandResult`` —
  the SL6-container ``convert`` heredoc with an explicit, validated file list.
- ``download_path(site, run_key, local_name) -> Path`` — in the run's folder
  (``steps.download_folders``: ``downloads_dir/<round>/<date>/<run name>/name``).
- ``download_pdf(site, remote_path, local_path, run=None) -> FileRecord`` — sha256-verified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps import download_folders
from steps.config import SitePaths
from steps.file_records import FileSpec, content_type, file_records, plain_name
from steps.remote import validate
from steps.remote.errors import DownloadError
from steps.remote.validate import q, qpath
from steps.results import FileRecord, StepResult
from steps.runs_dates import check_inputs
from steps.step_log import fail

if TYPE_CHECKING:
    from steps.remote.site import RemoteSite
    from steps.remote.transport import CommandResult

__all__ = [
    "date_pdf",
    "download_path",
    "download_pdf",
    "merge_and_download",
    "merge_png_sets",
    "merge_pngs",
]

MERGE_TIMEOUT = 600.0
MIN = 60.0


def _pdf_name(value: str) -> str:
    name = value if value.endswith(".pdf") else f"{value}.pdf"
    return plain_name(name)


def merge_png_sets(
    site: RemoteSite,
    directory: str,
    sets: Sequence[tuple[Sequence[str], str]],
    timeout: float = MERGE_TIMEOUT,
) -> CommandResult:
    """Run the SL6-container ``convert`` of spec steps-0-2 §3 once for several PDFs.

    Each set is ``(png names in directory, pdf name)``; the PDF gets one page per PNG in the
    given order. Old PDFs of the same names are removed first, so a failed convert cannot
    leave a stale PDF that looks fresh. The result's exit code is that of the first failing
    convert (the converts are chained with ``&&``), else 0.
    """
    if not sets:
        raise ValueError("merge_png_sets needs at least one (pngs, pdf) set")
    lines: list[str] = []
    pdfs: list[str] = []
    for pngs, pdf in sets:
        if not pngs:
            raise ValueError(f"no PNG to merge into {pdf!r}")
        names = " ".join(q(plain_name(p)) for p in pngs)
        pdf_file = _pdf_name(pdf)
        pdfs.append(q(pdf_file))
        lines.append(f"convert {names} {q(pdf_file)}")
    inner = " && \\\n".join(lines)
    container = qpath(site.settings.container_cmd)
    cmd = (
        f"cd {qpath(directory)} && rm -f -- {' '.join(pdfs)} && "
        f"{container} shell SL6 << 'EOF'\n{inner}\nexit\nEOF"
    )
    return site.run(cmd, timeout=timeout)


def merge_pngs(
    site: RemoteSite,
    directory: str,
    pngs: Sequence[str],
    pdf_name: str,
    timeout: float = MERGE_TIMEOUT,
) -> CommandResult:
    """Merge ``pngs`` (names in ``directory``) into ``directory/pdf_name`` in the container."""
    return merge_png_sets(site, directory, [(pngs, pdf_name)], timeout=timeout)


def download_path(site: RemoteSite, run_key: str, local_name: str) -> Path:
    """Where a step's download goes: the run's folder (``steps.download_folders``) / name."""
    root = Path(site.settings.downloads_dir)
    return download_folders.folder(root, validate.job_key(run_key)) / plain_name(local_name)


def download_pdf(
    site: RemoteSite, remote_path: str, local_path: Path, run: int | None = None
) -> FileRecord:
    """Download with sha256 verification (``DownloadError`` on failure) and describe it."""
    local_path.parent.mkdir(parents=True, exist_ok=True)
    facts = site.download(validate.path(remote_path), local_path)
    return FileRecord(
        path=remote_path,
        size=facts.size,
        sha256=facts.sha256,
        content_type=content_type(remote_path),
        run=run,
        role="download",
        local_path=str(local_path),
    )


def merge_and_download(
    step: str,
    site: RemoteSite,
    *,
    directory: str,
    pngs: Sequence[tuple[int | None, str]],
    pdf_name: str,
    local_name: str,
    run_key: str,
    merge_code: int,
    download_code: int,
    timeout: float = MERGE_TIMEOUT,
    **fields: Any,
) -> StepResult:
    """The whole "merge this date's PNGs into a PDF and download it" step (1.4, 2.5, ...).

    ``pngs`` are ``(run, name in directory)`` in page order. A failed ``convert`` or a missing
    PDF fails with ``merge_code`` (data lists missing PNGs); a download that still fails after
    the SSH layer's retries fails with ``download_code`` (``manual`` for the required reports,
    steps/errors.py REQUIRED_DOWNLOAD_CODES: the operator retries or aborts; the remote PDF is
    recorded).
    ``fields`` (``date``, ``round`` ...) go into the result. ONE ``file_facts`` call records
    the PNGs (role verified) and the remote PDF (role pdf).
    """
    pdf_file = _pdf_name(pdf_name)
    pdf_remote = f"{directory.rstrip('/')}/{pdf_file}"
    res = merge_pngs(site, directory, [name for _, name in pngs], pdf_file, timeout=timeout)
    specs = [FileSpec(f"{directory.rstrip('/')}/{n}", run, "verified") for run, n in pngs]
    records = file_records(site, [*specs, FileSpec(pdf_remote, None, "pdf")])
    have = {r.path: r for r in records}
    missing_pngs = [s.path.rsplit("/", 1)[-1] for s in specs if s.path not in have]
    pdf = have.get(pdf_remote)
    data: dict[str, Any] = {"pdf_remote_path": pdf_remote, "pages": len(pngs)}
    if not res.ok or pdf is None or pdf.size == 0 or missing_pngs:
        detail = (res.stderr or res.stdout).strip()[-300:]
        fail(
            step,
            merge_code,
            f"merging {len(pngs)} PNGs into {pdf_file} failed (exit {res.exit_code})"
            + (f"; missing PNGs: {', '.join(missing_pngs)}" if missing_pngs else "")
            + (f": {detail}" if detail else ""),
            files=records,
            data={**data, "missing_pngs": missing_pngs, "exit_code": res.exit_code},
            **fields,
        )
    local = download_path(site, run_key, local_name)
    try:
        downloaded = download_pdf(site, pdf_remote, local)
    except DownloadError as exc:
        fail(
            step,
            download_code,
            f"{pdf_file} built on the remote, download failed: {exc}",
            files=records,
            data={**data, "download_error": str(exc)},
            **fields,
        )
    return StepResult(
        step=step,
        message=f"{pdf_file} ({len(pngs)} pages) built and downloaded to {local}",
        files=[*records, downloaded],
        data={**data, "pdf_local_path": str(local)},
        **fields,
    )


def date_pdf(
    step: str,
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    directory: Callable[[SitePaths], str],
    pngs: Callable[[int], Sequence[str]],
    pdf_name: str,
    merge_code: int,
    download_code: int,
    merge_timeout_minutes: float,
    runs_when_failed: bool = False,
) -> StepResult:
    """A date's PDF step (1.4, 2.5, 5.4, 6.2): check the inputs, merge ``pngs(run)`` of each
    run in page order into ``directory(site paths)/pdf_name``, download it as
    ``{pdf stem}_{date}.pdf``. The result lists the date's runs as complete;
    ``runs_when_failed`` lists them in a failed result too (1.4 and 2.5 always have)."""
    runs = check_inputs(step, site, round, date, run_key)
    stem = pdf_name.removesuffix(".pdf")
    listed: dict[str, Any] = {"runs_complete": runs} if runs_when_failed else {}
    result = merge_and_download(
        step,
        site,
        directory=directory(site.paths(round)),
        pngs=[(r, name) for r in runs for name in pngs(r)],
        pdf_name=pdf_name,
        local_name=f"{stem}_{date}.pdf",
        run_key=run_key,
        merge_code=merge_code,
        download_code=download_code,
        timeout=merge_timeout_minutes * MIN,
        date=date,
        round=round,
        **listed,
    )
    result.runs_complete = runs
    return result
