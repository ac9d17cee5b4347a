"""The disposable lab (playbooks/lab.yml) and the gameday faults (playbooks/gameday.yml).

These tests assume the lab is up (``ansible-playbook -i inventory/lab.yml playbooks/lab.yml
-e lab_action=up``): they read ``lab.env`` from ``$INCIDENT_LAB_DIR`` (default
/var/lib/incident-response-lab), run the playbooks as an operator does and check the real
state - pg_stat_activity, the containers found by their compose labels, the api over HTTP.
Every fault a test causes is cleared again, pass or fail.
"""
import configparser
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request

import psycopg2
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
LAB_DIR = os.environ.get('INCIDENT_LAB_DIR') or '/var/lib/incident-response-lab'
FAULTS = ('connection_flood', 'idle_in_transaction', 'long_running_query')


def _registered_markers():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, 'pytest.ini'))
    lines = parser.get('pytest', 'markers', fallback='').splitlines()
    return {line.split(':', 1)[0].strip() for line in lines if line.strip()}


# `lab` (the marker of these tests) is applied once pytest.ini registers it (--strict-markers).
pytestmark = [pytest.mark.integration] + ([pytest.mark.lab] if 'lab' in _registered_markers() else [])


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope='session')
def lab():
    """The variables of lab.env (KEY -> value)."""
    path = os.path.join(LAB_DIR, 'lab.env')
    if not os.path.exists(path):
        pytest.fail('%s not found: bring the lab up first (playbooks/lab.yml -e lab_action=up)' % path)
    env = {}
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            match = re.match(r'^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$', line.strip())
            if match:
                words = shlex.split(match.group(2))
                env[match.group(1)] = words[0] if words else ''
    return env


@pytest.fixture(scope='session')
def playbook_env(tmp_path_factory):
    """Environment of ansible-playbook: this checkout as incident.response, no colours."""
    collections = tmp_path_factory.mktemp('collections')
    namespace = collections / 'ansible_collections' / 'incident'
    namespace.mkdir(parents=True)
    (namespace / 'response').symlink_to(ROOT)
    env = dict(os.environ)
    for key in [k for k in env if k.startswith('PG')]:
        del env[key]  # the playbooks must not depend on a sourced lab.env
    env.update({
        'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': str(collections),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'INCIDENT_LAB_DIR': LAB_DIR,
        'PATH': os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', ''),
    })
    return env


class Run(object):
    def __init__(self, proc):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        recap = re.search(r'localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)', self.output)
        self.changed = int(recap.group(1)) if recap else None
        self.failed = int(recap.group(2)) if recap else None

    def __repr__(self):
        return 'rc=%s changed=%s\n%s' % (self.rc, self.changed, self.output[-4000:])


@pytest.fixture(scope='session')
def playbook(playbook_env):
    def run(name, *extra_vars, timeout=600):
        cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
               '-i', os.path.join(ROOT, 'inventory', 'lab.yml'), os.path.join(ROOT, 'playbooks', name)]
        for var in extra_vars:
            cmd += ['-e', var]
        proc = subprocess.run(cmd, cwd=ROOT, env=playbook_env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        return Run(proc)
    return run


@pytest.fixture
def gameday(playbook):
    """Runs playbooks/gameday.yml; clears every fault it caused at teardown."""
    caused = set()

    def run(fault, action='cause', *extra_vars):
        if action == 'cause':
            caused.add(fault)
        return playbook('gameday.yml', 'fault=%s' % fault, 'gameday_action=%s' % action, *extra_vars)

    yield run
    for fault in caused:
        playbook('gameday.yml', 'fault=%s' % fault, 'gameday_action=clear')


@pytest.fixture
def sql(lab):
    """sql(query, *params) -> rows, as the lab's superuser, on a fresh autocommit connection."""
    def query(text, *params):
        conn = psycopg2.connect(host=lab['PGHOST'], port=lab['PGPORT'], user=lab['PGUSER'],
                                password=lab['PGPASSWORD'], dbname=lab['PGDATABASE'],
                                application_name='test_lab_gameday', connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(text, params)
                return cur.fetchall()
        finally:
            conn.close()
    return query


def sessions(sql, application_name):
    """(usename, datname, state, query) of the sessions with this application_name."""
    return sql('SELECT usename, datname, state, query FROM pg_stat_activity WHERE application_name = %s',
               application_name)


def wait_for(predicate, timeout=20, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# --- the lab -------------------------------------------------------------------------


def test_lab_env_has_the_contract_keys(lab):
    for key in ('PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'LAB_PG_APP_USER',
                'LAB_PG_APP_PASSWORD', 'LAB_PG_MONITOR_USER', 'LAB_PG_MONITOR_PASSWORD', 'LAB_PG_SOCKET_DIR',
                'LAB_REDIS_URL', 'LAB_ALERTMANAGER_URL', 'LAB_API_URL', 'LAB_COMPOSE_PROJECT',
                'LAB_COMPOSE_FILE', 'DOCKER_HOST', 'LAB_DIR'):
        assert lab.get(key), key
    assert (lab['PGHOST'], lab['PGPORT'], lab['PGUSER'], lab['PGDATABASE']) == ('127.0.0.1', '55432', 'lab_admin', 'scheduler')
    assert oct(os.stat(os.path.join(LAB_DIR, 'lab.env')).st_mode & 0o777) == '0o600'


def test_lab_up_twice_is_idempotent(playbook):
    first = playbook('lab.yml', 'lab_action=up')
    assert first.rc == 0, first
    second = playbook('lab.yml', 'lab_action=up')
    assert second.rc == 0, second
    assert second.changed == 0, second


def test_database_roles_and_schema(lab, sql):
    assert sql('SHOW max_connections') == [('100',)]
    roles = dict(sql("SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN ('lab_admin', 'app', 'monitoring')"))
    assert roles == {'lab_admin': True, 'app': False, 'monitoring': False}
    assert sql("SELECT pg_has_role('monitoring', 'pg_monitor', 'MEMBER')") == [(True,)]
    assert sql('SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()') == [('app',)]
    for table in ('task', 'task_run', 'due_work', 'worker_heartbeat', 'audit_log'):
        count = sql('SELECT count(*) FROM %s' % table)[0][0]  # table names are constants
        assert count > 0, table
    for user, password in ((lab['LAB_PG_APP_USER'], lab['LAB_PG_APP_PASSWORD']),
                           (lab['LAB_PG_MONITOR_USER'], lab['LAB_PG_MONITOR_PASSWORD'])):
        conn = psycopg2.connect(host=lab['PGHOST'], port=lab['PGPORT'], user=user, password=password,
                                dbname=lab['PGDATABASE'], connect_timeout=10)
        conn.close()


def test_compose_project_found_by_labels(lab):
    docker = pytest.importorskip('docker')
    client = docker.DockerClient(base_url=lab['DOCKER_HOST'])
    try:
        def running():
            found = client.containers.list(filters={'label': [
                'com.docker.compose.project=%s' % lab['LAB_COMPOSE_PROJECT'], 'incident.response.lab=true']})
            services = sorted(c.labels.get('com.docker.compose.service') for c in found)
            api = [c for c in found if c.labels.get('com.docker.compose.service') == 'api']
            healthy = bool(api) and api[0].attrs['State'].get('Health', {}).get('Status') == 'healthy'
            return services, healthy

        assert wait_for(lambda: running() == (['api', 'scheduler', 'worker', 'worker'], True), timeout=60), running()
    finally:
        client.close()


def test_api_health_answers_200(lab):
    for path, status in (('/health', 'ok'), ('/health/ready', 'ready')):
        with urllib.request.urlopen(lab['LAB_API_URL'] + path, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read())['status'] == status


def test_redis_and_alertmanager_answer(lab):
    with urllib.request.urlopen(lab['LAB_ALERTMANAGER_URL'] + '/-/ready', timeout=10) as response:
        assert response.status == 200
    match = re.match(r'redis://([^:/]+):(\d+)', lab['LAB_REDIS_URL'])
    proc = subprocess.run(['redis-cli', '-h', match.group(1), '-p', match.group(2), 'ping'],
                          capture_output=True, text=True, timeout=10, check=False)
    assert proc.stdout.strip() == 'PONG', proc


# --- gameday -------------------------------------------------------------------------


def test_idle_in_transaction(gameday, sql):
    gameday('idle_in_transaction', 'clear')  # whatever an earlier test left
    run = gameday('idle_in_transaction')
    assert run.rc == 0 and run.changed == 1, run
    held = sessions(sql, 'gameday_idle_tx')
    assert len(held) == 5, held
    assert {row[:3] for row in held} == {('app', 'scheduler', 'idle in transaction')}
    assert all(row[3].lstrip().upper().startswith('INSERT INTO AUDIT_LOG') for row in held), held
    protected = sessions(sql, 'postgres_exporter')
    assert [(row[0], row[2]) for row in protected] == [('monitoring', 'idle in transaction')], protected

    again = gameday('idle_in_transaction')
    assert again.rc == 0 and again.changed == 0, again
    assert len(sessions(sql, 'gameday_idle_tx')) == 5

    # A remediation ends two of them: causing the fault again reopens them.
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gameday_idle_tx' LIMIT 2")
    assert wait_for(lambda: len(sessions(sql, 'gameday_idle_tx')) == 3)
    healed = gameday('idle_in_transaction')
    assert healed.rc == 0 and healed.changed == 1, healed
    assert len([s for s in sessions(sql, 'gameday_idle_tx') if s[2] == 'idle in transaction']) == 5
    assert len(sessions(sql, 'postgres_exporter')) == 1

    cleared = gameday('idle_in_transaction', 'clear')
    assert cleared.rc == 0 and cleared.changed == 1, cleared
    assert sessions(sql, 'gameday_idle_tx') == []
    assert sessions(sql, 'postgres_exporter') == []

    again = gameday('idle_in_transaction', 'clear')
    assert again.rc == 0 and again.changed == 0, again


def test_long_running_query(gameday, sql):
    gameday('long_running_query', 'clear')
    run = gameday('long_running_query', 'cause', 'gameday_query_seconds=300')
    assert run.rc == 0 and run.changed == 1, run
    held = sessions(sql, 'gameday_long_query')
    assert len(held) == 2, held
    assert all(row[2] == 'active' and 'pg_sleep' in row[3] for row in held), held

    again = gameday('long_running_query')
    assert again.rc == 0 and again.changed == 0, again
    assert len(sessions(sql, 'gameday_long_query')) == 2

    cleared = gameday('long_running_query', 'clear')
    assert cleared.rc == 0 and cleared.changed == 1, cleared
    assert sessions(sql, 'gameday_long_query') == []


def test_connection_flood(gameday, sql):
    max_connections = int(sql('SHOW max_connections')[0][0])
    target = int(math.floor(0.9 * max_connections))
    gameday('connection_flood', 'clear')
    run = gameday('connection_flood')
    assert run.rc == 0 and run.changed == 1, run
    flood = sessions(sql, 'gameday_flood')
    assert flood and {row[2] for row in flood} == {'idle'}, flood
    total = sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND pid <> pg_backend_pid()")[0][0]
    assert abs(total - target) <= 3, (total, target, len(flood))

    again = gameday('connection_flood')
    assert again.rc == 0 and again.changed == 0, again

    cleared = gameday('connection_flood', 'clear')
    assert cleared.rc == 0 and cleared.changed == 1, cleared
    assert sessions(sql, 'gameday_flood') == []


def test_unknown_fault_names_the_known_ones(gameday):
    run = gameday('no_such_fault')
    assert run.rc != 0, run
    assert 'Unknown fault' in run.output and 'no_such_fault' in run.output, run
    for fault in FAULTS:
        assert fault in run.output, run


def test_clearing_an_unknown_or_absent_fault_changes_nothing(gameday):
    for fault in ('no_such_fault', 'long_running_query'):
        run = gameday(fault, 'clear')
        assert run.rc == 0 and run.changed == 0, run


def test_holder_reports_a_connection_error(lab):
    """hold_sessions.py: one clear line and a non-zero status, no traceback, when it cannot connect."""
    script = os.path.join(ROOT, 'roles', 'gameday', 'files', 'hold_sessions.py')
    with tempfile.TemporaryDirectory() as state_dir:
        env = dict(os.environ, GAMEDAY_PG_PASSWORD='not-the-password')
        proc = subprocess.run(
            [sys.executable, script, 'start', '--name', 'probe', '--state-dir', state_dir, '--mode', 'idle_tx',
             '--count', '1', '--host', lab['PGHOST'], '--port', lab['PGPORT'], '--dbname', lab['PGDATABASE'],
             '--user', lab['LAB_PG_APP_USER'], '--application-name', 'gameday_probe', '--timeout', '30'],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1, proc
        assert 'password authentication failed' in proc.stderr, proc
        assert 'Traceback' not in proc.stderr, proc
        assert not os.path.exists(os.path.join(state_dir, 'probe.pid'))
