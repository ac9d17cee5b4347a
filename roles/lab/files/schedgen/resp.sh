#!/bin/sh
# A Redis client in busybox sh (the lab image has no redis-cli): RESP over busybox nc.
# Sourced by the schedule generator's backend and pdf-worker. REDIS_HOST, REDIS_PORT, REDIS_DB.
#   resp_cmd ARG...        print one RESP command (an array of bulk strings)
#   redis_pipe             send the RESP commands of stdin to db REDIS_DB, then QUIT (Redis closes the
#                          connection, so nc ends at once); print the replies, CR removed
# Every connection is bounded: nc -w 3 (connect and final read).
resp_cmd() {
    printf '*%d\r\n' "$#"
    for arg in "$@"; do
        printf '$%d\r\n%s\r\n' "${#arg}" "$arg"
    done
}

redis_pipe() {
    {
        resp_cmd SELECT "${REDIS_DB:-0}"
        cat
        resp_cmd QUIT
    } | nc -w 3 "${REDIS_HOST:-127.0.0.1}" "${REDIS_PORT:-6379}" 2>/dev/null | tr -d '\r'
}

# The integer replies (":N") of a reply stream, one per line.
resp_integers() { sed -n 's/^://p'; }
