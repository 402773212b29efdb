#!/usr/bin/env bash
# Start or stop the local topology: N skl2go replicas behind nginx, all on
# loopback, with pid and log files under $STATE so that `down` stops exactly
# the processes `up` started.
#
# Usage: nginx/topology.sh up|down|status
# Settings (environment):
#   PORT=8080        nginx listens on 127.0.0.1:$PORT
#   REPLICAS=2       number of Go replicas
#   BASE_PORT=9001   replicas listen on 127.0.0.1:$BASE_PORT … $BASE_PORT+REPLICAS-1
#   MODELS=models    model repository
#   STATE=run        pid files, logs, nginx.conf and nginx temp files
#   SERVER=serve-go/bin/skl2go-server
#   SKL2GO_ORT_LIB   libonnxruntime.so to use (default: the server finds the .venv's)
#   SKL2GO_*         any other server flag, e.g. SKL2GO_LOG_LEVEL=warn
#   BENCH_LISTEN     (make bench) also let nginx answer by itself on this address:port
set -euo pipefail

PORT=${PORT:-8080}
REPLICAS=${REPLICAS:-2}
BASE_PORT=${BASE_PORT:-9001}
MODELS=${MODELS:-models}
STATE=${STATE:-run}
SERVER=${SERVER:-serve-go/bin/skl2go-server}
READY_TIMEOUT=${READY_TIMEOUT:-90}
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

# stop PIDFILE NAME SIGNAL: signal the process, wait up to 30 s, then kill it.
stop() {
    local pidfile=$1 name=$2 signal=$3 pid
    if pid_alive "$pidfile" "$name"; then
        pid=$(cat "$pidfile")
        kill "-$signal" "$pid" 2>/dev/null || true
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
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
    [[ -d $MODELS ]] || fail "model repository $MODELS not found: run 'make train export' first"
    command -v nginx >/dev/null || fail "nginx not installed: run 'make nginx' (apt-get install nginx)"
    [[ $REPLICAS =~ ^[1-9][0-9]*$ ]] || fail "REPLICAS must be a positive integer, got '$REPLICAS'"
    down
    mkdir -p "$STATE/logs" "$STATE/nginx"
    STATE=$(cd "$STATE" && pwd)

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

    for ((i = 0; i < REPLICAS; i++)); do
        # setsid: the replicas outlive the shell that started them.
        setsid "$SERVER" --models "$MODELS" --addr "${replicas[i]}" \
            >"$STATE/logs/replica-$((i + 1)).log" 2>&1 </dev/null &
        echo $! >"$STATE/replica-$((i + 1)).pid"
    done

    "$HERE/render.sh" "127.0.0.1:$PORT" "$STATE" "${replicas[@]}" >"$STATE/nginx.conf"
    nginx -q -t -p "$STATE/" -c "$STATE/nginx.conf" || { down; fail "nginx rejected $STATE/nginx.conf"; }
    nginx -p "$STATE/" -c "$STATE/nginx.conf" || { down; fail "nginx did not start; see $STATE/logs/nginx-error.log"; }

    local deadline=$((SECONDS + READY_TIMEOUT))
    for ((i = 0; i < REPLICAS; i++)); do
        until curl -fsS -o /dev/null "http://${replicas[i]}/readyz" 2>/dev/null; do
            if ! pid_alive "$STATE/replica-$((i + 1)).pid" skl2go-server; then
                show_logs; down; fail "replica $((i + 1)) (${replicas[i]}) exited during start-up"
            fi
            ((SECONDS < deadline)) || { show_logs; down; fail "replica ${replicas[i]} not ready after ${READY_TIMEOUT}s"; }
            sleep 0.2
        done
    done
    until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null; do
        ((SECONDS < deadline)) || { show_logs; down; fail "nginx on 127.0.0.1:$PORT not ready after ${READY_TIMEOUT}s"; }
        sleep 0.2
    done
    say "ready: nginx on http://127.0.0.1:$PORT -> $REPLICAS replica(s) ${replicas[*]}; logs in $STATE/logs"
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
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
