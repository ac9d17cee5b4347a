#!/bin/sh
# One HTTP request on stdin, one HTTP/1.0 response on stdout (the schedule generator's backend).
# ROLE=backend:
#   GET /health            200 {"status":"ok",...} when Redis answers PING, else 503
#   GET /api/jobs/metrics  the counts of the Bull queue read from Redis (waiting, active, completed,
#                          failed, delayed, paused), as the backend's JobsService does
#   POST /api/auth/login   a new session (SET sess:<id> EX 86400), 200 {"sid":...}
#   GET /api/auth/session?sid=ID  200 when sess:ID exists, else 401 "authentication failed"
#   GET /api/auth/status   200 when the session store works (read only), else 503
# ROLE=storage (MinIO stand-in): GET /minio/health/live -> 200.
# Faults (files under ${STATE_DIR}, written by gameday, cleared by a backend start):
#   error_rate   N: N% of the /api requests answer 500 and log an ERROR line
#   delay        S: sleep S seconds before answering
#   auth_broken  any: the session store is rejected, /api/auth/* answer 401 and log auth errors
# Every request is logged on stderr (the container's log): "backend: GET /path -> 200".
. /srv/app/resp.sh
state=${STATE_DIR:-/srv/state}
role=${ROLE:-backend}
queue=${QUEUE_PREFIX:-bull}:${QUEUE_NAME:-pdf-processing}
cr=$(printf '\r')
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
request=""
# shellcheck disable=SC3045
IFS= read -r -t 5 request || exit 0
request=${request%"$cr"}
method=${request%% *}
rest=${request#* }
target=${rest%% *}
path=${target%%\?*}
query=""
[ "$path" != "$target" ] && query=${target#*\?}
# shellcheck disable=SC3045
while IFS= read -r -t 5 header; do
    header=${header%"$cr"}
    [ -z "$header" ] && break
done

status="200 OK"
error=""
if [ "$role" = storage ]; then
    case "$path" in
    /minio/health/live | /minio/health/ready) body='{"status":"ok","service":"storage (MinIO stand-in)"}' ;;
    *) status="404 Not Found" body='{"error":"not found"}' ;;
    esac
else
    if [ -s "$state/delay" ]; then
        sleep "$(head -n 1 "$state/delay")"
    fi
    case "$path" in
    /health | /health/)
        if [ "$(resp_cmd PING | redis_pipe | sed -n 2p)" = "+PONG" ]; then
            body='{"status":"ok","service":"schedule-generator-backend","checks":{"redis":"ok"}}'
        else
            status="503 Service Unavailable"
            body='{"status":"error","service":"schedule-generator-backend","checks":{"redis":"down"}}'
            error="health: redis did not answer PING"
        fi
        ;;
    /api/*)
        rate=0
        [ -s "$state/error_rate" ] && rate=$(head -n 1 "$state/error_rate")
        # shellcheck disable=SC3028
        if [ "$rate" -gt 0 ] 2>/dev/null && [ $((RANDOM % 100)) -lt "$rate" ]; then
            status="500 Internal Server Error"
            body='{"statusCode":500,"message":"Internal server error"}'
            error="QueryFailedError: Connection terminated unexpectedly (pool)"
        else
            case "$method $path" in
            "GET /api/jobs/metrics")
                counts=$({
                    resp_cmd LLEN "$queue:wait"
                    resp_cmd LLEN "$queue:active"
                    resp_cmd ZCARD "$queue:completed"
                    resp_cmd ZCARD "$queue:failed"
                    resp_cmd ZCARD "$queue:delayed"
                    resp_cmd LLEN "$queue:paused"
                } | redis_pipe | resp_integers | tr '\n' ' ')
                # shellcheck disable=SC2086
                set -- $counts
                if [ "$#" -eq 6 ]; then
                    body=$(printf '{"waiting":%s,"active":%s,"completed":%s,"failed":%s,"delayed":%s,"paused":%s}' "$1" "$2" "$3" "$4" "$5" "$6")
                else
                    status="503 Service Unavailable"
                    body='{"statusCode":503,"message":"queue unavailable"}'
                    error="metrics: redis did not answer"
                fi
                ;;
            "POST /api/auth/login")
                if [ -e "$state/auth_broken" ]; then
                    status="401 Unauthorized" body='{"statusCode":401,"message":"Authentication failed"}'
                    error="auth: authentication failed: session store rejected the session (invalid signature)"
                else
                    sid=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
                    reply=$(resp_cmd SET "sess:$sid" '{"user":"lab"}' EX 86400 | redis_pipe | sed -n 2p)
                    if [ "$reply" = "+OK" ]; then
                        body="{\"sid\":\"$sid\"}"
                    else
                        status="503 Service Unavailable" body='{"statusCode":503,"message":"session store unavailable"}'
                        error="auth: session store write failed: $reply"
                    fi
                fi
                ;;
            "GET /api/auth/status")
                if [ -e "$state/auth_broken" ]; then
                    status="503 Service Unavailable" body='{"sessionStore":"rejected"}'
                    error="auth: authentication failed: session store rejected (invalid signature)"
                elif [ "$(resp_cmd PING | redis_pipe | sed -n 2p)" = "+PONG" ]; then
                    body='{"sessionStore":"ok"}'
                else
                    status="503 Service Unavailable" body='{"sessionStore":"down"}'
                    error="auth: session store (redis) did not answer"
                fi
                ;;
            "GET /api/auth/session")
                sid=$(echo "$query" | sed -n 's/.*sid=\([0-9a-zA-Z]*\).*/\1/p')
                exists=$(resp_cmd EXISTS "sess:$sid" | redis_pipe | resp_integers | head -n 1)
                if [ -e "$state/auth_broken" ] || [ "$exists" != 1 ]; then
                    status="401 Unauthorized" body='{"statusCode":401,"message":"Authentication failed"}'
                    error="auth: authentication failed for session ${sid:-none}: session not found"
                else
                    body='{"authenticated":true}'
                fi
                ;;
            *) status="404 Not Found" body='{"statusCode":404,"message":"Not Found"}' ;;
            esac
        fi
        ;;
    *) status="404 Not Found" body='{"statusCode":404,"message":"Not Found"}' ;;
    esac
fi

if [ -n "$error" ]; then
    echo "$(now) $role: ERROR $method $path -> ${status%% *}: $error" >&2
else
    echo "$(now) $role: $method $path -> ${status%% *}" >&2
fi
printf 'HTTP/1.0 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
    "$status" "$((${#body} + 1))"
[ "$method" = HEAD ] || printf '%s\n' "$body"
