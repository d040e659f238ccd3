#!/usr/bin/env bash
# Sets everything up, then runs lint and the full test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two test processes (CI has 2 cores; most tests wait on sshd, jobs and Prefect), whole files
# per process so module fixtures are built once. TOPUP_TEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -n "${TOPUP_TEST_WORKERS:-2}" --dist loadfile "$@"
