"""The baseline: polling and sessions the way the legacy engine did them.

The legacy engine ran one ``ls`` per expected file per run in every poll cycle (and one
``grep`` per failure log), and every task opened its own SSH session. Here that behaviour is
rebuilt on top of the same transport, so the baseline and the new engine are counted by the
same hook in the same benchmark run. It produces the same ``PollReport`` as the one-command
poll, so the flow runs unchanged on it. Bench only: nothing in production imports this.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from steps.remote import validate
from steps.remote.polling import FAILURE_REGEX, PollReport, RunKey
from steps.remote.site import RemoteSite
from steps.remote.validate import q, qpath

LS = "# topup: legacy ls\n"


def _size_of(site: RemoteSite, directory: str, name: str) -> dict[str, int] | None:
    """One ``ls`` of one (possibly globbed) name: {file: size}, None when nothing matches."""
    # Names are validated ([A-Za-z0-9_.*?[]-] and '/'): globs expand, nothing else can.
    res = site.run(f"{LS}cd -- {qpath(directory)} && ls -ln --time-style=+%s -d -- {name}")
    if res.exit_code != 0:
        return None
    out: dict[str, int] = {}
    for line in res.stdout.splitlines():
        parts = line.split(None, 6)
        if len(parts) == 7 and parts[4].isdigit():
            out[parts[6]] = int(parts[4])
    return out or None


def legacy_poll(
    site: RemoteSite,
    directory: str,
    expected: Mapping[RunKey, Sequence[str]],
    anomalies: Sequence[str] = (),
    failure_logs: Mapping[RunKey, Sequence[str]] | None = None,
    failure_regex: str = FAILURE_REGEX,
) -> PollReport:
    directory = validate.path(directory)
    report = PollReport(directory=directory)
    exists = site.run(f"{LS}test -d {qpath(directory)}").exit_code == 0
    if not exists:
        report.directory_exists = False
    for run, names in expected.items():
        for name in [names] if isinstance(names, str) else names:
            _check_name(name)
            found = _size_of(site, directory, name) if exists else None
            if found is None:
                report.missing.setdefault(run, []).append(name)
                continue
            report.present.setdefault(run, {})[name] = sum(found.values())
            report.files.setdefault(run, {}).update(found)
            if any(size == 0 for size in found.values()):
                report.empty.setdefault(run, []).append(name)
        for log in (failure_logs or {}).get(run, []) if exists else []:
            _check_name(log)
            res = site.run(
                f"{LS}cd -- {qpath(directory)} && grep -a -s -m1 -h -E -e {q(failure_regex)}"
                f" -- {log}"
            )
            if res.exit_code == 0 and res.stdout.strip():
                report.failed[run] = res.stdout.splitlines()[0][:500]
                report.failed_files[run] = log
                break
        bad = run in report.missing or run in report.empty or run in report.failed
        (report.incomplete if bad else report.complete).append(run)
    for name in anomalies if exists else []:
        _check_name(name)
        if _size_of(site, directory, name):
            report.anomalies.append(name)
    return report


def _check_name(name: str) -> None:
    for part in name.split("/"):
        validate.file_name(part)
        if part in {".", ".."}:
            raise validate.InvalidValue("relative name", name)


class LegacySite(RemoteSite):
    """A RemoteSite that polls the legacy way (one command per file per run)."""

    # legacy_poll takes poll_files' arguments after the site, which is ``self`` here.
    poll_files = legacy_poll  # type: ignore[assignment]


def _modules_using_open_site() -> list[Any]:
    import flows
    import steps

    found = []
    for package in (steps, flows):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            if info.name != "steps.session" and hasattr(module, "open_site"):
                found.append(module)
    return found


@contextmanager
def legacy_engine() -> Iterator[list[RemoteSite]]:
    """While active, every task gets a new LegacySite (a new SSH session) and polls per file.

    Yields the sites opened so far; they are closed when the block ends.
    """
    import steps.output_waits
    from steps.session import load_settings

    opened: list[RemoteSite] = []

    def open_site(name: str = "default") -> RemoteSite:
        site = LegacySite(load_settings(name))
        opened.append(site)
        return site

    modules = _modules_using_open_site()
    saved = [(m, m.open_site) for m in modules]
    saved_tree = steps.output_waits.poll_tree
    for module in modules:
        module.open_site = open_site
    # poll_tree's arguments are legacy_poll's: names in sub-directories are polled per file too.
    steps.output_waits.poll_tree = legacy_poll  # type: ignore[assignment]
    try:
        yield opened
    finally:
        for module, original in saved:
            module.open_site = original
        steps.output_waits.poll_tree = saved_tree  # type: ignore[assignment]
        for site in opened:
            site.close()
