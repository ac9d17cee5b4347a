#!/usr/bin/env python
"""connection_pool_exhausted.yml across 1, 10 and 20 PostgreSQL targets (databases of the lab's PostgreSQL 15, one
inventory host each, forks = targets), one idle-in-transaction session per target: controller wall time and peak
memory (max RSS of the ansible-playbook process tree). Figures printed, not a timed test.

    set -a; . /var/lib/incident-response-lab/lab.env; set +a
    python benchmarks/awx_targets.py [--targets 1,10,20] [--check]
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
from test_awx_many_targets import drop_targets, hold_idle_transaction, inventory, make_targets  # noqa: E402

BIN = os.path.join(ROOT, '.venv', 'bin')


def run(env, count, check):
    names = make_targets(env, count, 'ir_bench_%s' % uuid.uuid4().hex[:6])
    conns = []
    try:
        for name in names:
            conns.append(hold_idle_transaction(env, name, 'ir_bench_victim')[0])
        time.sleep(3)
        work = tempfile.mkdtemp(prefix='ir-bench-')
        hosts = inventory(env, names, os.path.join(work, 'targets.json'))
        run_env = dict(os.environ, INCIDENT_STORE='files', INCIDENT_STORE_PATH=os.path.join(work, 'incidents'),
                       ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'))
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', hosts, '--forks', str(count),
               os.path.join(ROOT, 'playbooks', 'connection_pool_exhausted.yml'),
               '-e', json.dumps(dict(pg_target_hosts='pg_targets', pg_connections_idle_in_transaction_age='2s'))]
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
            raise SystemExit('the run on %d targets failed (rc %d)' % (count, proc.returncode))
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return dict(targets=count, seconds=round(took, 1), cpu_seconds=round(cpu, 1),
                    max_rss_mb=round(after.ru_maxrss / 1024.0, 1))
    finally:
        for conn in conns:
            conn.close()
        drop_targets(env, names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--targets', default='1,10,20')
    parser.add_argument('--check', action='store_true', help='check mode (the plan only)')
    args = parser.parse_args()
    missing = [key for key in ('PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'LAB_PG_APP_USER')
               if key not in os.environ]
    if missing:
        raise SystemExit('source the lab environment first (missing %s)' % ', '.join(missing))
    rows = [run(os.environ, int(count), args.check) for count in args.targets.split(',')]
    base = rows[0]['seconds']
    print('%8s %10s %12s %12s %10s' % ('targets', 'seconds', 'cpu seconds', 'max RSS MB', 'x 1 target'))
    for row in rows:
        print('%8d %10.1f %12.1f %12.1f %10.2f' % (
            row['targets'], row['seconds'], row['cpu_seconds'], row['max_rss_mb'], row['seconds'] / base))
    print(json.dumps(rows))


if __name__ == '__main__':
    main()
