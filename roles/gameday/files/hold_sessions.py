#!/usr/bin/env python
# Copyright: incident.response developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hold PostgreSQL sessions open for a gameday fault of the incident.response lab.

    hold_sessions.py start  --name FAULT --state-dir DIR --mode MODE [options]
    hold_sessions.py stop   --name FAULT --state-dir DIR [--timeout S]
    hold_sessions.py status --name FAULT --state-dir DIR

start runs a holder in the background (new session, stdio to DIR/FAULT.log, pid in
DIR/FAULT.pid) that opens the sessions and keeps them until SIGTERM, then waits until the
holder wrote DIR/FAULT.ready (sessions open and seen in pg_stat_activity) or failed. When
the holder already runs, start asks it (SIGHUP) to reopen the sessions that were ended
meanwhile (by a remediation, say) and reports whether it had to.

Modes:
  idle_tx     BEGIN; INSERT INTO audit_log ...; then idle in transaction
  flood       idle sessions up to --share of max_connections, minus the sessions already there
  long_query  SELECT pg_sleep(--query-seconds), active
  refresh     SELECT pg_tviews_refresh(--refresh-tview) FROM pg_sleep(--query-seconds), active:
              a TVIEW refresh as the pg_tviews runbooks see it (connect with --dbname to a
              pg_tviews fixture database of the lab)
--protect-user adds one session (--protect-application-name, default postgres_exporter)
that runs BEGIN; SELECT ... and sits idle in transaction: remediations must spare it.

Connection: --host/--port/--dbname/--user (default PGHOST/PGPORT/PGDATABASE/PGUSER).
Passwords only from the environment: GAMEDAY_PG_PASSWORD (else PGPASSWORD) and
GAMEDAY_PROTECT_PASSWORD for the protected session.

stdout is one JSON object (changed, state, ...); errors go to stderr as one line and the
exit status is 1 (2 for usage errors).
"""

import argparse
import json
import math
import os
import select
import signal
import sys
import time
import traceback

try:
    import psycopg2
    import psycopg2.extensions as pg_ext
except ImportError:  # pragma: no cover - depends on the interpreter
    psycopg2 = None
    pg_ext = None

EXPECTED_STATE = {
    "idle_tx": "idle in transaction",
    "flood": "idle",
    "long_query": "active",
    "refresh": "active",
    "protected": "idle in transaction",
}
SCRIPT_MARK = "hold_sessions"


class HoldError(Exception):
    """A failure to report in one line, without a traceback."""


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def log(msg):
    print("%s %s" % (now(), msg), flush=True)


def first_line(exc):
    text = str(exc).strip() or exc.__class__.__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:2])


# --- files ---------------------------------------------------------------------------


class Files:
    def __init__(self, state_dir, name):
        self.pid = os.path.join(state_dir, name + ".pid")
        self.ready = os.path.join(state_dir, name + ".ready")
        self.error = os.path.join(state_dir, name + ".error")
        self.log = os.path.join(state_dir, name + ".log")

    def remove(self, *which):
        for path in which:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.rename(tmp, path)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def pid_alive(pid):
    """True when pid runs (not a zombie) and is a hold_sessions process."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
        if stat[stat.rindex(")") + 2] == "Z":
            return False
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, ValueError, IndexError):
        return False
    return SCRIPT_MARK in cmdline


def running_pid(files):
    try:
        with open(files.pid, encoding="utf-8") as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and pid_alive(pid) else None


# --- sessions ------------------------------------------------------------------------


def wait_conn(conn, deadline):
    """Drive an asynchronous connection until its current operation completes."""
    while True:
        state = conn.poll()
        if state == pg_ext.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HoldError("timed out waiting for the server")
        if state == pg_ext.POLL_READ:
            select.select([conn.fileno()], [], [], remaining)
        elif state == pg_ext.POLL_WRITE:
            select.select([], [conn.fileno()], [], remaining)
        else:  # pragma: no cover - psycopg2 returns only the states above
            raise HoldError("unexpected poll state %r" % state)


class Session:
    def __init__(self, kind, user, password, application_name):
        self.kind = kind
        self.user = user
        self.password = password
        self.application_name = application_name
        self.conn = None
        self.pid = None

    def describe(self, args):
        return "%s@%s:%s/%s (application_name %s)" % (
            self.user, args.host, args.port, args.dbname, self.application_name)

    def open(self, args):
        self.close()
        deadline = time.monotonic() + args.connect_timeout + 5
        try:
            conn = psycopg2.connect(
                host=args.host, port=args.port, dbname=args.dbname, user=self.user,
                password=self.password, application_name=self.application_name,
                connect_timeout=args.connect_timeout, async_=1)
            self.conn = conn
            wait_conn(conn, deadline)
            cur = conn.cursor()
            cur.execute("SELECT pg_backend_pid()")
            wait_conn(conn, deadline)
            self.pid = cur.fetchone()[0]
            if self.kind == "idle_tx":
                cur.execute("BEGIN")
                wait_conn(conn, deadline)
                cur.execute(
                    "INSERT INTO audit_log (actor, action, detail) VALUES (%s, %s, %s)",
                    (self.application_name, "gameday.idle_in_transaction",
                     json.dumps({"by": "hold_sessions.py", "note": "held open in a transaction"})))
                wait_conn(conn, deadline)
            elif self.kind == "protected":
                cur.execute("BEGIN")
                wait_conn(conn, deadline)
                cur.execute("SELECT count(*) FROM pg_stat_activity")
                wait_conn(conn, deadline)
            elif self.kind == "long_query":
                # Sent, not waited for: the session stays active for the whole sleep.
                cur.execute("SELECT pg_sleep(%s)", (args.query_seconds,))
            elif self.kind == "refresh":
                # A refresh that takes --query-seconds: sent, not waited for.
                cur.execute("SELECT pg_tviews_refresh(%s) FROM pg_sleep(%s)",
                            (args.refresh_tview, args.query_seconds))
        except (psycopg2.Error, HoldError) as exc:
            self.close()
            raise HoldError("cannot open a session as %s: %s" % (self.describe(args), first_line(exc)))

    def close(self):
        conn, self.conn = self.conn, None
        self.pid = None
        if conn is None or conn.closed:
            return
        try:
            if self.kind in ("long_query", "refresh"):
                conn.cancel()
            elif self.kind in ("idle_tx", "protected"):
                cur = conn.cursor()
                cur.execute("ROLLBACK")
                wait_conn(conn, time.monotonic() + 5)
        except (psycopg2.Error, HoldError, OSError):
            pass
        try:
            conn.close()
        except psycopg2.Error:
            pass

    def drain(self):
        """Consume what the server sent; close the session when the server ended it."""
        if self.conn is None:
            return
        try:
            self.conn.poll()
        except psycopg2.extensions.QueryCanceledError:
            log("session %s: query cancelled" % self.pid)
        except (psycopg2.Error, OSError) as exc:
            log("session %s ended by the server: %s" % (self.pid, first_line(exc)))
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None


class Holder:
    def __init__(self, args, files):
        self.args = args
        self.files = files
        self.stop = False
        self.reconcile = False
        self.generation = 0
        self.sessions = []
        self.started_at = now()

    # signals only set flags; the main loop acts on them
    def on_term(self, signum, frame):
        self.stop = True

    def on_hup(self, signum, frame):
        self.reconcile = True

    def checker(self):
        args = self.args
        conn = psycopg2.connect(
            host=args.host, port=args.port, dbname=args.dbname, user=args.user,
            password=args.password, application_name=args.application_name + "_check",
            connect_timeout=args.connect_timeout)
        conn.autocommit = True
        return conn

    def plan(self):
        args = self.args
        count = args.count
        if args.mode == "flood":
            try:
                conn = self.checker()
            except psycopg2.Error as exc:
                raise HoldError("cannot connect as %s@%s:%s/%s: %s" % (
                    args.user, args.host, args.port, args.dbname, first_line(exc)))
            try:
                cur = conn.cursor()
                cur.execute(
                    "SELECT current_setting('max_connections')::int,"
                    " count(*) FILTER (WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())"
                    " FROM pg_stat_activity")
                max_connections, connected = cur.fetchone()
            finally:
                conn.close()
            count = max(0, int(math.floor(args.share * max_connections)) - connected)
            log("flood: max_connections %d, %d connected, opening %d (share %.2f)" % (
                max_connections, connected, count, args.share))
        self.sessions = [Session(args.mode, args.user, args.password, args.application_name)
                         for dummy in range(count)]
        if args.protect_user:
            self.sessions.append(Session("protected", args.protect_user, args.protect_password,
                                         args.protect_application_name))

    def open_missing(self):
        """Open the sessions that are not in their expected state; returns how many it opened."""
        states = self.server_states()
        opened = 0
        for session in self.sessions:
            if self.stop:
                break
            if session.conn is not None and session.pid in states:
                state, query = states[session.pid]
                if session.kind == "protected" or state is None or state == EXPECTED_STATE[session.kind]:
                    continue
            session.open(self.args)
            opened += 1
        return opened

    def server_states(self):
        pids = [s.pid for s in self.sessions if s.pid is not None]
        if not pids:
            return {}
        conn = self.checker()
        try:
            cur = conn.cursor()
            cur.execute("SELECT pid, state, query FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
            return {pid: (state, query) for pid, state, query in cur.fetchall()}
        finally:
            conn.close()

    def verify(self, timeout=15):
        """Wait until pg_stat_activity shows every session in its expected state."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.server_states()
            wrong = []
            for s in self.sessions:
                state = states.get(s.pid, ("gone", None))[0]
                if s.kind != "protected" and state is not None and state != EXPECTED_STATE[s.kind]:
                    wrong.append("%s is %s" % (s.pid, state))
                elif s.pid not in states:
                    wrong.append("%s is gone" % s.pid)
            if not wrong:
                return
            if time.monotonic() > deadline:
                raise HoldError("sessions not in the expected state: %s" % ", ".join(wrong[:5]))
            time.sleep(0.2)

    def write_state(self, reopened):
        self.generation += 1
        state = {
            "pid": os.getpid(),
            "name": self.args.name,
            "mode": self.args.mode,
            "application_name": self.args.application_name,
            "sessions": [s.pid for s in self.sessions if s.kind != "protected" and s.pid],
            "protected": [s.pid for s in self.sessions if s.kind == "protected" and s.pid],
            "protected_application_name": self.args.protect_application_name if self.args.protect_user else None,
            "started_at": self.started_at,
            "generation": self.generation,
            "reopened": reopened,
        }
        write_atomic(self.files.ready, json.dumps(state) + "\n")

    def close_all(self):
        for session in self.sessions:
            session.close()

    def run(self):
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        signal.signal(signal.SIGHUP, self.on_hup)
        write_atomic(self.files.pid, "%d\n" % os.getpid())
        try:
            self.plan()
            opened = self.open_missing()
            self.verify()
            self.write_state(opened)
            log("holding %d sessions (mode %s, application_name %s)%s" % (
                len(self.sessions), self.args.mode, self.args.application_name,
                " + protected %s" % self.args.protect_application_name if self.args.protect_user else ""))
            while not self.stop:
                if self.reconcile:
                    self.reconcile = False
                    reopened = self.open_missing()
                    self.verify()
                    log("reconciled: reopened %d sessions" % reopened)
                    self.write_state(reopened)
                live = [s for s in self.sessions if s.conn is not None]
                fds = {s.conn.fileno(): s for s in live}
                if not fds:
                    time.sleep(1)
                    continue
                readable = select.select(list(fds), [], [], 1.0)[0]
                for fd in readable:
                    fds[fd].drain()
                if readable:
                    time.sleep(0.1)
            return 0
        except HoldError as exc:
            log("error: %s" % exc)
            write_atomic(self.files.error, str(exc) + "\n")
            return 1
        except Exception as exc:  # keep the foreground informed, the traceback goes to the log
            traceback.print_exc()
            write_atomic(self.files.error, "holder failed: %s\n" % first_line(exc))
            return 1
        finally:
            log("closing %d sessions" % len(self.sessions))
            self.close_all()
            self.files.remove(self.files.ready, self.files.pid)
            log("stopped")


# --- commands ------------------------------------------------------------------------


def emit(obj):
    print(json.dumps(obj, sort_keys=True))


def fail(msg):
    print("hold_sessions: error: %s" % msg, file=sys.stderr)
    return 1


def daemonize(files):
    """Fork twice; returns True in the holder (grandchild), False in the caller."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return False
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    fd_null = os.open(os.devnull, os.O_RDONLY)
    fd_log = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd_null, 0)
    os.dup2(fd_log, 1)
    os.dup2(fd_log, 2)
    os.close(fd_null)
    os.close(fd_log)
    write_atomic(files.pid, "%d\n" % os.getpid())
    return True


def cmd_start(args, files):
    pid = running_pid(files)
    if pid:
        before = read_json(files.ready) or {}
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            state = read_json(files.ready) or {}
            if state.get("generation", 0) > before.get("generation", 0):
                reopened = state.get("reopened", 0)
                emit(dict(state, changed=reopened > 0, state="reconciled" if reopened else "running"))
                return 0
            if os.path.exists(files.error):
                with open(files.error, encoding="utf-8") as handle:
                    msg = handle.read().strip()
                files.remove(files.error)
                return fail(msg)
            if not pid_alive(pid):
                return fail("the holder (pid %d) exited while reopening sessions; see %s" % (pid, files.log))
            time.sleep(0.1)
        return fail("the holder (pid %d) did not answer SIGHUP within %ss; see %s" % (pid, args.timeout, files.log))

    if args.password is None:
        return fail("no password: set GAMEDAY_PG_PASSWORD (or PGPASSWORD) in the environment")
    if args.protect_user and args.protect_password is None:
        return fail("no password for %s: set GAMEDAY_PROTECT_PASSWORD in the environment" % args.protect_user)
    files.remove(files.pid, files.ready, files.error)

    if daemonize(files):
        log("starting %s: mode %s, application_name %s" % (args.name, args.mode, args.application_name))
        code = 1
        try:
            code = Holder(args, files).run()
        finally:
            os._exit(code)

    deadline = time.monotonic() + args.timeout
    holder = None
    while True:
        if os.path.exists(files.ready):
            state = read_json(files.ready)
            if state is not None:
                emit(dict(state, changed=True, state="started"))
                return 0
        if os.path.exists(files.error):
            with open(files.error, encoding="utf-8") as handle:
                msg = handle.read().strip()
            files.remove(files.error)
            return fail(msg)
        if not holder:
            holder = running_pid(files)
            if holder is None and os.path.exists(files.pid):
                # Read again: the holder may have written its pid file between the two looks (then it runs).
                holder = running_pid(files) or -1  # -1: pid file written, process already gone
        if holder == -1 or (holder and not pid_alive(holder)):
            return fail("the holder exited before its sessions were open; see %s" % files.log)
        if time.monotonic() > deadline:
            if holder and holder > 0:
                os.kill(holder, signal.SIGTERM)
            return fail("the sessions were not open after %ss; see %s" % (args.timeout, files.log))
        time.sleep(0.1)


def cmd_stop(args, files):
    pid = running_pid(files)
    if not pid:
        files.remove(files.pid, files.ready, files.error)
        emit({"changed": False, "state": "absent", "name": args.name})
        return 0
    state = read_json(files.ready) or {}
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.1)
    files.remove(files.pid, files.ready, files.error)
    emit(dict(state, changed=True, state="stopped", pid=pid, name=args.name))
    return 0


def cmd_status(args, files):
    pid = running_pid(files)
    if not pid:
        emit({"changed": False, "state": "absent", "name": args.name})
        return 3
    emit(dict(read_json(files.ready) or {}, changed=False, state="running", pid=pid, name=args.name))
    return 0


def parse_args(argv):
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--name", required=True, help="fault name (file names in --state-dir)")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--mode", choices=["idle_tx", "flood", "long_query", "refresh"], default="idle_tx")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.9, help="flood: share of max_connections")
    parser.add_argument("--query-seconds", type=float, default=600)
    parser.add_argument("--refresh-tview", default="tv_order", help="refresh: the TVIEW to refresh")
    parser.add_argument("--application-name", default="gameday")
    parser.add_argument("--host", default=env.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("PGPORT", "5432")))
    parser.add_argument("--dbname", default=env.get("PGDATABASE", "postgres"))
    parser.add_argument("--user", default=env.get("PGUSER", "postgres"))
    parser.add_argument("--protect-user", default="")
    parser.add_argument("--protect-application-name", default="postgres_exporter")
    parser.add_argument("--connect-timeout", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the holder")
    args = parser.parse_args(argv)
    args.password = env.get("GAMEDAY_PG_PASSWORD", env.get("PGPASSWORD"))
    args.protect_password = env.get("GAMEDAY_PROTECT_PASSWORD")
    if args.count < 0 or not 0 < args.share <= 1:
        parser.error("--count must be >= 0 and --share in (0, 1]")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if psycopg2 is None:
        return fail("psycopg2 is not importable by %s (pip install psycopg2-binary)" % sys.executable)
    if not os.path.isdir(args.state_dir):
        return fail("state directory %s does not exist (is the lab up?)" % args.state_dir)
    files = Files(args.state_dir, args.name)
    try:
        return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}[args.command](args, files)
    except (OSError, HoldError) as exc:
        return fail(first_line(exc))


if __name__ == "__main__":
    sys.exit(main())
