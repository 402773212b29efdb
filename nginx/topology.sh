#!/usr/bin/env bash
# Start or stop the local topology: N skl2go replicas behind nginx, all on
# loopback, with pid and log files under $STATE so that `down` stops exactly
# the processes `up` started.
#
# Usage: nginx/topology.sh up|down|status|rollout|start-replica N
#   rollout          restart the replicas one at a time, with no request lost:
#                    check the repository first (the new processes must start),
#                    then for each replica: SIGTERM (it stops being ready and
#                    stops accepting connections; nginx sends the next requests
#                    to the others; in-flight requests finish), start it again,
#                    wait until it is ready and nginx uses it again.
#   start-replica N  start replica N (1-based) if it is not running, wait until ready.
# rollout and start-replica reuse the settings `up` saved in $STATE/topology.env.
# Settings (environment):
#   PORT=8080        nginx listens on 127.0.0.1:$PORT
#   REPLICAS=2       number of Go replicas
#   BASE_PORT=9001   replicas listen on 127.0.0.1:$BASE_PORT … $BASE_PORT+REPLICAS-1
#   MODELS=models    model repository
#   SKL2GO_REGISTRY  MLflow tracking server URL (make up REGISTRY=…): the replicas
#                    serve the registry's alias versions instead of MODELS, each
#                    caching them in $STATE/registry/replica-N (docs/registry.md)
#   STATE=run        pid files, logs, nginx.conf and nginx temp files
#   SERVER=serve-go/bin/skl2go-server
#   SKL2GO_*         server settings (flags), passed to every replica, e.g.
#                    SKL2GO_POLL_INTERVAL=1s, SKL2GO_VERSIONS_KEPT=2, SKL2GO_ORT_LIB
#                    (libonnxruntime.so; default: the server finds the .venv's)
#   RATE_LIMIT       nginx rate limit per client address, e.g. 100r/s (off by default)
#   RATE_BURST       requests above the rate accepted at once (default: the rate per second)
#   CLIENT_TIMEOUT   nginx client header/body/send timeout (default 10s)
#   FAIL_TIMEOUT     seconds nginx rests a replica after 3 failed attempts (default 5)
#   BENCH_LISTEN     (make bench) also let nginx answer by itself on this address:port
#   GOMAXPROCS       threads running Go code in each replica (default: cores / REPLICAS, at least 1)
set -euo pipefail

PORT=${PORT:-8080}
REPLICAS=${REPLICAS:-2}
BASE_PORT=${BASE_PORT:-9001}
MODELS=${MODELS:-models}
STATE=${STATE:-run}
SERVER=${SERVER:-serve-go/bin/skl2go-server}
READY_TIMEOUT=${READY_TIMEOUT:-90}
# nginx rests a replica for FAIL_TIMEOUT seconds after 3 failed attempts
# (render.sh writes it into the upstream block).
FAIL_TIMEOUT=${FAIL_TIMEOUT:-5}
export FAIL_TIMEOUT
HERE=$(cd "$(dirname "$0")" && pwd)

say() { echo "[topology] $*"; }
fail() { echo "[topology] error: $*" >&2; exit 1; }

# pid_alive PIDFILE NAME: true if the pid file names a live process whose
# command line contains NAME (guards against a recycled pid).
pid_alive() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(cat "$1")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# running PID: the process exists and has not exited (an exited process
# stays a zombie until its parent, here init, reaps it: kill -0 still works).
running() {
    local state
    state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# stop PIDFILE NAME SIGNAL: signal the process, wait up to 30 s, then kill it.
stop() {
    local pidfile=$1 name=$2 signal=$3 pid
    if pid_alive "$pidfile" "$name"; then
        pid=$(cat "$pidfile")
        kill "-$signal" "$pid" 2>/dev/null || true
        for _ in $(seq 300); do
            running "$pid" || break
            sleep 0.1
        done
        if running "$pid"; then
            say "$name (pid $pid) did not stop in 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

down() {
    [[ -d $STATE ]] || return 0
    stop "$STATE/nginx.pid" nginx QUIT
    for pidfile in "$STATE"/replica-*.pid; do
        [[ -e $pidfile ]] || continue
        stop "$pidfile" skl2go-server TERM
    done
}

show_logs() {
    for log in "$STATE"/logs/*.log; do
        [[ -s $log ]] || continue
        echo "--- last lines of $log" >&2
        tail -n 15 "$log" >&2
    done
}

up() {
    [[ -x $SERVER ]] || fail "$SERVER not found: run 'make build' first"
    [[ -n ${SKL2GO_REGISTRY:-} || -d $MODELS ]] || fail "model repository $MODELS not found: run 'make train export' first"
    command -v nginx >/dev/null || fail "nginx not installed: run 'make nginx' (apt-get install nginx)"
    [[ $REPLICAS =~ ^[1-9][0-9]*$ ]] || fail "REPLICAS must be a positive integer, got '$REPLICAS'"
    down
    mkdir -p "$STATE/logs" "$STATE/nginx"
    STATE=$(cd "$STATE" && pwd)
    [[ -n ${SKL2GO_REGISTRY:-} ]] || MODELS=$(cd "$MODELS" && pwd)
    SERVER=$(cd "$(dirname "$SERVER")" && pwd)/$(basename "$SERVER")

    local replicas=() port
    for ((i = 0; i < REPLICAS; i++)); do
        port=$((BASE_PORT + i))
        port_in_use "$port" && fail "port $port is already in use (set BASE_PORT to move the replicas)"
        replicas+=("127.0.0.1:$port")
    done
    port_in_use "$PORT" && fail "port $PORT is already in use (set PORT to move nginx)"
    if [[ -n ${BENCH_LISTEN:-} ]]; then
        port_in_use "${BENCH_LISTEN##*:}" && fail "port ${BENCH_LISTEN##*:} (BENCH_LISTEN) is already in use"
    fi

    # Each replica gets its share of the cores as GOMAXPROCS (at least 1).
    # With Go's default, every core in every replica, the replicas' threads
    # spin and hand off against each other and nginx: on 2 cores, 2 replicas
    # behind nginx answered /healthz about 1.5x faster with 1 each (22-26k
    # against 16k req/s; BENCHMARKS.md). A GOMAXPROCS set in the environment wins.
    local cores
    cores=$(nproc)
    export GOMAXPROCS=${GOMAXPROCS:-$((cores / REPLICAS > 1 ? cores / REPLICAS : 1))}

    # What rollout and start-replica need to start the same processes again.
    {
        declare -p PORT REPLICAS BASE_PORT MODELS SERVER FAIL_TIMEOUT GOMAXPROCS | sed 's/^declare -[-a-z]* /export /'
        export -p | grep '^declare -x SKL2GO_' | sed 's/^declare -x /export /' || true
    } >"$STATE/topology.env"

    for ((i = 1; i <= REPLICAS; i++)); do
        : >"$STATE/logs/replica-$i.log"
        start_replica "$i"
    done

    "$HERE/render.sh" "127.0.0.1:$PORT" "$STATE" "${replicas[@]}" >"$STATE/nginx.conf"
    nginx -q -t -p "$STATE/" -c "$STATE/nginx.conf" || { down; fail "nginx rejected $STATE/nginx.conf"; }
    nginx -p "$STATE/" -c "$STATE/nginx.conf" || { down; fail "nginx did not start; see $STATE/logs/nginx-error.log"; }

    local deadline=$((SECONDS + READY_TIMEOUT))
    for ((i = 1; i <= REPLICAS; i++)); do
        wait_ready "$i" || { show_logs; down; exit 1; }
    done
    until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null; do
        ((SECONDS < deadline)) || { show_logs; down; fail "nginx on 127.0.0.1:$PORT not ready after ${READY_TIMEOUT}s"; }
        sleep 0.2
    done
    say "ready: nginx on http://127.0.0.1:$PORT -> $REPLICAS replica(s) ${replicas[*]}; logs in $STATE/logs"
}

replica_addr() { echo "127.0.0.1:$((BASE_PORT + $1 - 1))"; }

# models_dir N: what replica N reads: MODELS, or with a registry its own
# cache of the registry's versions (kept across restarts).
models_dir() {
    if [[ -n ${SKL2GO_REGISTRY:-} ]]; then
        mkdir -p "$STATE/registry/replica-$1" && echo "$STATE/registry/replica-$1"
    else
        echo "$MODELS"
    fi
}

# start_replica N: start replica N in the background (its log is appended to).
start_replica() {
    # setsid: the replicas outlive the shell that started them.
    setsid "$SERVER" --models "$(models_dir "$1")" --addr "$(replica_addr "$1")" \
        >>"$STATE/logs/replica-$1.log" 2>&1 </dev/null &
    echo $! >"$STATE/replica-$1.pid"
}

# wait_ready N: wait until replica N answers /readyz (fails if it exits or
# takes longer than READY_TIMEOUT).
wait_ready() {
    local addr deadline=$((SECONDS + READY_TIMEOUT))
    addr=$(replica_addr "$1")
    until curl -fsS -o /dev/null "http://$addr/readyz" 2>/dev/null; do
        # running, not pid_alive: a process just forked may not have exec'd
        # the server yet, so its command line does not name it.
        running "$(cat "$STATE/replica-$1.pid")" || { echo "[topology] error: replica $1 ($addr) exited during start-up" >&2; return 1; }
        ((SECONDS < deadline)) || { echo "[topology] error: replica $1 ($addr) not ready after ${READY_TIMEOUT}s" >&2; return 1; }
        sleep 0.1
    done
}

# predictions N: inference requests replica N has answered (v1 and v2).
predictions() {
    curl -fsS "http://$(replica_addr "$1")/metrics" 2>/dev/null |
        awk '/^skl2go_inference_request_success_total/ { n += $NF } END { print n + 0 }'
}

# wait_in_rotation N…: nginx counts the refused connections of a restart as
# failures and rests the replica for FAIL_TIMEOUT. Stopping another replica
# meanwhile could leave nginx with none, so wait until nginx sends each of
# replicas N… requests again, or FAIL_TIMEOUT + 1 s has passed (no traffic
# to see, so nothing to lose).
wait_in_rotation() {
    local deadline=$((SECONDS + FAIL_TIMEOUT + 1)) i waiting
    declare -A before
    for i in "$@"; do before[$i]=$(predictions "$i"); done
    while ((SECONDS < deadline)); do
        waiting=0
        for i in "$@"; do (($(predictions "$i") > before[$i])) || waiting=1; done
        ((waiting)) || return 0
        sleep 0.2
    done
}

load_settings() {
    [[ -f $STATE/topology.env ]] || fail "nothing started from $STATE: run 'make up' first"
    # shellcheck disable=SC1091
    source "$STATE/topology.env"
}

start_one() {
    load_settings
    local n=$1
    [[ $n =~ ^[1-9][0-9]*$ ]] && ((n <= REPLICAS)) || fail "replica must be 1..$REPLICAS, got '$n'"
    if pid_alive "$STATE/replica-$n.pid" skl2go-server; then
        say "replica $n already running (pid $(cat "$STATE/replica-$n.pid"))"
    else
        start_replica "$n"
    fi
    wait_ready "$n" || fail "replica $n did not start; see $STATE/logs/replica-$n.log"
    say "replica $n ready on $(replica_addr "$n") (pid $(cat "$STATE/replica-$n.pid"))"
}

rollout() {
    load_settings
    STATE=$(cd "$STATE" && pwd)
    pid_alive "$STATE/nginx.pid" nginx || fail "nginx is not running from $STATE: run 'make up' first"
    # A replica that cannot start again would be lost: check the repository
    # with the very binary and settings first, and touch nothing if it fails.
    if [[ -z ${SKL2GO_REGISTRY:-} ]]; then
        say "checking the model repository $MODELS"
        "$SERVER" --check --models "$MODELS" --log-level warn || fail "the model repository does not load; no replica restarted"
    fi
    ((REPLICAS > 1)) || say "warning: with 1 replica, requests arriving while it restarts get 503 (start 2 or more)"
    # Every replica must be up and in nginx's rotation before one stops (an
    # earlier restart may have left one resting).
    local old all=()
    for ((i = 1; i <= REPLICAS; i++)); do
        wait_ready "$i" || fail "replica $i is not running; start it first (make up, or $0 start-replica $i)"
        all+=("$i")
    done
    wait_in_rotation "${all[@]}"
    for ((i = 1; i <= REPLICAS; i++)); do
        old=$(cat "$STATE/replica-$i.pid" 2>/dev/null || echo "?")
        stop "$STATE/replica-$i.pid" skl2go-server TERM
        start_replica "$i"
        wait_ready "$i" || fail "replica $i did not come back; see $STATE/logs/replica-$i.log (rollout stopped)"
        wait_in_rotation "$i"
        say "replica $i restarted (pid $old -> $(cat "$STATE/replica-$i.pid"))"
    done
    say "rollout done: $REPLICAS replica(s) restarted one at a time"
}

status() {
    local found=0
    if pid_alive "$STATE/nginx.pid" nginx; then say "nginx running (pid $(cat "$STATE/nginx.pid"))"; found=1; fi
    for pidfile in "$STATE"/replica-*.pid; do
        [[ -e $pidfile ]] || continue
        if pid_alive "$pidfile" skl2go-server; then say "$(basename "$pidfile" .pid) running (pid $(cat "$pidfile"))"; found=1; fi
    done
    ((found)) || say "nothing running from $STATE"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    rollout) rollout ;;
    start-replica) start_one "${2:-}" ;;
    *) echo "usage: $0 up|down|status|rollout|start-replica N" >&2; exit 2 ;;
esac
