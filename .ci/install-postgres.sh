#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server for orch-store's tests, installing PostgreSQL with apt
# first if it is missing. Listens on 127.0.0.1:55432 only, with trust authentication (tests
# only: never point this at anything that matters). Safe to run again: a server already
# answering on that port is reused.
#
# Progress goes to stderr; the LAST line of stdout is
#   export ORCH_TEST_POSTGRES_URL=postgres://...
# so a caller can `eval "$(.ci/install-postgres.sh | tail -n 1)"`.
set -euo pipefail

readonly HOST=127.0.0.1
readonly PORT=55432
readonly ROLE=orch
readonly DATABASE=orch

log() { printf '== install-postgres: %s (%ss)\n' "$*" "$SECONDS" >&2; }

# The directory holding initdb and pg_ctl: on PATH, or where Debian's packages put them.
find_bin_dir() {
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    # Resolve links: the real directory also holds pg_isready and psql.
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$newest" ] && [ -x "$newest/initdb" ] && [ -x "$newest/pg_ctl" ]; then
    echo "$newest"
  fi
}

# Runs a command as the `postgres` system user when we are root (the server refuses to run as
# root), or as ourselves otherwise.
as_db_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

bin_dir=$(find_bin_dir)
if [ -z "$bin_dir" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL (initdb, pg_ctl) is missing and we are not root: install the postgresql package, then run $0 again" >&2
    exit 2
  fi
  log "installing postgresql with apt"
  # Debian's package creates and starts a default cluster unless told not to; we want only ours.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o Dpkg::Options::=--force-confold postgresql >&2
  bin_dir=$(find_bin_dir)
  if [ -z "$bin_dir" ]; then
    echo "apt installed postgresql but initdb/pg_ctl are not on PATH nor in /usr/lib/postgresql/*/bin" >&2
    exit 2
  fi
fi
log "using $bin_dir"

ready() { "$bin_dir/pg_isready" -q -h "$HOST" -p "$PORT"; }

if ready; then
  log "a server already answers on $HOST:$PORT; reusing it"
else
  data_dir=$(mktemp -d /tmp/orch-test-postgres.XXXXXX)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$data_dir"
  fi
  log "creating a cluster in $data_dir"
  # --no-sync and the settings below trade durability for speed: the cluster is for tests.
  as_db_owner "$bin_dir/initdb" -D "$data_dir/data" --auth=trust --username=postgres \
    --encoding=UTF8 --no-sync >&2
  log "starting it on $HOST:$PORT"
  as_db_owner "$bin_dir/pg_ctl" -D "$data_dir/data" -l "$data_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=$HOST -p $PORT -k $data_dir -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >&2
fi

# pg_ctl -w already waits, but a reused server may still be starting up.
for _ in $(seq 1 60); do
  ready && break
  sleep 0.5
done
if ! ready; then
  echo "the PostgreSQL server on $HOST:$PORT does not accept connections after 30 s" >&2
  exit 1
fi

psql_admin() {
  "$bin_dir/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres -d postgres "$@"
}
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  log "creating role $ROLE"
  psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB" >&2
fi
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
  log "creating database $DATABASE"
  psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE" >&2
fi
log "ready"

echo "export ORCH_TEST_POSTGRES_URL=postgres://$ROLE@$HOST:$PORT/$DATABASE"
