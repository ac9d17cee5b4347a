"""The disposable lab (playbooks/lab.yml) and the gameday faults (playbooks/gameday.yml).

These tests assume the lab is up (``ansible-playbook -i inventory/lab.yml playbooks/lab.yml
-e lab_action=up``): they read ``lab.env`` from ``$INCIDENT_LAB_DIR`` (default
/var/lib/incident-response-lab), run the playbooks as an operator does and check the real
state - pg_stat_activity, the containers found by their compose labels, the api over HTTP.
Every fault a test causes is cleared again, pass or fail.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import psycopg2
import pytest

from conftest import LAB_DIR, ROOT

FAULTS = ('connection_flood', 'idle_in_transaction', 'long_running_query')

pytestmark = pytest.mark.integration


@pytest.fixture
def sql(lab):
    """sql(query, *params) -> rows, as the lab's superuser, on a fresh autocommit connection."""
    return lambda text, *params: lab.query(text, params or None)


def playbook(ansible, name, **extra_vars):
    return ansible.playbook(os.path.join('playbooks', name), extra_vars)


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


def test_lab_env_has_the_contract_keys(lab_env):
    for key in ('PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'LAB_PG_APP_USER',
                'LAB_PG_APP_PASSWORD', 'LAB_PG_MONITOR_USER', 'LAB_PG_MONITOR_PASSWORD', 'LAB_PG_SOCKET_DIR',
                'LAB_REDIS_URL', 'LAB_ALERTMANAGER_URL', 'LAB_API_URL', 'LAB_COMPOSE_PROJECT',
                'LAB_COMPOSE_FILE', 'DOCKER_HOST', 'LAB_DIR'):
        assert lab_env.get(key), key
    assert (lab_env['PGHOST'], lab_env['PGPORT'], lab_env['PGUSER'], lab_env['PGDATABASE']) == ('127.0.0.1', '55432', 'lab_admin', 'scheduler')
    assert oct(os.stat(os.path.join(LAB_DIR, 'lab.env')).st_mode & 0o777) == '0o600'


def test_lab_up_twice_is_idempotent(ansible):
    first = playbook(ansible, 'lab.yml', lab_action='up')
    assert first.rc == 0, first
    second = playbook(ansible, 'lab.yml', lab_action='up')
    assert second.rc == 0, second
    assert second.changed == 0, second


def test_database_roles_and_schema(lab_env, sql):
    assert sql('SHOW max_connections') == [('100',)]
    roles = dict(sql("SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN ('lab_admin', 'app', 'monitoring')"))
    assert roles == {'lab_admin': True, 'app': False, 'monitoring': False}
    assert sql("SELECT pg_has_role('monitoring', 'pg_monitor', 'MEMBER')") == [(True,)]
    assert sql('SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()') == [('app',)]
    for table in ('task', 'task_run', 'due_work', 'worker_heartbeat', 'audit_log'):
        count = sql('SELECT count(*) FROM %s' % table)[0][0]  # table names are constants
        assert count > 0, table
    for user, password in ((lab_env['LAB_PG_APP_USER'], lab_env['LAB_PG_APP_PASSWORD']),
                           (lab_env['LAB_PG_MONITOR_USER'], lab_env['LAB_PG_MONITOR_PASSWORD'])):
        conn = psycopg2.connect(host=lab_env['PGHOST'], port=lab_env['PGPORT'], user=user, password=password,
                                dbname=lab_env['PGDATABASE'], connect_timeout=10)
        conn.close()


def test_compose_project_found_by_labels(lab_env):
    docker = pytest.importorskip('docker')
    client = docker.DockerClient(base_url=lab_env['DOCKER_HOST'])
    try:
        def running():
            found = client.containers.list(filters={'label': [
                'com.docker.compose.project=%s' % lab_env['LAB_COMPOSE_PROJECT'], 'incident.response.lab=true']})
            services = sorted(c.labels.get('com.docker.compose.service') for c in found)
            api = [c for c in found if c.labels.get('com.docker.compose.service') == 'api']
            healthy = bool(api) and api[0].attrs['State'].get('Health', {}).get('Status') == 'healthy'
            return services, healthy

        assert wait_for(lambda: running() == (['api', 'scheduler', 'worker', 'worker'], True), timeout=60), running()
    finally:
        client.close()


def test_api_health_answers_200(lab_env):
    for path, status in (('/health', 'ok'), ('/health/ready', 'ready')):
        with urllib.request.urlopen(lab_env['LAB_API_URL'] + path, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read())['status'] == status


def test_redis_and_alertmanager_answer(lab_env):
    with urllib.request.urlopen(lab_env['LAB_ALERTMANAGER_URL'] + '/-/ready', timeout=10) as response:
        assert response.status == 200
    match = re.match(r'redis://([^:/]+):(\d+)', lab_env['LAB_REDIS_URL'])
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
    run = gameday('long_running_query', 'cause', gameday_query_seconds=300)
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


def test_holder_reports_a_connection_error(lab_env):
    """hold_sessions.py: one clear line and a non-zero status, no traceback, when it cannot connect."""
    script = os.path.join(ROOT, 'roles', 'gameday', 'files', 'hold_sessions.py')
    with tempfile.TemporaryDirectory() as state_dir:
        env = dict(os.environ, GAMEDAY_PG_PASSWORD='not-the-password')
        proc = subprocess.run(
            [sys.executable, script, 'start', '--name', 'probe', '--state-dir', state_dir, '--mode', 'idle_tx',
             '--count', '1', '--host', lab_env['PGHOST'], '--port', lab_env['PGPORT'], '--dbname', lab_env['PGDATABASE'],
             '--user', lab_env['LAB_PG_APP_USER'], '--application-name', 'gameday_probe', '--timeout', '30'],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1, proc
        assert 'password authentication failed' in proc.stderr, proc
        assert 'Traceback' not in proc.stderr, proc
        assert not os.path.exists(os.path.join(state_dir, 'probe.pid'))
