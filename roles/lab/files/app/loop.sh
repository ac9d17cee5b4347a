#!/bin/sh
# Stand-in for the scheduler and worker processes: a loop that logs a line every
# ${LOOP_INTERVAL} seconds. Stops on SIGTERM.
#
# Workers also send a real heartbeat each beat when HEARTBEAT_ADDR (host:port) is set: one
# line over loopback TCP to the lab's heartbeat relay (roles/lab/files/heartbeat_relay.py),
# which writes the worker_heartbeat row (the image has no psql). The worker id is
# worker-<first 12 hex digits of the container id>, read from /proc/self/mountinfo (docker
# bind-mounts /etc/hostname from /var/lib/docker/containers/<id>/), so a container keeps its
# row across restarts; outside a container, a random id.
role=${1:-worker}
interval=${LOOP_INTERVAL:-5}
cid=$(grep -o 'containers/[0-9a-f]\{64\}' /proc/self/mountinfo 2>/dev/null | head -n 1 | cut -c 12-23)
id=${cid:-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')}
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
beat() {
    [ "$role" = worker ] && [ -n "${HEARTBEAT_ADDR:-}" ] || return 0
    printf '%s worker-%s %s %s\n' "$1" "$id" "$(hostname)" "$2" |
        nc -w 2 "${HEARTBEAT_ADDR%:*}" "${HEARTBEAT_ADDR##*:}" >/dev/null 2>&1 ||
        echo "$(now) ${role}[${id}]: WARNING heartbeat to ${HEARTBEAT_ADDR} failed"
}
trap 'echo "$(now) ${role}[${id}]: SIGTERM, exiting"; beat STOPPING "$((n * 3))"; exit 0' TERM INT
echo "$(now) ${role}[${id}]: started"
n=0
while :; do
    n=$((n + 1))
    case "$role" in
    scheduler) echo "$(now) scheduler[$id]: tick $n, enqueued $((n % 4)) due_work items" ;;
    *)
        echo "$(now) ${role}[${id}]: heartbeat $n, processed $((n * 3)) tasks"
        beat HEARTBEAT "$((n * 3))"
        ;;
    esac
    sleep "$interval" &
    wait $!
done
