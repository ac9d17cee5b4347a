#!/bin/sh
# Stand-in for the scheduler and worker processes: a loop that logs a line every
# ${LOOP_INTERVAL} seconds. Stops on SIGTERM.
role=${1:-worker}
interval=${LOOP_INTERVAL:-5}
id=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
trap 'echo "$(now) ${role}[${id}]: SIGTERM, exiting"; exit 0' TERM INT
echo "$(now) ${role}[${id}]: started"
n=0
while :; do
    n=$((n + 1))
    case "$role" in
    scheduler) echo "$(now) scheduler[$id]: tick $n, enqueued $((n % 4)) due_work items" ;;
    *) echo "$(now) ${role}[${id}]: heartbeat $n, processed $((n * 3)) tasks" ;;
    esac
    sleep "$interval" &
    wait $!
done
