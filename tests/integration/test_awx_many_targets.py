"""Many targets at once: 20 PostgreSQL targets (20 databases of the lab's PostgreSQL 15, created here), each an
inventory host with its own connection variables (connection: local), one run of connection_pool_exhausted.yml with
forks 20. Each target's run acts on that target's own sessions only, and the results and the incident's timeline
say which target each action was on. (In AWX: the same inventory; the hosts spread over the instance group's
execution nodes by forks / job slicing, docs/awx.md.)
"""
import json
import os
import subprocess
import time
import uuid

import psycopg2
import pytest

from pg_admin import admin, drop_databases
from conftest import BIN, ROOT

from ansible_collections.incident.response.plugins.module_utils._incident import get_store

pytestmark = pytest.mark.integration

TARGETS = 20


def make_targets(env, count, prefix):
    names = ['%s_%02d' % (prefix, index) for index in range(1, count + 1)]
    conn = admin(env)
    with conn.cursor() as cur:
        for name in names:
            cur.execute('CREATE DATABASE %s' % name)
    conn.close()
    return names


def inventory(env, names, path):
    """One host per database, its own connection variables; the role limited to that host's database."""
    hosts = {}
    for name in names:
        hosts[name] = dict(ansible_connection='local', ansible_python_interpreter=os.path.join(BIN, 'python'),
                           pg_login_host=env['PGHOST'], pg_login_port=int(env['PGPORT']), pg_login_user=env['PGUSER'],
                           pg_login_password=env['PGPASSWORD'], pg_login_db=name, pg_connections_databases=[name])
    with open(path, 'w') as handle:
        json.dump({'all': {'children': {'pg_targets': {'hosts': hosts}}}}, handle)
    return path


@pytest.fixture
def targets(lab_env):
    names = make_targets(lab_env, TARGETS, 'ir_awx_%s' % uuid.uuid4().hex[:6])
    yield names
    drop_databases(lab_env, names)


def hold_idle_transaction(env, dbname, application_name):
    conn = psycopg2.connect(host=env['PGHOST'], port=int(env['PGPORT']), user=env['LAB_PG_APP_USER'],
                            password=env['LAB_PG_APP_PASSWORD'], dbname=dbname, application_name=application_name)
    with conn.cursor() as cur:
        cur.execute('SELECT pg_backend_pid()')
        pid = cur.fetchone()[0]
    return conn, pid


def alive(env, pids):
    conn = admin(env)
    with conn.cursor() as cur:
        cur.execute('SELECT pid, datname FROM pg_stat_activity WHERE pid = ANY(%s)', (list(pids),))
        found = dict(cur.fetchall())
    conn.close()
    return found


def test_twenty_targets_each_on_its_own_sessions(lab_env, ansible_env, targets, tmp_path):
    hosts = inventory(lab_env, targets, str(tmp_path / 'targets.json'))
    held = {}
    conns = []
    try:
        # a fault on every target but the last: one session idle in transaction each; the last has only an idle session
        for name in targets:
            conn, pid = hold_idle_transaction(lab_env, name, 'ir_awx_victim')
            conns.append(conn)
            if name == targets[-1]:
                conn.commit()  # idle, not in a transaction
            held[pid] = name
        time.sleep(3)
        store_path = str(tmp_path / 'incidents')
        env = dict(ansible_env, INCIDENT_STORE='files', INCIDENT_STORE_PATH=store_path)
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', hosts, '--forks', str(TARGETS),
               os.path.join(ROOT, 'playbooks', 'connection_pool_exhausted.yml'),
               '-e', json.dumps(dict(pg_target_hosts='pg_targets', incident_id='INC-2026-12-01-995',
                                     pg_connections_idle_in_transaction_age='2s'))]
        get_store(dict(store='files', store_path=store_path)).create(dict(id='INC-2026-12-01-995', title='many targets'))
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
                              stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        still = alive(lab_env, held)
        # every idle transaction ended, on its own target; the idle session of the last target left alone
        assert still == {pid: name for pid, name in held.items() if name == targets[-1]}, still
        for name in targets:
            assert name in out
        timeline = get_store(dict(store='files', store_path=store_path)).events('INC-2026-12-01-995')
        acted = [e for e in timeline if e['type'] == 'task' and e.get('module') == 'incident.response.pg_backends'
                 and e.get('outcome') == 'changed']
        assert sorted(e['host'] for e in acted) == sorted(targets[:-1]), [e.get('host') for e in acted]
        for event in acted:
            assert event['host'] in json.dumps(event.get('actions') or event.get('summary') or event), event
        assert lab_env['PGPASSWORD'] not in json.dumps(timeline)
    finally:
        for conn in conns:
            conn.close()


def test_every_failing_target_is_named_in_the_incident(lab_env, ansible_env, tmp_path):
    """Several targets fail (more sessions than their max_backends): the incident's failure note names each of them
    (host, database, task and why), once; the targets that did not fail acted on their own sessions."""
    names = make_targets(lab_env, 4, 'ir_awxf_%s' % uuid.uuid4().hex[:6])
    failing = [names[0], names[2]]
    conns = []
    try:
        hosts = inventory(lab_env, names, str(tmp_path / 'targets.json'))
        with open(hosts) as handle:
            data = json.load(handle)
        for name in failing:
            data['all']['children']['pg_targets']['hosts'][name]['pg_connections_max_backends'] = 1
        with open(hosts, 'w') as handle:
            json.dump(data, handle)
        held = {}
        for name in names:
            for dummy in range(2):
                conn, pid = hold_idle_transaction(lab_env, name, 'ir_awx_victim')
                conns.append(conn)
                held[pid] = name
        time.sleep(3)
        store_path = str(tmp_path / 'incidents')
        incident = 'INC-2026-12-02-996'
        get_store(dict(store='files', store_path=store_path)).create(dict(id=incident, title='failing targets'))
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', hosts, '--forks', '4',
               os.path.join(ROOT, 'playbooks', 'connection_pool_exhausted.yml'),
               '-e', json.dumps(dict(pg_target_hosts='pg_targets', incident_id=incident,
                                     pg_connections_idle_in_transaction_age='2s'))]
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(ansible_env, INCIDENT_STORE='files', INCIDENT_STORE_PATH=store_path),
                              capture_output=True, text=True, timeout=900, check=False, stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-4000:]
        # the failing targets' sessions left alone (refused), the others' ended
        assert sorted(alive(lab_env, held).values()) == sorted(name for pid, name in held.items() if name in failing)
        timeline = get_store(dict(store='files', store_path=store_path)).events(incident)
        notes = [e for e in timeline if e['type'] == 'note' and 'the run ended failed' in e.get('message', '')]
        assert len(notes) == 1, [e.get('message') for e in timeline if e['type'] == 'note']
        message = notes[0]['message']
        assert '2 targets failed' in message, message
        for name in failing:
            assert 'on %s, database %s)' % (name, name) in message, message
        assert message.count('refusing to terminate 2 backends: more than max_backends=1 match') == 2, message
        assert message.count('End sessions idle in transaction for at least the threshold') == 2, message
        for name in names:
            if name not in failing:
                assert name not in message, message
        assert lab_env['PGPASSWORD'] not in json.dumps(timeline)
    finally:
        for conn in conns:
            conn.close()
        drop_databases(lab_env, names)
