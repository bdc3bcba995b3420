#!/usr/bin/env bash
# Installs (if needed) and runs the whole test suite: ruff, mypy strict on the
# engine, unit tests, and integration tests against a real PostgreSQL and a
# real gRPC server. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
exec .venv/bin/python -m pytest "$@"
