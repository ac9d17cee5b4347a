#!/usr/bin/env python
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's heartbeat relay: worker containers -> worker_heartbeat rows in PostgreSQL.

The lab image is busybox (no psql, no driver), so each worker loop sends one line per beat
over loopback TCP with busybox nc; this relay, started by `lab up` with the Python of
ansible-playbook (psycopg2), writes the row. Stop a worker and its row goes stale, as in
production. Lines:

    HEARTBEAT <worker_id> <hostname> <processed_count>   upsert, status running, last_seen now()
    STOPPING <worker_id> <hostname> <processed_count>    the worker got SIGTERM: status stopped

One persistent session (application_name lab_heartbeat_relay, autocommit, so it is idle and
never idle in transaction), reopened after an error (e.g. the db_down fault). The password comes
from the environment (PGPASSWORD), never from the arguments.

    heartbeat_relay.py --listen 127.0.0.1:58082 --pg-host 127.0.0.1 --pg-port 55432 --user app --dbname scheduler
"""
import argparse
import os
import re
import signal
import socketserver
import sys
import threading
import time

import psycopg2

LINE = re.compile(r'^(HEARTBEAT|STOPPING) ([A-Za-z0-9_.:-]{1,64}) ([A-Za-z0-9_.:-]{1,255}) (\d{1,18})$')
UPSERT = """
INSERT INTO worker_heartbeat (worker_id, hostname, status, processed_count, started_at, last_seen)
VALUES (%(worker)s, %(host)s, %(status)s, %(count)s, now(), now())
ON CONFLICT (worker_id) DO UPDATE
   SET hostname = EXCLUDED.hostname, status = EXCLUDED.status,
       processed_count = EXCLUDED.processed_count, last_seen = now(),
       started_at = CASE WHEN worker_heartbeat.status = 'running' THEN worker_heartbeat.started_at ELSE now() END
"""


def log(message):
    sys.stdout.write('%s heartbeat_relay: %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), message))
    sys.stdout.flush()


class Writer(object):
    def __init__(self, args):
        self.args = args
        self.conn = None
        self.lock = threading.Lock()
        self.last_error = None

    def write(self, kind, worker, host, count):
        with self.lock:
            for _attempt in (1, 2):
                try:
                    if self.conn is None or self.conn.closed:
                        self.conn = psycopg2.connect(host=self.args.pg_host, port=self.args.pg_port,
                                                     user=self.args.user, dbname=self.args.dbname,
                                                     application_name='lab_heartbeat_relay', connect_timeout=3)
                        self.conn.autocommit = True
                        log('connected to %s:%s/%s' % (self.args.pg_host, self.args.pg_port, self.args.dbname))
                    with self.conn.cursor() as cur:
                        cur.execute(UPSERT, dict(worker=worker, host=host, count=int(count),
                                                 status='running' if kind == 'HEARTBEAT' else 'stopped'))
                    self.last_error = None
                    return True
                except psycopg2.Error as exc:
                    error = ' '.join(str(exc).split())
                    if error != self.last_error:
                        log('cannot write the heartbeat of %s: %s' % (worker, error))
                    self.last_error = error
                    try:
                        if self.conn is not None:
                            self.conn.close()
                    except psycopg2.Error:
                        pass
                    self.conn = None
            return False


def make_handler(writer):
    class Handler(socketserver.StreamRequestHandler):
        timeout = 5

        def handle(self):
            try:
                raw = self.rfile.readline(512)
            except OSError:
                return
            match = LINE.match(raw.decode('ascii', 'replace').strip())
            if not match:
                self.wfile.write(b'ERR\n')
                return
            ok = writer.write(*match.groups())
            self.wfile.write(b'OK\n' if ok else b'ERR\n')
    return Handler


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--listen', default='127.0.0.1:58082')
    parser.add_argument('--pg-host', default='127.0.0.1')
    parser.add_argument('--pg-port', type=int, default=55432)
    parser.add_argument('--user', default='app')
    parser.add_argument('--dbname', default='scheduler')
    args = parser.parse_args()
    if 'PGPASSWORD' not in os.environ:
        log('PGPASSWORD is not set')
        return 2
    host, port = args.listen.rsplit(':', 1)
    server = Server((host, int(port)), make_handler(Writer(args)))

    def stop(_signum, _frame):
        log('SIGTERM, stopping')
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log('listening on %s' % args.listen)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
