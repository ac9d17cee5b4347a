"""The monitoring period (issue 8, section 5): playbooks/incident_monitor.yml against the real lab.

The pg_tviews checks run tview_info against a database of the test's own, loaded with the lab's runbook catalog
fixture (roles/lab/files/tviews_runbook.sql): other tests change the shared tviews_runbook fixture at any time.
The regression is the gameday fault ``tview_refresh_errors`` (roles/gameday/files/tviews_faults.py) caused in
that database while the monitoring runs. Windows and intervals are seconds (window 6s, interval 2s).
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import psycopg2
import pytest

from conftest import ROOT, assert_clean_failure
from incident_helpers import ago, drop_schema, files_store, make_incident, pg_store, tree_digest

pytestmark = pytest.mark.integration

FIXTURE_SQL = os.path.join(ROOT, 'roles', 'lab', 'files', 'tviews_runbook.sql')
FAULTS = os.path.join(ROOT, 'roles', 'gameday', 'files', 'tviews_faults.py')
CHECK_TIMEOUT = 20


def admin(lab_env, dbname=None):
    conn = psycopg2.connect(host=lab_env['PGHOST'], port=int(lab_env['PGPORT']), user=lab_env['PGUSER'],
                            password=lab_env['PGPASSWORD'], dbname=dbname or lab_env['PGDATABASE'],
                            application_name='pytest-observer', connect_timeout=10)
    conn.autocommit = True
    return conn


@pytest.fixture
def tviews_db(lab_env):
    """A pg_tviews runbook catalog of the test's own (20 healthy TVIEWs), dropped at the end."""
    name = 'ir_monitor_%s' % uuid.uuid4().hex[:10]
    conn = admin(lab_env)
    with conn.cursor() as cur:
        cur.execute('CREATE DATABASE %s' % name)
    psql = shutil.which('psql') or '/usr/lib/postgresql/15/bin/psql'
    env = dict(os.environ, PGHOST=lab_env['PGHOST'], PGPORT=lab_env['PGPORT'], PGUSER=lab_env['PGUSER'],
               PGPASSWORD=lab_env['PGPASSWORD'])
    proc = subprocess.run([psql, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-v', 'app_user=%s' %
                           lab_env['LAB_PG_APP_USER'], '-v', 'monitor_user=%s' % lab_env['LAB_PG_MONITOR_USER'],
                           '-d', name, '-f', FIXTURE_SQL], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    yield name
    with conn.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    conn.close()


def gameday_fault(lab_env, database, action='cause'):
    """The gameday fault tview_refresh_errors (12 of 20 TVIEWs failing) in the test's database only."""
    proc = subprocess.run(
        [sys.executable, FAULTS, 'tview_refresh_errors', action,
         '--runbook-db', database, '--ext-db', '', '--host', lab_env['PGHOST'], '--port', lab_env['PGPORT'],
         '--user', lab_env['PGUSER']],
        env=dict(os.environ, GAMEDAY_PG_PASSWORD=lab_env['PGPASSWORD']), capture_output=True, text=True,
        timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / 'incidents'


def monitoring_incident(store_dir, **fields):
    fields.setdefault('status', 'monitoring')
    return make_incident(files_store(store_dir), started=ago(minutes=40), resolved=None, **fields)


# The timeline callback (enabled in ansible.cfg) records every run into the incident by design; these tests
# compare the store before and after idempotent runs of the module itself, so they run without it (the
# timeline has its own tests: test_incident_timeline.py).
NO_TIMELINE = dict(ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.default')


def run_monitor(ansible, store_dir, incident_id, check=False, **extra):
    extra_vars = dict(incident_id=incident_id, incident_monitor_window='6s', incident_monitor_interval='2s',
                      incident_monitor_check_timeout=CHECK_TIMEOUT)
    extra_vars.update(extra)
    return ansible.playbook('playbooks/incident_monitor.yml', extra_vars, check=check,
                            env=dict(NO_TIMELINE, INCIDENT_STORE='files', INCIDENT_STORE_PATH=str(store_dir)))


def events_of(store_dir, incident_id, kind=None):
    return [e for e in files_store(store_dir).events(incident_id) if kind is None or e.get('type') == kind]


def seconds(event):
    from ansible_collections.incident.response.plugins.module_utils._incident import parse_time
    return parse_time(event['time']).timestamp()


def test_every_check_passes_resolved(ansible, store_dir, tviews_db):
    incident = monitoring_incident(store_dir)
    args = dict(incident_monitor_tviews_db=tviews_db)
    before = tree_digest(store_dir)
    check = run_monitor(ansible, store_dir, incident['id'], check=True, **args)
    assert check.rc == 0, check
    assert 'would be resolved, 1 checks passed during monitoring' in check.output, check
    assert tree_digest(store_dir) == before  # check mode recorded nothing

    run = run_monitor(ansible, store_dir, incident['id'], **args)
    assert run.rc == 0 and run.changed >= 1, run
    record = files_store(store_dir).get(incident['id'])
    assert record['status'] == 'resolved' and record['times']['resolved'], record
    checks = events_of(store_dir, incident['id'], 'check')
    assert checks and all(e['passed'] and e['status'] == 'ok' and e['module'] == 'tview_info' for e in checks)
    assert [e['round'] for e in checks] == list(range(len(checks)))
    # Bounded: no check started after the window; the last one ended within one check timeout of it.
    assert seconds(checks[-1]) - seconds(checks[0]) <= 6 + CHECK_TIMEOUT
    status = events_of(store_dir, incident['id'], 'status')
    assert [(e['from'], e['to']) for e in status] == [('monitoring', 'resolved')]

    after = tree_digest(store_dir)
    again_check = run_monitor(ansible, store_dir, incident['id'], check=True, **args)
    assert again_check.rc == 0 and again_check.changed == 0, again_check
    assert 'is resolved: nothing to monitor' in again_check.output
    again = run_monitor(ansible, store_dir, incident['id'], **args)
    assert again.rc == 0 and again.changed == 0, again
    assert tree_digest(store_dir) == after


def test_a_regression_goes_back_to_mitigating(ansible, store_dir, tviews_db, lab_env):
    incident = monitoring_incident(store_dir)
    caused = {}

    def fault_after_first_check():
        deadline = time.time() + 60
        while time.time() < deadline:
            if any(e.get('passed') for e in events_of(store_dir, incident['id'], 'check')):
                caused.update(gameday_fault(lab_env, tviews_db))
                return
            time.sleep(0.2)

    thread = threading.Thread(target=fault_after_first_check, daemon=True)
    thread.start()
    started = time.time()
    run = run_monitor(ansible, store_dir, incident['id'], incident_monitor_tviews_db=tviews_db,
                      incident_monitor_window='90s', incident_monitor_interval='2s')
    took = time.time() - started
    thread.join(timeout=60)
    assert caused.get('changed'), caused
    assert run.rc != 0 and 'Regression during the monitoring period of %s: tviews failed' % incident['id'] in \
        run.output, run
    assert 'Traceback' not in run.output
    assert took < 90, 'the run did not stop at the regression'  # stopped early, not at the end of the window

    record = files_store(store_dir).get(incident['id'])
    assert record['status'] == 'mitigating' and record['escalation_level'] == 1, record
    checks = events_of(store_dir, incident['id'], 'check')
    assert checks[0]['passed'] is True and checks[-1]['passed'] is False, checks
    assert checks[-1]['status'] == 'critical'
    assert any('Majority of TVIEWs failing' in r or 'errors' in r for r in checks[-1]['reasons']), checks[-1]
    escalations = events_of(store_dir, incident['id'], 'escalation')
    # pg_tviews SEV2, level 1: the team lead (the one severity table)
    assert [(e['level'], e['to']) for e in escalations] == [(1, 'team lead')], escalations
    status = events_of(store_dir, incident['id'], 'status')
    assert [(e['from'], e['to']) for e in status] == [('monitoring', 'mitigating')]

    # A schedule running the playbook again leaves the mitigating incident alone.
    before = tree_digest(store_dir)
    again = run_monitor(ansible, store_dir, incident['id'], incident_monitor_tviews_db=tviews_db)
    assert again.rc == 0 and again.changed == 0, again
    assert 'is mitigating, not monitoring: nothing to monitor' in again.output
    assert tree_digest(store_dir) == before


def test_the_lab_api_with_http_check(ansible, store_dir, lab_env):
    url = lab_env['LAB_API_URL'] + '/health'
    # The lab API is shared: wait (bounded) until no other test's fault is on it.
    rc, result, out = None, {}, ''
    deadline = time.time() + 90
    while time.time() < deadline:
        rc, result, out = ansible.module('http_check', dict(urls=[url], count=1, request_timeout=5))
        if rc == 0 and result.get('status') == 'ok':
            break
        time.sleep(2)
    assert result.get('status') == 'ok', 'the lab API is not healthy: %s' % out
    incident = monitoring_incident(store_dir, system='task_scheduler', severity='SEV1')
    run = run_monitor(ansible, store_dir, incident['id'], incident_monitor_urls=[url])
    assert run.rc == 0, run
    record = files_store(store_dir).get(incident['id'])
    assert record['status'] == 'resolved', record
    checks = events_of(store_dir, incident['id'], 'check')
    assert checks and all(e['check'] == 'api' and e['module'] == 'http_check' and e['passed'] for e in checks)


def test_an_incident_not_in_monitoring_is_left_alone(ansible, store_dir, tviews_db):
    incident = monitoring_incident(store_dir, status='investigating', mitigated=None)
    before = tree_digest(store_dir)
    run = run_monitor(ansible, store_dir, incident['id'], incident_monitor_tviews_db=tviews_db)
    assert run.rc == 0 and run.changed == 0, run
    assert 'is investigating, not monitoring: nothing to monitor' in run.output
    assert tree_digest(store_dir) == before

    entered = run_monitor(ansible, store_dir, incident['id'], incident_monitor_tviews_db=tviews_db,
                          incident_monitor_enter=True)
    assert entered.rc == 0, entered
    record = files_store(store_dir).get(incident['id'])
    assert record['status'] == 'resolved' and record['times']['mitigated'], record
    status = events_of(store_dir, incident['id'], 'status')
    assert [(e['from'], e['to']) for e in status] == [('investigating', 'monitoring'), ('monitoring', 'resolved')]


@pytest.mark.parametrize('extra, fragment', [
    (dict(incident_monitor_window='soon'), "window: 'soon' is not a duration"),
    (dict(incident_monitor_window='4s', incident_monitor_interval='10s'), 'must not be longer than the window'),
    (dict(incident_monitor_interval='0s'), 'interval must be at least 1 second'),
])
def test_bad_durations(ansible, store_dir, extra, fragment):
    incident = monitoring_incident(store_dir)
    before = tree_digest(store_dir)
    run = run_monitor(ansible, store_dir, incident['id'], **extra)
    assert run.rc != 0 and fragment in run.output, run
    assert 'Traceback' not in run.output
    assert tree_digest(store_dir) == before


def test_a_system_without_checks(ansible, store_dir):
    incident = monitoring_incident(store_dir, system='billing')
    run = run_monitor(ansible, store_dir, incident['id'])
    assert run.rc != 0 and 'no checks to run' in run.output, run
    assert files_store(store_dir).get(incident['id'])['status'] == 'monitoring'


def test_bad_incident_ids(ansible, store_dir):
    run = run_monitor(ansible, store_dir, '../etc/passwd')
    assert run.rc != 0 and 'invalid incident id' in run.output and 'Traceback' not in run.output, run
    run = run_monitor(ansible, store_dir, '')
    assert run.rc != 0 and 'Give the incident: -e incident_id=' in run.output, run


def test_the_module_refuses_record_without_run_id(ansible, store_dir):
    incident = monitoring_incident(store_dir)
    rc, result, out = ansible.module('incident_monitor', dict(state='record', incident_id=incident['id'],
                                                              store_path=str(store_dir)))
    assert_clean_failure(rc, result, out, 'run_id')


def test_on_the_postgres_store_as_from_awx(ansible, lab_env, tviews_db):
    """AWX runs the playbook in a container that is thrown away: the PostgreSQL store keeps the period."""
    schema = 'ir_monitor_%s' % uuid.uuid4().hex[:8]
    try:
        store = pg_store(lab_env, schema)
        incident = make_incident(store, started=ago(minutes=40), status='monitoring', resolved=None)
        store.close()
        run = ansible.playbook('playbooks/incident_monitor.yml', dict(
            incident_id=incident['id'], incident_monitor_window='6s', incident_monitor_interval='2s',
            incident_monitor_tviews_db=tviews_db), env=dict(NO_TIMELINE, INCIDENT_STORE='postgres', INCIDENT_STORE_SCHEMA=schema,
                                                            JOB_ID='4242'))
        assert run.rc == 0, run
        assert lab_env['PGPASSWORD'] not in run.output
        store = pg_store(lab_env, schema)
        try:
            record = store.get(incident['id'])
            checks = [e for e in store.events(incident['id']) if e['type'] == 'check']
        finally:
            store.close()
        assert record['status'] == 'resolved', record
        assert checks and all(e['passed'] and e['actor'] == 'awx-job-4242' for e in checks), checks
    finally:
        drop_schema(lab_env, schema)
