#!/usr/bin/env bash
# Container images of vidgen, built with podman from the one Dockerfile, and checked.
#
#   scripts/images.sh build [NAME...]   base images (once), then every image docker-compose.yml
#                                       builds (or the NAMEs), with its tags; prints the sizes
#   scripts/images.sh check [NAME...]   check the built images (see below); the services'
#                                       health needs the infrastructure (make infra-up)
#   scripts/images.sh infra             the infrastructure images of deploy/compose/local-infra.yml
#   scripts/images.sh all               build, infra, check (the default)
#
# What is built, with which tag, target and build arguments, is read from docker-compose.yml
# (python -m scripts.stack builds): adding a service there adds its image here.
#
# Base images: PYTHON_IMAGE and UV_IMAGE are pulled as the Dockerfile names them when
# VIDGEN_BASE=registry. With VIDGEN_BASE=local (the default) they are made here once, without
# any image registry: a Debian bookworm minbase with python3 (debootstrap from the mirror apt
# uses, or VIDGEN_DEBIAN_MIRROR) and a FROM-scratch image holding the static uv binary of
# PyPI's musllinux uv wheel. Behind a proxy with its own CA, the build mounts the CA bundle
# named by SSL_CERT_FILE over the image's (for that build only: no image keeps it).
#
# Host knobs: VIDGEN_OCI_RUNTIME (runc when installed; crun refuses hybrid cgroup hosts),
# VIDGEN_PODMAN_ULIMITS (nofile/nproc a container may keep where raising limits is not
# permitted), VIDGEN_IMAGE_CHECK_TIMEOUT (seconds a service may take to answer its health).
#
# Each check: the image runs as a non-root numeric user; it holds no dev dependency (its
# distributions are exactly its package's locked runtime closure) and no test code; no secret,
# .env, .local/, .git or private key is baked in, nor the build host's CA bundle; with a
# read-only root filesystem, only /tmp writable, all capabilities dropped, it answers its
# health endpoint, then stops on SIGTERM.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

UV_VERSION="0.13.9"
BASE="${VIDGEN_BASE:-local}"
PYTHON_BASE="localhost/vidgen-base-python:3.11-bookworm"
UV_BASE="localhost/vidgen-base-uv:$UV_VERSION"
CHECK_TIMEOUT="${VIDGEN_IMAGE_CHECK_TIMEOUT:-120}"
read -r -a ULIMITS <<<"${VIDGEN_PODMAN_ULIMITS---ulimit nofile=20000:20000 --ulimit nproc=32768:32768}"

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

need() { # tool package: fail (never skip) when a tool is missing
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: install Debian's '$2' package"
}

podman_() {
  local runtime="${VIDGEN_OCI_RUNTIME:-}"
  if [ -z "$runtime" ] && command -v runc >/dev/null 2>&1; then runtime=runc; fi
  if [ -n "$runtime" ]; then podman --runtime "$runtime" "$@"; else podman "$@"; fi
}

have_image() { podman_ image exists "$1"; }

uv_run() { uv run --frozen --quiet "$@"; }

# --- base images ------------------------------------------------------------------------------

debian_mirror() {
  if [ -n "${VIDGEN_DEBIAN_MIRROR:-}" ]; then echo "$VIDGEN_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
    | grep -v -- '-security' | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' \
    | grep -v -- '-security' | head -n1 || true)
  [ -n "$uri" ] || die "no Debian mirror found in apt's sources: set VIDGEN_DEBIAN_MIRROR"
  echo "$uri"
}

make_python_base() {
  have_image "$PYTHON_BASE" && return
  need debootstrap debootstrap
  local t0=$SECONDS dir mirror
  mirror=$(debian_mirror)
  dir=$(mktemp -d)
  log "making $PYTHON_BASE: debootstrap bookworm minbase + python3"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$dir/rootfs" "$mirror" >"$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; rm -rf "$dir"; die "debootstrap failed"; }
  # What a runtime image never reads: package caches, documentation, manuals, locales.
  rm -rf "$dir"/rootfs/var/cache/apt/*.bin "$dir"/rootfs/var/lib/apt/lists/* \
    "$dir"/rootfs/usr/share/doc/* "$dir"/rootfs/usr/share/man/* "$dir"/rootfs/usr/share/info/*
  find "$dir/rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} +
  tar -C "$dir/rootfs" -c . | podman_ import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$PYTHON_BASE" >/dev/null
  rm -rf "$dir"
  log "made $PYTHON_BASE in $((SECONDS - t0)) s"
}

make_uv_base() {
  have_image "$UV_BASE" && return
  local t0=$SECONDS dir
  dir=$(mktemp -d)
  log "making $UV_BASE from PyPI's musllinux uv $UV_VERSION wheel"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform musllinux_1_1_x86_64 --python-version 3.11 "uv==$UV_VERSION" -d "$dir" \
    || die "could not download the uv wheel"
  (cd "$dir" && python3 -m zipfile -e uv-*.whl wheel)
  install -m 0755 "$dir/wheel/uv-$UV_VERSION.data/scripts/uv" "$dir/uv"
  printf 'FROM scratch\nCOPY uv /uv\n' >"$dir/Containerfile"
  podman_ build --quiet --format docker -t "$UV_BASE" -f "$dir/Containerfile" "$dir" >/dev/null
  rm -rf "$dir"
  log "made $UV_BASE in $((SECONDS - t0)) s"
}

# BASE_ARGS and COMMON_ARGS: the build arguments every build takes.
set_build_args() {
  BASE_ARGS=()
  if [ "$BASE" != registry ]; then
    [ "$BASE" = local ] || die "VIDGEN_BASE is local or registry, not $BASE"
    make_python_base
    make_uv_base
    BASE_ARGS=(--build-arg "PYTHON_IMAGE=$PYTHON_BASE" --build-arg "UV_IMAGE=$UV_BASE")
  fi
  COMMON_ARGS=(--format docker --network host "${ULIMITS[@]}")
  if [ -n "${SSL_CERT_FILE:-}" ] && [ -f "$SSL_CERT_FILE" ]; then
    COMMON_ARGS+=(-v "$SSL_CERT_FILE:/etc/ssl/certs/ca-certificates.crt:ro")
  fi
}

# --- build ------------------------------------------------------------------------------------

# name image dockerfile target args... (one line per image docker-compose.yml builds)
builds() { uv_run python -m scripts.stack builds "$@"; }

size_of() { podman_ image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }

build() {
  need podman podman
  local t0=$SECONDS lines
  set_build_args
  lines=$(builds "$@") || die "could not read the images from docker-compose.yml"
  if grep -q ' gateway ' <<<" $(cut -f4 <<<"$lines" | tr '\n' ' ') "; then
    [ -f web/dist/index.html ] || die "web/dist is not built: run make web first"
  fi
  while IFS=$'\t' read -r name image dockerfile target args; do
    local t1=$SECONDS target_args=() build_args=()
    [ "$target" != - ] && target_args=(--target "$target")
    for a in $args; do build_args+=(--build-arg "$a"); done
    log "building $image ($name)"
    podman_ build "${COMMON_ARGS[@]}" "${BASE_ARGS[@]}" "${target_args[@]}" "${build_args[@]}" \
      -f "$dockerfile" -t "$image" . >".local/images/$name.build.log" 2>&1 \
      || { tail -n 30 ".local/images/$name.build.log" >&2; die "$image did not build"; }
    log "built $image in $((SECONDS - t1)) s: $(size_of "$image")"
  done <<<"$lines"
  log "images built in $((SECONDS - t0)) s"
}

infra() {
  need podman podman
  local t0=$SECONDS
  set_build_args
  for target in tansu nanio postgres; do
    local image="localhost/vidgen-local-$target:dev"
    podman_ build "${COMMON_ARGS[@]}" "${BASE_ARGS[@]}" --target "$target" -f deploy/compose/infra.Dockerfile \
      -t "$image" deploy/compose >".local/images/infra-$target.build.log" 2>&1 \
      || { tail -n 30 ".local/images/infra-$target.build.log" >&2; die "$image did not build"; }
    log "built $image: $(size_of "$image")"
  done
  log "infrastructure images built in $((SECONDS - t0)) s"
}

# --- checks -----------------------------------------------------------------------------------

fail_check() { printf '[images] check failed: %s: %s\n' "$1" "$2" >&2; CHECK_FAILED=1; }

check_static() { # name image package
  local name=$1 image=$2 package=$3 user base_sha image_sha allowed members report
  user=$(podman_ image inspect --format '{{.Config.User}}' "$image")
  [[ "$user" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || fail_check "$name" "USER '$user' is not a non-root numeric id"
  if podman_ image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" \
    | grep -Eq '^[^=]*(SECRET|PASSWORD|TOKEN|_KEYS?)='; then
    fail_check "$name" "a secret-looking variable is set in the image's environment"
  fi
  allowed=$(uv_run python -m scripts.stack closure "$package" | tr '\n' ' ')
  members=$(uv_run python -m scripts.stack members | tr '\n' ' ')
  report=$(podman_ run --rm --no-healthcheck --network none --read-only --read-only-tmpfs=false "${ULIMITS[@]}" \
    --entrypoint python -e ALLOWED="$allowed" -e MEMBERS="$members" -v "$ROOT/scripts/image_contents.py:/check.py:ro" \
    "$image" /check.py 2>&1) || fail_check "$name" "$report"
  base_sha=$(podman_ run --rm --no-healthcheck --network none "${ULIMITS[@]}" --entrypoint sha256sum \
    "$(python_base_image)" /etc/ssl/certs/ca-certificates.crt | cut -d' ' -f1)
  image_sha=$(podman_ run --rm --no-healthcheck --network none "${ULIMITS[@]}" --entrypoint sha256sum \
    "$image" /etc/ssl/certs/ca-certificates.crt | cut -d' ' -f1)
  [ "$base_sha" = "$image_sha" ] || fail_check "$name" "its CA bundle is not the base image's"
}

python_base_image() {
  if [ "$BASE" = registry ]; then
    sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile
  else
    echo "$PYTHON_BASE"
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

check_run() { # name image health_path
  local name=$1 image=$2 path=$3 port ctr env_args=() deadline pid uid code
  port=$(free_port)
  ctr="vidgen-image-check-$name-$$"
  if [ "$name" != runway-sim ]; then
    [ -n "${DATABASE_URL:-}" ] || die "checking $name needs the infrastructure (make infra-up; scripts/with-env.sh)"
    local db
    db=$(uv_run python scripts/image_check_db.py create "$name")
    env_args=(-e VIDGEN_ENV=development -e "DATABASE_URL=$db" -e "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
      -e "KAFKA_ENABLE_IDEMPOTENCE=${KAFKA_ENABLE_IDEMPOTENCE:-false}" -e "KAFKA_TOPIC_PREFIX=imagecheck$$."
      -e "S3_ENDPOINT=$S3_ENDPOINT" -e "S3_ACCESS_KEY=$S3_ACCESS_KEY" -e "S3_SECRET_KEY=$S3_SECRET_KEY"
      -e "S3_BUCKET=imagecheck-$$" -e "VIDGEN_HTTP_PORT=$port"
      -e RUNWAYML_BASE_URL=http://127.0.0.1:9)
  else
    env_args=(-e "RUNWAY_SIM_PORT=$port")
  fi
  podman_ run -d --no-healthcheck --name "$ctr" --network host --read-only --read-only-tmpfs=false \
    --tmpfs /tmp:rw,size=256m --cap-drop ALL --security-opt no-new-privileges \
    "${ULIMITS[@]}" "${env_args[@]}" "$image" >/dev/null
  deadline=$((SECONDS + CHECK_TIMEOUT))
  code=000
  while [ $SECONDS -lt $deadline ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path" || true)
    [ "$code" = 200 ] && break
    [ "$(podman_ inspect --format '{{.State.Running}}' "$ctr")" = true ] || break
    sleep 1
  done
  if [ "$code" = 200 ]; then
    pid=$(podman_ inspect --format '{{.State.Pid}}' "$ctr")
    uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
    [ "$uid" != 0 ] || fail_check "$name" "its process runs as root"
    podman_ stop -t 30 "$ctr" >/dev/null
    local rc
    rc=$(podman_ inspect --format '{{.State.ExitCode}}' "$ctr")
    [ "$rc" = 0 ] || fail_check "$name" "exit code $rc after SIGTERM (logs: .local/images/$name.run.log)"
    log "$name answered $path read-only as uid $uid, stopped with exit code $rc"
  else
    fail_check "$name" "no answer on $path within $CHECK_TIMEOUT s (logs: .local/images/$name.run.log)"
  fi
  podman_ logs "$ctr" >".local/images/$name.run.log" 2>&1 || true
  podman_ rm -f "$ctr" >/dev/null
  if [ "$name" != runway-sim ]; then uv_run python scripts/image_check_db.py drop "$name"; fi
  if [ -n "${CHECK_FAILED:-}" ]; then tail -n 20 ".local/images/$name.run.log" >&2; fi
}

check() {
  need podman podman
  need curl curl
  CHECK_FAILED=
  local lines
  lines=$(uv_run python -m scripts.stack builds --with-package "$@") || die "could not read docker-compose.yml"
  while IFS=$'\t' read -r name image _dockerfile _target _args package health; do
    have_image "$image" || { fail_check "$name" "$image is not built"; continue; }
    log "checking $image"
    check_static "$name" "$image" "$package"
    check_run "$name" "$image" "$health"
  done <<<"$lines"
  [ -z "$CHECK_FAILED" ] || die "some image checks failed"
  log "every image passed its checks"
}

mkdir -p .local/images
case "${1:-all}" in
  build) shift; build "$@" ;;
  infra) infra ;;
  check) shift; check "$@" ;;
  all) shift || true; build "$@"; infra; check "$@" ;;
  *) echo "usage: $0 [build|infra|check|all] [NAME...]" >&2; exit 2 ;;
esac
