"""One way to declare a step task: a name, a label, a title and the plain step function.

A plain step function takes the ``RemoteSite`` as its first argument and its inputs after it
(``first_jobs(site, *, date, round, run_key, ...)``). Its Prefect task takes the site's *name*
instead (``site: str = "default"``, so Prefect can hash and persist the inputs), opens it here
with ``open_site`` and calls the function. That is the only place a step task opens its site.

Why the Prefect dependency lives here, in the steps layer: the step modules already are the
Prefect task modules (each exposes its tasks, e.g. ``steps.step1_first_jobs.step1_1``, and
logs through Prefect's run logger); the flows above only look tasks up by name
(``flows/registry.py``), and the remote layer below (``steps/remote``) stays free of Prefect.

What Prefect sees of a declared task is what it saw of the hand-written wrappers it replaces:
- the parameters: the function's, with the ``RemoteSite`` replaced by ``site: str = "default"``
  after ``site_after`` (the definitions and the facade pass and show them by name);
- ``__name__``/``__qualname__`` = the task name, so ``task_key`` starts with ``<name>-``
  (``flows/naming.py`` ``task_of``);
- ``__wrapped__`` = the plain function, so Prefect's default cache key hashes *its* source:
  two declarations must not share a function, or tasks with equal inputs in one flow run
  (``step1_4`` and ``step4_2`` both take ``date, round, run_key, site, merge_timeout_minutes``)
  would share one cached result. ``declare`` refuses a function declared twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import Task, task

from steps.results import StepResult
from steps.session import open_site

SITE_PARAMETER = inspect.Parameter(
    "site", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="default", annotation="str"
)

_declared: dict[Callable[..., StepResult], str] = {}


@dataclass(frozen=True)
class StepDeclaration:
    """One step task: ``name`` as Prefect and the definitions know it, ``label``/``title``
    as people read it, ``fn`` the plain step function.

    ``site_after`` names the parameter the task's ``site`` follows. ``opens_site=False`` is
    for a step that needs no connection (``step1_noop``): its function takes the site name
    itself, in its own signature. ``inputs``, when given, is a function whose signature gives
    the task's parameters instead of ``fn``'s (step 8's parts share theirs; ``fn`` then takes
    them as keywords).
    """

    name: str
    label: str
    title: str
    fn: Callable[..., StepResult]
    site_after: str = "run_key"
    opens_site: bool = True
    inputs: Callable[..., StepResult] | None = None

    def signature(self) -> inspect.Signature:
        """The task's parameters (positional-or-keyword, as the wrappers had them)."""
        plain = inspect.signature(self.inputs or self.fn)
        params = [
            p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in plain.parameters.values()
        ]
        if self.opens_site:
            params = params[1:]  # the RemoteSite
            names = [p.name for p in params]
            if self.site_after not in names:
                raise ValueError(f"{self.name}: no parameter {self.site_after!r} to put site after")
            params.insert(names.index(self.site_after) + 1, SITE_PARAMETER)
        return inspect.Signature(params, return_annotation=plain.return_annotation)


def declaration_of(task: Task[..., Any]) -> StepDeclaration:
    """The declaration a step task was built from (also for ``task.with_options(...)``)."""
    return task.fn.declaration  # type: ignore[attr-defined]


def step_task(declaration: StepDeclaration) -> Task[..., StepResult]:
    """The Prefect task of ``declaration`` (results persisted, as every step's are)."""
    signature = declaration.signature()

    def run(*args: Any, **kwargs: Any) -> StepResult:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if not declaration.opens_site:
            return declaration.fn(**arguments)
        site = open_site(arguments.pop("site"))
        return declaration.fn(site, **arguments)

    run.__name__ = run.__qualname__ = declaration.name
    run.__module__ = declaration.fn.__module__
    run.__doc__ = declaration.fn.__doc__
    run.__signature__ = signature  # type: ignore[attr-defined]
    run.__wrapped__ = declaration.fn  # type: ignore[attr-defined]
    run.declaration = declaration  # type: ignore[attr-defined]
    return task(name=declaration.name, persist_result=True)(run)


def declare(
    name: str,
    label: str,
    title: str,
    fn: Callable[..., StepResult],
    *,
    site_after: str = "run_key",
    opens_site: bool = True,
    inputs: Callable[..., StepResult] | None = None,
) -> Task[..., StepResult]:
    """Declare one step and return its Prefect task (see the module docstring)."""
    earlier = _declared.get(fn, name)
    if earlier != name:
        raise ValueError(f"{fn.__qualname__} is already declared as {earlier!r}")
    built = step_task(StepDeclaration(name, label, title, fn, site_after, opens_site, inputs))
    _declared[fn] = name
    return built
