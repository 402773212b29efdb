#!/bin/sh
# Print nginx.conf for a set of replicas, from nginx.conf.template.
# Usage: render.sh LISTEN STATE_DIR REPLICA [REPLICA ...]
#   e.g. render.sh 127.0.0.1:8080 /abs/run 127.0.0.1:9001 127.0.0.1:9002
# With BENCH_LISTEN=address:port in the environment (make bench), the
# template's "#bench " lines are kept: a server answering by itself there.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: $0 LISTEN STATE_DIR REPLICA [REPLICA ...]" >&2
    exit 2
fi
listen=$1
state=$2
shift 2
servers=""
for replica in "$@"; do
    servers="${servers}        server ${replica} max_fails=3 fail_timeout=5s;\n"
done
awk -v listen="$listen" -v state="$state" -v servers="$servers" -v bench="${BENCH_LISTEN:-}" '
    /^#/ { print; next }
    /^[ \t]*#bench / { if (bench == "") next; sub(/#bench /, ""); gsub(/@BENCH_LISTEN@/, bench) }
    $0 == "@SERVERS@" { printf "%s", servers; next }
    { gsub(/@LISTEN@/, listen); gsub(/@STATE@/, state); print }
' "$(dirname "$0")/nginx.conf.template"
