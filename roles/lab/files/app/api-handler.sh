#!/bin/sh
# One HTTP request on stdin, one HTTP/1.0 response on stdout.
#
# Routes: /health -> health, /health/ready -> ready (anything else: 404).
# For a route NAME, under ${API_ROOT} (bind-mounted from lab_dir/api, so gameday faults can
# change the answers without touching the container):
#   www/NAME.json        the body (missing: 500)
#   status/NAME          optional status line override, e.g. "500 Internal Server Error"
#   status/NAME.delay    optional seconds to sleep before answering
root=${API_ROOT:-/srv/api}
cr=$(printf '\r')
request=""
# busybox ash (the lab image) has read -t: a client that sends nothing does not hold a process.
# shellcheck disable=SC3045
IFS= read -r -t 5 request || exit 0
request=${request%"$cr"}
method=${request%% *}
rest=${request#* }
path=${rest%% *}
path=${path%%\?*}
# Read the headers up to the blank line, so that closing the socket does not reset it.
# shellcheck disable=SC3045
while IFS= read -r -t 5 header; do
    header=${header%"$cr"}
    [ -z "$header" ] && break
done

case "$path" in
/health | /health/) name=health ;;
/health/ready | /health/ready/) name=ready ;;
*) name="" ;;
esac

if [ -z "$name" ]; then
    status="404 Not Found"
    body='{"status":"error","error":"not found"}'
else
    status="200 OK"
    [ -s "$root/status/$name" ] && status=$(head -n 1 "$root/status/$name")
    if [ -s "$root/status/$name.delay" ]; then
        sleep "$(head -n 1 "$root/status/$name.delay")"
    fi
    if [ -r "$root/www/$name.json" ]; then
        body=$(cat "$root/www/$name.json")
    else
        status="500 Internal Server Error"
        body='{"status":"error","error":"no body for '"$name"'"}'
    fi
fi

echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) api: $method $path -> ${status%% *}" >&2
printf 'HTTP/1.0 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
    "$status" "$((${#body} + 1))"
[ "$method" = HEAD ] || printf '%s\n' "$body"
