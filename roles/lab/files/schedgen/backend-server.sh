#!/bin/sh
# The schedule generator's backend (lab stand-in for the NestJS API): busybox nc runs
# backend-handler.sh once per connection on ${LISTEN_HOST}:${PORT}. A start is a fresh process:
# the faults of the running process (files under ${STATE_DIR}: error_rate, delay, auth_broken,
# written by gameday) are cleared, as a restart clears leaked connections and a stale session store.
host=${LISTEN_HOST:-127.0.0.1}
port=${PORT:-58180}
state=${STATE_DIR:-/srv/state}
role=${ROLE:-backend}
if [ "$role" = backend ]; then
    for fault in error_rate delay auth_broken; do
        [ -e "$state/$fault" ] && echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) backend: fresh start, $fault cleared" && rm -f "$state/$fault"
    done
fi
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $role: listening on $host:$port"
nc -ll -p "$port" "$host" -e /srv/app/backend-handler.sh &
server=$!
trap 'echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $role: SIGTERM, stopping"; kill "$server" 2>/dev/null; exit 0' TERM INT
wait "$server"
status=$?
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $role: listener exited with status $status"
exit "$status"
