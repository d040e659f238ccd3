"""One declaration per step task (steps/declare.py) and the explicit table (flows/registry.py).

What Prefect sees of a declared task must be what it saw of the hand-written wrappers: the
name, ``task_key`` starting with ``<name>-``, persisted results, the parameters with ``site``
by name, and a source of its own for the default cache key.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from flows.naming import task_of
from flows.registry import TASKS, step_declaration, step_task
from steps import session
from steps.config import SiteSettings
from steps.declare import declaration_of, declare
from steps.remote.site import RemoteSite
from steps.results import StepResult


def test_the_table_maps_each_name_to_the_task_of_that_name() -> None:
    for name, task in TASKS.items():
        assert task.name == name == task.fn.__name__ == task.fn.__qualname__
        assert task.task_key.startswith(f"{name}-") and task_of(task.task_key) == name
        assert task.persist_result is True
        site = inspect.signature(task.fn).parameters["site"]
        assert site.default == "default"
        assert step_declaration(name).name == name and step_declaration(name).label
    with pytest.raises(LookupError):
        step_task("step9_9")


def test_every_task_is_cached_by_its_own_function_source() -> None:
    """Equal inputs in one flow run (1.4, 4.2, 5.4, 6.2; the three parts of step 8) must not
    share a cache key: each task's source is its own plain function's, kept by with_options."""
    sources = {}
    for name, task in TASKS.items():
        again = task.with_options(retries=3, task_run_name="x")
        assert again.source_code == task.source_code
        assert declaration_of(again) is declaration_of(task)
        assert task.source_code == inspect.getsource(declaration_of(task).fn)
        sources[task.source_code] = name
    assert len(sources) == len(TASKS)


def _toy(site: RemoteSite, *, date: str, round: str, run_key: str, n: int = 1) -> StepResult:
    """A toy step: says which site it was given."""
    return StepResult(step="toy", date=date, round=round, message=repr(site), data={"n": n})


def test_a_declared_task_opens_its_site_by_name(
    local_settings: SiteSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = declare("toy_open", "t", "Toy", _toy)
    assert str(inspect.signature(task.fn)) == (
        "(date: 'str', round: 'str', run_key: 'str', site: 'str' = 'default', n: 'int' = 1)"
        " -> 'StepResult'"
    )
    assert task.fn.__doc__ == _toy.__doc__
    name = "declare-toy"
    (tmp_path / f"{name}.json").write_text(json.dumps(local_settings.model_dump(mode="json")))
    monkeypatch.setenv("TOPUP_SITES_DIR", str(tmp_path))
    try:
        got = task.fn("260101", "round18", "rk", name, n=2)
        assert got.message == repr(session.open_site(name)) and got.data == {"n": 2}
        assert task.fn(date="260101", round="round18", run_key="rk", site=name).data == {"n": 1}
    finally:
        site = session._sites.pop(name, None)
        if site is not None:
            site.close()


def test_a_function_is_declared_once_and_site_follows_a_named_parameter() -> None:
    def other(site: RemoteSite, *, round: str, runs: list[int], tag: str) -> Any:
        return None

    task = declare("toy_after", "t", "Toy", other, site_after="tag")
    assert list(inspect.signature(task.fn).parameters) == ["round", "runs", "tag", "site"]
    with pytest.raises(ValueError, match="already declared"):
        declare("toy_again", "t", "Toy", other, site_after="tag")
    with pytest.raises(ValueError, match="no parameter"):
        declare("toy_bad", "t", "Toy", _toy2)  # no run_key to put site after


def _toy2(site: RemoteSite, *, round: str) -> StepResult:
    return StepResult(step="toy", round=round, message="")
