#!/usr/bin/env bash
# Local real services for ChainSight's distributed runtime and integration tests:
#   - Redis, from Debian's redis-server package, on 127.0.0.1:$CHAINSIGHT_REDIS_PORT
#   - a single-node Apache Kafka broker (KRaft, broker+controller in one JVM) assembled
#     from Maven Central jars, on 127.0.0.1:$CHAINSIGHT_KAFKA_PORT
#   - an MQTT broker, from Debian's mosquitto package, on 127.0.0.1:$CHAINSIGHT_MQTT_PORT
#     (persistent sessions kept on disk; devices publish to chainsight/devices/ID/events)
#
# Usage: scripts/services.sh start|stop|restart|status [redis|kafka|mosquitto]
#   start   idempotent: installs/resolves what is missing, starts what is not running,
#           waits until each service really answers, prints one line per service.
#   stop    idempotent: stops what is running.
#   status  prints each service's state; exits 1 if any is down.
#
# Environment (defaults in brackets):
#   CHAINSIGHT_REDIS_PORT [6390]            CHAINSIGHT_KAFKA_PORT [9093]
#   CHAINSIGHT_KAFKA_CONTROLLER_PORT [9094] CHAINSIGHT_KAFKA_VERSION [3.9.1]
#   CHAINSIGHT_MQTT_PORT [1884]
#   CHAINSIGHT_SERVICES_DIR [<repo>/.services]  pids, logs, data (git-ignored)
#   CHAINSIGHT_CACHE_DIR [~/.cache/chainsight]  broker jars, reused across runs
#   CHAINSIGHT_KAFKA_HEAP [-Xms256m -Xmx512m]   CHAINSIGHT_KAFKA_START_TIMEOUT [120] (s)
#   CHAINSIGHT_PYTHON [<repo>/.venv/bin/python, else python3]  readiness probe
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${CHAINSIGHT_SERVICES_DIR:-$REPO_ROOT/.services}
CACHE_DIR=${CHAINSIGHT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chainsight}

REDIS_PORT=${CHAINSIGHT_REDIS_PORT:-6390}
REDIS_DIR=$STATE_DIR/redis
REDIS_PIDFILE=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log

KAFKA_VERSION=${CHAINSIGHT_KAFKA_VERSION:-3.9.1}
KAFKA_PORT=${CHAINSIGHT_KAFKA_PORT:-9093}
KAFKA_CONTROLLER_PORT=${CHAINSIGHT_KAFKA_CONTROLLER_PORT:-9094}
KAFKA_HEAP=${CHAINSIGHT_KAFKA_HEAP:--Xms256m -Xmx512m}
KAFKA_START_TIMEOUT=${CHAINSIGHT_KAFKA_START_TIMEOUT:-120}
KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
KAFKA_DIR=$STATE_DIR/kafka
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_CONF=$KAFKA_DIR/server.properties
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
KAFKA_LOG=$KAFKA_DIR/kafka.log
KAFKA_SRC=$REPO_ROOT/scripts/kafka

MQTT_PORT=${CHAINSIGHT_MQTT_PORT:-1884}
MQTT_DIR=$STATE_DIR/mosquitto
MQTT_CONF=$MQTT_DIR/mosquitto.conf
MQTT_PIDFILE=$MQTT_DIR/mosquitto.pid
MQTT_LOG=$MQTT_DIR/mosquitto.log

log() { echo "services: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- helpers -----------------------------------------------------------------

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the pid in pidfile $1 if that process is alive and its command line
# contains $2; fails otherwise (stale or missing pidfile).
live_pid() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    echo "$pid"
}

# Sends SIGTERM to $1 and waits up to $2 seconds, then SIGKILL.
stop_pid() {
    local pid=$1 waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= $2 * 5)); then
            log "pid $pid did not exit after $2s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
}

# Installs Debian packages (non-interactive).
apt_install() {
    log "apt-get install $*"
    "$REPO_ROOT/scripts/apt-install" "$@"
}

tail_log() {
    [[ -f $1 ]] || return 0
    log "last lines of $1:"
    tail -n "${2:-40}" "$1" >&2
}

# Runs "$@" every 0.2 s until it succeeds; after 20 s, shows log $2 and dies with message $1.
wait_until() {
    local message=$1 logfile=$2 waited=0
    shift 2
    until "$@"; do
        if ((waited >= 100)); then
            tail_log "$logfile"
            die "$message"
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
}

# --- Redis -------------------------------------------------------------------

redis_answers() {
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

redis_start() {
    local pid
    if pid=$(live_pid "$REDIS_PIDFILE" redis-server); then
        echo "redis  up (already running, pid $pid)  redis://127.0.0.1:$REDIS_PORT/0"
        return 0
    fi
    command -v redis-server >/dev/null || apt_install redis-server
    port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process;" \
        "set CHAINSIGHT_REDIS_PORT to a free port"
    mkdir -p "$REDIS_DIR"
    rm -f "$REDIS_PIDFILE"
    # No config file: defaults plus these flags. Snapshots are off (dev/test state).
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
        --save "" --appendonly no >/dev/null 9>&-
    wait_until "redis did not answer PING on 127.0.0.1:$REDIS_PORT within 20s" "$REDIS_LOG" \
        redis_answers
    pid=$(live_pid "$REDIS_PIDFILE" redis-server) || die "redis started but wrote no pidfile"
    echo "redis  up (started, pid $pid)  redis://127.0.0.1:$REDIS_PORT/0"
}

redis_stop() {
    local pid
    if pid=$(live_pid "$REDIS_PIDFILE" redis-server); then
        stop_pid "$pid" 20
        echo "redis  stopped (pid $pid)"
    else
        echo "redis  not running"
    fi
    rm -f "$REDIS_PIDFILE"
}

redis_status() {
    local pid
    if pid=$(live_pid "$REDIS_PIDFILE" redis-server) &&
        [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
        echo "redis  up (pid $pid)  redis://127.0.0.1:$REDIS_PORT/0"
    else
        echo "redis  down"
        return 1
    fi
}

# --- Kafka -------------------------------------------------------------------

java_cmd() { echo "${JAVA_HOME:+$JAVA_HOME/bin/}java"; }

# Resolves the broker's jars with Maven into $KAFKA_LIBS once (cached outside the repo).
kafka_libs() {
    local tmp
    [[ -f $KAFKA_LIBS/.complete ]] && return 0
    command -v "$(java_cmd)" >/dev/null || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_install maven
    log "resolving Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIBS (first run only)"
    mkdir -p "$(dirname "$KAFKA_LIBS")"
    tmp=$(mktemp -d "$(dirname "$KAFKA_LIBS")/libs.tmp.XXXXXX")
    # Run from a copy of the pom so Maven leaves nothing (target/) in the repo.
    cp "$KAFKA_SRC/pom.xml" "$tmp/pom.xml"
    if ! mvn -B -q -ntp -f "$tmp/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
        tail_log "$tmp/mvn.log" 60
        die "Maven could not resolve Kafka $KAFKA_VERSION (log: $tmp/mvn.log)"
    fi
    [[ -f $tmp/libs/kafka_2.13-$KAFKA_VERSION.jar ]] ||
        die "kafka_2.13-$KAFKA_VERSION.jar missing after Maven resolution (see $tmp)"
    touch "$tmp/libs/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp/libs" "$KAFKA_LIBS"
    rm -rf "$tmp"
    log "cached $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars"
}

# Writes server.properties from the template with the current ports and paths.
kafka_render_config() {
    mkdir -p "$KAFKA_DATA"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@LOG_DIR@|$KAFKA_DATA|g" \
        "$KAFKA_SRC/server.properties.template" >"$KAFKA_CONF"
}

# Formats the KRaft log dir once (static voters, so no --standalone).
kafka_format() {
    local cluster_id
    [[ -f $KAFKA_DATA/meta.properties ]] && return 0
    local tool=("$(java_cmd)" -Dlog4j.configuration="file:$KAFKA_SRC/tools-log4j.properties"
        -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool)
    cluster_id=$("${tool[@]}" random-uuid)
    log "formatting $KAFKA_DATA (cluster id $cluster_id)"
    "${tool[@]}" format \
        -t "$cluster_id" -c "$KAFKA_CONF" --ignore-formatted >"$KAFKA_DIR/format.log" 2>&1 ||
        { tail_log "$KAFKA_DIR/format.log"; die "kafka StorageTool format failed"; }
}

# Readiness probe: a metadata request that lists this broker (confluent-kafka), or,
# if no Python with confluent_kafka is around, the broker's "started" log line.
kafka_probe_python() {
    local py=${CHAINSIGHT_PYTHON:-}
    if [[ -z $py ]]; then
        if [[ -x $REPO_ROOT/.venv/bin/python ]]; then py=$REPO_ROOT/.venv/bin/python; else py=python3; fi
    fi
    "$py" -c 'import confluent_kafka' 2>/dev/null && echo "$py"
}

kafka_ready() {
    local py=$1
    port_open "$KAFKA_PORT" || return 1
    if [[ -n $py ]]; then
        "$py" - "127.0.0.1:$KAFKA_PORT" 2>/dev/null <<'EOF'
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0}).list_topics(timeout=3)
sys.exit(0 if md.brokers else 1)
EOF
    else
        grep -q 'Kafka Server started' "$KAFKA_LOG"
    fi
}

kafka_start() {
    local pid py waited=0 start=$SECONDS
    if pid=$(live_pid "$KAFKA_PIDFILE" kafka.Kafka); then
        echo "kafka  up (already running, pid $pid)  127.0.0.1:$KAFKA_PORT"
        return 0
    fi
    kafka_libs
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_open "$p" && die "port $p is taken by another process; set" \
            "CHAINSIGHT_KAFKA_PORT / CHAINSIGHT_KAFKA_CONTROLLER_PORT to free ports"
    done
    kafka_render_config
    kafka_format
    [[ -f $KAFKA_LOG ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    rm -f "$KAFKA_PIDFILE"
    # New session (setsid) so the broker outlives this shell; the inner shell records
    # its own pid and execs java, so the pidfile holds the JVM's pid.
    # shellcheck disable=SC2086  # KAFKA_HEAP holds several JVM flags
    # shellcheck disable=SC2016  # $$ and $@ expand in the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PIDFILE" \
        "$(java_cmd)" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$KAFKA_SRC/log4j.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF" \
        </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
    py=$(kafka_probe_python) || py=""
    while [[ ! -s $KAFKA_PIDFILE ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    until kafka_ready "$py"; do
        if ! live_pid "$KAFKA_PIDFILE" kafka.Kafka >/dev/null; then
            tail_log "$KAFKA_LOG"
            die "kafka broker exited during startup (log: $KAFKA_LOG)"
        fi
        if ((SECONDS - start >= KAFKA_START_TIMEOUT)); then
            tail_log "$KAFKA_LOG"
            die "kafka broker not ready on 127.0.0.1:$KAFKA_PORT after ${KAFKA_START_TIMEOUT}s" \
                "(log: $KAFKA_LOG); it is left running, see 'scripts/services.sh stop'"
        fi
        sleep 0.5
    done
    pid=$(live_pid "$KAFKA_PIDFILE" kafka.Kafka) || die "kafka pidfile missing"
    echo "kafka  up (started in $((SECONDS - start))s, pid $pid)  127.0.0.1:$KAFKA_PORT"
}

kafka_stop() {
    local pid
    if pid=$(live_pid "$KAFKA_PIDFILE" kafka.Kafka); then
        stop_pid "$pid" 60
        echo "kafka  stopped (pid $pid)"
    else
        echo "kafka  not running"
    fi
    rm -f "$KAFKA_PIDFILE"
}

kafka_status() {
    local pid
    if pid=$(live_pid "$KAFKA_PIDFILE" kafka.Kafka) && port_open "$KAFKA_PORT"; then
        echo "kafka  up (pid $pid)  127.0.0.1:$KAFKA_PORT"
    else
        echo "kafka  down"
        return 1
    fi
}

# --- Mosquitto ---------------------------------------------------------------

mosquitto_bin() { command -v mosquitto || echo /usr/sbin/mosquitto; }

# Writes mosquitto.conf: one local listener, anonymous (a dev/test broker), sessions and
# queued QoS 1 messages persisted in $MQTT_DIR, and queues deep enough that a bridge that is
# down for a while finds every message its persistent session was sent meanwhile.
mosquitto_render_config() {
    mkdir -p "$MQTT_DIR"
    cat >"$MQTT_CONF" <<EOF
# Written by scripts/services.sh; edits are overwritten on start.
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
user $(id -un)
pid_file $MQTT_PIDFILE
log_dest file $MQTT_LOG
log_type error
log_type warning
log_type notice
persistence true
persistence_location $MQTT_DIR/
autosave_interval 10
max_queued_messages 1000000
EOF
}

mosquitto_start() {
    local pid
    if pid=$(live_pid "$MQTT_PIDFILE" mosquitto); then
        echo "mosquitto  up (already running, pid $pid)  mqtt://127.0.0.1:$MQTT_PORT"
        return 0
    fi
    [[ -x $(mosquitto_bin) ]] || apt_install mosquitto mosquitto-clients
    port_open "$MQTT_PORT" && die "port $MQTT_PORT is taken by another process;" \
        "set CHAINSIGHT_MQTT_PORT to a free port"
    mosquitto_render_config
    rm -f "$MQTT_PIDFILE"
    "$(mosquitto_bin)" -c "$MQTT_CONF" -d 9>&-
    wait_until "mosquitto did not listen on 127.0.0.1:$MQTT_PORT within 20s" "$MQTT_LOG" \
        port_open "$MQTT_PORT"
    pid=$(live_pid "$MQTT_PIDFILE" mosquitto) || die "mosquitto started but wrote no pidfile"
    echo "mosquitto  up (started, pid $pid)  mqtt://127.0.0.1:$MQTT_PORT"
}

mosquitto_stop() {
    local pid
    if pid=$(live_pid "$MQTT_PIDFILE" mosquitto); then
        stop_pid "$pid" 20
        echo "mosquitto  stopped (pid $pid)"
    else
        echo "mosquitto  not running"
    fi
    rm -f "$MQTT_PIDFILE"
}

mosquitto_status() {
    local pid
    if pid=$(live_pid "$MQTT_PIDFILE" mosquitto) && port_open "$MQTT_PORT"; then
        echo "mosquitto  up (pid $pid)  mqtt://127.0.0.1:$MQTT_PORT"
    else
        echo "mosquitto  down"
        return 1
    fi
}

# --- main --------------------------------------------------------------------

usage() { echo "usage: $0 start|stop|restart|status [redis|kafka|mosquitto]" >&2; exit 2; }

main() {
    local action=${1:-} only=${2:-} services=(redis kafka mosquitto) rc=0
    [[ $# -le 2 ]] || usage
    case $only in
        "") ;;
        redis | kafka | mosquitto) services=("$only") ;;
        *) usage ;;
    esac
    mkdir -p "$STATE_DIR"
    case $action in
        start | stop | restart)
            # One start/stop at a time per state dir (daemons are started with 9>&-
            # so they do not inherit the lock).
            exec 9>"$STATE_DIR/.lock"
            flock 9
            ;;
    esac
    case $action in
        start) for s in "${services[@]}"; do "${s}_start"; done ;;
        stop) for s in "${services[@]}"; do "${s}_stop"; done ;;
        restart)
            for s in "${services[@]}"; do "${s}_stop"; done
            for s in "${services[@]}"; do "${s}_start"; done
            ;;
        status) for s in "${services[@]}"; do "${s}_status" || rc=1; done ;;
        *) usage ;;
    esac
    return "$rc"
}

main "$@"
