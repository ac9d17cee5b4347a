"""The incident record on both stores: the files store in a temp directory and the PostgreSQL store on the lab's
PostgreSQL 15 (a database of its own, created for these tests and dropped after).

Concurrency runs real processes (not threads); the killed run is a real SIGKILL.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import psycopg2
import pytest

from conftest import ROOT, assert_clean_failure

pytestmark = pytest.mark.integration

TEST_DB = 'incident_core_test_%d' % os.getpid()
COLLECTIONS = os.path.join(ROOT, 'build', 'collections')


def admin_connect(lab_env, dbname):
    conn = psycopg2.connect(host=lab_env['PGHOST'], port=int(lab_env['PGPORT']), user=lab_env['PGUSER'],
                            password=lab_env['PGPASSWORD'], dbname=dbname, connect_timeout=10)
    conn.autocommit = True
    return conn


@pytest.fixture(scope='module')
def pg_database(lab_env):
    conn = admin_connect(lab_env, lab_env['PGDATABASE'])
    with conn.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS %s' % TEST_DB)
        cur.execute('CREATE DATABASE %s' % TEST_DB)
    yield TEST_DB
    with conn.cursor() as cur:
        cur.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s', (TEST_DB,))
        cur.execute('DROP DATABASE IF EXISTS %s' % TEST_DB)
    conn.close()


class StoreUnderTest(object):
    """One store, its options (for the modules and the store), and a digest of everything it holds."""

    def __init__(self, kind, lab_env, tmp_path, database=None):
        self.kind = kind
        self.lab_env = lab_env
        if kind == 'files':
            self.path = str(tmp_path / 'incidents')
            self.options = dict(store='files', store_path=self.path)
        else:
            self.database = database
            self.schema = 't_%s' % uuid.uuid4().hex[:12]
            self.options = dict(store='postgres', store_dsn='dbname=%s' % database, store_schema=self.schema)

    def env(self):
        """The environment of a process using the store (PG* from lab.env; the DSN carries no password)."""
        env = dict(os.environ)
        env.update(self.lab_env)
        env['PYTHONPATH'] = COLLECTIONS
        return env

    def open(self):
        from ansible_collections.incident.response.plugins.module_utils import _incident as inc
        old = dict(os.environ)
        os.environ.update(self.lab_env)
        try:
            return inc.get_store(dict(self.options))
        finally:
            os.environ.clear()
            os.environ.update(old)

    def digest(self):
        """Every file (name, mode, bytes) or every row of the schema's tables, hashed."""
        if self.kind == 'files':
            if not os.path.exists(self.path):
                return 'absent'
            parts = []
            for dirpath, dirnames, filenames in sorted(os.walk(self.path)):
                dirnames.sort()
                parts.append('d %s %o' % (os.path.relpath(dirpath, self.path), os.stat(dirpath).st_mode))
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    with open(full, 'rb') as handle:
                        parts.append('f %s %o %s' % (os.path.relpath(full, self.path), os.stat(full).st_mode,
                                                     hashlib.sha256(handle.read()).hexdigest()))
            return '\n'.join(parts)
        conn = admin_connect(self.lab_env, self.database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                            "ORDER BY table_name", (self.schema,))
                tables = [row[0] for row in cur.fetchall()]
                if not tables:
                    cur.execute('SELECT count(*) FROM pg_namespace WHERE nspname = %s', (self.schema,))
                    return 'schema absent' if cur.fetchone()[0] == 0 else 'schema empty'
                parts = []
                for table in tables:
                    cur.execute('SELECT md5(coalesce(string_agg(t::text, %%s ORDER BY t::text), %%s)) FROM "%s"."%s" t'
                                % (self.schema, table), ('\n', ''))
                    parts.append('%s %s' % (table, cur.fetchone()[0]))
                return '\n'.join(parts)
        finally:
            conn.close()

    def dump_text(self):
        """Everything stored, as text (to grep for secrets)."""
        if self.kind == 'files':
            texts = []
            for dirpath, _dirs, filenames in os.walk(self.path):
                for name in filenames:
                    with open(os.path.join(dirpath, name), 'rb') as handle:
                        texts.append(handle.read().decode('utf-8', 'replace'))
            return '\n'.join(texts)
        conn = admin_connect(self.lab_env, self.database)
        try:
            with conn.cursor() as cur:
                texts = []
                for table in ('incident', 'incident_event', 'incident_day_counter', 'schema_version'):
                    cur.execute('SELECT t::text FROM "%s"."%s" t' % (self.schema, table))
                    texts.extend(row[0] for row in cur.fetchall())
                return '\n'.join(texts)
        finally:
            conn.close()

    def cleanup(self):
        if self.kind == 'postgres':
            conn = admin_connect(self.lab_env, self.database)
            with conn.cursor() as cur:
                cur.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % self.schema)
            conn.close()


@pytest.fixture(params=['files', 'postgres'])
def store(request, lab_env, tmp_path):
    database = request.getfixturevalue('pg_database') if request.param == 'postgres' else None
    under_test = StoreUnderTest(request.param, lab_env, tmp_path, database)
    yield under_test
    under_test.cleanup()


def run_module(ansible, store, name, check=False, diff=False, **args):
    args = dict(args)
    args.update(store.options)
    return ansible.module(name, args, check=check, diff=diff)


def today():
    return time.strftime('%Y-%m-%d', time.gmtime())


WORKER = textwrap.dedent('''
    import json, os, sys, time
    from ansible_collections.incident.response.plugins.module_utils import _incident as inc
    options, go, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
    store = inc.get_store(options)
    if mode == 'new':
        record = store.create(dict(title='concurrent %d' % os.getpid()))
        print(json.dumps(dict(id=record['id'], created=True)))
    else:
        record, created = store.open_or_join(dict(title='same alert', alert=dict(name='A', fingerprint=mode)))
        print(json.dumps(dict(id=record['id'], created=created)))
    store.close()
''')


def run_concurrently(store, count, mode, tmp_path):
    go = str(tmp_path / ('go-%s' % uuid.uuid4().hex))
    procs = [subprocess.Popen([sys.executable, '-c', WORKER, json.dumps(store.options), go, mode],
                              env=store.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _number in range(count)]
    time.sleep(0.5)  # let every process import and wait at the start line
    open(go, 'w').close()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


# ------------------------------------------------------------------------------------------ ids & concurrency

def test_twenty_concurrent_opens_get_twenty_gap_free_ids(store, tmp_path):
    results = run_concurrently(store, 20, 'new', tmp_path)
    ids = sorted(r['id'] for r in results)
    assert ids == ['INC-%s-%03d' % (today(), n) for n in range(1, 21)]
    assert len({r['id'] for r in store.open().list()}) == 20


def test_concurrent_opens_of_one_alert_make_one_incident(store, tmp_path):
    results = run_concurrently(store, 8, 'fp-%s' % uuid.uuid4().hex, tmp_path)
    assert len({r['id'] for r in results}) == 1
    assert sum(1 for r in results if r['created']) == 1
    assert len(store.open().list()) == 1


# ------------------------------------------------------------------------------------------ the module

def test_open_check_apply_rerun_joins(ansible, store):
    before = store.digest()
    rc, res, out = run_module(ansible, store, 'incident', check=True, incident_id='OPS-42', title='api down',
                              severity='P0', system='task_scheduler')
    assert rc == 0, out
    assert res['changed'] and res['created'] and res['incident_id'] == 'OPS-42'
    assert res['incident']['severity'] == 'SEV1' and res['incident']['priority'] == 'P0'
    assert res['actions'][0]['done'] is False
    assert store.digest() == before  # check mode wrote nothing, not even the directory / schema

    rc, res, out = run_module(ansible, store, 'incident', incident_id='OPS-42', title='api down', severity='P0',
                              system='task_scheduler')
    assert rc == 0 and res['changed'] and res['created'], out
    after_open = store.digest()

    rc, res, out = run_module(ansible, store, 'incident', check=True, incident_id='OPS-42', title='api down')
    assert rc == 0 and not res['changed'] and res['joined'], out
    rc, res, out = run_module(ansible, store, 'incident', incident_id='OPS-42', title='api down again')
    assert rc == 0 and not res['changed'] and res['joined'], out
    assert res['incident']['title'] == 'api down'
    assert store.digest() == after_open
    opened = [e for e in store.open().events('OPS-42') if e['type'] == 'opened']
    assert len(opened) == 1


def test_open_by_fingerprint_joins_and_check_mode_previews_the_next_id(ansible, store):
    alert = dict(name='TaskSchedulerAPIDown', fingerprint='fp-%s' % uuid.uuid4().hex[:8],
                 starts_at='2026-12-01T19:00:00Z')
    rc, res, out = run_module(ansible, store, 'incident', check=True, title='api down', alert=alert)
    assert rc == 0 and res['created'], out
    assert res['incident_id'] == 'INC-%s-001' % today()
    rc, first, out = run_module(ansible, store, 'incident', title='api down', alert=alert)
    assert rc == 0 and first['created'] and first['incident_id'] == res['incident_id'], out
    assert first['incident']['times']['started'] == '2026-12-01T19:00:00.000Z'
    rc, second, out = run_module(ansible, store, 'incident', title='api down', alert=alert)
    assert rc == 0 and second['joined'] and not second['changed'], out
    assert second['incident_id'] == first['incident_id']
    assert len(store.open().list()) == 1


def test_update_four_steps_diff_and_times(ansible, store):
    store.open().create(dict(id='OPS-7', title='queue stuck', system='schedule_generator'))
    args = dict(state='update', incident_id='OPS-7', status='mitigating', severity='P1',
                severity_scale='schedule_generator', severity_confirmed_by='Alice', commander='Alice')
    before = store.digest()
    rc, res, out = run_module(ansible, store, 'incident', check=True, diff=True, **args)
    assert rc == 0 and res['changed'], out
    assert res['changes']['status'] == dict(before='investigating', after='mitigating')
    # --diff shows the record before and after (the tree file leaves the diff out; the output has it)
    assert '--- before' in out and '+++ after' in out and '+    severity: SEV1' in out and '-    severity: null' in out
    assert res['incident']['times']['acknowledged']
    assert store.digest() == before

    rc, res, out = run_module(ansible, store, 'incident', diff=True, **args)
    assert rc == 0 and res['changed'], out
    record = store.open().get('OPS-7')
    assert (record['status'], record['severity'], record['priority'], record['severity_confirmed_by']) == \
        ('mitigating', 'SEV1', 'P0', 'Alice')
    assert record['times']['acknowledged'] and not record['times']['mitigated']
    assert '+    status: mitigating' in out
    applied = store.digest()

    rc, res, out = run_module(ansible, store, 'incident', check=True, **args)
    assert rc == 0 and not res['changed'], out
    rc, res, out = run_module(ansible, store, 'incident', **args)
    assert rc == 0 and not res['changed'], out
    assert store.digest() == applied
    types = [e['type'] for e in store.open().events('OPS-7')]
    assert types == ['status', 'severity', 'updated']  # created by the store directly: no 'opened'

    rc, res, out = run_module(ansible, store, 'incident', state='close', incident_id='OPS-7',
                              root_cause='worker pool leak')
    assert rc == 0 and res['changed'], out
    record = store.open().get('OPS-7')
    assert record['status'] == 'closed'
    assert all(record['times'][k] for k in ('acknowledged', 'mitigated', 'resolved', 'closed'))
    rc, res, out = run_module(ansible, store, 'incident', state='close', incident_id='OPS-7',
                              root_cause='worker pool leak')
    assert rc == 0 and not res['changed'], out


def test_human_steps_are_recorded_once(ansible, store):
    store.open().create(dict(id='OPS-8', title='x'))
    step = dict(state='event', incident_id='OPS-8', text='executive approval given by Bob')
    before = store.digest()
    rc, res, out = run_module(ansible, store, 'incident', check=True, **step)
    assert rc == 0 and res['changed'] and res['events'][0]['message'] == step['text'], out
    assert store.digest() == before
    rc, res, out = run_module(ansible, store, 'incident', **step)
    assert rc == 0 and res['changed'] and res['events'][0]['seq'] == 1, out
    rc, res, out = run_module(ansible, store, 'incident', **step)
    assert rc == 0 and not res['changed'], out
    rc, res, out = run_module(ansible, store, 'incident', state='event', incident_id='OPS-8', text='bridge opened')
    assert rc == 0 and res['changed'], out
    rc, info, out = run_module(ansible, store, 'incident_info', incident_id='OPS-8')
    assert rc == 0, out
    assert [e['message'] for e in info['events']] == ['executive approval given by Bob', 'bridge opened']
    assert [e['seq'] for e in info['events']] == [1, 2]
    assert info['status'] == 'warning'  # open, unclassified


def test_incident_info_filters(ansible, store):
    handle = store.open()
    handle.create(dict(id='A-1', system='pg_tviews', severity='SEV1', times=dict(detected='2026-11-01T00:00:00Z')))
    handle.create(dict(id='A-2', system='insights', severity='SEV3', times=dict(detected='2026-12-01T00:00:00Z')))
    handle.update('A-2', dict(status='resolved'))
    rc, res, out = run_module(ansible, store, 'incident_info', severity=['SEV-1'], events=False)
    assert rc == 0 and [r['id'] for r in res['incidents']] == ['A-1'], out
    assert res['status'] == 'critical' and 'A-1 SEV1 investigating' in res['reasons'][0]
    rc, res, out = run_module(ansible, store, 'incident_info', open=False)
    assert rc == 0 and [r['id'] for r in res['incidents']] == ['A-2'] and res['status'] == 'ok', out
    rc, res, out = run_module(ansible, store, 'incident_info', since='2026-11-15T00:00:00Z', system=['insights'])
    assert rc == 0 and res['count'] == 1 and res['incidents'][0]['id'] == 'A-2', out
    rc, res, out = run_module(ansible, store, 'incident_info', incident_id='A-404')
    assert_clean_failure(rc, res, out, 'incident A-404 does not exist')


# ------------------------------------------------------------------------------------------ failures

def test_bad_input_is_one_message_and_nothing_written(ansible, store, tmp_path):
    before = store.digest()
    cases = [
        (dict(title='x', severity='SEV9'), 'unknown severity'),
        (dict(title='x', severity='P4'), 'not on the canonical scale'),
        (dict(incident_id='../../escape', title='x'), 'invalid incident id'),
        (dict(incident_id='a/b', title='x'), 'invalid incident id'),
        (dict(state='update', incident_id='NOPE-1', status='resolved'), 'does not exist'),
        (dict(title='x', times=dict(started='yesterday')), 'ISO 8601'),
        (dict(title='x', fields=dict(status='closed')), 'own option'),
    ]
    for args, fragment in cases:
        rc, res, out = run_module(ansible, store, 'incident', **args)
        assert_clean_failure(rc, res, out, fragment)
    assert store.digest() == before
    assert not os.path.exists(str(tmp_path / 'escape.json'))
    assert not [n for n in os.listdir(str(tmp_path)) if 'escape' in n]


def test_unreachable_postgres_store_is_one_message(ansible, lab_env):
    for name, args in (('incident', dict(title='x')), ('incident_info', {})):
        args = dict(args, store='postgres', store_dsn='host=127.0.0.1 port=1 dbname=x user=u password=Sh0uldNotLeak',
                    store_timeout=2)
        rc, res, out = ansible.module(name, args)
        assert_clean_failure(rc, res, out, 'cannot connect to the PostgreSQL incident store 127.0.0.1:1')
        assert 'Sh0uldNotLeak' not in out


def test_a_killed_run_leaves_a_readable_record(store, tmp_path):
    handle = store.open()
    handle.create(dict(id='OPS-KILL', title='killed mid-write'))
    writer = textwrap.dedent('''
        import json, sys
        from ansible_collections.incident.response.plugins.module_utils import _incident as inc
        store = inc.get_store(json.loads(sys.argv[1]))
        n = 0
        while True:
            n += 1
            store.append_event('OPS-KILL', dict(type='note', message='step %d ' % n + 'x' * 200000))
            store.update('OPS-KILL', dict(summary='step %d' % n))
    ''')
    proc = subprocess.Popen([sys.executable, '-c', writer, json.dumps(store.options)], env=store.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(handle.events('OPS-KILL')) < 5 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        assert len(handle.events('OPS-KILL')) >= 5
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    reader = store.open()
    record = reader.get('OPS-KILL')
    assert record['title'] == 'killed mid-write' and record['summary'].startswith('step ')
    events = reader.events('OPS-KILL')
    seqs = [e['seq'] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    nxt = reader.append_event('OPS-KILL', dict(type='note', message='after the kill'))
    assert nxt['seq'] == seqs[-1] + 1
    assert reader.events('OPS-KILL')[-1]['message'] == 'after the kill'
    if store.kind == 'files':
        # a killed update may leave its hidden temp file (.OPS-KILL.*.tmp), never a cut record
        with open(os.path.join(store.path, 'OPS-KILL.json')) as f:
            json.load(f)  # the record file is always whole (atomic replace)


def test_secrets_are_never_stored(ansible, store, lab_env):
    secret_pw = lab_env['PGPASSWORD']
    app_pw = lab_env['LAB_PG_APP_PASSWORD']
    token = 'xoxb-%s' % uuid.uuid4().hex
    hook = 'https://hooks.slack.example/services/T000/B000/%s' % uuid.uuid4().hex
    rc, res, out = run_module(ansible, store, 'incident', incident_id='OPS-SEC', title='db login fails',
                              impact='app cannot log in with password=%s' % app_pw,
                              fields=dict(webhook_url=hook, token=token, bridge='https://meet.example/x'))
    assert rc == 0, out
    rc, res, out = run_module(ansible, store, 'incident', state='event', incident_id='OPS-SEC',
                              text='rotated: PASSWORD %s' % secret_pw, event=dict(api_key=token, url=hook))
    assert rc == 0, out
    rc, res, out = run_module(ansible, store, 'incident', state='update', incident_id='OPS-SEC',
                              summary='psql postgresql://app:%s@127.0.0.1/scheduler worked' % app_pw)
    assert rc == 0, out
    text = store.dump_text()
    assert 'OPS-SEC' in text
    for secret in (secret_pw, app_pw, token, hook):
        assert secret not in text
    assert '********' in text


def test_store_schema_is_versioned(pg_database, lab_env, tmp_path):
    store = StoreUnderTest('postgres', lab_env, tmp_path, pg_database)
    handle = store.open()
    assert store.digest() == 'schema absent'
    handle.create(dict(id='OPS-V', title='x'))
    conn = admin_connect(store.lab_env, store.database)
    with conn.cursor() as cur:
        cur.execute('SELECT version FROM "%s".schema_version' % store.schema)
        assert [row[0] for row in cur.fetchall()] == [1]
        cur.execute('INSERT INTO "%s".schema_version VALUES (99, %%s)' % store.schema, ('from the future',))
    conn.close()
    from ansible_collections.incident.response.plugins.module_utils._incident import IncidentError
    try:
        with pytest.raises(IncidentError, match='newer than this collection'):
            store.open().get('OPS-V')
        with pytest.raises(IncidentError, match='newer than this collection'):
            store.open().create(dict(id='OPS-W'))
    finally:
        store.cleanup()


APPENDER = textwrap.dedent('''
    import json, os, sys, time
    from ansible_collections.incident.response.plugins.module_utils import _incident as inc
    options, go, number = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
    store = inc.get_store(options)
    for n in range(10):
        store.append_event('OPS-MANY', dict(type='task', task='writer %d step %d' % (number, n)))
        store.append_event('OPS-MANY', dict(type='notification', key='notify:update:%d:slack' % n))
    store.update('OPS-MANY', dict(labels={'writer_%d' % number: True}))
    store.close()
''')


def test_concurrent_writers_lose_nothing(store, tmp_path):
    """8 processes append 10 events each, try 10 keyed notifications each (each key once overall), update labels."""
    store.open().create(dict(id='OPS-MANY', title='busy'))
    go = str(tmp_path / 'go-many')
    procs = [subprocess.Popen([sys.executable, '-c', APPENDER, json.dumps(store.options), go, str(number)],
                              env=store.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for number in range(8)]
    time.sleep(0.5)
    open(go, 'w').close()
    for proc in procs:
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    reader = store.open()
    events = reader.events('OPS-MANY')
    assert [e['seq'] for e in events] == list(range(1, 8 * 10 + 10 + 1))
    assert len([e for e in events if e['type'] == 'task']) == 80
    assert sorted(e['key'] for e in events if e['type'] == 'notification') == \
        sorted('notify:update:%d:slack' % n for n in range(10))
    record = reader.get('OPS-MANY')
    assert record['labels'] == dict(('writer_%d' % n, True) for n in range(8))
    assert record['revision'] == 1 + 8
