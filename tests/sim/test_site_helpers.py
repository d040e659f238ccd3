"""Helpers shared by the simulated-site tests (no tests here).

The tests drive the tree the way the steps will: a non-interactive bash, the environment
script sourced, the legacy command lines. Waiting is always "poll a condition with a
deadline", never a fixed sleep.
"""

from __future__ import annotations

import re
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.site import SimSite

SITE_USER = "topup"


def bash(
    sim: SimSite,
    command: str,
    cwd: Path,
    env: bool = True,
    user: str | None = None,
    timeout: float = 60,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` like a step would (``cd cwd && source w720 && command``)."""
    script = f"cd {cwd} && " + (f"source {sim.env_script} && " if env else "") + command
    argv = ["/bin/bash", "-c", script]
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        check=False,
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, poll: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test with its last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(poll)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR (also checks the signature)."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def pdf_pages(path: Path) -> list[tuple[int, int]]:
    """(width, height) of every page of a PDF written by the simulated `convert`."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1.3"), "not a PDF 1.3 file"
    assert data.rstrip().endswith(b"%%EOF")
    count = re.search(rb"/Type /Pages /Kids \[[^\]]*\] /Count (\d+)", data)
    boxes = re.findall(rb"/Type /Page /Parent 2 0 R /MediaBox \[0 0 (\d+) (\d+)\]", data)
    assert count is not None and int(count.group(1)) == len(boxes)
    return [(int(w), int(h)) for w, h in boxes]


def pdf_title(path: Path) -> str:
    m = re.search(rb"/Title \(([^)]*)\)", path.read_bytes())
    assert m is not None
    return m.group(1).decode()


def runs_of(names: list[str], pattern: str) -> list[int]:
    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(pattern, n)))


def container_convert(
    sim: SimSite, cwd: Path, lines: list[str]
) -> subprocess.CompletedProcess[str]:
    """The legacy heredoc of the merge steps: hep_container shell SL6 << 'EOF' ... EOF."""
    body = "\n".join([*lines, "exit"])
    command = f"{sim.container_cmd} shell SL6 << 'EOF'\n{body}\nEOF"
    return bash(sim, command, cwd, env=False)


def fast(sim: SimSite, **extra: Any) -> None:
    """Short job and drawing times for tests."""
    sim.set_faults(job_seconds=0.05, draw_seconds=0.02, **extra)
