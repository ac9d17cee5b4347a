#!/bin/sh
# Start, stop and check the background processes of the incident.response lab.
#
#   lab-daemon.sh start  PIDFILE LOGFILE CMD [ARG...]  start CMD in a new session, unless it runs
#   lab-daemon.sh stop   PIDFILE [MATCH] [TIMEOUT]     SIGTERM, wait (then SIGKILL), remove PIDFILE
#   lab-daemon.sh status PIDFILE [MATCH]               exit 0 when the process runs
#
# A process counts as running when its pid is alive, not a zombie and, when MATCH is
# given, its command line contains MATCH (guards against a reused pid).
# Prints one word first: started, running, stopped, absent.
set -u

alive() {
    _pid=$1
    _match=${2:-}
    case "$_pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$_pid/stat" ] || return 1
    _state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$_pid/stat" 2>/dev/null)
    [ "$_state" = Z ] && return 1
    [ -z "$_match" ] && return 0
    tr '\0' ' ' <"/proc/$_pid/cmdline" 2>/dev/null | grep -q -F -- "$_match"
}

read_pid() {
    [ -f "$1" ] && head -n 1 "$1" 2>/dev/null | tr -dc '0-9'
}

cmd=${1:-}
[ $# -ge 2 ] || { echo "usage: $0 start|stop|status PIDFILE ..." >&2; exit 2; }
shift
pidfile=$1
shift

case "$cmd" in
start)
    [ $# -ge 2 ] || { echo "usage: $0 start PIDFILE LOGFILE CMD [ARG...]" >&2; exit 2; }
    logfile=$1
    shift
    pid=$(read_pid "$pidfile")
    if alive "$pid" "$1"; then
        echo "running $pid"
        exit 0
    fi
    command -v "$1" >/dev/null 2>&1 || { echo "cannot start: $1 not found" >&2; exit 1; }
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
    # Not a process group leader here, so setsid execs in place and $! is the daemon's pid.
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    sleep 1
    if ! alive "$pid"; then
        rm -f "$pidfile"
        echo "cannot start $1: it exited at once; last lines of $logfile:" >&2
        tail -n 20 "$logfile" >&2
        exit 1
    fi
    echo "started $pid"
    ;;
stop)
    match=${1:-}
    timeout=${2:-30}
    pid=$(read_pid "$pidfile")
    if ! alive "$pid" "$match"; then
        rm -f "$pidfile"
        echo "absent"
        exit 0
    fi
    kill -TERM "$pid" 2>/dev/null
    ticks=0
    while alive "$pid"; do
        ticks=$((ticks + 1))
        if [ "$ticks" -gt $((timeout * 5)) ]; then
            kill -KILL "$pid" 2>/dev/null
            sleep 1
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
    echo "stopped $pid"
    ;;
status)
    pid=$(read_pid "$pidfile")
    if alive "$pid" "${1:-}"; then
        echo "running $pid"
        exit 0
    fi
    echo "absent"
    exit 3
    ;;
*)
    echo "unknown command: $cmd" >&2
    exit 2
    ;;
esac
