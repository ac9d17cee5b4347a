"""Many targets at once, the pg_tviews triage: playbooks/tview_incident.yml on an inventory of TARGETS pg_tviews
databases (each a copy of the lab's runbook-catalog fixture, roles/lab/files/tviews_runbook.sql, made from one
template database of this test), each an inventory host with its own connection variables (connection: local), each
with its own faults: failing TVIEWs (gameday's tview_refresh_errors in that database only) and a session idle in
transaction. One run with forks = TARGETS acts on each target's own TVIEWs and sessions only:

- the check run changes nothing on any target (catalog, queue, archive, sessions compared);
- afterwards every target's catalog equals what the single-target run leaves on a reference database with the same
  faults, its idle transaction ended, its idle session and a bystander database outside the inventory untouched;
- the output and the incident's timeline name the target (host and database) of every action.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest

from pg_admin import admin, drop_databases
from conftest import BIN, ROOT

from ansible_collections.incident.response.plugins.module_utils._incident import get_store

pytestmark = pytest.mark.integration

TARGETS = 6
FIXTURE_SQL = os.path.join(ROOT, 'roles', 'lab', 'files', 'tviews_runbook.sql')
FAULTS = os.path.join(ROOT, 'roles', 'gameday', 'files', 'tviews_faults.py')
PATTERN = 'permission denied'
INCIDENT = 'INC-2026-12-02-913'


def make_template(env, name):
    conn = admin(env)
    with conn.cursor() as cur:
        cur.execute('CREATE DATABASE %s' % name)
    conn.close()
    psql = shutil.which('psql') or '/usr/lib/postgresql/15/bin/psql'
    proc = subprocess.run([psql, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-v', 'app_user=%s' % env['LAB_PG_APP_USER'],
                           '-v', 'monitor_user=%s' % env['LAB_PG_MONITOR_USER'], '-d', name, '-f', FIXTURE_SQL],
                          env=dict(os.environ, PGHOST=env['PGHOST'], PGPORT=env['PGPORT'], PGUSER=env['PGUSER'],
                                   PGPASSWORD=env['PGPASSWORD']),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def copy_databases(env, template, names):
    conn = admin(env)
    with conn.cursor() as cur:
        cur.execute('SET statement_timeout = 120000')
        for name in names:
            cur.execute('CREATE DATABASE %s TEMPLATE %s' % (name, template))
    conn.close()


def cause_refresh_errors(env, database):
    """gameday's tview_refresh_errors (12 of 20 TVIEWs failing, 3 with 'permission denied') in this database only."""
    proc = subprocess.run([sys.executable, FAULTS, 'tview_refresh_errors', 'cause', '--runbook-db', database,
                           '--ext-db', '', '--host', env['PGHOST'], '--port', env['PGPORT'], '--user', env['PGUSER']],
                          env=dict(os.environ, GAMEDAY_PG_PASSWORD=env['PGPASSWORD']), capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def catalog(env, database, times=True):
    """The TVIEW catalog, queue and archive of one database (times left out to compare databases)."""
    conn = admin(env, database)
    with conn.cursor() as cur:
        cur.execute('SELECT entity_name, last_error, emergency_disabled, emergency_disable_reason, '
                    'emergency_disable_time IS NOT NULL%s FROM pg_tviews_metadata ORDER BY entity_name'
                    % (', emergency_disable_time, last_refreshed' if times else ''))
        rows = [tuple(str(v) for v in row) for row in cur.fetchall()]
        cur.execute('SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL) FROM pg_tviews_queue')
        queue = cur.fetchone()
        cur.execute("SELECT to_regclass('pg_tviews_queue_archive') IS NOT NULL")
        archive = None  # made by tview_queue when it first archives
        if cur.fetchone()[0]:
            cur.execute('SELECT count(*) FROM pg_tviews_queue_archive')
            archive = cur.fetchone()[0]
    conn.close()
    return dict(catalog=rows, queue=queue, archive=archive)


def hold_session(env, database, in_transaction):
    conn = psycopg2.connect(host=env['PGHOST'], port=int(env['PGPORT']), user=env['LAB_PG_APP_USER'],
                            password=env['LAB_PG_APP_PASSWORD'], dbname=database, application_name='ir_tview_victim',
                            connect_timeout=10)
    with conn.cursor() as cur:
        cur.execute('SELECT pg_backend_pid()')
        pid = cur.fetchone()[0]
    if not in_transaction:
        conn.commit()
    return conn, pid


def sessions(env, pids):
    conn = admin(env)
    with conn.cursor() as cur:
        cur.execute('SELECT pid, datname, state FROM pg_stat_activity WHERE pid = ANY(%s)', (list(pids),))
        found = dict((pid, (datname, state)) for pid, datname, state in cur.fetchall())
    conn.close()
    return found


def inventory(env, names, path):
    hosts = {}
    for name in names:
        hosts[name] = dict(ansible_connection='local', ansible_python_interpreter=os.path.join(BIN, 'python'),
                           pg_login_host=env['PGHOST'], pg_login_port=int(env['PGPORT']), pg_login_user=env['PGUSER'],
                           pg_login_password=env['PGPASSWORD'], pg_login_db=name)
    with open(path, 'w') as handle:
        json.dump({'all': {'children': {'tview_targets': {'hosts': hosts}}}}, handle)
    return path


def playbook(ansible_env, hosts, forks, store_path, check=False):
    cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', hosts, '--forks', str(forks),
           os.path.join(ROOT, 'playbooks', 'tview_incident.yml'),
           '-e', json.dumps(dict(pg_target_hosts='tview_targets', incident_id=INCIDENT,
                                 tview_incident_error_pattern=PATTERN, tview_incident_idle_in_transaction_age='2s'))]
    if check:
        cmd.append('--check')
    env = dict(ansible_env, INCIDENT_STORE='files', INCIDENT_STORE_PATH=store_path)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def databases(lab_env):
    prefix = 'ir_tvm_%s' % uuid.uuid4().hex[:6]
    template = prefix + '_tpl'
    names = dict(targets=['%s_%02d' % (prefix, n) for n in range(1, TARGETS + 1)], reference=prefix + '_ref',
                 bystander=prefix + '_by')
    everything = [template, names['reference'], names['bystander']] + names['targets']
    try:
        make_template(lab_env, template)
        copy_databases(lab_env, template, everything[1:])
        yield names
    finally:
        drop_databases(lab_env, everything)


def test_tview_triage_on_many_targets_acts_on_each_targets_own(lab_env, ansible_env, databases, tmp_path):
    targets, reference, bystander = databases['targets'], databases['reference'], databases['bystander']
    faulty = targets[:-1]  # the last target is healthy: nothing to pause, only an idle session (not in a transaction)
    for name in faulty + [reference, bystander]:
        cause_refresh_errors(lab_env, name)
    store_path = str(tmp_path / 'incidents')
    get_store(dict(store='files', store_path=store_path)).create(dict(id=INCIDENT, title='tviews on many targets'))
    conns, held = [], {}
    try:
        for name in targets + [reference, bystander]:
            conn, pid = hold_session(lab_env, name, in_transaction=name != targets[-1])
            conns.append(conn)
            held[pid] = name
        time.sleep(3)

        # the single-target run on the reference database: what each faulty target must end as
        code, out = playbook(ansible_env, inventory(lab_env, [reference], str(tmp_path / 'one.json')), 1,
                             str(tmp_path / 'reference-incidents'))
        assert code == 0, out[-4000:]
        expected = catalog(lab_env, reference, times=False)
        assert sum(1 for row in expected['catalog'] if row[2] == 'True') == 3, expected

        hosts = inventory(lab_env, targets, str(tmp_path / 'targets.json'))
        everyone = targets + [bystander]
        before = dict((name, catalog(lab_env, name)) for name in everyone)
        alive_before = sessions(lab_env, held)
        store_before = sorted(os.listdir(store_path)), get_store(dict(store='files', store_path=store_path)).events(INCIDENT)

        # check: the plan on every target, nothing changed anywhere
        code, out = playbook(ansible_env, hosts, TARGETS, store_path, check=True)
        assert code == 0, out[-4000:]
        assert out.count('would disable 3 TVIEWs') == len(faulty), out[-4000:]
        assert dict((name, catalog(lab_env, name)) for name in everyone) == before
        assert sessions(lab_env, held) == alive_before
        assert (sorted(os.listdir(store_path)), get_store(dict(store='files', store_path=store_path)).events(INCIDENT)) \
            == store_before

        # run: one run, forks = targets
        code, out = playbook(ansible_env, hosts, TARGETS, store_path)
        assert code == 0, out[-4000:]
        for name in faulty:
            assert catalog(lab_env, name, times=False) == expected, name
            assert 'Incident checklist done on %s (database %s):' % (name, name) in out
        assert catalog(lab_env, targets[-1]) == before[targets[-1]]  # healthy: untouched
        assert catalog(lab_env, bystander) == before[bystander]  # outside the inventory: untouched
        alive = sessions(lab_env, held)
        # every target's idle transaction ended, the healthy target's idle session and the bystander's kept
        assert sorted(alive.values()) == sorted([(targets[-1], 'idle'), (bystander, 'idle in transaction')]), alive

        timeline = get_store(dict(store='files', store_path=store_path)).events(INCIDENT)
        paused = [e for e in timeline if e['type'] == 'task' and e.get('module') == 'incident.response.tview_state'
                  and e.get('outcome') == 'changed']
        ended = [e for e in timeline if e['type'] == 'task' and e.get('module') == 'incident.response.pg_backends'
                 and e.get('outcome') == 'changed']
        assert sorted(e['host'] for e in paused) == sorted(faulty), [e.get('host') for e in paused]
        assert sorted(e['host'] for e in ended) == sorted(faulty), [e.get('host') for e in ended]
        for event in paused + ended:
            assert event['actions'], event
            for action in event['actions']:
                # each action on the host's own database (tview_state: detail.database, pg_backends: detail.datname)
                assert event['host'] in (action['detail'].get('database'), action['detail'].get('datname')), event
        assert len([a for e in paused for a in e['actions']]) == 3 * len(faulty)
        # the incident is one: opened once, severity and end state recorded once, not once per target
        incident = get_store(dict(store='files', store_path=store_path)).get(INCIDENT)
        assert incident['severity'] == 'SEV1' and incident['status'] == 'monitoring', incident
        assert len([e for e in timeline if e['type'] == 'task' and e.get('module') == 'incident.response.incident'
                    and 'Record the end state' in e.get('task', '')]) == 1
        assert lab_env['PGPASSWORD'] not in json.dumps(timeline)

        # idempotent: a second run changes nothing on any target
        code, out = playbook(ansible_env, hosts, TARGETS, store_path)
        assert code == 0, out[-4000:]
        for name in faulty:
            assert catalog(lab_env, name, times=False) == expected, name
        assert 'changed=0' in out and all(
            'changed=0' in line for line in out.splitlines() if line.split(':')[0].strip() in targets), out[-3000:]
    finally:
        for conn in conns:
            conn.close()
