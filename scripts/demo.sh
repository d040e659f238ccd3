#!/usr/bin/env bash
# Sets everything up, then runs the demo: the whole stack on embedded defaults
# against the simulated site.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m topup_cli.demo "$@"
