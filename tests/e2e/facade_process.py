"""The facade as its own process, started the way an operator does: ``python -m facade.cli``.

Why a process and not uvicorn in a thread (tests/facade/served.py): the end-to-end suite
checks the deployed shape — settings from the environment only, tokens issued with the CLI,
the API reached over TCP — so nothing of the test process's state can help it along.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from topup_cli.processes import ManagedProcess


def facade_env(
    *,
    port: int,
    prefect_api_url: str,
    database_url: str,
    downloads_dir: Path,
    prefect_home: Path,
    project_dir: Path,
) -> dict[str, str]:
    """Only the facade's own settings: none of the caller's ``PREFECT_*`` / ``TOPUP_*``.

    The project directory goes on ``PYTHONPATH`` (as for the stack's flow runs) because the
    process runs in a directory of its own.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TOPUP_"))}
    env.update(
        TOPUP_FACADE_HOST="127.0.0.1",
        TOPUP_FACADE_PORT=str(port),
        TOPUP_FACADE_PREFECT_API_URL=prefect_api_url,
        TOPUP_DATABASE_URL=database_url,
        TOPUP_DOWNLOADS_DIR=str(downloads_dir),
        PREFECT_HOME=str(prefect_home),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(project_dir), os.environ.get("PYTHONPATH", "")) if p
        ),
    )
    return env


@dataclass
class FacadeProcess:
    """``python -m facade.cli serve`` in ``workdir`` (which holds no ``.env``)."""

    port: int
    env: dict[str, str]
    workdir: Path
    log_path: Path
    process: ManagedProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "facade.cli", *args]

    def start(self, timeout: float = 90.0) -> FacadeProcess:
        """Start the server and wait until ``/api/health`` reports Prefect and the DB up."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "facade", self._cli("serve"), self.env, self.workdir, self.log_path
        ).start()
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.process.running():
                raise RuntimeError(f"the facade exited:\n{self.process.log_tail()}")
            try:
                r = httpx.get(f"{self.base_url}/api/health", timeout=5)
                if r.status_code == 200:
                    return self
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(
            f"the facade did not become healthy ({last}):\n{self.process.log_tail()}"
        )

    def issue_token(self, user: str) -> str:
        """A token from the operator's CLI against the facade's database (printed once)."""
        res = subprocess.run(
            self._cli("token", "create", "--user", user, "--label", "e2e"),
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"token create failed ({res.returncode}): {res.stderr[-2000:]}")
        return res.stdout.strip().splitlines()[-1]

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def stop(self) -> bool:
        return self.process.stop(timeout=15) if self.process is not None else True
