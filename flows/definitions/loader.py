"""Find, validate and cache the workflow definition files.

Files: ``*.json`` next to this module, plus those in ``TOPUP_WORKFLOWS_DIR`` when set. The
cache is keyed by the files' paths and modification times, so an edited file is picked up
without a restart and an unchanged set costs one ``stat`` per file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from pydantic import ValidationError

from flows.definitions.models import WorkflowDefinition, version_key

PACKAGED_DIR = Path(__file__).resolve().parent
ENV_DIR = "TOPUP_WORKFLOWS_DIR"

_lock = threading.Lock()
_cache: tuple[tuple[tuple[str, float], ...], dict[tuple[str, str], WorkflowDefinition]] | None = (
    None
)
_sources: dict[tuple[str, str], str] = {}


class DefinitionError(ValueError):
    """A definition file is invalid, duplicated, or the requested one does not exist."""


def definition_dirs() -> list[Path]:
    dirs = [PACKAGED_DIR]
    extra = os.environ.get(ENV_DIR)
    if extra:
        dirs.append(Path(extra).expanduser().resolve())
    return dirs


def _files() -> list[Path]:
    files: list[Path] = []
    for d in definition_dirs():
        if d.is_dir():
            files.extend(sorted(d.glob("*.json")))
    return files


def _read(path: Path) -> WorkflowDefinition:
    try:
        return WorkflowDefinition.model_validate(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise DefinitionError(f"invalid workflow definition {path}: {exc}") from exc


def _all() -> dict[tuple[str, str], WorkflowDefinition]:
    global _cache
    files = _files()
    signature = tuple((str(f), f.stat().st_mtime) for f in files)
    with _lock:
        if _cache is not None and _cache[0] == signature:
            return _cache[1]
        found: dict[tuple[str, str], WorkflowDefinition] = {}
        origin: dict[tuple[str, str], Path] = {}
        for f in files:
            d = _read(f)
            if d.key in found:
                raise DefinitionError(
                    f"{d.name}@{d.version} is defined twice: {origin[d.key]} and {f}"
                )
            found[d.key] = d
            origin[d.key] = f
        _cache = (signature, found)
        _sources.clear()
        _sources.update({k: f.name for k, f in origin.items()})
        return found


def clear_cache() -> None:
    global _cache
    with _lock:
        _cache = None


def list_definitions() -> list[WorkflowDefinition]:
    """Every definition, by name then version (oldest first)."""
    return sorted(_all().values(), key=lambda d: (d.name, version_key(d.version)))


def source_name(definition: WorkflowDefinition) -> str | None:
    """The file name (no directory) the definition was read from."""
    _all()
    return _sources.get(definition.key)


def _resolve_name(name: str, defs: dict[tuple[str, str], WorkflowDefinition]) -> str:
    if any(n == name for n, _ in defs):
        return name
    for d in defs.values():
        if name in d.legacy_names:
            return d.name
    raise DefinitionError(f"unknown workflow {name!r}")


def load(name: str, version: str | None = None) -> WorkflowDefinition:
    """The definition ``name`` (or a legacy alias) at ``version``.

    Without a version: the latest version of a name; for a legacy alias, the latest version
    that declares the alias (an alias means the behaviour of the version it is declared on).
    """
    defs = _all()
    real = _resolve_name(name, defs)
    if version is None:
        versions = [d for (n, _), d in defs.items() if n == real]
        if name != real:
            versions = [d for d in versions if name in d.legacy_names]
        return max(versions, key=lambda d: version_key(d.version))
    found = defs.get((real, version))
    if found is None:
        known = sorted((v for n, v in defs if n == real), key=version_key)
        raise DefinitionError(
            f"workflow {real!r} has no version {version!r} (known: {', '.join(known)})"
        )
    return found


def unknown_workflow_message(name: str, version: str | None) -> str:
    """What every answer says about a workflow that cannot be loaded: the name alone when
    no version of it exists, else the version asked for and the known ones."""
    defs = _all()
    try:
        real = _resolve_name(name, defs)
    except DefinitionError:
        return f"Workflow not found: {name}"
    known = sorted((v for n, v in defs if n == real), key=version_key)
    return f"Workflow {real} has no version {version}; known: {', '.join(known)}"
