#!/usr/bin/env bash
# Installs MedSwitch, starts the embedded PostgreSQL, loads the reference
# region (once), creates the CA and certificates (once) and serves gRPC on
# $MEDSWITCH_LISTEN (default 127.0.0.1:50051) until Ctrl-C / SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
export MEDSWITCH_DATA_DIR=${MEDSWITCH_DATA_DIR:-$PWD/var}
MS=.venv/bin/medswitch
if [ ! -f "$MEDSWITCH_DATA_DIR/.reference-imported" ]; then
  $MS import-reference shared/reference
  touch "$MEDSWITCH_DATA_DIR/.reference-imported"
fi
if [ ! -f "${MEDSWITCH_TLS_DIR:-$MEDSWITCH_DATA_DIR/tls}/ca.crt" ]; then
  $MS pki init
  cut -d, -f1 shared/reference/institutions.csv | tail -n +2 | while read -r code; do
    $MS pki issue "$code" >/dev/null
  done
fi
exec $MS serve
