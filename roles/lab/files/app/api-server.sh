#!/bin/sh
# The lab's stand-in for the task scheduler API: busybox nc runs api-handler.sh once per
# connection on ${API_LISTEN_HOST}:${API_PORT}. (busybox httpd cannot route /health and
# /health/ready to a script, nc -ll -e can.) Stops on SIGTERM.
host=${API_LISTEN_HOST:-127.0.0.1}
port=${API_PORT:-58080}
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) api: listening on $host:$port"
nc -ll -p "$port" "$host" -e /srv/app/api-handler.sh &
server=$!
trap 'echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) api: SIGTERM, stopping"; kill "$server" 2>/dev/null; exit 0' TERM INT
wait "$server"
status=$?
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) api: listener exited with status $status"
exit "$status"
