"""The demo end to end (`python -m topup_cli.demo --exit`, no terminal): the 21 steps for
250624 on the simulated site through the real stack, PDFs downloaded, exit 0, and nothing
left running afterwards."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.sshd import SshPair
from steps import download_folders
from tests.cli.helpers import cli_env, data_dir, processes_using

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture
def data() -> Iterator[Path]:
    path = data_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def test_demo_runs_the_workflow_and_exits_clean(data: Path) -> None:
    began = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "topup_cli.demo", "--exit"],
        env=cli_env(data),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    out = res.stdout + res.stderr
    print(f"\ndemo wall time {time.monotonic() - began:.1f}s")
    print("\n".join(line for line in out.splitlines() if re.match(r"(stack up|run |first)", line)))
    assert res.returncode == 0, out

    run_url = re.search(r"(http://127\.0\.0\.1:\d+)/runs/flow-run/([0-9a-f-]{36})", out)
    assert run_url, out
    assert re.search(r"facade API docs: http://127\.0\.0\.1:\d+/docs", out)
    pdfs = sorted(download_folders.folder(data / "downloads", run_url.group(2)).glob("*.pdf"))
    names = {p.name for p in pdfs}
    assert {"mergedd_IST_250624.pdf", "mergedd_ETS_checkall_250624.pdf"} <= names, names
    for pdf in pdfs:
        assert pdf.read_bytes().startswith(b"%PDF"), pdf
        assert str(pdf) in out  # the demo says where they are
    assert re.search(r"step 8\s+step8\s+Completed 7/7", out)

    # Everything stopped: no state file, no sshd of the pair, nothing using the data dir.
    assert not (data / "stack.json").exists()
    assert SshPair(workdir=data / "sim/.sim/sshd", stop_at_exit=False).processes() == []
    assert processes_using(data) == []
