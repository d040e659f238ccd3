"""Step 8 (database submission) against the simulated site (real sshd for the main path).

The simulated ``genInsertCmd.sh -sub_switch 1`` appends every insert to a ledger
(``sim.db_ledger()``): the tests assert that nothing reaches it without approval and that a
retry never submits twice.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.errors import RemoteTimeout
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError
from steps.step8_database import prepare_part, submit_part
from steps.step8_parts import ccompare_check
from steps.step8_range import database_range, run_range
from tests.steps import ROUND, commands, open_remote

# The pristine simulated round: interval.txt holds the runs of the processed date 250101.
F, T = 85001, 85002
FAST = {"max_wait_minutes": 1, "poll_seconds": 0.1}
KINDS = {"8.1": "InjSigInterval", "8.2": "InjSigTime", "8.3": "OfflineEvtFilter"}


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    yield from open_remote(ssh_settings, tmp_path / "downloads")


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    yield from open_remote(local_settings, tmp_path / "downloads")


def _prepare(site: RemoteSite, part: str, run_key: str = "rk8", **kw: Any) -> Any:
    return prepare_part(
        site, part, round=ROUND, run_key=run_key, run_from=F, run_to=T, **{**FAST, **kw}
    )


def _submit(site: RemoteSite, part: str, who: str = "alice", run_key: str = "rk8", **kw: Any):
    return submit_part(
        site,
        part,
        round=ROUND,
        run_key=run_key,
        run_from=F,
        run_to=T,
        approved_by=who,
        **{**FAST, **kw},
    )


def _kinds(sim: Any) -> list[str]:
    return [e["kind"] for e in sim.db_ledger()]


# --------------------------------------------------------------------------- range


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("85001 15000000\n85002 15000000\n", (85001, 85002)),
        ("\n85383 15000000\n85390 15000000\n85406 15000000\n\n\n", (85383, 85406)),
        ("123456 15000000\n", (123456, 123456)),
        ("", 70),
        ("  \n\n", 70),
        ("run 15000000\n85002 15000000\n", 70),
        ("8500 15000000\n85002 15000000\n", 70),
        ("85010 15000000\n85002 15000000\n", 70),
        (None, 10),
    ],
)
def test_run_range_is_first_and_last_line(
    local_site: RemoteSite, sim: Any, content: str | None, expected: Any
) -> None:
    interval = Path(local_site.paths(ROUND).inj) / "interval.txt"
    if content is None:
        interval.unlink()
    else:
        interval.write_text(content)
    if isinstance(expected, tuple):
        assert run_range(local_site, ROUND) == expected
        result = database_range(local_site, round=ROUND, run_key="rk8")
        assert (result.data["run_from"], result.data["run_to"]) == expected
        return
    with pytest.raises(StepError) as exc:
        run_range(local_site, ROUND)
    assert exc.value.result.error.code == expected
    assert exc.value.action == ("manual" if expected == 70 else "retry")


# --------------------------------------------------------------------------- the whole step


def test_dry_runs_first_then_each_part_submitted_exactly_once(site: RemoteSite, sim: Any) -> None:
    for part, kind in KINDS.items():
        prepared = _prepare(site, part)
        assert prepared.outcome == Outcome.SUCCESS and prepared.data["phase"] == "prepare"
        assert "planned" in prepared.data["dry_run_output"]
        assert f"{F}" in prepared.data["dry_run_output"]
        assert sim.db_ledger() == [] or kind not in _kinds(sim)  # no insert by a dry run
        # no approval: refused, nothing inserted
        with pytest.raises(StepError) as exc:
            _submit(site, part, who="")
        assert exc.value.result.error.code == 20 and exc.value.action == "manual"
        assert kind not in _kinds(sim)

        done = _submit(site, part)
        assert done.data["already_submitted"] is False and done.data["approved_by"] == "alice"
        n = _kinds(sim).count(kind)
        assert n >= 1 and "inserted" in done.data["submit_output"]
        assert all(e["run_from"] == F and e["run_to"] == T for e in sim.db_ledger())
        # a retry (or a second call) returns the recorded result: no second insert
        again = _submit(site, part)
        assert again.data["already_submitted"] is True and _kinds(sim).count(kind) == n
        assert again.data["submit_output"] == done.data["submit_output"]
        # preparing again repeats nothing (rootmove.sh would fail: nothing left to move)
        assert all(s["reused"] for s in _prepare(site, part).data["substeps"])
    assert sorted(set(_kinds(sim))) == sorted(KINDS.values())


def test_submit_without_a_dry_run_is_refused(local_site: RemoteSite, sim: Any) -> None:
    before = commands(local_site)
    with pytest.raises(StepError) as exc:
        _submit(local_site, "8.1")
    assert exc.value.result.error.code == 70 and exc.value.action == "manual"
    assert "dry run" in exc.value.result.message
    assert commands(local_site) - before == 1  # only the listing of the run's sub-steps
    assert sim.db_ledger() == []


def test_reset_root_runs_after_the_offline_filter_submission(
    local_site: RemoteSite, sim: Any
) -> None:
    leftover = Path(local_site.settings.check_db_alg_dir) / "old_check.root"
    leftover.write_text("left by an earlier check")
    _prepare(local_site, "8.3")
    assert leftover.exists()
    result = _submit(local_site, "8.3")
    assert [s["substep"] for s in result.data["substeps"]] == ["8.3.9", "8.3.10"]
    assert not leftover.exists()


def test_failed_substep_is_8100_and_a_retry_skips_what_finished(
    local_site: RemoteSite, sim: Any
) -> None:
    sim.set_faults(script_exit={"copy.sh": 4})
    with pytest.raises(StepError) as exc:
        _prepare(local_site, "8.1")
    res = exc.value.result
    assert res.error.code == 8100 and exc.value.action == "retry"
    assert res.message.startswith("8.1.3 copy.sh failed: exit 4")
    assert res.data["done"] == ["8.1.1", "8.1.2a", "8.1.2b"]
    sim.set_faults(script_exit={})
    result = _prepare(local_site, "8.1")
    subs = {s["substep"]: s for s in result.data["substeps"]}
    assert [subs[k]["reused"] for k in ("8.1.1", "8.1.2a", "8.1.2b")] == [True] * 3
    assert subs["8.1.3"]["key"].endswith("s3_copy-2") and subs["8.1.3"]["previous_attempts"]
    assert not subs["8.1.5"]["reused"]


@pytest.mark.parametrize(
    ("text", "fails"),
    [
        ("run 85002 error: repeat", True),
        ("run 85002 ERROR:\tOrder", True),
        ("error:  missing run 85001", True),
        ("error:repeat (no space after the colon)", False),
    ],
)
def test_ccompare_output_check(local_site: RemoteSite, sim: Any, text: str, fails: bool) -> None:
    sim.set_faults(script_output={"ccompare/a.out": text})
    if not fails:
        assert ccompare_check(text) is None
        assert _prepare(local_site, "8.3").outcome == Outcome.SUCCESS
        return
    with pytest.raises(StepError) as exc:
        _prepare(local_site, "8.3")
    res = exc.value.result
    assert res.error.code == 8100 and res.message.startswith("8.3.3 ccompare/a.out failed")
    assert res.data["exit_code"] == 0 and text in res.data["output"]
    assert res.data["done"] == ["8.3.1", "8.3.2"]


def test_any_output_of_the_checker_fails_8_3_6(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(script_output={"check/a.out": "warning: run 85002 looks odd"})
    with pytest.raises(StepError) as exc:
        _prepare(local_site, "8.3")
    res = exc.value.result
    assert res.error.code == 8100 and res.message.startswith("8.3.6 check/a.out failed")
    assert "looks odd" in res.message


def test_failed_submission_is_never_started_again_without_naming_it(
    local_site: RemoteSite, sim: Any
) -> None:
    _prepare(local_site, "8.2")
    sim.set_faults(script_exit={"genInsertCmd.sh:1": 5})
    with pytest.raises(StepError) as exc:
        _submit(local_site, "8.2")
    res = exc.value.result
    assert res.message.startswith("8.2.3 InjSigTime database submission")
    assert (res.error.code, exc.value.action) == (8101, "manual")  # never a retry code
    failed_key = res.data["key"]
    assert sim.db_ledger() == []
    sim.set_faults(script_exit={})
    # a retry (Prefect's, the policy's, a resumed run's) is refused and names the attempt
    with pytest.raises(StepError) as again:
        _submit(local_site, "8.2")
    assert again.value.result.error.code == 8101 and again.value.result.data["key"] == failed_key
    assert "never started again" in again.value.result.message
    assert sim.db_ledger() == []
    # a person's decision names the failed attempt: then, and only then, attempt 2 runs
    result = _submit(local_site, "8.2", resubmit_after=failed_key)
    (sub,) = result.data["substeps"]
    assert sub["key"].endswith("s3_submit-2") and sub["previous_attempts"] == [failed_key]
    n = len(sim.db_ledger())
    assert n == 2  # one InjSigTime file per run of the range
    _submit(local_site, "8.2")  # finished: its recorded result, nothing runs
    assert len(sim.db_ledger()) == n


def test_submission_outliving_the_wait_is_reattached_not_repeated(
    local_site: RemoteSite, sim: Any
) -> None:
    _prepare(local_site, "8.1")
    sim.set_faults(slow={"genInsertCmd.sh:1": 2.0})
    with pytest.raises(RemoteTimeout):
        _submit(local_site, "8.1", max_wait_minutes=0.005)
    assert sim.db_ledger() == []
    result = _submit(local_site, "8.1")  # the retry waits for the same command
    (sub,) = result.data["substeps"]
    assert sub["key"].endswith("s6_submit") and "previous_attempts" not in sub
    assert len(sim.db_ledger()) == 1


def test_lost_submission_result_is_left_to_a_human(local_site: RemoteSite, sim: Any) -> None:
    _prepare(local_site, "8.1")
    sim.set_faults(slow={"genInsertCmd.sh:1": 30.0})
    with pytest.raises(RemoteTimeout):
        _submit(local_site, "8.1", max_wait_minutes=0.005)
    # the machine "reboots": the submission dies without writing its exit status
    ctl = Path(local_site.settings.control_dir)
    (key_dir,) = [d for d in ctl.iterdir() if d.name.endswith("s6_submit")]
    os.killpg(int((key_dir / "pid").read_text()), signal.SIGKILL)
    sim.set_faults(slow={})
    with pytest.raises(StepError) as exc:
        _submit(local_site, "8.1")
    assert exc.value.result.error.code == 72 and exc.value.action == "manual"
    assert "unknown" in exc.value.result.message
    assert sim.db_ledger() == []
    assert not (ctl / f"{key_dir.name}-2").exists()


@pytest.mark.parametrize(
    ("run_from", "run_to", "code"),
    [("85001; touch /tmp/pwned-step8", T, 20), (F, "$(id)", 20), (T, F, 70), ("123", T, 20)],
)
def test_range_parameters_are_validated_first(
    local_site: RemoteSite, sim: Any, run_from: Any, run_to: Any, code: int
) -> None:
    before = commands(local_site)
    with pytest.raises(StepError) as exc:
        prepare_part(
            local_site, "8.1", round=ROUND, run_key="rk8", run_from=run_from, run_to=run_to, **FAST
        )
    assert exc.value.result.error.code == code and exc.value.action == "manual"
    assert commands(local_site) == before
    assert not Path("/tmp/pwned-step8").exists()


# --------------------------------------------------------------------------- tasks


def test_tasks_follow_the_contract() -> None:
    """Task name = step id; plain parameters date, round, run_key, site (+ options)."""
    import inspect

    from steps import step3_search_peak as s3
    from steps import step4_check_shield as s4
    from steps import step5_ets_cut as s5
    from steps import step6_check_ets_cut as s6
    from steps import step7_reset as s7
    from steps import step8_database as s8

    tasks = [
        s3.step3_1,
        s3.step3_2,
        s4.step4_1,
        s4.step4_2,
        s5.step5_1,
        s5.step5_2,
        s5.step5_3,
        s5.step5_4,
        s6.step6_1,
        s6.step6_2,
        s7.step7,
        s8.step8_range,
        s8.step8_1_prepare,
        s8.step8_1_submit,
        s8.step8_2_prepare,
        s8.step8_2_submit,
        s8.step8_3_prepare,
        s8.step8_3_submit,
    ]
    names = [t.name for t in tasks]
    assert len(set(names)) == len(names)
    for t in tasks:
        assert t.name == t.fn.__name__ and t.persist_result is True
        params = inspect.signature(t.fn).parameters
        assert list(params)[:4] == ["date", "round", "run_key", "site"]
        assert params["site"].default == "default"
    for t in (s3.step3_1, s4.step4_1, s5.step5_1, s6.step6_1):
        params = inspect.signature(t.fn).parameters
        assert params["submit_job"].default is True and "max_wait_minutes" in params
    assert inspect.signature(s4.step4_1.fn).parameters["check"].default is True
    for t in (s7.step7, s8.step8_1_submit, s8.step8_2_submit, s8.step8_3_submit):
        assert inspect.signature(t.fn).parameters["approved_by"].default == ""


def test_tasks_resolve_the_site_by_name(
    sim: Any, local_settings: SiteSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from steps import session
    from steps.step8_database import step8_1_prepare, step8_1_submit, step8_range

    name = "steps38-tasks"
    (tmp_path / f"{name}.json").write_text(json.dumps(local_settings.model_dump(mode="json")))
    monkeypatch.setenv("TOPUP_SITES_DIR", str(tmp_path))
    try:
        got = step8_range.fn(None, ROUND, "rk8t", site=name)
        assert (got.data["run_from"], got.data["run_to"]) == (F, T)
        with pytest.raises(StepError) as exc:
            step8_1_prepare.fn(None, ROUND, "rk8t", site=name)  # no range given
        assert exc.value.result.error.code == 21
        step8_1_prepare.fn(None, ROUND, "rk8t", site=name, run_from=F, run_to=T, poll_seconds=0.1)
        with pytest.raises(StepError) as exc:  # approved_by defaults to "": refused
            step8_1_submit.fn(None, ROUND, "rk8t", site=name, run_from=F, run_to=T)
        assert exc.value.result.error.code == 20 and sim.db_ledger() == []
    finally:
        site = session._sites.pop(name, None)
        if site is not None:
            site.close()
