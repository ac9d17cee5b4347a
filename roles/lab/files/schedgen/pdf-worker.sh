#!/bin/sh
# The schedule generator's pdf-worker (lab stand-in for the Node worker): consumes the real Bull 3
# queue bull:pdf-processing in the lab's Redis as Bull does - takes the oldest job from :wait into
# :active (RPOPLPUSH) with a lock key <job>:lock (PX LOCK_MS) and processedOn, "renders" it for
# JOB_SECONDS, then completes it: LREM :active, lock removed, ZADD :completed finishedOn, finishedOn
# and returnvalue on the job hash. Each step is one atomic Lua script. Stops on SIGTERM.
# A killed worker leaves its active job behind; once the lock expires the job is stalled.
. /srv/app/resp.sh
queue=${QUEUE_PREFIX:-bull}:${QUEUE_NAME:-pdf-processing}
job_seconds=${JOB_SECONDS:-0.1}
lock_ms=${LOCK_MS:-30000}
idle=${IDLE_SECONDS:-1}
cid=$(grep -o 'containers/[0-9a-f]\{64\}' /proc/self/mountinfo 2>/dev/null | head -n 1 | cut -c 12-23)
id=${cid:-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')}
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
TAKE='local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[2])
if not id then return "" end
local t = redis.call("TIME")
redis.call("SET", KEYS[3] .. id .. ":lock", ARGV[1], "PX", ARGV[2])
redis.call("HSET", KEYS[3] .. id, "processedOn", t[1] * 1000 + math.floor(t[2] / 1000))
return id'
DONE='if redis.call("LREM", KEYS[1], 1, ARGV[1]) == 0 then return 0 end
local lock = KEYS[3] .. ARGV[1] .. ":lock"
if redis.call("GET", lock) == ARGV[2] then redis.call("DEL", lock) end
local t = redis.call("TIME")
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call("ZADD", KEYS[2], ms, ARGV[1])
redis.call("HSET", KEYS[3] .. ARGV[1], "finishedOn", ms, "returnvalue", "{\"pages\":1}")
return 1'
trap 'echo "$(now) pdf-worker[$id]: SIGTERM, exiting after $done_count jobs"; exit 0' TERM INT
echo "$(now) pdf-worker[$id]: started on $queue (redis ${REDIS_HOST}:${REDIS_PORT} db ${REDIS_DB})"
done_count=0
down=0
while :; do
    token="pdf-worker-$id-$done_count"
    reply=$(resp_cmd EVAL "$TAKE" 3 "$queue:wait" "$queue:active" "$queue:" "$token" "$lock_ms" | redis_pipe)
    case "$reply" in
    +OK*) down=0 ;;
    *)
        [ "$down" = 0 ] && echo "$(now) pdf-worker[$id]: ERROR redis unreachable or refused: $(echo "$reply" | head -n 2 | tr '\n' ' ')" >&2
        down=1
        sleep "$idle" &
        wait $!
        continue
        ;;
    esac
    job=$(echo "$reply" | grep -E '^[0-9]+$' | head -n 1)
    if [ -z "$job" ]; then
        sleep "$idle" &
        wait $!
        continue
    fi
    sleep "$job_seconds" &
    wait $!
    resp_cmd EVAL "$DONE" 3 "$queue:active" "$queue:completed" "$queue:" "$job" "$token" | redis_pipe >/dev/null
    done_count=$((done_count + 1))
    echo "$(now) pdf-worker[$id]: job $job completed ($done_count done)"
done
