""".env.example lists every setting, so the documented configuration cannot drift from code.

The expected names are derived, not listed here: every field of every pydantic-settings model
of the runtime packages (prefix + field, nested fields with ``__``, and each upper-case
environment alias such as the legacy ``SSH_PASS_LXLOGIN``), plus every ``TOPUP_*`` variable
the code reads directly. The example values must load through the same models.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, BaseModel
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / ".env.example"
RUNTIME_PACKAGES = ("steps", "flows", "facade", "store", "topup_cli", "deployments")
# Names that look like settings but are not: variables the detached-command scripts export on
# the remote host for themselves (steps/remote/detached.py).
NOT_SETTINGS = re.compile(r"^TOPUP_DETACHED_")
LINE = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")


def example_lines() -> dict[str, str]:
    """Variable -> example value, commented out or not (the last one of a name wins)."""
    out: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        m = LINE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def sources() -> list[Path]:
    return [p for pkg in RUNTIME_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def settings_models() -> list[type[BaseSettings]]:
    """Every ``class X(BaseSettings)`` of the runtime packages, imported."""
    models = []
    for path in sources():
        for name in re.findall(r"^class (\w+)\(BaseSettings\)", path.read_text(), re.M):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            models.append(getattr(importlib.import_module(module), name))
    return models


def _nested_model(annotation: object) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def env_names(model: type[BaseSettings]) -> set[str]:
    """The environment variables that set ``model``'s fields."""
    config = model.model_config
    prefix = (config.get("env_prefix") or "").upper()
    delimiter = config.get("env_nested_delimiter")
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.isupper()}
            continue
        if isinstance(alias, str):
            names.add(alias.upper())
            continue
        base = f"{prefix}{field_name.upper()}"
        nested = _nested_model(field.annotation)
        if nested is not None and delimiter:
            names |= {f"{base}{delimiter}{sub.upper()}" for sub in nested.model_fields}
        else:
            names.add(base)
    return names


def direct_reads() -> set[str]:
    """``TOPUP_*`` names the code reads without a settings model (string literals)."""
    found: set[str] = set()
    for path in sources():
        for name in re.findall(r"[\"'](TOPUP_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text()):
            if not NOT_SETTINGS.match(name):
                found.add(name)
    return found


def test_the_models_are_found() -> None:
    # The scan must see the known models, or the next test would prove nothing.
    names = {m.__name__ for m in settings_models()}
    assert {"SiteSettings", "FacadeSettings", "NotificationSettings"} <= names


def test_every_setting_is_listed() -> None:
    listed = set(example_lines())
    for model in settings_models():
        missing = sorted(env_names(model) - listed)
        assert not missing, f"{model.__name__}: not in .env.example: {missing}"
    missing = sorted(direct_reads() - listed)
    assert not missing, f"read from the environment, not in .env.example: {missing}"
    # The legacy password variables and the database URLs are documented too.
    assert {"SSH_PASS_LXLOGIN", "SSH_PASS_BESLOGIN", "TOPUP_DATABASE_URL"} <= listed
    assert {"TOPUP_PREFECT_DATABASE_URL", "PREFECT_API_DATABASE_CONNECTION_URL"} <= listed


def test_every_listed_name_is_a_real_setting() -> None:
    """No stale names: each one is a settings field, a direct read or Prefect's own."""
    known = set().union(*(env_names(m) for m in settings_models())) | direct_reads()
    stale = sorted(n for n in example_lines() if n not in known and not n.startswith("PREFECT_"))
    assert not stale, f".env.example lists unknown settings: {stale}"


def test_the_example_values_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented, the examples are valid values for the models (types, bounds, patterns)."""
    for name in list(os.environ):
        if name.startswith(("TOPUP_", "SSH_PASS_")):
            monkeypatch.delenv(name)
    values = example_lines()
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    for model in settings_models():
        loaded = model(_env_file=env_file)  # type: ignore[call-arg]
        assert isinstance(loaded, model)
    from deployments.notifications import NotificationSettings

    notify = NotificationSettings(_env_file=env_file)  # type: ignore[call-arg]
    assert notify.enabled and notify.on == ["failed", "waiting", "aborted", "completed"]
    assert set(notify.webhook_headers) == {"Authorization"}
