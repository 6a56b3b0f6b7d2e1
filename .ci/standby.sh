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
standby_up() {
  [ "$(psql -h 127.0.0.1 -p "$STANDBY_PORT" -U postgres -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null)" = t ]
}

if standby_up; then
  echo "a standby already answers on 127.0.0.1:$STANDBY_PORT"
  exit 0
fi

# 1. The primary accepts replication connections from this machine.
hba=$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc 'show hba_file')
ident=$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc 'show ident_file')
if ! grep -qE '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
  echo 'host replication all 127.0.0.1/32 trust' >>"$hba"
  psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc 'select pg_reload_conf()' >/dev/null
fi

# 2. A base backup (once), which -R makes a standby (standby.signal, primary_conninfo).
if [ ! -f "$STANDBY_DIR/standby.signal" ]; then
  rm -rf "$STANDBY_DIR"
  install -d -o postgres -g postgres -m 700 "$STANDBY_DIR"
  as_postgres "$bin/pg_basebackup -h 127.0.0.1 -p $PRIMARY_PORT -U postgres -D '$STANDBY_DIR' -R -X stream"
fi

# 3. Its own configuration (Debian keeps the primary's in /etc, so the backup has none).
cat >"$STANDBY_DIR/postgresql.conf" <<EOF
# Written by .ci/standby.sh: a hot standby of 127.0.0.1:$PRIMARY_PORT.
port = $STANDBY_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '/var/run/postgresql'
max_connections = 100
hot_standby = on
hot_standby_feedback = on
recovery_min_apply_delay = '$APPLY_DELAY'
hba_file = '$hba'
ident_file = '$ident'
EOF
chown postgres:postgres "$STANDBY_DIR/postgresql.conf"

# 4. Start it (a stale postmaster.pid of a killed standby would stop pg_ctl).
if [ -f "$STANDBY_DIR/postmaster.pid" ] && ! as_postgres "$bin/pg_ctl -D '$STANDBY_DIR' status" >/dev/null 2>&1; then
  rm -f "$STANDBY_DIR/postmaster.pid"
fi
as_postgres "$bin/pg_ctl -w -t 60 -D '$STANDBY_DIR' -l '$STANDBY_DIR/log' start" || as_postgres "$bin/pg_ctl -D '$STANDBY_DIR' status"
for _ in $(seq 1 60); do
  standby_up && break
  sleep 1
done
if ! standby_up; then
  echo "the standby did not come up on 127.0.0.1:$STANDBY_PORT (see $STANDBY_DIR/log)" >&2
  exit 1
fi
echo "a hot standby answers on 127.0.0.1:$STANDBY_PORT (apply delay $APPLY_DELAY)"
