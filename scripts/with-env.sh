#!/usr/bin/env bash
# Run a command with the addresses of the local infrastructure (.local/infra.env) exported.
# A variable already set in the environment wins over the file, so DATABASE_URL etc. can
# point anywhere.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="${VIDGEN_ENV_FILE:-$ROOT/.local/infra.env}"
if [ -f "$ENV_FILE" ]; then
  while IFS='=' read -r key value; do
    case "$key" in ''|\#*) continue ;; esac
    [ -n "${!key+x}" ] || export "$key=$value"
  done <"$ENV_FILE"
fi
exec "$@"
