#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine (run as root): system packages the
# simulated site needs, a virtualenv with the locked Python packages, the project
# installed in editable mode. Safe to run again; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v setsid >/dev/null 2>&1 || need_apt+=(util-linux)
# Headless browser of the end-to-end UI check (tests/e2e), with its matching driver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# Load balancer of the HA stack (`topup up --ha`, tests/ha); iproute2 for the tests' network
# namespaces (workers as separate hosts).
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The HA tests run a redis-server of their own (restarted by a fault scenario).
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.lock-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -r requirements.lock 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  rm -f .venv/.lock-*
  touch "$stamp"
fi
.venv/bin/python -c "import prefect, fabric, fastapi, sqlmodel" 
echo "setup: ready (.venv, $(.venv/bin/python -c 'import prefect; print("prefect", prefect.__version__)'))"
