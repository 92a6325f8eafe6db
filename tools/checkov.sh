#!/usr/bin/env bash
# Policy-check the Bicep in infra/ with checkov, offline.
#
# checkov pins pycep-parser 0.5.1 while the tests use 0.7.1, so checkov lives in its own
# virtual environment, .venv-checkov, created here on first use.
#
#   tools/checkov.sh                 install if needed, then check (exit 1 on any failed check)
#   tools/checkov.sh --install-only  create or update .venv-checkov and stop
#
# With CHECKOV_NO_INSTALL=1 a missing environment is an error instead of an install; the
# pytest wrapper sets it so tests never reach a package registry.
#
# Every skipped check carries its reason inline in the Bicep: //checkov:skip=CKV_...:reason
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv-checkov"
STAMP="${VENV}/.installed-${CHECKOV_VERSION}"
PYTHON="${PYTHON:-python3.11}"

install() {
  command -v "${PYTHON}" >/dev/null 2>&1 || {
    echo "checkov.sh: Python 3.11 is required (${PYTHON} not found)" >&2
    exit 2
  }
  test -x "${VENV}/bin/python" || "${PYTHON}" -m venv "${VENV}"
  "${VENV}/bin/python" -m pip install --quiet --upgrade pip
  "${VENV}/bin/python" -m pip install --quiet "checkov==${CHECKOV_VERSION}"
  touch "${STAMP}"
}

if [[ ! -f "${STAMP}" ]]; then
  if [[ "${CHECKOV_NO_INSTALL:-0}" == "1" ]]; then
    echo "checkov.sh: ${VENV} has no checkov ${CHECKOV_VERSION}; run tools/checkov.sh --install-only" >&2
    exit 2
  fi
  install
fi

if [[ "${1:-}" == "--install-only" ]]; then
  exit 0
fi

# --skip-download: no calls to the Bridgecrew platform; the checks ship with the package.
exec "${VENV}/bin/checkov" \
  --framework bicep \
  --directory "${ROOT}/infra" \
  --compact \
  --skip-download \
  --quiet
