#!/usr/bin/env python
# Copyright: incident.response developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: emergency_disable.yml and tview_info against the runbook's own SQL through psql.

    . /var/lib/incident-response-lab/lab.env && .venv/bin/python benchmarks/tviews/run.py [--tviews 1000]
        [--queue-rows 100000] [--backends 50]

On identical data in a database of its own (tviews_bench, in the lab's PostgreSQL 15 cluster: the runbook
catalog fixture scaled to --tviews TVIEWs and --queue-rows pending refreshes, with --backends sessions busy in
TVIEW refreshes held by roles/gameday/files/hold_sessions.py), it times:

  1. playbooks/emergency_disable.yml -e approve=true (a real run: evidence, cancel, archive+clear, disable,
     stabilise, integrity check of every TVIEW, summary) against the runbook's Critical Emergency Protocol SQL
     run through psql (assessment, level, cancel, DELETE, UPDATE, terminate, integrity DO block);
  2. the tview_info module against the runbook's assessment query through psql;
  3. (--large-tviews/--large-queue-rows, on by default: 10,000 TVIEWs / 1,000,000 pending) emergency_disable.yml
     -e approve=true against the runbook's SQL again, with the controller's peak RSS (goals: the SQL's time + 2 s,
     under 300 MB; --no-large skips it).

With --generic-collections (scripts/benchmark.sh passes community.postgresql 4.2.0) each size also runs the same
steps as plain community.postgresql.postgresql_query tasks (generic_playbook.yml; for tview_info the assessment query
as one postgresql_query call), and floor_playbook.yml gives ansible-playbook's own start. With --repeat N each timed
command runs N times, each on fresh data, and the median is printed (the machine is shared: one run is noisy). It
ends with one table from the run: every time, CPU time, ratio and goal. Not a test: nothing is asserted. The runbook's cancel (query LIKE '%tview%'
OR '%refresh%') is limited to the benchmark database so that it cannot touch other sessions of the lab.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BIN = os.path.dirname(os.path.abspath(sys.executable))
DB = os.environ.get('TVIEWS_BENCH_DB', 'tviews_bench')
PSQL = '/usr/lib/postgresql/15/bin/psql'

RUNBOOK_PROTOCOL = r"""
SELECT 'EMERGENCY ASSESSMENT' as status, NOW() as assessment_time,
    (SELECT COUNT(*) FROM pg_tviews_metadata WHERE last_error IS NOT NULL) as tviews_with_errors,
    (SELECT COUNT(*) FROM pg_tviews_queue WHERE processed_at IS NULL) as pending_refreshes,
    (SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active') as active_connections,
    (SELECT setting FROM pg_settings WHERE name = 'max_connections') as max_connections
FROM pg_stat_bgwriter;
SELECT CASE
    WHEN (SELECT COUNT(*) FROM pg_tviews_metadata WHERE last_error IS NOT NULL)
         > (SELECT COUNT(*) FROM pg_tviews_metadata) * 0.5 THEN 'CRITICAL: Majority of TVIEWs failing'
    WHEN (SELECT COUNT(*) FROM pg_tviews_queue WHERE processed_at IS NULL) > 10000 THEN 'CRITICAL: Massive refresh backlog'
    WHEN (SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'waiting')
         > (SELECT setting FROM pg_settings WHERE name = 'max_connections')::integer * 0.8 THEN 'CRITICAL: Connection exhaustion'
    WHEN (SELECT COUNT(*) FROM pg_tviews_metadata WHERE last_refreshed < NOW() - INTERVAL '4 hours') > 0 THEN 'HIGH: TVIEWs stale'
    ELSE 'MONITOR: Issues detected but not critical' END as emergency_level
FROM pg_stat_bgwriter;
SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
WHERE (query LIKE '%tview%' OR query LIKE '%refresh%') AND pid <> pg_backend_pid() AND datname = current_database();
DELETE FROM pg_tviews_queue WHERE processed_at IS NULL;
UPDATE pg_tviews_metadata SET emergency_disabled = true, emergency_disable_time = NOW(),
    emergency_disable_reason = 'Critical incident response';
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'waiting') AND query_start < NOW() - INTERVAL '30 minutes'
  AND datname = current_database();
SELECT * FROM pg_stat_database WHERE datname = current_database();
DO $$
DECLARE tview_record RECORD; integrity_issues INTEGER := 0;
BEGIN
    FOR tview_record IN SELECT entity_name FROM pg_tviews_metadata LIMIT 5 LOOP
        BEGIN
            EXECUTE 'SELECT COUNT(*) FROM ' || tview_record.entity_name || ' LIMIT 1';
        EXCEPTION WHEN OTHERS THEN integrity_issues := integrity_issues + 1;
        END;
    END LOOP;
    IF integrity_issues > 0 THEN RAISE EXCEPTION 'Data integrity issues detected in % TVIEWs.', integrity_issues; END IF;
END $$;
"""

RUNBOOK_ASSESSMENT = r"""
SELECT 'INCIDENT ASSESSMENT' as phase, NOW() as assessment_time,
    (SELECT COUNT(*) FROM pg_tviews_metadata) as total_tviews,
    (SELECT COUNT(*) FROM pg_tviews_metadata WHERE last_error IS NOT NULL) as tviews_with_errors,
    (SELECT COUNT(*) FROM pg_tviews_queue WHERE processed_at IS NULL) as pending_refreshes,
    (SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active') as active_connections
FROM pg_stat_bgwriter;
"""


def admin(dbname='postgres'):
    conn = psycopg2.connect(dbname=dbname, application_name='benchmark')
    conn.autocommit = True
    return conn


def sql(conn, statement, params=None):
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else None


def prepare(args):
    """A fresh tviews_bench: the runbook fixture scaled up, errors on 60%, the queue full."""
    conn = admin()
    sql(conn, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DB)
    sql(conn, 'CREATE DATABASE %s' % DB)
    conn.close()
    subprocess.run([PSQL, '-X', '-q', '-d', DB, '-v', 'app_user=%s' % os.environ['LAB_PG_APP_USER'],
                    '-v', 'monitor_user=%s' % os.environ['LAB_PG_MONITOR_USER'],
                    '-f', os.path.join(ROOT, 'roles/lab/files/tviews_runbook.sql')],
                   check=True, capture_output=True)
    conn = admin(DB)
    extra = args.tviews - 20
    sql(conn, """DO $$ BEGIN FOR i IN 1..%d LOOP
                   EXECUTE format('CREATE VIEW %%I AS SELECT * FROM base_customer WHERE id %%%% 50 = %%s', 'tv_bench_' || i, i %% 50);
                 END LOOP; END $$""" % extra)
    sql(conn, "INSERT INTO pg_tviews_metadata (entity_name, definition, last_refreshed, last_refresh_duration_ms) "
              "SELECT 'tv_bench_' || i, 'bench', now() - interval '5 minutes', 40 FROM generate_series(1, %s) i",
        (extra,))
    sql(conn, "UPDATE pg_tviews_metadata SET last_error = 'permission denied for table base_order' "
              "WHERE entity_name IN (SELECT entity_name FROM pg_tviews_metadata ORDER BY entity_name "
              "LIMIT (SELECT count(*) * 6 / 10 FROM pg_tviews_metadata))")
    sql(conn, "DELETE FROM pg_tviews_queue WHERE processed_at IS NULL")
    sql(conn, "INSERT INTO pg_tviews_queue (entity_name, pk_value, created_at) SELECT 'tv_order', i, "
              "now() - make_interval(secs => i %% 7200) FROM generate_series(1, %s) i", (args.queue_rows,))
    sql(conn, 'GRANT ALL ON ALL TABLES IN SCHEMA public TO %s' % os.environ['LAB_PG_APP_USER'])
    conn.close()


def hold(args, action):
    cmd = [sys.executable, os.path.join(ROOT, 'roles/gameday/files/hold_sessions.py'), action, '--name',
           'benchmark_refresh', '--state-dir', args.state_dir]
    if action == 'start':
        cmd += ['--mode', 'refresh', '--count', str(args.backends), '--dbname', DB, '--user',
                os.environ['LAB_PG_APP_USER'], '--application-name', 'bench_refresh', '--timeout', '120']
    env = dict(os.environ, GAMEDAY_PG_PASSWORD=os.environ['LAB_PG_APP_PASSWORD'])
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        # (two benchmarks at once, or a cluster near max_connections, make this fail: say so, no traceback)
        sys.exit('benchmark: hold_sessions.py %s failed (rc %s): %s' % (
            action, proc.returncode, (proc.stderr or proc.stdout).decode('utf-8', 'replace')[-2000:]))


PEAK_RSS = {}
CPU = {}


def timed(cmd, env=None, name=None):
    """Wall time of one command; its peak RSS (the process and the children it waited for) in PEAK_RSS[name]."""
    out = tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    took = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    PEAK_RSS[name or cmd[0]] = usage.ru_maxrss / 1024.0
    # CPU seconds of the command and the children it waited for: less sensitive to a loaded machine than wall time
    CPU[name or cmd[0]] = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        out.seek(0)
        sys.exit('benchmark: %s failed (rc %s):\n%s' % (' '.join(cmd[:3]), proc.returncode,
                                                        out.read().decode('utf-8', 'replace')[-3000:]))
    return took


def state():
    conn = admin(DB)
    try:
        return sql(conn, "SELECT (SELECT count(*) FROM pg_tviews_queue WHERE processed_at IS NULL), "
                         "(SELECT count(*) FROM pg_tviews_metadata WHERE emergency_disabled), "
                         "(SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench_refresh' "
                         "AND state = 'active')")[0]
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--tviews', type=int, default=1000)
    parser.add_argument('--queue-rows', type=int, default=100000)
    parser.add_argument('--backends', type=int, default=50)
    parser.add_argument('--info-queue-rows', type=int, default=1000000, help='pending rows for the tview_info timing')
    parser.add_argument('--large-tviews', type=int, default=10000, help='TVIEWs of the large size')
    parser.add_argument('--large-queue-rows', type=int, default=1000000, help='pending rows of the large size')
    parser.add_argument('--no-large', action='store_true', help='skip the large size')
    parser.add_argument('--repeat', type=int, default=1, help='runs of each timed command (median printed)')
    parser.add_argument('--generic-collections', default=None,
                        help='a collections path holding community.postgresql (scripts/benchmark.sh extracts 4.2.0)')
    args = parser.parse_args()
    args.state_dir = tempfile.mkdtemp(prefix='tviews-bench-')
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), INCIDENT_DIR=args.state_dir,
               INCIDENT_STORE='files', INCIDENT_STORE_PATH=os.path.join(args.state_dir, 'incidents'),
               PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    playbook = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventory/lab.yml'),
                os.path.join(ROOT, 'playbooks/emergency_disable.yml'), '-e', 'pg_login_db=%s' % DB,
                '-e', 'tview_emergency_max_backends=%d' % (args.backends + 10)]
    generic_env = None
    if args.generic_collections:
        generic_env = dict(env, ANSIBLE_COLLECTIONS_PATH=os.path.abspath(args.generic_collections))
    generic = [os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
               os.path.join(ROOT, 'benchmarks/tviews/generic_playbook.yml'), '-e', 'bench_db=%s' % DB,
               '-e', 'ansible_python_interpreter=%s' % sys.executable]
    script = os.path.join(args.state_dir, 'runbook_protocol.sql')
    with open(script, 'w') as handle:
        handle.write(RUNBOOK_PROTOCOL)
    runbook = [PSQL, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', DB, '-f', script]
    runs = [('emergency_disable.yml --check', playbook + ['--check'], env, args),
            ('emergency_disable.yml approve=true', playbook + ['-e', 'approve=true'], env, args),
            ('runbook SQL via psql', runbook, env, args)]
    if generic_env:
        runs.append(('generic community.postgresql', generic, generic_env, args))
    if not args.no_large:
        large_args = argparse.Namespace(**dict(vars(args), tviews=args.large_tviews, queue_rows=args.large_queue_rows))
        runs += [('large: emergency_disable.yml approve=true', playbook + ['-e', 'approve=true'], env, large_args),
                 ('large: runbook SQL via psql', runbook, env, large_args)]
        if generic_env:
            runs.append(('large: generic community.postgresql', generic, generic_env, large_args))
    results = {}
    try:
        for name, cmd, run_env, size in runs:
            times, rss, cpu = [], [], []
            for _attempt in range(max(1, args.repeat)):
                prepare(size)
                hold(args, 'start')
                before = state()
                times.append(timed(cmd, run_env, name))
                rss.append(PEAK_RSS[name])
                cpu.append(CPU[name])
                after = state()
                hold(args, 'stop')
            results[name] = statistics.median(times)
            PEAK_RSS[name] = max(rss)
            CPU[name] = statistics.median(cpu)
            print('%-44s %7.2fs  cpu %5.2fs  peak RSS %6.0f MB  pending/disabled/active refreshes before %s after %s%s'
                  % (name, results[name], CPU[name], PEAK_RSS[name], before, after,
                     '  (runs: %s)' % ', '.join('%.2f' % t for t in times) if len(times) > 1 else ''), flush=True)
        info_args = argparse.Namespace(**dict(vars(args), queue_rows=args.info_queue_rows))
        info = [os.path.join(BIN, 'ansible'), 'localhost', '-i', os.path.join(ROOT, 'inventory/lab.yml'),
                '-m', 'incident.response.tview_info', '-a', 'login_db=%s' % DB]
        assessment = [PSQL, '-X', '-q', '-d', DB, '-c', RUNBOOK_ASSESSMENT]
        # the same assessment query as one community.postgresql.postgresql_query call (connection from PG*; the
        # password stays in the environment, never in argv)
        generic_info = [os.path.join(BIN, 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local',
                        '-e', 'ansible_python_interpreter=%s' % sys.executable,
                        '-m', 'community.postgresql.postgresql_query', '-a', json.dumps(dict(
                            login_host="{{ lookup('ansible.builtin.env', 'PGHOST') }}",
                            login_port="{{ lookup('ansible.builtin.env', 'PGPORT') }}",
                            login_user="{{ lookup('ansible.builtin.env', 'PGUSER') }}",
                            login_password="{{ lookup('ansible.builtin.env', 'PGPASSWORD') }}",
                            login_db=DB, query=' '.join(RUNBOOK_ASSESSMENT.split()).rstrip(';')))]
        prepare(info_args)
        info_runs = [('tview_info', info, env), ('assessment via psql', assessment, env)]
        if generic_env:
            info_runs.append(('generic assessment (postgresql_query)', generic_info, generic_env))
        # the floor: ansible-playbook's own start and one debug task (what "SQL + 2 s" leaves to everything else)
        info_runs.append(('floor: ansible-playbook, one debug task', [
            os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventory/lab.yml'),
            os.path.join(ROOT, 'benchmarks/tviews/floor_playbook.yml')], env))
        for name, cmd, run_env in info_runs:
            times, cpu = [], []
            for _attempt in range(max(1, args.repeat)):
                times.append(timed(cmd, run_env, name))
                cpu.append(CPU[name])
            results[name] = statistics.median(times)
            CPU[name] = statistics.median(cpu)
            print('%-44s %7.2fs  cpu %5.2fs  peak RSS %6.0f MB  (%d pending)%s'
                  % (name, results[name], CPU[name], PEAK_RSS[name], args.info_queue_rows,
                     '  (runs: %s)' % ', '.join('%.2f' % t for t in times) if len(times) > 1 else ''), flush=True)
    finally:
        subprocess.run([sys.executable, os.path.join(ROOT, 'roles/gameday/files/hold_sessions.py'), 'stop', '--name',
                        'benchmark_refresh', '--state-dir', args.state_dir], capture_output=True, check=False)
        conn = admin()
        sql(conn, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DB)
        conn.close()
    report(args, results)


def ratio(ours, other):
    return '%5.2fx' % (ours / other) if other else '    - '


def report(args, results):
    """One table, every row from this run: the project's time, the runbook SQL's, the generic playbook's, ratios."""
    print()
    print('%s UTC, load average %s, %d CPUs; %d TVIEWs, %d pending refreshes, %d refresh backends; large: %d TVIEWs, '
          '%d pending; tview_info: %d pending; median of %d run(s) each' % (
              time.strftime('%Y-%m-%d %H:%M', time.gmtime()), ' '.join('%.2f' % x for x in os.getloadavg()),
              os.cpu_count() or 0, args.tviews, args.queue_rows, args.backends, args.large_tviews,
              args.large_queue_rows, args.info_queue_rows, max(1, args.repeat)))
    rows = [('emergency_disable.yml -e approve=true', 'emergency_disable.yml approve=true', 'runbook SQL via psql',
             'generic community.postgresql'),
            ('emergency_disable.yml --check', 'emergency_disable.yml --check', 'runbook SQL via psql',
             'generic community.postgresql'),
            ('tview_info (%d pending)' % args.info_queue_rows, 'tview_info', 'assessment via psql',
             'generic assessment (postgresql_query)')]
    if not args.no_large:
        rows.append(('large (%d TVIEWs, %d pending) approve=true' % (args.large_tviews, args.large_queue_rows),
                     'large: emergency_disable.yml approve=true', 'large: runbook SQL via psql',
                     'large: generic community.postgresql'))
    header = ('%-50s %8s %8s %8s | %8s %8s %8s | %9s %9s %9s | %7s  %s'
              % ('run', 'project', 'SQL', 'generic', 'cpu', 'cpu SQL', 'cpu gen', 'vs SQL', 'vs gen', 'cpu vs g',
                 'RSS MB', 'goal'))
    print(header)
    print('-' * len(header))
    for label, ours, runbook, generic in rows:
        o, q, g = results[ours], results[runbook], results.get(generic)
        oc, qc, gc = CPU[ours], CPU[runbook], CPU.get(generic)
        if ours.startswith('large'):
            met = o <= q + 2 and PEAK_RSS[ours] < 300
            goal = '%s: SQL + 2 s, RSS < 300 MB (%+.2fs)' % ('MET' if met else 'NOT MET', o - q)
        elif ours == 'tview_info':
            goal = '%s: within 1.5 s' % ('MET' if o <= 1.5 else 'NOT MET')
        elif g:
            met = o <= g and oc <= gc
            goal = '%s: no slower than generic (wall and cpu)' % ('MET' if met else 'NOT MET')
        else:
            goal = '(no generic playbook: --generic-collections)'
        print('%-50s %7.2fs %7.2fs %8s | %7.2fs %7.2fs %8s | %9s %9s %9s | %7.0f  %s' % (
            label, o, q, '%7.2fs' % g if g else '-', oc, qc, '%7.2fs' % gc if gc else '-', ratio(o, q),
            ratio(o, g) if g else '-', ratio(oc, gc) if gc else '-', PEAK_RSS[ours], goal))
    floor = 'floor: ansible-playbook, one debug task'
    print('%-50s %7.2fs %8s %8s | %7.2fs   (ansible-playbook\'s own start on this machine, no module)'
          % ('ansible-playbook floor (one debug task)', results[floor], '-', '-', CPU[floor]))
    print('(cpu: CPU seconds of the command and its children, user + system: the machine is shared, wall times swing; '
          'SQL: the runbook\'s own SQL in psql; generic: the same steps as community.postgresql.postgresql_query '
          'tasks; vs: project / other)')


if __name__ == '__main__':
    main()
