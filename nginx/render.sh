#!/bin/sh
# Print nginx.conf for a set of replicas, from nginx.conf.template.
# Usage: render.sh LISTEN STATE_DIR REPLICA [REPLICA ...]
#   e.g. render.sh 127.0.0.1:8080 /abs/run 127.0.0.1:9001 127.0.0.1:9002
# Environment:
#   CLIENT_TIMEOUT  client header/body/send timeout (default 10s)
#   RATE_LIMIT      requests per second per client address, e.g. 100r/s (default: no limit)
#   RATE_BURST      requests above the rate accepted at once (default: the rate per second)
#   FAIL_TIMEOUT    seconds a replica rests after 3 failed attempts (default 5)
#   BENCH_LISTEN    address:port (make bench): the template's "#bench " lines
#                   are kept, a server answering by itself there.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: $0 LISTEN STATE_DIR REPLICA [REPLICA ...]" >&2
    exit 2
fi
listen=$1
state=$2
shift 2
client_timeout=${CLIENT_TIMEOUT:-10s}
case $client_timeout in
    *[!0-9smh]* | "") echo "$0: CLIENT_TIMEOUT must look like 10s, got '$client_timeout'" >&2; exit 2 ;;
esac
fail_timeout=${FAIL_TIMEOUT:-5}
case $fail_timeout in
    "" | *[!0-9]*) echo "$0: FAIL_TIMEOUT must be a number of seconds, got '$fail_timeout'" >&2; exit 2 ;;
esac
servers=""
for replica in "$@"; do
    servers="${servers}        server ${replica} max_fails=3 fail_timeout=${fail_timeout}s;\n"
done
zone=""
limit=""
if [ -n "${RATE_LIMIT:-}" ]; then
    rate=${RATE_LIMIT%r/s}
    case $rate in
        "" | *[!0-9]*) echo "$0: RATE_LIMIT must look like 100r/s, got '$RATE_LIMIT'" >&2; exit 2 ;;
    esac
    burst=${RATE_BURST:-$rate}
    case $burst in
        "" | *[!0-9]*) echo "$0: RATE_BURST must be a number of requests, got '$burst'" >&2; exit 2 ;;
    esac
    zone="    limit_req_zone \$binary_remote_addr zone=per_client:10m rate=${rate}r/s;\n    limit_req_status 429;"
    limit="            limit_req zone=per_client burst=${burst} nodelay;"
fi
awk -v listen="$listen" -v state="$state" -v servers="$servers" -v timeout="$client_timeout" \
    -v zone="$zone" -v limit="$limit" -v bench="${BENCH_LISTEN:-}" '
    /^#/ { print; next }
    /^[ \t]*#bench / { if (bench == "") next; sub(/#bench /, ""); gsub(/@BENCH_LISTEN@/, bench) }
    $0 == "@SERVERS@" { printf "%s", servers; next }
    $0 == "@RATE_LIMIT_ZONE@" { if (zone != "") print zone; next }
    $0 == "@RATE_LIMIT@" { if (limit != "") print limit; next }
    { gsub(/@LISTEN@/, listen); gsub(/@STATE@/, state); gsub(/@CLIENT_TIMEOUT@/, timeout); print }
' "$(dirname "$0")/nginx.conf.template"
