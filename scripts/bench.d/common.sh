# Shared by scripts/bench and scripts/soak (sourced, not run): a temporary work directory
# removed on exit, a throwaway PostgreSQL 15 (run as the postgres OS user when we are root),
# the poolers' ini files, and starting and stopping a pooler with a raised open-files limit.
# The sourcing script sets top, PGTIDE, NOFILE, POOL, auth and LOG_TAG first; it may define
# cleanup_hook (run before the work directory is removed) and fill PORT[name].

PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3
LIB="$top/scripts/bench.d/benchlib.py"
PGBOUNCER=/usr/sbin/pgbouncer

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }

declare -A PID=()      # pooler name -> pid of a running instance started by this script
declare -A PORT=()     # target name (direct, pgbouncer, pgtide) -> port
pg_started=0
aux_pids=()
run_pg=(); as_pooler=()

# common_workdir PREFIX [SUBDIR...]: makes $work (owned by postgres when root, so the poolers
# and PostgreSQL can write there), a private copy of $PGTIDE, and the cleanup on exit.
common_workdir() {
  local prefix=$1; shift
  work=$(mktemp -d "/tmp/$prefix.XXXXXX")
  chmod 755 "$work"
  mkdir -p "$work/bin"
  local d; for d in "$@"; do mkdir -p "$work/$d"; done
  # a private copy: a rebuild of build/ during the run does not change what is measured
  cp "$PGTIDE" "$work/bin/pgtide"
  PGTIDE="$work/bin/pgtide"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres "$work"
    run_pg=(runuser -u postgres --)
    # setpriv execs (no PAM, no extra process), so $! is the pooler's own pid
    as_pooler=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  trap common_cleanup EXIT
  trap 'exit 130' INT TERM
}

common_cleanup() {
  local rc=$?
  trap - INT TERM EXIT
  for p in "${aux_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for name in "${!PID[@]}"; do
    kill -TERM "${PID[$name]}" 2>/dev/null || true
  done
  for name in "${!PID[@]}"; do
    for _ in $(seq 50); do kill -0 "${PID[$name]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$name]}" 2>/dev/null || true
  done
  if [ "$pg_started" = 1 ]; then
    "${run_pg[@]}" "$PGBIN/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if declare -F cleanup_hook >/dev/null; then cleanup_hook || true; fi
  rm -rf "$work"
  exit "$rc"
}

pick_port() { $PY "$LIB" freeport "$@"; }  # pick_port START [PORTS ALREADY CHOSEN...]

# start_pg PORT: PostgreSQL 15 in $work/data (trust on 127.0.0.1 and the socket in $work),
# role and database app (password app); sets PORT[direct] and PGPASSWORD.
start_pg() {
  local pgport=$1
  log "PostgreSQL 15 cluster in $work/data on port $pgport"
  "${run_pg[@]}" "$PGBIN/initdb" -D "$work/data" -U postgres -A trust >/dev/null
  cat >> "$work/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$work'
max_connections = 500
fsync = off
shared_buffers = 256MB
logging_collector = off
log_min_messages = warning
CONF
  cat > "$work/data/pg_hba.conf" <<CONF
local all all trust
host all all 127.0.0.1/32 trust
CONF
  "${run_pg[@]}" "$PGBIN/pg_ctl" -D "$work/data" -l "$work/postgresql.log" -w -t 60 start >/dev/null
  pg_started=1
  "$PGBIN/psql" -qX -h "$work" -p "$pgport" -U postgres -d postgres \
    -c "CREATE ROLE app LOGIN PASSWORD 'app'" -c "CREATE DATABASE app OWNER app" >/dev/null
  PORT[direct]=$pgport
  export PGPASSWORD=app
}

# write_ini NAME SECTION PORT MAX_CLIENT_CONN FILE [AUTH] [TLS]: transaction pooling,
# default_pool_size $POOL, database app on PORT[direct], user list $work/userlist.txt
write_ini() {
  local tls_lines=""
  [ "${7:-}" = tls ] && tls_lines="client_tls_sslmode = require
client_tls_key_file = $work/tls/server.key
client_tls_cert_file = $work/tls/server.crt"
  [ -f "$work/userlist.txt" ] || printf '"app" "app"\n' > "$work/userlist.txt"
  cat > "$5" <<INI
[databases]
app = host=127.0.0.1 port=${PORT[direct]} dbname=app user=app

[$2]
listen_addr = 127.0.0.1
listen_port = $3
unix_socket_dir =
auth_type = ${6:-$auth}
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = $4
logfile = $work/$1.log
log_connections = 0
log_disconnections = 0
$tls_lines
INI
}

wait_port() {  # wait_port PORT PID SECONDS
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$2" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# start_pooler NAME INI [WRAPPER...]: runs the pooler (as postgres when root) with a raised
# open-files limit, in the foreground of a background job, and sets PID[NAME].
start_pooler() {
  local name=$1 ini=$2; shift 2
  local bin args
  if [ "$name" = pgbouncer ]; then bin=$PGBOUNCER; args=(-q "$ini"); else bin=$PGTIDE; args=(-q "$ini"); fi
  prlimit --nofile=$NOFILE:$NOFILE -- "${as_pooler[@]}" "$@" "$bin" "${args[@]}" \
    >>"$work/$name.stderr" 2>&1 &
  PID[$name]=$!
  local wait_s=15; [ $# -gt 0 ] && wait_s=90
  if ! wait_port "${PORT[$name]}" "${PID[$name]}" "$wait_s"; then
    log "$name did not start; log tail:"
    tail -n 20 "$work/$name.log" "$work/$name.stderr" >&2 2>/dev/null || true
    exit 1
  fi
}

stop_pooler() {  # stop_pooler NAME [SIGNAL]: signal, wait for exit (60 s), then KILL
  local name=$1 sig=${2:-TERM} pid=${PID[$1]:-}
  [ -n "$pid" ] || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not exit on SIG$sig within 60 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}
