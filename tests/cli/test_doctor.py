"""`topup doctor` from the command line: a site file like the worker's, a table or JSON,
and an exit code that says whether the site is usable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steps.config import SiteSettings
from topup_cli.main import app


@pytest.fixture
def sites_dir(
    sim: Any, ssh_settings: SiteSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A TOPUP_SITES_DIR holding ``sim.json`` (key auth), as `topup up --sim` writes it."""
    directory = tmp_path / "sites"
    directory.mkdir()
    data = ssh_settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
    (directory / "sim.json").write_text(json.dumps(data))
    monkeypatch.setenv("TOPUP_SITES_DIR", str(tmp_path / "elsewhere"))  # restored afterwards
    return directory


def doctor(sites_dir: Path, tmp_path: Path, *args: str) -> Any:
    base = ["doctor", "--sites-dir", str(sites_dir), "--data-dir", str(tmp_path / "var")]
    return CliRunner().invoke(app, [*base, *args])


def test_json_report_of_a_healthy_site(sites_dir: Path, tmp_path: Path) -> None:
    result = doctor(sites_dir, tmp_path, "--site", "sim", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["site"] == "sim"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["paths"]["status"] == "pass" and checks["detached"]["status"] == "pass"
    assert all(c["status"] in ("pass", "warn") for c in report["checks"])


def test_table_names_the_fix_and_exit_1(sim: Any, sites_dir: Path, tmp_path: Path) -> None:
    (sim.hist() / "01go.sh").unlink()
    result = doctor(sites_dir, tmp_path, "--site", "sim", "--brief")
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "NOT usable" in out and "01go.sh" in out and "TOPUP_TOPUP_ROOT" in out


def test_bad_input_exit_2(sites_dir: Path, tmp_path: Path) -> None:
    assert doctor(sites_dir, tmp_path, "--site", "no such").exit_code == 2
    assert doctor(sites_dir, tmp_path, "--site", "missing").exit_code == 2
    assert doctor(sites_dir, tmp_path, "--site", "sim", "--round", "r18").exit_code == 2
