#!/usr/bin/env bash
# Validates deploy/cloudrun/*.yaml and deploy/gke/*.yaml against the Kubernetes schemas,
# offline and strictly (scripts/validate_manifests.py says how each kind is checked).
# kubernetes-validate is installed from PyPI into target/tools/kubernetes-validate (a
# virtual environment of its own) when missing. Usage: scripts/validate-manifests.sh [FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CARGO_TARGET_DIR:-target}/tools/kubernetes-validate
if ! "$venv/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "installing kubernetes-validate into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r scripts/requirements-manifests.txt
fi
exec "$venv/bin/python" scripts/validate_manifests.py "$@"
