#!/usr/bin/env bash
# A PostgreSQL hot standby of the primary at 127.0.0.1:5432, on 127.0.0.1:5433, replaying
# with a 300 ms apply delay (the read replica tests and the benchmark's standby rows use it).
# Idempotent: a standby already answering on 5433 is left alone; a stopped one is started again.
# Run as root (it edits the primary's pg_hba.conf and runs pg_* as the postgres user).
set -euo pipefail

PRIMARY_PORT=${PRIMARY_PORT:-5432}
STANDBY_PORT=${STANDBY_PORT:-5433}
STANDBY_DIR=${STANDBY_DIR:-/var/lib/postgresql/twofold-standby}
APPLY_DELAY=${APPLY_DELAY:-300ms}
ver=$(ls /etc/postgresql | sort -V | tail -n1)
bin=/usr/lib/postgresql/$ver/bin

as_postgres() { su postgres -s /bin/bash -c "$*"; }
answers() {
  [ "$(psql -h 127.0.0.1 -p "$STANDBY_PORT" -U postgres -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null)" = t ]
}
# The primary streams WAL to it. A standby stopped while the primary wrote a
# lot answers, but the WAL it needs may be gone from the primary, and then it
# never catches up (its log repeats "requested WAL segment ... has already
# been removed"): such a standby is made anew.
streaming() {
  [ "$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc "select count(*) from pg_stat_replication where state = 'streaming'" 2>/dev/null || echo 0)" -ge 1 ]
}
standby_up() { answers && streaming; }

if answers; then
  for _ in $(seq 1 10); do
    if streaming; then
      echo "a standby already answers on 127.0.0.1:$STANDBY_PORT and streams"
      exit 0
    fi
    sleep 1
  done
  echo "the standby on 127.0.0.1:$STANDBY_PORT answers but does not stream from the primary: making it anew"
  as_postgres "$bin/pg_ctl -D '$STANDBY_DIR' -m immediate stop" >/dev/null 2>&1 || true
  rm -f "$STANDBY_DIR/standby.signal"
fi

# 1. The primary accepts replication connections from this machine.
hba=$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc 'show hba_file')
ident=$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc 'show ident_file')
if ! grep -qE '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
  echo 'host replication all 127.0.0.1/32 trust' >>"$hba"
  psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc 'select pg_reload_conf()' >/dev/null
fi

# 2.-4. A base backup (once; again when the old copy will not start, e.g. the
# primary was made anew), its own configuration, and a start.
make_and_start() {
  if [ ! -f "$STANDBY_DIR/standby.signal" ]; then
    rm -rf "$STANDBY_DIR"
    install -d -o postgres -g postgres -m 700 "$STANDBY_DIR"
    # -R makes it a standby (standby.signal, primary_conninfo).
    as_postgres "$bin/pg_basebackup -h 127.0.0.1 -p $PRIMARY_PORT -U postgres -D '$STANDBY_DIR' -R -X stream"
  fi
  # Debian keeps the primary's configuration in /etc, so the backup has none.
  {
    echo "# Written by .ci/standby.sh: a hot standby of 127.0.0.1:$PRIMARY_PORT."
    echo "port = $STANDBY_PORT"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '/var/run/postgresql'"
    echo "max_connections = 100"
    echo "hot_standby = on"
    echo "hot_standby_feedback = on"
    echo "recovery_min_apply_delay = '$APPLY_DELAY'"
    echo "hba_file = '$hba'"
    echo "ident_file = '$ident'"
  } >"$STANDBY_DIR/postgresql.conf"
  chown postgres:postgres "$STANDBY_DIR/postgresql.conf"
  # A stale postmaster.pid of a killed standby would stop pg_ctl.
  if [ -f "$STANDBY_DIR/postmaster.pid" ] && ! as_postgres "$bin/pg_ctl -D '$STANDBY_DIR' status" >/dev/null 2>&1; then
    rm -f "$STANDBY_DIR/postmaster.pid"
  fi
  as_postgres "$bin/pg_ctl -w -t 60 -D '$STANDBY_DIR' -l '$STANDBY_DIR/log' start" >/dev/null || true
  for _ in $(seq 1 60); do
    standby_up && return 0
    sleep 1
  done
  return 1
}

if ! make_and_start; then
  echo "the standby in $STANDBY_DIR did not come up (see $STANDBY_DIR/log): making it anew"
  as_postgres "$bin/pg_ctl -D '$STANDBY_DIR' -m immediate stop" >/dev/null 2>&1 || true
  rm -f "$STANDBY_DIR/standby.signal"
  if ! make_and_start; then
    echo "the standby did not come up on 127.0.0.1:$STANDBY_PORT (see $STANDBY_DIR/log)" >&2
    exit 1
  fi
fi
echo "a hot standby answers on 127.0.0.1:$STANDBY_PORT (apply delay $APPLY_DELAY)"
