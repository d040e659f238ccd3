"""Database faults of the simulated site: submissions killed or failing after N rows.

The simulated ``genInsertCmd.sh -sub_switch 1`` records each row when it inserts it, so the
ledger (``sim.db.inserted_rows``) holds exactly the rows that reached the "database", and
``sim.db.submissions`` tells a clean end from a process that died.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sim.db import inserted_rows, runs_in_db, submissions
from sim.faults import Faults
from sim.site import SimSite
from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from tests.sim.test_site_helpers import SITE_USER, bash
from tests.steps import open_remote

RUNS = [85420, 85421, 85422]
SUBMIT = "bash genInsertCmd.sh -runfrom 85420 -runto 85422 -sub_switch 1"


def _constants(sim: SimSite) -> Path:
    """Three InjSigTime constant files in the InjSigTime AFS directory (as 8.2.1 leaves them)."""
    db = Path(sim.settings().paths("round18").inj_sig_time_db)
    for run in RUNS:
        path = db / f"InjSigTime_00{run}_720.root"
        path.write_text(f"root IST {run}\n")
    return db


def test_a_clean_submission_records_every_row_and_its_end(sim: SimSite) -> None:
    db = _constants(sim)
    res = bash(sim, SUBMIT, db, user=SITE_USER)
    assert res.returncode == 0 and "3 record(s) inserted" in res.stdout
    rows = inserted_rows(sim.root)
    assert [(r["table"], r["run"], r["row"]) for r in rows] == [
        ("InjSigTimeCalConst", run, i) for i, run in enumerate(RUNS, 1)
    ]
    assert rows[0]["values"] == {
        "SftVer": "7.2.0",
        "ParVer": 1,
        "RunFrom": 85420,
        "RunTo": 85420,
        "FileName": str(db / "InjSigTime_0085420_720.root"),
        "Status": "OK",
    }
    (sub,) = submissions(sim.root)
    assert len({r["submission"] for r in rows}) == 1 and rows[0]["submission"] == sub["submission"]
    assert sub["ended"] is True and sub["exit_status"] == 0
    assert sub["rows_planned"] == 3 and sub["rows_inserted"] == 3
    assert sim.db_ledger() == rows  # the existing reader sees the same rows


def test_killed_after_two_rows_leaves_exactly_two_rows_and_no_end(sim: SimSite) -> None:
    db = _constants(sim)
    sim.set_faults(db_kill_after_rows={"InjSigTime": 2})
    res = bash(sim, SUBMIT, db, user=SITE_USER)
    assert res.returncode == 137  # 128 + SIGKILL
    assert res.stdout.count("inserted: ") == 2 and "record(s) inserted" not in res.stdout
    assert [r["run"] for r in inserted_rows(sim.root)] == [85420, 85421]
    assert runs_in_db(sim.root, "InjSigTime", RUNS) == [85420, 85421]
    (sub,) = submissions(sim.root)
    assert sub["ended"] is False and sub["exit_status"] is None and sub["rows_inserted"] == 2


def test_failure_after_one_row_exits_1_with_that_row_in(sim: SimSite) -> None:
    db = _constants(sim)
    sim.set_faults(db_fail_after_rows={"InjSigTimeCalConst": 1})  # by table name
    res = bash(sim, SUBMIT, db, user=SITE_USER)
    assert res.returncode == 1 and "lost the connection to the database after 1 row" in res.stderr
    assert [r["run"] for r in inserted_rows(sim.root)] == [85420]
    (sub,) = submissions(sim.root)
    assert sub["ended"] is True and sub["exit_status"] == 1 and sub["rows_inserted"] == 1


def test_faults_apply_only_to_their_part_and_zero_means_no_row(sim: SimSite) -> None:
    db = _constants(sim)
    sim.set_faults(db_kill_after_rows={"OfflineEvtFilter": 0})
    assert bash(sim, SUBMIT, db, user=SITE_USER).returncode == 0  # another part: no effect
    sim.set_faults(db_kill_after_rows={"InjSigTime": 0})
    assert bash(sim, SUBMIT, db, user=SITE_USER).returncode == 137
    assert len(inserted_rows(sim.root, "InjSigTime")) == 3  # the first submission's rows only
    assert [s["ended"] for s in submissions(sim.root)] == [True, False]
    dry = bash(sim, SUBMIT.replace("-sub_switch 1", "-sub_switch 0"), db, user=SITE_USER)
    assert dry.returncode == 0  # a dry run inserts nothing and is never stopped


def test_killed_submission_over_ssh_is_exit_137_in_the_detached_record(
    sim: SimSite, ssh_settings: SiteSettings, tmp_path: Path
) -> None:
    """What step 8 sees: the detached command's recorded exit status and output tail."""
    db = _constants(sim)
    sim.set_faults(db_kill_after_rows={"InjSigTime": 1})
    for site in open_remote(ssh_settings, tmp_path):
        assert isinstance(site, RemoteSite)
        site.start_detached("db-kill", SUBMIT, str(db))
        done = site.wait_detached("db-kill", timeout=60, poll=0.05)
        assert done.state == "exited" and done.exit_code == 137
        assert (done.stdout or "").count("inserted: ") == 1
    assert [r["run"] for r in inserted_rows(sim.root)] == [85420]


@pytest.mark.parametrize(
    "value", [{"Nope": 1}, {"InjSigTime": -1}, ["InjSigTime"], {"InjSigTime": "x"}]
)
def test_db_fault_values_are_validated(value: object) -> None:
    with pytest.raises(ValidationError):
        Faults(db_kill_after_rows=value)
    with pytest.raises(ValidationError):
        Faults(db_fail_after_rows=value)
