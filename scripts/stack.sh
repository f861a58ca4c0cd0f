#!/usr/bin/env bash
# The local stack, without Docker: PostgreSQL, Redis and a real single-node Kafka (KRaft).
#
#   scripts/stack.sh up        use Postgres/Redis at DATABASE_URL/REDIS_URL when they answer, start
#                              private ones (Debian binaries, data in .stack/) when they do not;
#                              start Kafka (scripts/kafka/kafka.sh); create the database; idempotent
#   scripts/stack.sh down      stop only what `up` started (recorded in .stack/started)
#   scripts/stack.sh status    one line per dependency; exit 0 when all three answer
#   scripts/stack.sh env       print the export lines for the stack's URLs
#   scripts/stack.sh throwaway postgres|redis|kafka
#                              start a private instance on a free loopback port in a temp folder and
#                              print `URL PID DIR` (for fault tests; kill it by PID, then rm -rf DIR)
#   scripts/stack.sh revive postgres|redis DIR PORT
#                              start a killed throwaway instance again on the same folder and port
#
# Ports and URLs come from DATABASE_URL (the app's role), MIGRATION_DATABASE_URL (the owner's),
# REDIS_URL, KAFKA_BROKERS (defaults: the local stack).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.stack"
STARTED="$STATE/started"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
[[ -x "$PG_BIN/postgres" ]] || PG_BIN="$(dirname "$(command -v postgres || command -v initdb || echo /usr/bin/x)")"

# The schema owner migrates (and this script administers the server); the application connects as
# pay_app (docs/security.md). A DATABASE_URL set by hand serves both, as before the roles split.
export MIGRATION_DATABASE_URL="${MIGRATION_DATABASE_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/payments}}"
export DATABASE_URL="${DATABASE_URL:-postgres://pay_app@127.0.0.1:5432/payments}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"

log() { echo "[stack] $*" >&2; }
die() { echo "[stack] $*" >&2; exit 1; }

# --- URL parts -------------------------------------------------------------------------------
url_host() { local h="${1#*://}"; h="${h#*@}"; h="${h%%/*}"; echo "${h%%:*}"; }
url_port() { local h="${1#*://}"; h="${h#*@}"; h="${h%%/*}"; [[ "$h" == *:* ]] && echo "${h##*:}" || echo "$2"; }
url_db() { local p="${1#*://}"; p="${p#*/}"; echo "${p%%\?*}"; }
admin_url() { local base="${1%%\?*}"; echo "${base%/*}/postgres"; }

PG_HOST="$(url_host "$DATABASE_URL")"; PG_PORT="$(url_port "$DATABASE_URL" 5432)"; PG_DB="$(url_db "$DATABASE_URL")"
REDIS_HOST="$(url_host "$REDIS_URL")"; REDIS_PORT="$(url_port "$REDIS_URL" 6379)"
KAFKA_HOST="${KAFKA_BROKERS%%,*}"; KAFKA_PORT="${KAFKA_HOST##*:}"; KAFKA_HOST="${KAFKA_HOST%%:*}"

# Postgres refuses to run as root; as root, the server runs as the `postgres` OS user.
as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

record() { mkdir -p "$STATE"; grep -qx "$1" "$STARTED" 2>/dev/null || echo "$1" >> "$STARTED"; }
unrecord() { [[ -f "$STARTED" ]] && sed -i "/^$1\$/d" "$STARTED" || true; }
was_started() { grep -qx "$1" "$STARTED" 2>/dev/null; }

pg_answers() { pg_isready -q -h "$1" -p "$2" -t 2 >/dev/null 2>&1; }
redis_answers() { [[ "$(redis-cli -h "$1" -p "$2" ping 2>/dev/null)" == PONG ]]; }
kafka_answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pid_is PID WORD...: PID is alive and its command line contains every WORD. A pid file can outlive
# its process and the number be reused by anything: never signal a pid without asking this first.
pid_is() {
  local pid="$1" cmdline word; shift
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  for word in "$@"; do [[ "$cmdline" == *"$word"* ]] || return 1; done
}

# A port below the kernel's ephemeral range, where no outgoing connection can take it between this
# pick and the instance's bind (nor while a killed instance waits to be revived on it).
free_port() { node "$ROOT/scripts/free-port.ts"; }

# --- Postgres --------------------------------------------------------------------------------
# start_private_pg DIR PORT: initdb once (trust auth, loopback only), start, wait; prints the pid
start_private_pg() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$dir"; fi
  chmod 700 "$dir"
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    as_pg "$PG_BIN/initdb" -D "$dir" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
      || { cat "$dir.initdb.log" >&2; die "initdb failed in $dir"; }
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$dir" -w -t 60 -l "$dir/server.log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200 -c fsync=on" start >/dev/null \
    || { tail -n 30 "$dir/server.log" >&2 || true; die "postgres did not start on port $port"; }
  head -n 1 "$dir/postmaster.pid"
}

ensure_database() {
  local admin; admin="$(admin_url "$MIGRATION_DATABASE_URL")"
  if ! psql "$admin" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    psql "$admin" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
    log "created database $PG_DB"
  fi
  # The roles the schema expects (idempotent; docs/security.md).
  psql "$admin" -q -v ON_ERROR_STOP=1 -f "$ROOT/scripts/roles.sql" >/dev/null
}

pg_up() {
  if pg_answers "$PG_HOST" "$PG_PORT"; then
    log "postgres: using the server at $PG_HOST:$PG_PORT"
  else
    [[ "$PG_HOST" == 127.0.0.1 || "$PG_HOST" == localhost ]] || die "postgres at $PG_HOST:$PG_PORT does not answer"
    log "postgres: nothing answers at $PG_HOST:$PG_PORT, starting a private instance in .stack/postgres"
    start_private_pg "$STATE/postgres" "$PG_PORT" >/dev/null
    record postgres
  fi
  ensure_database
}

pg_down() {
  if was_started postgres; then
    as_pg "$PG_BIN/pg_ctl" -D "$STATE/postgres" -m fast -w stop >/dev/null 2>&1 || true
    unrecord postgres; log "postgres: stopped the private instance"
  fi
}

# --- Redis -----------------------------------------------------------------------------------
start_private_redis() { # DIR PORT: prints the pid
  local dir="$1" port="$2"
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 100); do redis_answers 127.0.0.1 "$port" && [[ -s "$dir/redis.pid" ]] && break; sleep 0.05; done
  redis_answers 127.0.0.1 "$port" || die "redis did not start on port $port"
  cat "$dir/redis.pid"
}

redis_up() {
  if redis_answers "$REDIS_HOST" "$REDIS_PORT"; then
    log "redis: using the server at $REDIS_HOST:$REDIS_PORT"
  else
    [[ "$REDIS_HOST" == 127.0.0.1 || "$REDIS_HOST" == localhost ]] || die "redis at $REDIS_HOST:$REDIS_PORT does not answer"
    log "redis: nothing answers at $REDIS_HOST:$REDIS_PORT, starting a private instance in .stack/redis"
    start_private_redis "$STATE/redis" "$REDIS_PORT" >/dev/null
    record redis
  fi
}

redis_down() {
  if was_started redis; then
    local pid; pid="$(cat "$STATE/redis/redis.pid" 2>/dev/null || true)"
    # redis-server titles itself `redis-server 127.0.0.1:<port>`: ours is the one on our port.
    if pid_is "$pid" redis-server ":$REDIS_PORT"; then
      kill "$pid" 2>/dev/null || true
      log "redis: stopped the private instance (pid $pid)"
    else
      log "redis: the pid file names ${pid:-nothing}, which is not our redis-server on port $REDIS_PORT; nothing signalled"
    fi
    unrecord redis
  fi
}

# --- Kafka -----------------------------------------------------------------------------------
kafka_up() {
  if kafka_answers "$KAFKA_HOST" "$KAFKA_PORT" && ! was_started kafka; then
    log "kafka: using the broker at $KAFKA_HOST:$KAFKA_PORT"
    return 0
  fi
  KAFKA_PORT="$KAFKA_PORT" KAFKA_STATE="$STATE/kafka" "$ROOT/scripts/kafka/kafka.sh" start >&2
  record kafka
}

kafka_down() {
  if was_started kafka; then
    KAFKA_STATE="$STATE/kafka" "$ROOT/scripts/kafka/kafka.sh" stop >&2 || true
    unrecord kafka; log "kafka: stopped"
  fi
}

# --- commands --------------------------------------------------------------------------------
status() {
  local ok=0
  if pg_answers "$PG_HOST" "$PG_PORT"; then echo "postgres  up    $PG_HOST:$PG_PORT/$PG_DB$(was_started postgres && echo ' (private, started by up)')"; else echo "postgres  DOWN  $PG_HOST:$PG_PORT"; ok=1; fi
  if redis_answers "$REDIS_HOST" "$REDIS_PORT"; then echo "redis     up    $REDIS_HOST:$REDIS_PORT$(was_started redis && echo ' (private, started by up)')"; else echo "redis     DOWN  $REDIS_HOST:$REDIS_PORT"; ok=1; fi
  if kafka_answers "$KAFKA_HOST" "$KAFKA_PORT"; then echo "kafka     up    $KAFKA_HOST:$KAFKA_PORT$(was_started kafka && echo ' (started by up)')"; else echo "kafka     DOWN  $KAFKA_HOST:$KAFKA_PORT"; ok=1; fi
  return $ok
}

throwaway() {
  local kind="${1:-}" dir port pid
  dir="$(mktemp -d "${TMPDIR:-/tmp}/pay-throwaway-$kind-XXXXXX")"
  chmod 755 "$dir"
  port="$(free_port)"
  case "$kind" in
    postgres)
      pid="$(start_private_pg "$dir/data" "$port")"
      echo "postgres://postgres@127.0.0.1:$port/postgres $pid $dir" ;;
    redis)
      pid="$(start_private_redis "$dir" "$port")"
      echo "redis://127.0.0.1:$port/0 $pid $dir" ;;
    kafka)
      local controller; controller="$(free_port)"
      KAFKA_PORT="$port" KAFKA_CONTROLLER_PORT="$controller" KAFKA_STATE="$dir" KAFKA_FRESH=1 \
        "$ROOT/scripts/kafka/kafka.sh" start >&2
      pid="$(cat "$dir/kafka.pid")"
      echo "127.0.0.1:$port $pid $dir" ;;
    *) die "usage: stack.sh throwaway postgres|redis|kafka" ;;
  esac
}

# revive KIND DIR PORT: start a throwaway instance again on its old folder and port (after a kill)
revive() {
  local kind="$1" dir="$2" port="$3"
  case "$kind" in
    postgres) start_private_pg "$dir/data" "$port" ;;
    redis) start_private_redis "$dir" "$port" ;;
    *) die "usage: stack.sh revive postgres|redis DIR PORT" ;;
  esac
}

case "${1:-}" in
  up) pg_up; redis_up; kafka_up; status ;;
  down) kafka_down; redis_down; pg_down ;;
  status) status ;;
  env) echo "export DATABASE_URL='$DATABASE_URL' MIGRATION_DATABASE_URL='$MIGRATION_DATABASE_URL' REDIS_URL='$REDIS_URL' KAFKA_BROKERS='$KAFKA_BROKERS'" ;;
  throwaway) shift; throwaway "$@" ;;
  revive) shift; revive "$@" ;;
  *) die "usage: stack.sh up|down|status|env|throwaway postgres|redis|kafka" ;;
esac
