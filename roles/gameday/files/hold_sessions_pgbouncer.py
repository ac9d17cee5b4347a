#!/usr/bin/env python
# Copyright: incident.response developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exhaust a PgBouncer pool of the incident.response lab for a gameday fault.

    hold_sessions_pgbouncer.py start  --name FAULT --state-dir DIR [options]
    hold_sessions_pgbouncer.py stop   --name FAULT --state-dir DIR [--timeout S]
    hold_sessions_pgbouncer.py status --name FAULT --state-dir DIR

Through PgBouncer (--host/--port/--dbname, as --user): --count clients (default 3, the lab's pool size) that
BEGIN, INSERT a row into audit_log and sit idle in transaction, each holding its server connection;
--waiters more clients (default 3) that send SELECT 1 and wait in PgBouncer's queue (cl_waiting) because no
server connection is free; and, with --protect-user, one session of a protected application
(--protect-application-name, default postgres_exporter) that BEGINs and holds a server connection of its own
pool: the cure must spare it. Ready when PgBouncer's SHOW POOLS shows the waiters waiting and the pool's
servers active (admin console: --admin-user, password GAMEDAY_PGBOUNCER_ADMIN_PASSWORD).

The background holder, its files (DIR/FAULT.pid, .ready, .log), start/stop/status and SIGHUP (reopen what a
remediation ended, send SELECT 1 again from the waiters that got through) are those of hold_sessions.py.
Passwords only from the environment: GAMEDAY_PG_PASSWORD, GAMEDAY_PROTECT_PASSWORD,
GAMEDAY_PGBOUNCER_ADMIN_PASSWORD.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hold_sessions as hs  # noqa: E402  pylint: disable=wrong-import-position

psycopg2 = hs.psycopg2


class PoolSession(hs.Session):
    """A client of PgBouncer: holder (idle in transaction), waiter (a query queued) or protected."""

    cursor = None  # a waiter's cursor (an asynchronous query needs its cursor kept)

    def open(self, args):
        self.close()
        deadline = time.monotonic() + args.connect_timeout + 5
        try:
            if self.kind == 'waiter':
                conn = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=self.user,
                                        password=self.password, application_name=self.application_name,
                                        connect_timeout=args.connect_timeout, async_=1)
                self.conn = conn
                hs.wait_conn(conn, deadline)
                # Sent, not waited for: it waits in PgBouncer's queue while the pool is full.
                self.cursor = conn.cursor()
                self.cursor.execute('SELECT 1')
                return
            conn = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=self.user,
                                    password=self.password, application_name=self.application_name,
                                    connect_timeout=args.connect_timeout)
            self.conn = conn
            cur = conn.cursor()
            if self.kind == 'holder':
                cur.execute('INSERT INTO audit_log (actor, action, detail) VALUES (%s, %s, %s)',
                            (self.application_name, 'gameday.pgbouncer_pool_exhausted',
                             json.dumps({'by': 'hold_sessions_pgbouncer.py', 'note': 'holds its server connection'})))
            else:
                cur.execute('SELECT count(*) FROM pg_stat_activity')
            cur.execute('SELECT pg_backend_pid()')
            self.pid = cur.fetchone()[0]
        except (psycopg2.Error, hs.HoldError) as exc:
            self.close()
            raise hs.HoldError('cannot open a session through PgBouncer as %s: %s'
                               % (self.describe(args), hs.first_line(exc)))

    def waiting(self):
        return self.conn is not None and not self.conn.closed and self.conn.isexecuting()

    def close(self):
        conn, self.conn = self.conn, None
        self.pid = None
        if conn is None or conn.closed:
            return
        try:
            if self.kind != 'waiter':
                conn.rollback()
        except psycopg2.Error:
            pass
        try:
            conn.close()
        except psycopg2.Error:
            pass

    def drain(self):
        if self.conn is None:
            return
        try:
            if self.kind == 'waiter':
                if self.conn.poll() == psycopg2.extensions.POLL_OK and not self.conn.isexecuting():
                    hs.log('waiter got a server connection: its SELECT 1 ran')
                return
            self.conn.poll()
        except (psycopg2.Error, OSError) as exc:
            hs.log('session %s ended: %s' % (self.pid, hs.first_line(exc)))
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None


class PoolHolder(hs.Holder):
    def plan(self):
        a = self.args
        self.sessions = [PoolSession('holder', a.user, a.password, a.application_name) for dummy in range(a.count)]
        if a.protect_user:
            self.sessions.append(PoolSession('protected', a.protect_user, a.protect_password,
                                             a.protect_application_name))
        self.sessions += [PoolSession('waiter', a.user, a.password, a.application_name + '_waiting')
                          for dummy in range(a.waiters)]

    def open_missing(self):
        opened = 0
        for session in self.sessions:  # holders and the protected session first: they fill the pool
            if self.stop:
                break
            if session.kind == 'waiter':
                if session.conn is not None and not session.conn.closed:
                    if not session.waiting():
                        session.cursor = session.conn.cursor()
                        session.cursor.execute('SELECT 1')
                        opened += 1
                    continue
            elif session.conn is not None and not session.conn.closed:
                continue
            session.open(self.args)
            opened += 1
        return opened

    def admin_pool(self):
        a = self.args
        conn = psycopg2.connect(host=a.host, port=a.port, dbname='pgbouncer', user=a.admin_user,
                                password=a.admin_password, connect_timeout=a.connect_timeout)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute('SHOW POOLS')
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                pool = dict(zip(names, row))
                if pool['database'] == a.dbname and pool['user'] == a.user:
                    return pool
            return {}
        finally:
            conn.close()

    def verify(self, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            try:
                pool = self.admin_pool()
            except psycopg2.Error as exc:
                raise hs.HoldError('cannot read SHOW POOLS as %s@%s:%s: %s' % (
                    self.args.admin_user, self.args.host, self.args.port, hs.first_line(exc)))
            waiting, active = int(pool.get('cl_waiting') or 0), int(pool.get('sv_active') or 0)
            if waiting >= self.args.waiters and active >= self.args.count:
                return
            if time.monotonic() > deadline:
                raise hs.HoldError('the pool %s/%s is not exhausted: %d clients waiting (want %d), %d servers '
                                   'active (want %d); is default_pool_size %d?' % (
                                       self.args.dbname, self.args.user, waiting, self.args.waiters, active,
                                       self.args.count, self.args.count))
            time.sleep(0.2)

    def write_state(self, reopened):
        self.generation += 1
        state = {
            'pid': os.getpid(), 'name': self.args.name, 'mode': 'pgbouncer_pool',
            'application_name': self.args.application_name,
            'sessions': [s.pid for s in self.sessions if s.kind == 'holder' and s.pid],
            'waiters': len([s for s in self.sessions if s.kind == 'waiter']),
            'protected': [s.pid for s in self.sessions if s.kind == 'protected' and s.pid],
            'protected_application_name': self.args.protect_application_name if self.args.protect_user else None,
            'started_at': self.started_at, 'generation': self.generation, 'reopened': reopened,
        }
        hs.write_atomic(self.files.ready, json.dumps(state) + '\n')


def parse_args(argv):
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('command', choices=['start', 'stop', 'status'])
    parser.add_argument('--name', required=True)
    parser.add_argument('--state-dir', required=True)
    parser.add_argument('--count', type=int, default=3, help='clients holding a server connection in a transaction')
    parser.add_argument('--waiters', type=int, default=3, help='clients waiting for a server connection')
    parser.add_argument('--application-name', default='gameday_pool_exhaust')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=6432)
    parser.add_argument('--dbname', default='scheduler')
    parser.add_argument('--user', default='app')
    parser.add_argument('--admin-user', default='pgbouncer')
    parser.add_argument('--protect-user', default='')
    parser.add_argument('--protect-application-name', default='postgres_exporter')
    parser.add_argument('--connect-timeout', type=int, default=10)
    parser.add_argument('--timeout', type=float, default=60)
    args = parser.parse_args(argv)
    args.mode = 'pgbouncer_pool'
    args.password = env.get('GAMEDAY_PG_PASSWORD')
    args.protect_password = env.get('GAMEDAY_PROTECT_PASSWORD')
    args.admin_password = env.get('GAMEDAY_PGBOUNCER_ADMIN_PASSWORD')
    if args.count < 1 or args.waiters < 1:
        parser.error('--count and --waiters must be at least 1')
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if psycopg2 is None:
        return hs.fail('psycopg2 is not importable by %s (pip install psycopg2-binary)' % sys.executable)
    if not os.path.isdir(args.state_dir):
        return hs.fail('state directory %s does not exist (is the lab up?)' % args.state_dir)
    if args.command == 'start' and args.admin_password is None:
        return hs.fail('no password for the admin console: set GAMEDAY_PGBOUNCER_ADMIN_PASSWORD in the environment')
    hs.Holder = PoolHolder
    files = hs.Files(args.state_dir, args.name)
    try:
        return {'start': hs.cmd_start, 'stop': hs.cmd_stop, 'status': hs.cmd_status}[args.command](args, files)
    except (OSError, hs.HoldError) as exc:
        return hs.fail(hs.first_line(exc))


if __name__ == '__main__':
    sys.exit(main())
