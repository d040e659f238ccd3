#!/usr/bin/env bash
# Sets everything up, then runs lint and the full test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Three test processes on CI's 2 cores: most tests wait on sshd, batch jobs and Prefect rather
# than compute (a full run under a load average of 10-30 took 1.3x as long as on a quiet
# machine). Whole files per process, so module fixtures are built once. The slowest tests are
# listed at the end. TOPUP_TEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -n "${TOPUP_TEST_WORKERS:-3}" --dist loadfile --durations=25 "$@"
