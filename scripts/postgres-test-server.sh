#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on 127.0.0.1 and a unix socket in a temporary folder.
# Usage: source scripts/postgres-test-server.sh; start_test_postgres; ...; stop_test_postgres
# Sets WEFT_TEST_POSTGRES to an admin connection string. Trust authentication: loopback only, test data only.

start_test_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$bin/initdb" ] || { echo "error: PostgreSQL server binaries not found under /usr/lib/postgresql" >&2; return 1; }

  PG_TEST_DIR=$(mktemp -d /tmp/weft-pg.XXXXXX)
  PG_TEST_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  local run=()
  if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root.
    chown postgres:postgres "$PG_TEST_DIR"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$PG_TEST_DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >"$PG_TEST_DIR/initdb.log" 2>&1 \
    || { cat "$PG_TEST_DIR/initdb.log" >&2; return 1; }
  "${run[@]}" "$bin/pg_ctl" -D "$PG_TEST_DIR/data" -l "$PG_TEST_DIR/server.log" -w -t 60 \
    -o "-p $PG_TEST_PORT -k $PG_TEST_DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null \
    || { cat "$PG_TEST_DIR/server.log" >&2; return 1; }
  PG_TEST_BIN=$bin
  PG_TEST_RUN=("${run[@]}")
  export WEFT_TEST_POSTGRES="Host=127.0.0.1;Port=$PG_TEST_PORT;Username=postgres;Database=postgres;Pooling=true"
  echo "test PostgreSQL listening on 127.0.0.1:$PG_TEST_PORT (socket in $PG_TEST_DIR)" >&2
}

stop_test_postgres() {
  [ -n "${PG_TEST_DIR:-}" ] || return 0
  if [ -f "$PG_TEST_DIR/data/postmaster.pid" ]; then
    "${PG_TEST_RUN[@]}" "$PG_TEST_BIN/pg_ctl" -D "$PG_TEST_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$PG_TEST_DIR"
  PG_TEST_DIR=""
}
