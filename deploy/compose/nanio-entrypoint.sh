#!/bin/sh
# nanio with the credentials docker-compose.yml gives MinIO.
set -eu
export NANIO_ACCESS_KEY="${NANIO_ACCESS_KEY:-${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}}"
export NANIO_SECRET_KEY="${NANIO_SECRET_KEY:-${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}}"
exec nanio serve "$@"
