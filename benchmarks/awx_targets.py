#!/usr/bin/env python
"""Incident playbooks across 1, 10 and 20 PostgreSQL targets (databases of the lab's PostgreSQL 15, one inventory
host each, forks = targets): controller wall time, CPU time and peak memory (max RSS of the largest process of the
ansible-playbook process tree). Figures printed, not a timed test.

- connection_pool_exhausted.yml: one idle-in-transaction session per target;
- tview_incident.yml (the pg_tviews triage): each target a copy of the runbook-catalog fixture with gameday's
  tview_refresh_errors (12 of 20 TVIEWs failing), -e tview_incident_error_pattern='permission denied' (3 paused per
  target) and one idle-in-transaction session per target.

    set -a; . /var/lib/incident-response-lab/lab.env; set +a
    python benchmarks/awx_targets.py [--targets 1,10,20] [--playbooks connection_pool_exhausted,tview_incident] [--check]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
sys.path.insert(0, os.path.join(ROOT, 'build', 'collections'))

# pylint: disable=wrong-import-position
from pg_admin import admin, drop_databases  # noqa: E402
from test_awx_many_targets import hold_idle_transaction, inventory  # noqa: E402
import test_tview_many_targets as tvm  # noqa: E402

BIN = os.path.join(ROOT, '.venv', 'bin')


def prepare_pool(env, count, databases, conns):
    """Databases to drop and sessions to close go into ``databases`` and ``conns`` as they are made."""
    names = ['ir_bench_%s_%02d' % (uuid.uuid4().hex[:6], index) for index in range(1, count + 1)]
    databases.extend(names)
    make_targets_named(env, names)
    conns.extend(hold_idle_transaction(env, name, 'ir_bench_victim')[0] for name in names)
    return names


def make_targets_named(env, names):
    conn = admin(env)
    with conn.cursor() as cur:
        for name in names:
            cur.execute('CREATE DATABASE %s' % name)
    conn.close()


def prepare_tviews(env, count, databases, conns):
    prefix = 'ir_bench_tv_%s' % uuid.uuid4().hex[:6]
    names = ['%s_%02d' % (prefix, index) for index in range(1, count + 1)]
    template = prefix + '_tpl'
    databases.extend([template] + names)
    tvm.make_template(env, template)
    tvm.copy_databases(env, template, names)
    for name in names:
        tvm.cause_refresh_errors(env, name)
        conns.append(tvm.hold_session(env, name, in_transaction=True)[0])
    return names


PLAYBOOKS = dict(
    connection_pool_exhausted=dict(prepare=prepare_pool, group='pg_targets',
                                   extra=dict(pg_target_hosts='pg_targets', pg_connections_idle_in_transaction_age='2s')),
    tview_incident=dict(prepare=prepare_tviews, group='tview_targets',
                        extra=dict(pg_target_hosts='tview_targets', tview_incident_error_pattern='permission denied',
                                   tview_incident_idle_in_transaction_age='2s')),
)


def run(env, playbook, count, check):
    spec = PLAYBOOKS[playbook]
    databases, conns = [], []
    try:
        names = spec['prepare'](env, count, databases, conns)
        time.sleep(3)
        work = tempfile.mkdtemp(prefix='ir-bench-')
        hosts = os.path.join(work, 'targets.json')
        if playbook == 'tview_incident':
            tvm.inventory(env, names, hosts)
        else:
            inventory(env, names, hosts)
        run_env = dict(os.environ, INCIDENT_STORE='files', INCIDENT_STORE_PATH=os.path.join(work, 'incidents'),
                       ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'))
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', hosts, '--forks', str(count),
               os.path.join(ROOT, 'playbooks', playbook + '.yml'), '-e', json.dumps(spec['extra'])]
        if check:
            cmd.append('--check')
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=1800, check=False,
                              stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            print(proc.stdout[-3000:] + proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit('%s on %d targets failed (rc %d)' % (playbook, count, proc.returncode))
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return dict(playbook=playbook, targets=count, seconds=round(took, 1), cpu_seconds=round(cpu, 1),
                    max_rss_mb=round(after.ru_maxrss / 1024.0, 1))
    finally:
        for conn in conns:
            conn.close()
        drop_databases(env, databases)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--targets', default='1,10,20')
    parser.add_argument('--playbooks', default=','.join(PLAYBOOKS), help='comma-separated: %s' % ', '.join(PLAYBOOKS))
    parser.add_argument('--check', action='store_true', help='check mode (the plan only)')
    args = parser.parse_args()
    unknown = [name for name in args.playbooks.split(',') if name not in PLAYBOOKS]
    if unknown:
        raise SystemExit('unknown playbook(s) %s: choose from %s' % (', '.join(unknown), ', '.join(PLAYBOOKS)))
    missing = [key for key in ('PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'LAB_PG_APP_USER')
               if key not in os.environ]
    if missing:
        raise SystemExit('source the lab environment first (missing %s)' % ', '.join(missing))
    rows = []
    header = ('playbook', 'targets', 'seconds', 'cpu seconds', 'max RSS MB', 'x first')
    print('%-26s %8s %10s %12s %12s %10s' % header)
    for playbook in args.playbooks.split(','):
        first = None
        for count in args.targets.split(','):
            row = run(os.environ, playbook, int(count), args.check)
            first = first or row['seconds']
            rows.append(row)
            print('%-26s %8d %10.1f %12.1f %12.1f %10.2f' % (
                playbook, row['targets'], row['seconds'], row['cpu_seconds'], row['max_rss_mb'], row['seconds'] / first),
                flush=True)
    print(json.dumps(rows))


if __name__ == '__main__':
    main()
