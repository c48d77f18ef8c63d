#!/bin/sh
# PostgreSQL as the official image starts it: on an empty $PGDATA, a cluster whose superuser
# is POSTGRES_USER (password POSTGRES_PASSWORD, scram over TCP) with database POSTGRES_DB;
# then the server, as user postgres, on every interface, port 5432.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  as_postgres pg_ctl -w -o "-c listen_addresses='' -k /var/run/postgresql" start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    as_postgres createdb -h /var/run/postgresql -U "$POSTGRES_USER" "$POSTGRES_DB"
  fi
  as_postgres pg_ctl -w -m fast stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  postgres -c listen_addresses='*' -p 5432 -k /var/run/postgresql -c max_connections=300 "$@"
