"""A round other than the env script's: steps 1.1 → 3.1 for a round17 date over real SSH.

The site's ``~/w720`` (like the real one) exports ``ROUND_NUMBER=18``, and DataValid's
genJob.sh, the stage genJob.sh scripts and the ``a.out`` programs build their paths from it.
Without the per-round export a round17 task would read round18 data (spec steps-0-2 §10.9).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.site import RemoteSite, round_export
from steps.remote.validate import InvalidValue
from steps.results import Outcome
from steps.step1_first_jobs import first_jobs, ist_check, move_outputs
from steps.step2_second_jobs import merge_hist, second_jobs
from steps.step3_search_peak import search_peak_jobs
from tests.steps import FAST, open_remote

ROUND = "round17"
DATE = "240502"
RUNS = [80010, 80011, 80012]
JOBS_PER_RUN = 5  # one per raw file (5 streams)
WAIT = {"max_wait_minutes": 1, "poll_seconds": 0.1}


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    yield from open_remote(ssh_settings, tmp_path / "downloads")


def _snapshot(*dirs: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory below ``dirs``: (size, mtime_ns)."""
    out: dict[str, tuple[int, int]] = {}
    for top in dirs:
        for p in [top, *top.rglob("*")]:
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _job_env(sim: Any, cluster: int, proc: int) -> dict[str, str]:
    """The environment a batch job was submitted with (saved by the simulated submitter)."""
    raw = (sim.state_dir / "batch/jobs" / f"{cluster}.{proc}" / "env").read_bytes()
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def test_env_prefix_exports_the_round(site: RemoteSite) -> None:
    # The hazard: the env script alone says 18 whatever the round.
    assert site.run(site.env_prefix() + 'echo "$ROUND_NUMBER"').stdout == "18\n"
    assert site.run(site.env_prefix(ROUND) + 'echo "$ROUND_NUMBER"').stdout == "17\n"
    assert site.run(site.env_prefix("round018") + 'echo "$ROUND_NUMBER"').stdout == "018\n"
    assert round_export(None) == ""
    for bad in ("17", "round17; touch /tmp/x", "round", "ROUND17"):
        with pytest.raises(InvalidValue):
            site.env_prefix(bad)
        with pytest.raises(InvalidValue):
            site.start_detached("t.badround", "true", "/tmp", round=bad)


def test_detached_start_exports_the_round_after_the_env_script(site: RemoteSite) -> None:
    d = site.start_detached("t.round", 'echo "$ROUND_NUMBER"', "/tmp", round=ROUND)
    done = site.wait_detached(d.key, timeout=20, poll=0.05)
    assert done.ok and done.stdout == "17\n"
    plain = site.start_detached("t.noround", 'echo "$ROUND_NUMBER"', "/tmp")
    assert site.wait_detached(plain.key, timeout=20, poll=0.05).stdout == "18\n"


def test_a_round17_date_runs_on_round17_data_only(site: RemoteSite, sim: Any) -> None:
    untouched = _snapshot(sim.base("round18"), sim.data("round18"))
    base17, hist17 = sim.base(ROUND), sim.hist(ROUND)

    r11 = first_jobs(site, date=DATE, round=ROUND, run_key="rk17", **WAIT)
    assert r11.runs_complete == RUNS
    move_outputs(site, date=DATE, round=ROUND, run_key="rk17")
    ist_check(site, date=DATE, round=ROUND, run_key="rk17")

    # 2.1: DataValid/genJob.sh lists DATA/round${ROUND_NUMBER}/240502 (absent in round18).
    r21 = second_jobs(site, date=DATE, round=ROUND, run_key="rk17", **WAIT)
    assert r21.outcome == Outcome.SUCCESS
    assert r21.runs_complete == RUNS and r21.data["jobs"] == JOBS_PER_RUN * len(RUNS)
    assert all(rec.path.startswith(f"{base17}/{DATE}/") for rec in r21.files)
    data17 = str(sim.data(ROUND, DATE))
    for r in RUNS:
        job = (base17 / DATE / str(r) / f"rec{r}_0").read_text()
        assert data17 in job and "/round18/" not in job
    ctl = Path(site.settings.control_dir)
    assert "export ROUND_NUMBER=17" in (ctl / "rk17.2_1.genjob" / "cmd").read_text()

    # 2.2 merges into round17's HIST; 3.1's genJob.sh reads round${ROUND_NUMBER}/DataValid/hist.
    merge_hist(site, date=DATE, round=ROUND, run_key="rk17")
    assert sorted(p.name for p in hist17.glob("hist*.root")) == [f"hist{r}.root" for r in RUNS]
    r31 = search_peak_jobs(site, date=DATE, round=ROUND, run_key="rk17", **WAIT)
    assert r31.outcome == Outcome.SUCCESS and r31.runs_complete == RUNS
    sp17 = sim.stage_dir("search_peak", ROUND)
    for r in RUNS:
        assert f"{hist17}/ " in (sp17 / f"run_{r}_3.txt").read_text().replace("//", "/")
        out_logs = list(sp17.glob(f"run_{r}_3.txt.out.*"))
        assert len(out_logs) == 1
        assert "INFO: Using ROUND_NUMBER=17" in out_logs[0].read_text()

    # Every batch job of the chain was submitted with ROUND_NUMBER=17, in round17's tree.
    subs = sim.submissions()
    assert len(subs) == len(RUNS) * (1 + JOBS_PER_RUN + 1)
    for s in subs:
        assert s["cwd"].startswith(str(sim.topup_root / ROUND)), s
        assert _job_env(sim, s["cluster"], s["proc"])["ROUND_NUMBER"] == "17", s
    # Nothing of round18 was read into a job or written: same files, sizes and times.
    assert _snapshot(sim.base("round18"), sim.data("round18")) == untouched
    assert not (sim.base("round18") / DATE).exists()
    assert json.dumps(subs).count("round18") == 0
