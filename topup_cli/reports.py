"""Where a run's downloaded reports are on this machine, for the operator at the terminal.

Why: the approval says "review the reports first"; `topup run` names the folder
(``<downloads>/<round>/<date>/<run name>/``, ``steps.download_folders``) when the run pauses
and when it ends, so the PDFs are one `xdg-open` away. The downloads root is the one of the
stack started here by `topup up`, else the run's site settings (``TOPUP_SITES_DIR``); when the
folder is not on this machine nothing is printed.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from steps import download_folders
from steps.session import load_settings
from topup_cli.state import StackState


def _downloads_root(state: StackState | None, site: str | None) -> Path | None:
    if state is not None and state.downloads_dir:
        return Path(state.downloads_dir)
    if site is None:
        return None
    try:
        return Path(load_settings(site).downloads_dir)
    except (LookupError, ValueError, OSError):
        return None


def reports_folder(
    state: StackState | None, run_id: UUID | str, site: str | None = None
) -> Path | None:
    """The run's reports folder if it exists here and holds a PDF (else None)."""
    root = _downloads_root(state, site)
    if root is None:
        return None
    try:
        folder = download_folders.folder(root, str(run_id))
    except ValueError:
        return None
    if not folder.is_dir() or not any(folder.glob("*.pdf")):
        return None
    return folder.resolve()
