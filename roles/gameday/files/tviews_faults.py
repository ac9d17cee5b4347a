#!/usr/bin/env python
# Copyright: incident.response developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cause or clear the pg_tviews data faults of the incident.response lab (fixture databases).

    tviews_faults.py FAULT ACTION [--runbook-db tviews_runbook] [--ext-db tviews_ext] [options]

FAULT:
  tview_refresh_errors  runbook catalog: a share (--share, default 0.6) of the TVIEWs get a last_error
                        (tagged "gameday:"); extension contract: the same share of the registry is
                        marked needs_reregister (it keeps no error state)
  queue_backlog         runbook catalog: --rows (default 20000) pending refreshes (pk_value < 0 marks
                        them) created over the last two hours; the extension keeps no queue
  stale_tviews          runbook catalog: --count (default 5) TVIEWs last refreshed --hours (default 6)
                        ago; the previous times are kept in the database (gameday_stale_tviews table)
                        and put back by clear. The extension keeps no refresh times.
ACTION: cause | clear. Both are idempotent.

Connection: PGHOST, PGPORT, PGUSER of the environment (a superuser of the lab), password from
GAMEDAY_PG_PASSWORD (else PGPASSWORD), never from the arguments. stdout is one JSON object
(changed, fault, action, detail); errors go to stderr as one line, exit status 1.
"""

import argparse
import json
import os
import sys

try:
    import psycopg2
except ImportError:  # pragma: no cover - depends on the interpreter
    psycopg2 = None

ERROR_TAG = 'gameday: '
ERRORS = [
    'permission denied for table base_order',
    'relation "base_product_v2" does not exist',
    'canceling statement due to statement timeout',
    'deadlock detected',
]


def connect(args, dbname):
    conn = psycopg2.connect(host=args.host, port=args.port, user=args.user, password=args.password,
                            dbname=dbname, application_name='gameday_tviews', connect_timeout=10)
    conn.autocommit = False
    return conn


def refresh_errors(args, cur, ext_cur):
    cur.execute('SELECT count(*) FROM pg_tviews_metadata')
    total = cur.fetchone()[0]
    target = int(round(total * args.share))
    changed = 0
    if args.action == 'cause':
        cur.execute('SELECT count(*) FROM pg_tviews_metadata WHERE last_error LIKE %s', (ERROR_TAG + '%',))
        have = cur.fetchone()[0]
        if have < target:
            cur.execute("""
                UPDATE pg_tviews_metadata m SET last_error = %s || (%s::text[])[1 + (r.n %% 4)]
                FROM (SELECT entity_name, row_number() OVER (ORDER BY entity_name) AS n FROM pg_tviews_metadata
                      WHERE last_error IS NULL OR last_error NOT LIKE %s ORDER BY entity_name LIMIT %s) r
                WHERE m.entity_name = r.entity_name""", (ERROR_TAG, ERRORS, ERROR_TAG + '%', target - have))
            changed += cur.rowcount
    else:
        cur.execute('UPDATE pg_tviews_metadata SET last_error = NULL WHERE last_error LIKE %s', (ERROR_TAG + '%',))
        changed += cur.rowcount
    if ext_cur is not None:
        ext_cur.execute('SELECT count(*), count(*) FILTER (WHERE needs_reregister) FROM tviews._registry')
        ext_total, ext_have = ext_cur.fetchone()
        ext_target = int(round(ext_total * args.share))
        if args.action == 'cause' and ext_have < ext_target:
            ext_cur.execute("""
                UPDATE tviews._registry SET needs_reregister = true WHERE (schema, name) IN
                (SELECT schema, name FROM tviews._registry WHERE NOT needs_reregister ORDER BY name LIMIT %s)""",
                            (ext_target - ext_have,))
            changed += ext_cur.rowcount
        elif args.action == 'clear':
            ext_cur.execute('UPDATE tviews._registry SET needs_reregister = false WHERE needs_reregister')
            changed += ext_cur.rowcount
    return changed, dict(total=total, with_gameday_errors=target if args.action == 'cause' else 0)


def queue_backlog(args, cur, ext_cur):
    cur.execute('SELECT count(*) FROM pg_tviews_queue WHERE processed_at IS NULL AND pk_value < 0')
    have = cur.fetchone()[0]
    if args.action == 'cause':
        missing = max(args.rows - have, 0)
        if missing:
            cur.execute("""
                INSERT INTO pg_tviews_queue (entity_name, pk_value, created_at)
                SELECT e.entity_name, -(%s + i), now() - make_interval(secs => (i %% 7200))
                FROM generate_series(1, %s) AS i
                CROSS JOIN LATERAL (SELECT entity_name FROM pg_tviews_metadata
                                    ORDER BY entity_name OFFSET (i %% 20) LIMIT 1) e""", (have, missing))
        return missing, dict(pending_gameday_rows=have + missing)
    cur.execute('DELETE FROM pg_tviews_queue WHERE pk_value < 0')
    removed = cur.rowcount
    cur.execute("SELECT to_regclass('pg_tviews_queue_archive') IS NOT NULL")
    if cur.fetchone()[0]:
        cur.execute('DELETE FROM pg_tviews_queue_archive WHERE pk_value < 0')
        removed += cur.rowcount
    return removed, dict(pending_gameday_rows=0)


def stale_tviews(args, cur, ext_cur):
    cur.execute("""CREATE TABLE IF NOT EXISTS gameday_stale_tviews (
                     entity_name text PRIMARY KEY, last_refreshed timestamptz)""")
    if args.action == 'cause':
        cur.execute('SELECT count(*) FROM gameday_stale_tviews')
        have = cur.fetchone()[0]
        missing = max(args.count - have, 0)
        if missing:
            cur.execute("""
                WITH chosen AS (
                    SELECT entity_name, last_refreshed FROM pg_tviews_metadata
                    WHERE entity_name NOT IN (SELECT entity_name FROM gameday_stale_tviews)
                    ORDER BY entity_name DESC LIMIT %s),
                kept AS (INSERT INTO gameday_stale_tviews SELECT * FROM chosen RETURNING entity_name)
                UPDATE pg_tviews_metadata m SET last_refreshed = now() - make_interval(secs => %s * 3600)
                FROM kept WHERE m.entity_name = kept.entity_name""", (missing, float(args.hours)))
        cur.execute('SELECT entity_name FROM gameday_stale_tviews ORDER BY 1')
        return missing, dict(stale=[r[0] for r in cur.fetchall()])
    cur.execute("""
        WITH back AS (DELETE FROM gameday_stale_tviews RETURNING entity_name, last_refreshed)
        UPDATE pg_tviews_metadata m SET last_refreshed = COALESCE(back.last_refreshed, now())
        FROM back WHERE m.entity_name = back.entity_name""")
    restored = cur.rowcount
    cur.execute('DROP TABLE gameday_stale_tviews')
    return restored, dict(stale=[])


FAULTS = dict(tview_refresh_errors=refresh_errors, queue_backlog=queue_backlog, stale_tviews=stale_tviews)


def main(argv=None):
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('fault', choices=sorted(FAULTS))
    parser.add_argument('action', choices=['cause', 'clear'])
    parser.add_argument('--runbook-db', default='tviews_runbook')
    parser.add_argument('--ext-db', default='tviews_ext', help="the extension fixture database ('' to skip)")
    parser.add_argument('--share', type=float, default=0.6)
    parser.add_argument('--rows', type=int, default=20000)
    parser.add_argument('--count', type=int, default=5)
    parser.add_argument('--hours', type=float, default=6)
    parser.add_argument('--host', default=env.get('PGHOST', '127.0.0.1'))
    parser.add_argument('--port', type=int, default=int(env.get('PGPORT', '5432')))
    parser.add_argument('--user', default=env.get('PGUSER', 'postgres'))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args.password = env.get('GAMEDAY_PG_PASSWORD', env.get('PGPASSWORD'))
    if psycopg2 is None:
        print('tviews_faults: error: psycopg2 is not importable by %s' % sys.executable, file=sys.stderr)
        return 1
    if not 0 < args.share <= 1 or args.rows < 0 or args.count < 0:
        parser.error('--share must be in (0, 1], --rows and --count >= 0')
    conns = []
    try:
        conn = connect(args, args.runbook_db)
        conns.append(conn)
        ext_cur = None
        if args.ext_db and args.fault == 'tview_refresh_errors':
            ext = connect(args, args.ext_db)
            conns.append(ext)
            ext_cur = ext.cursor()
        changed, detail = FAULTS[args.fault](args, conn.cursor(), ext_cur)
        for each in conns:
            each.commit()
    except psycopg2.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        where = '%s %s on %s:%s' % (args.action, args.fault, args.host, args.port)
        print('tviews_faults: error: %s: %s' % (where, '; '.join(lines[:2])), file=sys.stderr)
        return 1
    finally:
        for each in conns:
            each.close()
    print(json.dumps(dict(changed=changed > 0, fault=args.fault, action=args.action, rows=changed, detail=detail)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
