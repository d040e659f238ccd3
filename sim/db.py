"""Reading the simulated offline database: the rows that reached it and the submissions.

Why: a test of step 8 must tell exactly which rows a submission inserted, also when it was
killed or failed half-way. ``genInsertCmd.sh -sub_switch 1`` (sim/scripts/bin/simdb.py)
records every row in ``.sim/db_ledger.log`` at the moment it inserts it, and each
submission's ``begin`` and ``end`` in ``.sim/db_submissions.log``; a submission without an
``end`` died (SIGKILL, fault ``db_kill_after_rows``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LEDGER = Path(".sim") / "db_ledger.log"
SUBMISSIONS = Path(".sim") / "db_submissions.log"


def _records(path: Path) -> list[dict[str, Any]]:
    """JSON lines of ``path`` (none if missing); an unreadable last line is ignored (a
    writer killed mid-line), an unreadable line elsewhere is an error."""
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().split("\n") if ln.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
    return out


def inserted_rows(root: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Every inserted row, in insertion order (optionally of one part: ``InjSigTime`` ...).

    Each row: ``kind``, ``table``, ``run`` (first run of the constant file), ``values`` (the
    inserted columns), ``file``, ``file_run_from`` / ``file_run_to``, ``run_from`` / ``run_to``
    (the submitted range), ``time``, ``submission``, ``pid``, ``row`` (1-based), ``rows_planned``,
    ``statement``, ``sha256``, ``user``.
    """
    rows = _records(Path(root) / LEDGER)
    return [r for r in rows if kind is None or r.get("kind") == kind]


def runs_in_db(root: Path, kind: str, runs: list[int]) -> list[int]:
    """Those of ``runs`` that an inserted row of ``kind`` covers (file range, inclusive)."""
    rows = inserted_rows(root, kind)
    return [r for r in runs if any(row["file_run_from"] <= r <= row["file_run_to"] for row in rows)]


def submissions(root: Path) -> list[dict[str, Any]]:
    """One entry per real submission, in start order.

    ``submission``, ``pid``, ``kind``, ``table``, ``run_from``, ``run_to``, ``rows_planned``,
    ``rows_inserted`` (counted in the ledger), ``ended`` (False: the process died before its
    end), ``exit_status`` (None when it did not end), ``started`` / ``finished`` (epoch s).
    """
    root = Path(root)
    counts: dict[str, int] = {}
    for row in inserted_rows(root):
        key = row.get("submission")
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for rec in _records(root / SUBMISSIONS):
        key = rec["submission"]
        if rec["event"] == "begin":
            out[key] = {
                **{k: rec[k] for k in ("submission", "pid", "kind", "table", "run_from", "run_to")},
                "rows_planned": rec.get("rows_planned"),
                "started": rec["time"],
                "ended": False,
                "exit_status": None,
                "finished": None,
            }
        elif rec["event"] == "end" and key in out:
            out[key].update(ended=True, exit_status=rec.get("exit_status"), finished=rec["time"])
    for key, entry in out.items():
        entry["rows_inserted"] = counts.get(key, 0)
    return list(out.values())
