#!/bin/sh
# Entrypoint of docker/rig/Dockerfile.postgres: the part of the official postgres image's entrypoint
# that docker/compose.yaml relies on. On an empty $PGDATA: initdb with $POSTGRES_USER and
# $POSTGRES_PASSWORD, create $POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql; then run postgres.
set -eu
if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  pwfile=$(mktemp)
  # The password goes through a file, never through argv.
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
  # UTF8 as in the official image (a locale-less initdb would pick SQL_ASCII).
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  # Set up over the unix socket only, so that no client connects before the databases exist.
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -qc "CREATE DATABASE \"$db\"" >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    psql -v ON_ERROR_STOP=1 -U "$user" -d "$db" -q -f "$f" >/dev/null
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
if [ "${1:-postgres}" = postgres ]; then
  [ $# -gt 0 ] && shift
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
