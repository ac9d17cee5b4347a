"""Many targets at once: 20 PostgreSQL targets (20 databases of the lab's PostgreSQL 15, created here), each an
inventory host with its own connection variables (connection: local), one run of connection_pool_exhausted.yml with
forks 20. Each target's run acts on that target's own sessions only, and the results and the incident's timeline
say which target each action was on. (In AWX: the same inventory; the hosts spread over the instance group's
execution nodes by forks / job slicing, docs/awx.md.)

These hosts are all local, so the role works them on its batch path (pg_connections_batch auto, issue 13): each
module step is one module run for every target (the modules' targets option); the tests check that it ran once
per step, that --check changes nothing on any target, and that a second run changes nothing.
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
        assert lab_env['PGPASSWORD'] not in out
        # the batch: one module run per step for the twenty targets (one host ran it, each event names its target)
        assert_one_run_per_step(timeline, targets)
        assert 'pg_connections/tasks/batch.yml for ' in out and 'pg_connections/tasks/per_target.yml' not in out, \
            out[-4000:]
    finally:
        for conn in conns:
            conn.close()


STEPS = ('incident.response.pg_activity_info', 'incident.response.pg_backends')


def assert_one_run_per_step(timeline, targets, steps=STEPS):
    """Each module step ran once (one task uuid, one host ran it) and its events are one per target."""
    for module in steps:
        # (a step that no target needed is one skipped event of the host that would have run it)
        events = [e for e in timeline if e['type'] == 'task' and e.get('module') == module
                  and e.get('outcome') != 'skipped']
        assert events, module
        assert all('ran_on' in e for e in events), [e for e in events if 'ran_on' not in e][:1]
        for uuid in set(e['task_uuid'] for e in events):
            runs = [e for e in events if e['task_uuid'] == uuid]
            assert len(set(e['ran_on'] for e in runs)) == 1, runs
            assert len(set(e['host'] for e in runs)) == len(runs) and set(e['host'] for e in runs) <= set(targets)
    assessed = [e for e in timeline if e['type'] == 'task' and e.get('module') == 'incident.response.pg_activity_info'
                and e.get('task') == 'Assess connections']
    assert sorted(e['host'] for e in assessed) == sorted(targets), [e['host'] for e in assessed]


def activity(env, names):
    """The sessions of these databases but the modules' own (pid, database, state, times), as PostgreSQL has them."""
    conn = admin(env)
    with conn.cursor() as cur:
        cur.execute("SELECT pid, datname, usename, application_name, state, backend_start, xact_start, state_change, "
                    "query_start FROM pg_stat_activity WHERE datname = ANY(%s) AND application_name <> 'incident.response' "
                    "ORDER BY pid", (list(names),))
        rows = cur.fetchall()
    conn.close()
    return rows


def recap(out):
    """host -> its PLAY RECAP counts."""
    found = {}
    for line in out.splitlines():
        parts = line.split(':', 1)
        if len(parts) == 2 and 'ok=' in parts[1] and 'changed=' in parts[1]:
            found[parts[0].strip()] = dict(item.split('=') for item in parts[1].split())
    return found


def test_batch_check_changes_nothing_then_acts_once_per_step_then_nothing_left(lab_env, ansible_env, tmp_path):
    """Six targets on the batch path: --check lists every target's session and leaves pg_stat_activity as it was;
    the real run ends them (one module run per step, the registered result has the targets); a second run
    changes nothing on any host."""
    names = make_targets(lab_env, 6, 'ir_awxb_%s' % uuid.uuid4().hex[:6])
    conns = []
    try:
        hosts = inventory(lab_env, names, str(tmp_path / 'targets.json'))
        held = {}
        for name in names[:5]:
            conn, pid = hold_idle_transaction(lab_env, name, 'ir_awx_victim')
            conns.append(conn)
            held[pid] = name
        time.sleep(3)
        store_path = str(tmp_path / 'incidents')
        incident = 'INC-2026-12-02-997'
        get_store(dict(store='files', store_path=store_path)).create(dict(id=incident, title='batch'))
        env = dict(ansible_env, INCIDENT_STORE='files', INCIDENT_STORE_PATH=store_path)

        def play(*extra):
            cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', hosts, '--forks', '6',
                   os.path.join(ROOT, 'playbooks', 'connection_pool_exhausted.yml'),
                   '-e', json.dumps(dict(pg_target_hosts='pg_targets', incident_id=incident,
                                         pg_connections_idle_in_transaction_age='2s'))] + list(extra)
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
                                  stdin=subprocess.DEVNULL)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, out[-4000:]
            assert lab_env['PGPASSWORD'] not in out
            return out

        before = activity(lab_env, names)
        out = play('--check')
        assert activity(lab_env, names) == before
        assert sorted(alive(lab_env, held).values()) == sorted(names[:5])
        for pid, name in held.items():
            assert 'WOULD TERMINATE pid %d: %s@%s' % (pid, lab_env['LAB_PG_APP_USER'], name) in out, out[-4000:]
        assert get_store(dict(store='files', store_path=store_path)).events(incident) == []

        # the registered result of the batch step has every target, each with its own full result
        out = play('-v')
        assert alive(lab_env, held) == {}
        timeline = get_store(dict(store='files', store_path=store_path)).events(incident)
        assert_one_run_per_step(timeline, names)
        assert out.count('TASK [incident.response.pg_connections : End sessions idle in transaction') == 1
        assert 'failed_targets:' in out or '"failed_targets"' in out, out[-4000:]
        counts = recap(out)
        assert sorted(counts) == sorted(names)
        # changed on each host whose session was ended (the batch's own step counts on the host that ran it)
        for name in names[1:5]:
            assert int(counts[name]['changed']) >= 1, counts
        assert int(counts[names[5]]['changed']) == 0, counts

        out = play()
        counts = recap(out)
        assert all(int(c['changed']) == 0 for c in counts.values()), counts
        again = get_store(dict(store='files', store_path=store_path)).events(incident)[len(timeline):]
        assert [e for e in again if e.get('outcome') == 'changed'] == []
        ended = [e for e in again if e['type'] == 'task' and e.get('module') == 'incident.response.pg_backends']
        assert ended and all(e['outcome'] == 'skipped' for e in ended), ended
    finally:
        for conn in conns:
            conn.close()
        drop_databases(lab_env, names)


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
