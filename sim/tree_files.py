"""The files of a simulated tree: where the templates are, how they are rendered and written.

Why a module of its own: the builder, the fabricated stage state (``sim/fabricate.py``) and the
``SimSite`` handle all write files into the tree the same way and name the same fixed places.
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent / "scripts"
PYTHON = "/usr/bin/python3"
# The tree's path lands unquoted in the legacy scripts and in sed expressions, and must
# not contain the placeholders the generators replace.
SAFE_ROOT_RE = re.compile(r"^/[A-Za-z0-9_./-]+$")
PLACEHOLDERS = ("RUNNO", "INTERVAL", "INPUTFILE", "_ID")
TOKEN_RE = re.compile(r"@[A-Z_]+@")

STAGE_DIRS = {
    "search_peak": ("Determining_50Hz_cut/search_peak", "3"),
    "checkShieldCalib": ("Determining_50Hz_cut/checkShieldCalib", "4"),
    "ETS_cut": ("Determining_ETS_cut/ETS_cut", "5"),
    "check_ETScut_CalibConst": ("Determining_ETS_cut/check_ETScut_CalibConst", "6"),
}
CHECK_DB_ALG_REL = (
    "besfs5/users/topup/boss720/workarea/workarea-7.2.0/Analysis/checkDBAlg/"
    "checkDBAlg-00-00-00/share"
)


class SiteBuildError(RuntimeError):
    pass


@cache
def template(name: str) -> str:
    return (SCRIPTS / name).read_text()


def render(name: str, tokens: dict[str, str]) -> str:
    text = template(name)
    for key, value in tokens.items():
        text = text.replace(f"@{key}@", value)
    left = TOKEN_RE.findall(text)
    if left:
        raise SiteBuildError(f"template {name}: unresolved {sorted(set(left))}")
    return text


def write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    os.chmod(path, mode)


def install(template: str, dest: Path, tokens: dict[str, str], mode: int = 0o755) -> None:
    write(dest, render(template, tokens), mode)


@cache
def simimg() -> Any:
    """The tree's stdlib image module, loaded from the templates (it has no tree paths)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sim_simimg", SCRIPTS / "bin" / "simimg.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def put(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    write(path, data, mode)
    return path
