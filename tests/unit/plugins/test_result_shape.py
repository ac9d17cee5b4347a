"""Every module of plugins/modules, run in-process through the harness, returns the one result shape.

Diagnoses: ``changed`` false, ``status`` in STATUS_ORDER (ok | warning | critical | unknown), ``reasons`` a list
of sentences. Remediations: ``changed`` a bool that is true exactly when ``actions`` is not empty, ``actions``
entries made by make_action (action, target, detail, done), none done in check mode, a ``summary`` sentence, and
``diff`` only when --diff was asked. A failure is one ``msg``.

Real servers only: a private PostgreSQL started for the session (private_postgres.py, no lab needed) and an
HTTP server on loopback, a private redis-server on a Unix socket and a private Alertmanager, started here. The service modules are
checked on the FAKE backend in test_service_driver.py instead. The PgBouncer modules run against a private, real
PgBouncer on a Unix socket (private_pgbouncer.py).
"""
import glob
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import psycopg2
import pytest

from module_harness import Exited, Failed, run
from private_pgbouncer import PrivatePgBouncer
from private_postgres import PrivatePostgres

from ansible_collections.incident.response.plugins.module_utils._common import ACTION_KEYS, STATUS_ORDER
from ansible_collections.incident.response.plugins.modules import (
    alert_route_info,
    alertmanager_alert_info,
    alertmanager_silence,
    deployment_rollback,
    evidence_capture,
    firewall_block,
    http_check,
    incident,
    incident_info,
    incident_metrics_info,
    incident_monitor,
    incident_notify,
    incident_review,
    incident_timers_info,
    packet_capture,
    bull_queue,
    bull_queue_info,
    pg_activity_info,
    pg_backends,
    pg_query_info,
    pgbouncer_info,
    pgbouncer_pool,
    redis_flush,
    redis_info,
    service_info,
    service_pause,
    service_restart,
    service_scale,
    tview_emergency,
    tview_info,
    tview_lock,
    tview_queue,
    tview_state,
)

MODULES_DIR = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'plugins', 'modules')
DIAGNOSES = {'pg_activity_info', 'pg_query_info', 'tview_info',
             'http_check', 'service_info', 'incident_info', 'incident_metrics_info',
             'incident_timers_info', 'redis_info', 'bull_queue_info', 'alertmanager_alert_info', 'alert_route_info',
             'pgbouncer_info'}
REMEDIATIONS = {'pg_backends', 'tview_emergency', 'tview_state', 'tview_queue', 'tview_lock', 'service_scale', 'service_pause',
                'service_restart', 'deployment_rollback', 'incident', 'incident_notify', 'incident_review',
                'incident_monitor', 'bull_queue', 'alertmanager_silence', 'redis_flush', 'evidence_capture',
                'packet_capture', 'firewall_block', 'pgbouncer_pool'}
INCIDENT_MODULES = {'incident', 'incident_info', 'incident_metrics_info', 'incident_timers_info', 'incident_notify',
                    'incident_review', 'incident_monitor'}
SERVICE_MODULES = {'service_info', 'service_scale', 'service_pause', 'service_restart', 'deployment_rollback'}
MODULES = dict((m.__name__.rsplit('.', 1)[-1], m) for m in (
    alert_route_info, alertmanager_alert_info, alertmanager_silence, deployment_rollback, http_check, incident,
    incident_info, incident_metrics_info, incident_monitor, incident_notify, incident_review, incident_timers_info,
    bull_queue, bull_queue_info, redis_flush, redis_info, pg_activity_info, pg_backends, pg_query_info,
    pgbouncer_info,
    pgbouncer_pool, service_info, service_pause, service_restart, service_scale, tview_emergency, tview_info, tview_lock, tview_queue,
    tview_state, evidence_capture, packet_capture, firewall_block))
VICTIM = 'ir-shape-victim'


def test_every_module_is_classified_and_has_cases():
    on_disk = set(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(MODULES_DIR, '*.py'))
                  if not os.path.basename(p).startswith('_'))
    assert on_disk == DIAGNOSES | REMEDIATIONS, 'classify the new module here and give it cases in CASES'
    assert not DIAGNOSES & REMEDIATIONS
    assert set(MODULES) == on_disk
    # The service modules' shape is checked on the FAKE backend in test_service_driver.py (a remediation fails by
    # design on an absent Compose project, so they have no case here).
    assert set(case[0] for case in CASES) | SERVICE_MODULES == on_disk


# ------------------------------------------------------------------------------------------ real servers
@pytest.fixture(scope='module')
def postgres():
    server = PrivatePostgres().start()
    yield server
    server.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        code = 200 if self.path.startswith('/ok') else 500
        body = b'{"status": "ok"}' if code == 200 else b'{"status": "broken"}'
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope='module')
def netns():
    """A network namespace of this test module (firewall_block's rules go there, never into the host's tables)."""
    if os.geteuid() != 0 or not shutil.which('nft') or not shutil.which('ip'):
        pytest.skip('firewall_block needs root, nft and ip (network namespaces)')
    name = 'ir-shape-%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', name], check=True, capture_output=True, timeout=30)
    yield name
    subprocess.run(['ip', 'netns', 'del', name], check=False, capture_output=True, timeout=30)


@pytest.fixture(scope='module')
def http_base():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope='module')
def redis_socket():
    """A private, real redis-server on a Unix socket (no TCP port, nothing saved), for the Redis modules."""
    binary = shutil.which('redis-server')
    if not binary:
        pytest.skip('redis-server is not installed (make setup installs it)')
    tmp = tempfile.mkdtemp(prefix='ir-shape-redis-')
    sock = os.path.join(tmp, 'redis.sock')
    proc = subprocess.Popen([binary, '--port', '0', '--unixsocket', sock, '--unixsocketperm', '700', '--save', '',
                             '--appendonly', 'no', '--dir', tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while not os.path.exists(sock) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert os.path.exists(sock), 'redis-server did not start'
    import redis  # pylint: disable=import-outside-toplevel
    client = redis.Redis(unix_socket_path=sock)
    # One waiting job of a Bull 3 queue, keys as Bull writes them.
    client.hset('bull:pdf-processing:1', mapping=dict(name='__default__', data='{}', opts='{}',
                                                      timestamp=str(int(time.time() * 1000))))
    client.set('bull:pdf-processing:id', 1)
    client.lpush('bull:pdf-processing:wait', '1')
    client.close()
    yield sock
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope='module')
def alertmanager_url():
    """A private, real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port, no cluster."""
    binary = shutil.which('prometheus-alertmanager') or shutil.which('alertmanager')
    if not binary:
        pytest.skip('no alertmanager binary (Debian package prometheus-alertmanager; make setup installs it)')
    tmp = tempfile.mkdtemp(prefix='ir-shape-am-')
    with open(os.path.join(tmp, 'am.yml'), 'w') as handle:
        handle.write('route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n')
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([binary, '--config.file', os.path.join(tmp, 'am.yml'), '--storage.path',
                             os.path.join(tmp, 'data'), '--web.listen-address', '127.0.0.1:%d' % port,
                             '--cluster.listen-address='], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = 'http://127.0.0.1:%d' % port
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + '/-/ready', timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail('the private Alertmanager did not become ready')
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope='module')
def pgbouncer():
    """A private, real PgBouncer on a Unix socket (private_pgbouncer.py), for the PgBouncer modules."""
    server = PrivatePgBouncer().start()
    yield server
    server.stop()


@pytest.fixture
def idle_in_transaction(postgres):
    """A real session idle in transaction: pg_activity_info with idle_in_transaction_age=0 warns about it."""
    conn = psycopg2.connect(host=postgres.socket_dir, port=5432, user='app', dbname='postgres',
                            application_name='ir-shape-idle-in-transaction')
    with conn.cursor() as cur:
        cur.execute('SELECT 1')
    yield conn
    conn.close()


@pytest.fixture
def victim(postgres):
    """A real idle session for pg_backends to find (and, in the apply case, cancel: harmless when idle)."""
    conn = psycopg2.connect(host=postgres.socket_dir, port=5432, user='app', dbname='postgres',
                            application_name=VICTIM)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('SELECT 1')
    yield conn
    conn.close()


# ------------------------------------------------------------------------------------------------ cases
# (module, case id, args builder (postgres, http_base) -> args, check, diff)
def pg(db='postgres', **args):
    return lambda postgres, base: dict(postgres.connection(db), **args)


def web(*paths, **args):
    return lambda postgres, base: dict(urls=[base + p for p in paths], count=2, **args)


def plain(**args):
    return lambda postgres, base: dict(args)


ABSENT = dict(platform='compose', project='ir-shape-test-absent')
# The incident modules on a files store of their own (a real directory, removed with the test run's tmp).
STORE = dict(store='files', store_path=os.path.join(tempfile.mkdtemp(prefix='ir-shape-store-'), 'incidents'))
SHAPE_ID = 'INC-SHAPE-001'


def store(**args):
    return lambda postgres, base: dict(STORE, **args)


def rds(**args):
    """Redis modules on the private redis-server (the socket path is put in by the test)."""
    return lambda postgres, base: dict(args)


EXPORTS = tempfile.mkdtemp(prefix='ir-shape-bull-exports-')
FW_STATE = tempfile.mkdtemp(prefix='ir-shape-fw-')


def am(**args):
    """Alertmanager modules on the private Alertmanager (its url is put in by the test)."""
    return lambda postgres, base: dict(args)


SILENCE = dict(matchers=[dict(name='alertname', value='NoActiveWorkers'), dict(name='service', value='worker')],
               incident_id=SHAPE_ID, duration='30m')
PAYLOAD = dict(version='4', status='firing', receiver='rulebook', alerts=[dict(
    status='firing', labels=dict(alertname='NoActiveWorkers', service='worker'), annotations={},
    startsAt='2026-12-01T21:00:00Z', endsAt='0001-01-01T00:00:00Z', fingerprint='3a5c0e1f2b4d6a78')])


def pgb(**args):
    """PgBouncer modules on the private PgBouncer (its connection is put in by the test)."""
    return lambda postgres, base: dict(args)


CASES = [
    ('pgbouncer_info', 'ok', pgb(), False, False),
    ('pgbouncer_info', 'one-database', pgb(databases=['appdb']), False, False),
    ('pgbouncer_info', 'unreachable-unknown', plain(host='127.0.0.1', port=1, unreachable='unknown'), False, False),
    ('pgbouncer_pool', 'pause-check-diff', pgb(action='pause', databases=['appdb']), True, True),
    ('pgbouncer_pool', 'pause', pgb(action='pause', databases=['appdb']), False, False),
    ('pgbouncer_pool', 'pause-again-diff', pgb(action='pause', databases=['appdb']), False, True),
    ('pgbouncer_pool', 'resume-diff', pgb(action='resume', databases=['appdb']), False, True),
    ('pgbouncer_pool', 'resume-again', pgb(action='resume', databases=['appdb']), False, False),
    ('pgbouncer_pool', 'reconnect-nothing', pgb(action='reconnect', databases=['appdb']), False, False),
    ('pgbouncer_pool', 'kill-nothing-check', pgb(action='kill', databases=['appdb'], allow_kill=True), True, True),
    ('alertmanager_alert_info', 'none-firing', am(labels=dict(alertname='NoActiveWorkers')), False, False),
    ('alertmanager_alert_info', 'unreachable-unknown', plain(url='http://127.0.0.1:1'), False, False),
    ('alertmanager_silence', 'check-diff', am(**SILENCE), True, True),
    ('alertmanager_silence', 'create', am(**SILENCE), False, False),
    ('alertmanager_silence', 'again-diff', am(**SILENCE), False, True),
    ('alertmanager_silence', 'expire', am(state='absent', **SILENCE), False, False),
    ('alert_route_info', 'routed', plain(payload=PAYLOAD, alert_map=dict(NoActiveWorkers=dict(
        playbook='no_active_workers.yml', mode='act'))), False, False),
    ('redis_info', 'ok', rds(patterns=['sess:*']), False, False),
    ('redis_info', 'unreachable-unknown', plain(unix_socket='/nonexistent/redis.sock'), False, False),
    ('bull_queue_info', 'empty', rds(queues=['pdf-processing']), False, False),
    ('bull_queue', 'pause-check-diff', rds(queue='pdf-processing', action='pause', layout='bull',
                                           export_dir=EXPORTS), True, True),
    ('bull_queue', 'pause', rds(queue='pdf-processing', action='pause', layout='bull', export_dir=EXPORTS), False,
     False),
    ('bull_queue', 'pause-again-diff', rds(queue='pdf-processing', action='pause', layout='bull', export_dir=EXPORTS),
     False, True),
    ('bull_queue', 'resume', rds(queue='pdf-processing', action='resume', layout='bull', export_dir=EXPORTS), False,
     False),
    ('redis_flush', 'check-diff', rds(patterns=['bull:pdf-processing:*'], export_dir=EXPORTS), True, True),
    ('redis_flush', 'nothing-diff', rds(patterns=['cache:*'], approve=True, export_dir=EXPORTS), False, True),
    ('incident', 'open-check-diff', store(incident_id=SHAPE_ID, title='shape', severity='SEV3'), True, True),
    ('incident', 'open', store(incident_id=SHAPE_ID, title='shape', severity='SEV3'), False, False),
    ('incident', 'join-diff', store(incident_id=SHAPE_ID, title='shape', severity='SEV3'), False, True),
    ('incident', 'event', store(state='event', incident_id=SHAPE_ID, text='bridge opened'), False, False),
    ('incident', 'update-diff', store(state='update', incident_id=SHAPE_ID, status='monitoring'), False, True),
    ('incident_info', 'one', store(incident_id=SHAPE_ID), False, False),
    ('incident_info', 'list', store(open=True), False, False),
    ('incident_metrics_info', 'default', store(), False, False),
    ('incident_timers_info', 'one', store(incident_id=SHAPE_ID), False, False),
    ('incident_notify', 'no-channel-check', store(incident_id=SHAPE_ID, template='update', update_number=1), True,
     False),
    ('incident_review', 'check-diff', store(incident_id=SHAPE_ID), True, True),
    ('incident_review', 'write', store(incident_id=SHAPE_ID), False, False),
    ('incident_review', 'again', store(incident_id=SHAPE_ID), False, False),
    ('incident_monitor', 'start-check', store(
        incident_id=SHAPE_ID, window='6s', interval='2s',
        checks=[dict(name='api', module='http_check', args=dict(url='http://127.0.0.1:1/'))]), True, False),
    ('evidence_capture', 'check', store(incident_id=SHAPE_ID, sockets=True, record_event=False), True, False),
    ('evidence_capture', 'capture', store(incident_id=SHAPE_ID, sockets=True, record_event=False), False, False),
    ('evidence_capture', 'once', store(incident_id=SHAPE_ID, sockets=True, record_event=False, once=True), False,
     False),
    ('packet_capture', 'check', store(incident_id=SHAPE_ID, interface='lo', port=9, duration=1, max_mb=1,
                                      record_event=False), True, False),
    ('packet_capture', 'capture', store(incident_id=SHAPE_ID, interface='lo', port=9, duration=1, max_mb=1,
                                        record_event=False), False, False),
    # firewall_block only inside a network namespace of the test (the fixture netns), never the host's tables
    ('firewall_block', 'check-diff', plain(incident_id=SHAPE_ID, port=9, state_dir=FW_STATE), True, True),
    ('firewall_block', 'block', plain(incident_id=SHAPE_ID, port=9, state_dir=FW_STATE), False, False),
    ('firewall_block', 'again-diff', plain(incident_id=SHAPE_ID, port=9, state_dir=FW_STATE), False, True),
    ('firewall_block', 'unblock', plain(incident_id=SHAPE_ID, port=9, state_dir=FW_STATE, state='absent'), False,
     False),
    ('pg_activity_info', 'ok', pg(), False, False),
    ('pg_activity_info', 'warning', pg(idle_in_transaction_age=0), False, False),
    ('pg_activity_info', 'unreachable-unknown', plain(login_host='127.0.0.1', login_port=1, unreachable='unknown'),
     False, False),
    ('pg_query_info', 'rows', pg('tviews_runbook', query='SELECT * FROM pg_tviews_metadata'), False, False),
    ('pg_query_info', 'check-truncated', pg(query='SELECT g FROM generate_series(1, 5) g', max_rows=2), True, False),
    ('pg_query_info', 'unreachable-unknown',
     plain(query='SELECT 1', login_host='127.0.0.1', login_port=1, unreachable='unknown'), False, False),
    ('tview_info', 'runbook', pg('tviews_runbook', integrity_check=True), False, False),
    ('tview_info', 'unreachable-unknown', plain(login_host='127.0.0.1', login_port=1, unreachable='unknown'),
     False, False),
    ('http_check', 'ok', web('/ok'), False, False),
    ('http_check', 'critical', web('/ok', '/broken'), False, False),
    ('http_check', 'refused', plain(urls=['http://127.0.0.1:1/x'], count=1), False, False),
    ('pg_backends', 'check-diff', pg(action='cancel', application_names=[VICTIM]), True, True),
    ('pg_backends', 'apply', pg(action='terminate', application_names=[VICTIM], wait_timeout=20), False, False),
    ('pg_backends', 'no-match-diff', pg(action='terminate', application_names=['nobody-here']), False, True),
    ('tview_state', 'check-diff', pg('tviews_runbook', state='disabled', names=['tv_order']), True, True),
    ('tview_state', 'apply', pg('tviews_runbook', state='disabled', names=['tv_order']), False, False),
    ('tview_state', 'idempotent', pg('tviews_runbook', state='disabled', names=['tv_order']), False, True),
    ('tview_state', 'undo', pg('tviews_runbook', state='enabled', names=['tv_order']), False, True),
    ('tview_queue', 'inspect', pg('tviews_runbook'), False, False),
    ('tview_queue', 'archive-check-diff', pg('tviews_runbook', action='archive', incident_id='INC-SHAPE'), True, True),
    ('tview_emergency', 'plan', pg('tviews_runbook', step='plan'), False, False),
    ('tview_emergency', 'act-check', pg('tviews_runbook', step='act', plan_digest='v1:0:' + '0' * 64,
                                        incident_id='INC-SHAPE'), True, False),
    ('tview_lock', 'check', pg(max_hold='60s', name='ir-shape-lock'), True, False),
    ('tview_lock', 'take', pg(max_hold='60s', name='ir-shape-lock'), False, False),
    ('tview_lock', 'already-held', pg(max_hold='60s', name='ir-shape-lock'), False, False),
    ('tview_lock', 'release', pg(max_hold='60s', name='ir-shape-lock', state='absent'), False, False),
    ('tview_lock', 'release-again', pg(max_hold='60s', name='ir-shape-lock', state='absent'), False, False),
]


def _params():
    for name, case, build, check, diff in CASES:
        yield pytest.param(name, build, check, diff, id='%s-%s' % (name, case))


def assert_diagnosis(result):
    assert result['changed'] is False
    assert result['status'] in STATUS_ORDER, result['status']
    assert isinstance(result['reasons'], list) and all(isinstance(r, str) and r for r in result['reasons'])
    if result['status'] != 'ok':
        assert result['reasons'], 'a status other than ok says why'
    assert 'actions' not in result and 'diff' not in result


def assert_remediation(result, check, diff):
    assert isinstance(result['changed'], bool)
    assert isinstance(result['summary'], str) and result['summary']
    actions = result['actions']
    assert isinstance(actions, list)
    assert result['changed'] == bool(actions), 'changed exactly when there are actions'
    for entry in actions:
        assert set(ACTION_KEYS) <= set(entry), entry
        assert set(entry) <= set(ACTION_KEYS) | {'error'}, entry
        assert isinstance(entry['action'], str) and isinstance(entry['target'], str), entry
        assert isinstance(entry['detail'], dict) and isinstance(entry['done'], bool), entry
        if check:
            assert entry['done'] is False, 'nothing is done in check mode: %r' % entry
    if diff and result['changed']:
        assert {'before', 'after'} <= set(result['diff']) <= {'before', 'after', 'before_header', 'after_header'}
    if not diff:
        assert 'diff' not in result, 'diff only with --diff'
    assert 'status' not in result or result['status'] in STATUS_ORDER


@pytest.mark.parametrize('name, build, check, diff', list(_params()))
def test_result_shape(name, build, check, diff, request):
    if name == 'pg_backends':
        request.getfixturevalue('victim')
    if name == 'pg_activity_info':
        request.getfixturevalue('idle_in_transaction')
    postgres = request.getfixturevalue('postgres') if name in ('pg_activity_info', 'pg_query_info', 'tview_info',
                                                               'pg_backends',
                                                               'tview_state', 'tview_queue', 'tview_lock',
                                                               'tview_emergency') else None
    base = request.getfixturevalue('http_base') if name == 'http_check' else None
    args = dict(build(postgres, base), _ansible_check_mode=check, _ansible_diff=diff)
    if name in ('alertmanager_alert_info', 'alertmanager_silence') and 'url' not in args:
        args['url'] = request.getfixturevalue('alertmanager_url')
    if name in ('redis_info', 'bull_queue_info', 'bull_queue', 'redis_flush') and 'unix_socket' not in args:
        args['unix_socket'] = request.getfixturevalue('redis_socket')
    if name == 'firewall_block':
        args['netns'] = request.getfixturevalue('netns')
    if name.startswith('pgbouncer_') and 'host' not in args:
        args.update(request.getfixturevalue('pgbouncer').connection())
    kind, result = run(MODULES[name], args)
    assert kind is Exited, result.get('msg')
    assert 'exception' not in result and 'module_stderr' not in result
    if name in DIAGNOSES:
        assert_diagnosis(result)
    else:
        assert_remediation(result, check, diff)


def test_the_statuses_the_cases_reach(postgres, http_base, idle_in_transaction, pgbouncer):
    """The cases above are not all 'ok': warning, critical and unknown are reached for real."""
    seen = set()
    for name, case, build, check, diff in CASES:
        if name not in DIAGNOSES or name in SERVICE_MODULES:
            continue
        args = build(postgres, http_base)
        if name.startswith('pgbouncer_') and 'host' not in args:
            args.update(pgbouncer.connection())
        kind, result = run(MODULES[name], dict(args, _ansible_check_mode=check))
        assert kind is Exited, result
        seen.add(result['status'])
    assert seen == set(STATUS_ORDER)


def test_a_failure_is_one_message(postgres):
    kind, result = run(pg_backends, dict(postgres.connection(), action='cancel', query_pattern=''))
    assert kind is Failed and result['msg'] == 'query_pattern must not be empty: an empty pattern matches everything'
    kind, result = run(tview_info, dict(login_host='127.0.0.1', login_port=1))
    assert kind is Failed and result['msg'].startswith('Unable to connect to PostgreSQL at 127.0.0.1:1')
