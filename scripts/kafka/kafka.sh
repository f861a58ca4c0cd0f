#!/usr/bin/env bash
# kafka.sh: the project's single-node Apache Kafka 4.1.1 (KRaft: broker and controller in one JVM),
# run straight from Apache's jars on Maven Central. No Docker, no tarball.
#
#   kafka.sh fetch    resolve the jars into $KAFKA_LIBS once (mvn on pom.xml beside this script)
#   kafka.sh start    fetch if needed, format storage once, start in the background, wait for ready
#   kafka.sh stop     stop the broker this script started (the pid in its pid file, nothing else)
#   kafka.sh status   exit 0 when it runs
#   kafka.sh run      like start, but in the foreground (exec)
#   kafka.sh reset    stop and delete the state dir
#
# Environment (defaults are the main stack; tests override them for throwaway brokers):
#   KAFKA_LIBS              jars                       <repo>/.tools/kafka-libs
#   KAFKA_STATE             conf, data, logs, pid      <repo>/.stack/kafka
#   KAFKA_PORT              client listener            9092
#   KAFKA_CONTROLLER_PORT   KRaft controller listener  9093
#   KAFKA_FRESH             1: wipe data on start      0 (keep data across restarts)
#   KAFKA_START_TIMEOUT_S   readiness bound            90
#   KAFKA_MVN_ARGS          extra mvn arguments        (e.g. -Dmaven.repo.local=/tmp/m2-cold)
#   KAFKA_EXTRA_PROPERTIES  key=value lines appended last to server.properties (they win)
#   KAFKA_NODE_ID           node.id                    1
#   KAFKA_QUORUM_VOTERS     controller.quorum.voters   1@127.0.0.1:$KAFKA_CONTROLLER_PORT (a single voter)
#                           (a cluster: every node gets the same list, e.g. 1@h:p1,2@h:p2,3@h:p3;
#                           see packages/testkit/src/ThrowawayKafkaCluster.ts)
#
# What the upstream scripts do (apache/kafka @4.1.1), which this one mirrors with -cp "$KAFKA_LIBS/*":
#   kafka-server-start.sh -> kafka-run-class.sh kafka.Kafka server.properties
#   kafka-storage.sh      -> kafka-run-class.sh kafka.tools.StorageTool format ...
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

KAFKA_VERSION=4.1.1
KAFKA_LIBS="${KAFKA_LIBS:-$REPO/.tools/kafka-libs}"
KAFKA_STATE="${KAFKA_STATE:-$REPO/.stack/kafka}"
KAFKA_TEMPLATE="$HERE/server.properties"
# Loopback IPv4 only: Node may resolve `localhost` to ::1, and nothing outside this machine may connect.
KAFKA_HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_START_TIMEOUT_S="${KAFKA_START_TIMEOUT_S:-90}"
KAFKA_STOP_TIMEOUT_S="${KAFKA_STOP_TIMEOUT_S:-30}"
KAFKA_FRESH="${KAFKA_FRESH:-0}"
KAFKA_LOG_LEVEL="${KAFKA_LOG_LEVEL:-INFO}"
KAFKA_MVN_ARGS="${KAFKA_MVN_ARGS:-}"
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
KAFKA_NODE_ID="${KAFKA_NODE_ID:-1}"
KAFKA_QUORUM_VOTERS="${KAFKA_QUORUM_VOTERS:-$KAFKA_NODE_ID@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT}"
# The release default is 1 GiB fixed; a test broker with a 16 MiB cleaner buffer fits in 512 MiB.
KAFKA_HEAP_OPTS="-Xms256m -Xmx512m"
KAFKA_JVM_PERFORMANCE_OPTS="-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"
# A fixed cluster id (the one in apache/kafka docker/examples) saves one JVM start per format.
KAFKA_CLUSTER_ID="4L6g3nShT-eMCtK--X86sw"

if [[ -n "${JAVA_HOME:-}" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi

CONF_DIR="$KAFKA_STATE/conf"
DATA_DIR="$KAFKA_STATE/data"
LOG_DIR="$KAFKA_STATE/logs"
CONF="$CONF_DIR/server.properties"
PIDFILE="$KAFKA_STATE/kafka.pid"
OUT="$LOG_DIR/server.out"
LOG="$LOG_DIR/server.log"

die() { echo "kafka.sh: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

check_java() {
  local v
  v="$("$JAVA" -version 2>&1 | sed -E -n 's/.* version "([0-9]+).*/\1/p' | head -n1)"
  [[ -n "$v" ]] || die "no java found (set JAVA_HOME)"
  (( v >= 17 )) || die "Kafka $KAFKA_VERSION needs Java 17+, found $v"
}

libs_ready() {
  [[ -f "$KAFKA_LIBS/.kafka-version" && "$(cat "$KAFKA_LIBS/.kafka-version")" == "$KAFKA_VERSION" ]] \
    && [[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

# Resolve once; the stamp file marks a complete download. A lock keeps two concurrent starts
# (say, two throwaway brokers) from downloading into the same directory at once.
fetch() {
  libs_ready && return 0
  command -v mvn >/dev/null || die "mvn not found"
  mkdir -p "$KAFKA_LIBS"
  exec 9>"$KAFKA_LIBS/.fetch.lock"
  flock -w 600 9 || die "timed out waiting for another fetch into $KAFKA_LIBS"
  if ! libs_ready; then
    rm -f "$KAFKA_LIBS"/*.jar "$KAFKA_LIBS/.kafka-version"
    local t0; t0="$(now_ms)"
    # shellcheck disable=SC2086  # KAFKA_MVN_ARGS is a list of words on purpose
    mvn -B -q -Dstyle.color=never -f "$HERE/pom.xml" $KAFKA_MVN_ARGS -Dkafka.version="$KAFKA_VERSION" -Dkafka.libs="$KAFKA_LIBS" package \
      || die "mvn could not resolve the Kafka jars"
    [[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
    echo "$KAFKA_VERSION" > "$KAFKA_LIBS/.kafka-version"
    echo "kafka.sh: fetched $(ls "$KAFKA_LIBS"/*.jar | wc -l) jars into $KAFKA_LIBS in $(( $(now_ms) - t0 )) ms"
  fi
  exec 9>&-
}

write_logging_config() {
  mkdir -p "$CONF_DIR" "$LOG_DIR"
  # Broker logs go to $LOG, rolled at 10 MiB with 3 old files kept, so a long-lived broker's logs
  # stay bounded. Without an SLF4J binding and this file the broker logs nothing and the readiness
  # line below never appears (see pom.xml). The JVM's own stdout/stderr (crashes) go to $OUT.
  cat > "$CONF_DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $LOG
appender.file.filePattern = $LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = $KAFKA_LOG_LEVEL
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.channel.name = kafka.network.RequestChannel\$
logger.channel.level = WARN
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
EOF
  # StorageTool: warnings only, to stderr.
  cat > "$CONF_DIR/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
}

write_server_config() {
  {
    cat "$KAFKA_TEMPLATE"
    echo
    echo "# ---- appended by kafka.sh (java.util.Properties: the last value of a key wins) ----"
    echo "listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT"
    echo "advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT"
    echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    echo "node.id=$KAFKA_NODE_ID"
    echo "controller.quorum.voters=$KAFKA_QUORUM_VOTERS"
    echo "log.dirs=$DATA_DIR"
    if [[ -n "$KAFKA_EXTRA_PROPERTIES" ]]; then
      echo "# ---- KAFKA_EXTRA_PROPERTIES ----"
      printf '%s\n' "$KAFKA_EXTRA_PROPERTIES"
    fi
  } > "$CONF"
}

# Formatted once: a data dir with meta.properties is reused, so the main stack keeps its topics
# and offsets across restarts. KAFKA_FRESH=1 (throwaway brokers) wipes it first.
format_storage() {
  if [[ "$KAFKA_FRESH" == 1 && -d "$DATA_DIR" ]]; then
    # The same guard as `reset`: a mistyped KAFKA_STATE must never make us wipe someone's folder.
    # Only an empty folder or one StorageTool formatted (meta.properties) is a data dir of ours.
    [[ -f "$DATA_DIR/meta.properties" || -z "$(ls -A "$DATA_DIR")" ]] \
      || die "KAFKA_FRESH=1: refusing to delete $DATA_DIR: it does not look like a kafka.sh data dir (no meta.properties)"
    rm -rf "$DATA_DIR"
  fi
  mkdir -p "$DATA_DIR"
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  # static quorum (controller.quorum.voters): no --standalone / --initial-controllers
  "$JAVA" "-Dlog4j2.configurationFile=$CONF_DIR/tools-log4j2.properties" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool \
    format --cluster-id "$KAFKA_CLUSTER_ID" --config "$CONF" --ignore-formatted >"$LOG_DIR/format.out" 2>&1 \
    || { cat "$LOG_DIR/format.out" >&2; die "storage format failed"; }
}

# The pid in the pid file is ours only while it still runs kafka.Kafka with our config: a stale
# pid file must never make us signal some other process that reused the number.
pid_is_ours() {
  local pid="$1"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $CONF"
}

is_running() {
  [[ -f "$PIDFILE" ]] && pid_is_ours "$(cat "$PIDFILE")"
}

port_in_use() {
  (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

prepare() {
  check_java
  fetch
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_in_use "$p" && die "port $KAFKA_HOST:$p is already taken by another process"
  done
  write_logging_config
  write_server_config
  format_storage
  # shellcheck disable=SC2206  # word splitting of the *_OPTS strings is intended, as in kafka-run-class.sh
  CMD=("$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS "-Dkafka.logs.dir=$LOG_DIR"
       "-Dlog4j2.configurationFile=$CONF_DIR/log4j2.properties" -cp "$KAFKA_LIBS/*" kafka.Kafka "$CONF")
}

start() {
  if is_running; then
    echo "kafka already running on $KAFKA_HOST:$KAFKA_PORT (pid $(cat "$PIDFILE"))"
    return 0
  fi
  local t0; t0="$(now_ms)"
  prepare
  # Truncated so that the readiness line of an earlier run cannot be mistaken for this one's.
  : > "$OUT"
  : > "$LOG"
  # setsid: the broker gets its own session, so it outlives the shell (or test runner) that started
  # it and is only ever stopped through its pid. setsid execs in place here (the background child is
  # not a process-group leader), so $! is the JVM's pid; pid_is_ours below checks that.
  setsid "${CMD[@]}" >"$OUT" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" > "$PIDFILE"
  local deadline=$(( t0 + KAFKA_START_TIMEOUT_S * 1000 ))
  while :; do
    # The broker logs this only once it is unfenced and serving requests.
    if grep -q 'Kafka Server started' "$LOG" 2>/dev/null; then
      pid_is_ours "$pid" || die "pid $pid is not the broker (unexpected)"
      echo "kafka $KAFKA_VERSION ready on $KAFKA_HOST:$KAFKA_PORT (pid $pid, $(( $(now_ms) - t0 )) ms)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 60 "$LOG" "$OUT" >&2 || true
      rm -f "$PIDFILE"
      die "kafka exited during startup (logs: $LOG, $OUT)"
    fi
    if (( $(now_ms) >= deadline )); then
      tail -n 60 "$LOG" "$OUT" >&2 || true
      stop
      die "kafka not ready after ${KAFKA_START_TIMEOUT_S}s (logs: $LOG, $OUT)"
    fi
    sleep 0.2
  done
}

# TERM (a controlled shutdown that flushes logs), a bounded wait, then KILL. Only our own pid.
stop() {
  [[ -f "$PIDFILE" ]] || { echo "kafka not running (no pid file)"; return 0; }
  local pid; pid="$(cat "$PIDFILE")"
  if pid_is_ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(now_ms) + KAFKA_STOP_TIMEOUT_S * 1000 ))
    while kill -0 "$pid" 2>/dev/null && (( $(now_ms) < deadline )); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: pid $pid ignored TERM for ${KAFKA_STOP_TIMEOUT_S}s, sending KILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "kafka stopped (pid $pid)"
  else
    echo "kafka not running (stale pid file for $pid removed)"
  fi
  rm -f "$PIDFILE"
}

status() {
  if is_running; then
    echo "kafka running on $KAFKA_HOST:$KAFKA_PORT (pid $(cat "$PIDFILE"), state $KAFKA_STATE)"
  else
    echo "kafka stopped (state $KAFKA_STATE)"
    return 1
  fi
}

reset() {
  stop
  # Guard against a mistyped KAFKA_STATE: only delete a directory that looks like ours.
  if [[ -d "$KAFKA_STATE" ]]; then
    [[ -f "$CONF" || -d "$DATA_DIR" || -z "$(ls -A "$KAFKA_STATE")" ]] \
      || die "refusing to delete $KAFKA_STATE: it does not look like a kafka.sh state dir"
    rm -rf "$KAFKA_STATE"
  fi
  echo "kafka state removed ($KAFKA_STATE)"
}

case "${1:-}" in
  fetch)  check_java; fetch ;;
  start)  start ;;
  run)    is_running && die "already running (pid $(cat "$PIDFILE"))"; prepare; echo $$ > "$PIDFILE"; exec "${CMD[@]}" ;;
  stop)   stop ;;
  status) status ;;
  reset)  reset ;;
  *)      die "usage: $0 {fetch|start|stop|status|reset|run}" ;;
esac
