#!/usr/bin/env bash
# The end-to-end suite against the system as containers: docker-compose.yml with
# deploy/compose/local-infra.yml (and e2e.yml), run by podman through scripts.stack.
#
#   scripts/compose-e2e.sh build   every image (scripts/images.sh build + infra): needs the
#                                  package registries
#   scripts/compose-e2e.sh run     up (each container healthy), tests/e2e against it, down -v;
#                                  needs no network
#   scripts/compose-e2e.sh         both
#   scripts/compose-e2e.sh test    what `make test` runs: build, scripts/images.sh check (on
#                                  the local infrastructure of make infra-up), run. Without
#                                  podman it says so and stops (exit 0); under CI=true it fails
#
# As root with unshare(1), `run` happens in a network namespace of its own (loopback only),
# so the containers' ports (5432, 9000, 9092, 8000-8013, 8100) never meet the host's; set
# VIDGEN_STACK_OWN_NETNS=0 to use the current one. Fails when a container does not become
# healthy, printing its log; the tails of every container's log are kept in .local/stack/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STACK_DIR="$ROOT/.local/stack"
PROJECT="vidgen-e2e"
FILES=(-f docker-compose.yml -f deploy/compose/local-infra.yml -f deploy/compose/e2e.yml)
export COMPOSE_PROFILES=sim

log() { printf '[compose-e2e] %s\n' "$*" >&2; }

stack() { uv run --frozen --quiet python -m scripts.stack -p "$PROJECT" "${FILES[@]}" "$@"; }

build() {
  local t0=$SECONDS
  scripts/images.sh build
  scripts/images.sh infra
  log "images built in $((SECONDS - t0)) s"
}

keep_logs() {
  local name
  for name in $(stack ps | awk '{print $1}'); do
    stack logs --tail 400 "$name" >"$STACK_DIR/$name.log" 2>&1 || true
  done
}

# Inside the namespace: loopback up, the stack up, the tests, the stack down whatever happened.
run_here() {
  ip link set lo up 2>/dev/null || true
  local t0=$SECONDS rc=0
  rm -f "$STACK_DIR/spans.jsonl"
  stack down -v >/dev/null 2>&1 || true
  trap 'keep_logs; stack down -v >/dev/null 2>&1 || true' EXIT
  if ! stack up; then
    log "the system did not come up (container logs in $STACK_DIR)"
    return 1
  fi
  log "up in $((SECONDS - t0)) s"
  stack system >"$STACK_DIR/system.json"
  local t1=$SECONDS
  # tests/e2e, and the browser tests that need no process control (the page the gateway's
  # image serves).
  VIDGEN_E2E_SYSTEM="$STACK_DIR/system.json" uv run --frozen pytest tests/e2e \
    tests/browser/test_page.py -p no:cacheprovider ${PYTEST_ARGS:-} || rc=$?
  log "tests/e2e and tests/browser/test_page.py against the containers: exit $rc in $((SECONDS - t1)) s (all: $((SECONDS - t0)) s)"
  return $rc
}

run_in_netns() {
  mkdir -p "$STACK_DIR"
  # The services run as uid 10001 and append their spans here.
  chown 10001:10001 "$STACK_DIR" 2>/dev/null || chmod 0777 "$STACK_DIR"
  if [ "${VIDGEN_STACK_OWN_NETNS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    log "running in a network namespace of its own"
    unshare --net --fork -- "$0" run-here
    return
  fi
  run_here
}

have_podman() {
  command -v podman >/dev/null 2>&1 && return 0
  if [ "${CI:-}" = true ]; then
    log "podman is missing [CI=true: the images and the containerised e2e must run]"
    exit 1
  fi
  log "NOT RUN: the images and the containerised e2e need podman (Debian: apt-get install podman buildah debootstrap runc)"
  return 1
}

test_all() {
  have_podman || exit 0
  local t0=$SECONDS
  build
  scripts/with-env.sh scripts/images.sh check   # the services' start-up, on the local infrastructure
  run_in_netns
  log "images and containerised e2e took $((SECONDS - t0)) s"
}

case "${1:-all}" in
  test) test_all ;;
  build) build ;;
  run) have_podman || exit 1; run_in_netns ;;
  run-here) run_here ;;
  all) have_podman || exit 1; build; run_in_netns ;;
  *) echo "usage: $0 [build|run|all]" >&2; exit 2 ;;
esac
