#!/bin/sh
# Print nginx.conf for a set of replicas, from nginx.conf.template.
# Usage: render.sh LISTEN STATE_DIR REPLICA [REPLICA ...]
#   e.g. render.sh 127.0.0.1:8080 /abs/run 127.0.0.1:9001 127.0.0.1:9002
# Environment:
#   CLIENT_TIMEOUT  client header/body/send timeout (default 10s)
#   RATE_LIMIT      requests per second per client address, e.g. 100r/s (default: no limit)
#   RATE_BURST      requests above the rate accepted at once (default: the rate per second)
#   FAIL_TIMEOUT    seconds a replica rests after 3 failed attempts (default 5)
#   MAX_CONNS       requests in flight to one replica at most (default: no
#                   bound); past it on every replica nginx answers 503 with
#                   Retry-After itself, at once. Beyond the replicas' capacity
#                   requests wait in their sockets and run queues, before
#                   any deadline of theirs can see them (BENCHMARKS.md):
#                   this bounds that wait to about MAX_CONNS over a
#                   replica's req/s.
#   AUTH            non-empty: API keys on (nginx asks a replica's GET /auth,
#                   which checks the replicas' key file); the rate limit is
#                   then per key rather than per address
#   TLS_PORT, TLS_CERT, TLS_KEY   all three: HTTPS (HTTP/1.1 and HTTP/2,
#                   TLS 1.2+) on the LISTEN address's host at TLS_PORT; LISTEN
#                   then answers health checks and redirects the rest
#   GRPC_LISTEN     address:port: gRPC (the Open Inference Protocol, HTTP/2
#                   cleartext) there too, to each replica's host:(port +
#                   GRPC_OFFSET, default 100); the template's "#grpc " lines
#                   are kept only then
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
case ${MAX_CONNS:-} in
    "") ;;
    *[!0-9]* | 0) echo "$0: MAX_CONNS must be a positive number of requests, got '$MAX_CONNS'" >&2; exit 2 ;;
esac
servers=""
for replica in "$@"; do
    servers="${servers}        server ${replica} max_fails=3 fail_timeout=${fail_timeout}s${MAX_CONNS:+ max_conns=$MAX_CONNS};\n"
done
grpc_servers=""
if [ -n "${GRPC_LISTEN:-}" ]; then
    grpc_offset=${GRPC_OFFSET:-100}
    case $grpc_offset in
        "" | *[!0-9-]*) echo "$0: GRPC_OFFSET must be an integer, got '$grpc_offset'" >&2; exit 2 ;;
    esac
    for replica in "$@"; do
        grpc_servers="${grpc_servers}        server ${replica%:*}:$((${replica##*:} + grpc_offset)) max_fails=3 fail_timeout=${fail_timeout}s;\n"
    done
fi
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
    # With API keys, a client is its key (limit_req runs before the key
    # check, so before the client id is known); the key stays in nginx's
    # shared memory, never in a log.
    by='$binary_remote_addr'
    [ -n "${AUTH:-}" ] && by='$http_authorization'
    zone="    limit_req_zone ${by} zone=per_client:10m rate=${rate}r/s;\n    limit_req_status 429;"
    limit="            limit_req zone=per_client burst=${burst} nodelay;"
fi
auth=""
auth_location=""
if [ -n "${AUTH:-}" ]; then
    auth="            auth_request /_auth;
            auth_request_set \$client_id \$upstream_http_x_client_id;
            proxy_set_header Authorization \$skl2go_key_for_replica;"
    auth_location="        location = /_auth {
            internal;
            proxy_pass http://skl2go/auth;
            proxy_http_version 1.1;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header Connection \"\";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Client-Id \"\";
        }"
fi
plain=""
tls=""
if [ -n "${TLS_PORT:-}${TLS_CERT:-}${TLS_KEY:-}" ]; then
    case ${TLS_PORT:-} in
        "" | *[!0-9]*) echo "$0: TLS_PORT must be a port number, got '${TLS_PORT:-}'" >&2; exit 2 ;;
    esac
    for f in "${TLS_CERT:-}" "${TLS_KEY:-}"; do
        [ -r "$f" ] || { echo "$0: TLS_CERT and TLS_KEY must be readable files, got '$f'" >&2; exit 2; }
    done
    plain=$listen
    listen="${listen%:*}:${TLS_PORT} ssl http2"
    tls="        ssl_certificate ${TLS_CERT};
        ssl_certificate_key ${TLS_KEY};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:tls:1m;"
fi
awk -v listen="$listen" -v state="$state" -v servers="$servers" -v timeout="$client_timeout" \
    -v zone="$zone" -v limit="$limit" -v bench="${BENCH_LISTEN:-}" \
    -v grpc="${GRPC_LISTEN:-}" -v grpc_servers="$grpc_servers" \
    -v auth="$auth" -v auth_location="$auth_location" -v tls="$tls" -v plain="$plain" -v tls_port="${TLS_PORT:-}" '
    /^#/ { print; next }
    /^[ \t]*#grpc / { if (grpc == "") next; sub(/#grpc /, ""); if ($0 ~ /^[ \t]*@GRPC_SERVERS@$/) { printf "%s", grpc_servers; next }; gsub(/@GRPC_LISTEN@/, grpc) }
    /^[ \t]*#bench / { if (bench == "") next; sub(/#bench /, ""); gsub(/@BENCH_LISTEN@/, bench) }
    /^[ \t]*#tls / { if (plain == "") next; sub(/#tls /, ""); gsub(/@PLAIN_LISTEN@/, plain); gsub(/@TLS_PORT@/, tls_port) }
    $0 == "@AUTH@" { if (auth != "") print auth; next }
    $0 == "@AUTH_LOCATION@" { if (auth_location != "") print auth_location; next }
    $0 == "@TLS@" { if (tls != "") print tls; next }
    $0 == "@SERVERS@" { printf "%s", servers; next }
    $0 == "@RATE_LIMIT_ZONE@" { if (zone != "") print zone; next }
    $0 == "@RATE_LIMIT@" { if (limit != "") print limit; next }
    { gsub(/@LISTEN@/, listen); gsub(/@STATE@/, state); gsub(/@CLIENT_TIMEOUT@/, timeout); print }
' "$(dirname "$0")/nginx.conf.template"
