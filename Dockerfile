# Every vidgen image, from one file: the service is a build argument.
#
# Build from the repository root (the uv workspace and its lock live there):
#   docker build --build-arg SERVICE=generator -t vidgen-generator:dev .
#   docker build --build-arg SERVICE=gateway --build-arg PORT=8000 --target gateway \
#     -t vidgen-gateway:dev .                      # the gateway also serves web/dist (make web)
# scripts/images.sh builds them all with the tags docker-compose.yml and deploy/k8s use.
#
# SERVICE names a workspace member under services/ (package vidgen-SERVICE, module
# vidgen_SERVICE); a new service needs nothing here. PACKAGE and MODULE override the
# derived names (the Runway simulator lives in tools/), PORT is the port it listens on (8080
# unless set) and HEALTH_PATH its liveness endpoint.
#
# The builder installs the locked dependencies of that one package into /opt/venv (never the
# dev group); the runtime stage is the same Python base plus that venv, owned by root, run as
# the unprivileged numeric user 10001 with nothing to write but /tmp.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# The workspace's manifests, paths kept: the dependency layer below changes only with them.
FROM ${PYTHON_IMAGE} AS workspace
WORKDIR /context
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY tools tools
RUN mkdir /manifests \
    && find . -name pyproject.toml -exec cp --parents {} /manifests/ \; \
    && cp uv.lock /manifests/

FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
ARG PACKAGE=vidgen-${SERVICE}
COPY --from=uv /uv /usr/local/bin/uv
# UV_SYSTEM_CERTS: trust the system's CA bundle (behind a proxy with its own CA, the build
# mounts that bundle over it; the runtime stage never sees either).
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_SYSTEM_CERTS=1
WORKDIR /src
COPY --from=workspace /manifests/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ -z "${SERVICE}" ]; then echo "build with --build-arg SERVICE=<name>" >&2; exit 1; fi \
    && uv sync --frozen --no-dev --no-install-workspace --package "${PACKAGE}"
# Then the code, installed as wheels (not editable): the venv stands alone without /src.
COPY --from=workspace /context/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
ARG MODULE=vidgen_${SERVICE}
ARG PORT=8080
ARG HEALTH_PATH=/healthz
RUN groupadd --system --gid 10001 vidgen \
    && useradd --system --uid 10001 --gid vidgen --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin vidgen
COPY --from=builder /opt/venv /opt/venv
# VIDGEN_MODULE is what `python -m` runs; the RUNWAY_SIM_* pair is read by the simulator alone.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIDGEN_MODULE=${MODULE} \
    VIDGEN_HEALTH_PATH=${HEALTH_PATH} \
    VIDGEN_ENV=production \
    VIDGEN_HTTP_HOST=0.0.0.0 \
    VIDGEN_HTTP_PORT=${PORT} \
    RUNWAY_SIM_HOST=0.0.0.0 \
    RUNWAY_SIM_PORT=${PORT}
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['VIDGEN_HTTP_PORT'] + os.environ['VIDGEN_HEALTH_PATH'], timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["python", "-c", "import os, runpy; runpy.run_module(os.environ['VIDGEN_MODULE'], run_name='__main__', alter_sys=True)"]

# The gateway serves the web page at / from web/dist (its VIDGEN_WEB_DIR default, relative to
# /app): build it first with `make web`.
FROM runtime AS gateway
COPY web/dist web/dist

# The default target: every other service.
FROM runtime AS service
