"""What the stack's own processes next to Prefect's are given: the facade, the notification
receiver and the crashed-run recovery loop, each as a command line, an environment and a log.

Why apart from the supervisor: like ``topup_cli/stack_settings.py`` for the Prefect side,
this is the place to read what each of these processes sees; the supervisor decides when
they start and stop. Every one gets the caller's environment without its ``PREFECT_*``
settings (the stack sets its own) and unbuffered output (its log is read while it runs).
"""

from __future__ import annotations

import sys
from pathlib import Path

from topup_cli.processes import ManagedProcess
from topup_cli.stack import PROJECT_DIR, PrefectStack
from topup_cli.stack_settings import inherited_env


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without its Prefect settings, unbuffered, plus ``extra``."""
    return {**inherited_env(), "PYTHONUNBUFFERED": "1", **extra}


def _client_env(stack: PrefectStack, **extra: str) -> dict[str, str]:
    """``_env`` for a client of the stack's Prefect API."""
    return _env(PREFECT_HOME=str(stack.prefect_home), PREFECT_API_URL=stack.api_url, **extra)


def facade_process(
    name: str, stack: PrefectStack, host: str, port: int, downloads_dir: Path, log_dir: Path
) -> ManagedProcess:
    """One facade (uvicorn) on ``port``, on the stack's API and outputs store."""
    env = _client_env(
        stack,
        TOPUP_FACADE_PREFECT_API_URL=stack.api_url,
        TOPUP_FACADE_HOST=host,
        TOPUP_FACADE_PORT=str(port),
        TOPUP_DATABASE_URL=stack.topup_database_url,
        TOPUP_DOWNLOADS_DIR=str(downloads_dir),
    )
    argv = [sys.executable, "-m", "facade.cli", "serve"]
    return ManagedProcess(name, argv, env, stack.settings.project_dir, log_dir / f"{name}.log")


def notifier_process(
    host: str, port: int, notifications_log: Path, log_dir: Path
) -> ManagedProcess:
    """The local webhook receiver: each notification becomes a line of ``notifications_log``."""
    argv = [
        sys.executable, "-m", "topup_cli.notify_receiver",
        "--host", host,
        "--port", str(port),
        "--log", str(notifications_log),
    ]  # fmt: skip
    return ManagedProcess(
        "notify-receiver", argv, _env(), PROJECT_DIR, log_dir / "notify-receiver.log"
    )


def recovery_process(stack: PrefectStack, log_dir: Path) -> ManagedProcess:
    """The crashed-run recovery loop (``deployments/recovery.py``) on the stack's API."""
    argv = [sys.executable, "-m", "deployments.recovery", "--api-url", stack.api_url]
    return ManagedProcess(
        "recovery", argv, _client_env(stack), stack.settings.project_dir, log_dir / "recovery.log"
    )
