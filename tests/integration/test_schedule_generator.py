"""The schedule generator lab (its compose project: backend, pdf-worker, storage as a MinIO stand-in; its Bull queue in
db 3 of the lab's Redis), its gameday faults and the playbooks that cure them: --check changes nothing (containers
and every key of db 3 compared), a real run heals the fault, a second run changes nothing."""
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import psycopg2
import psycopg2.extras
import pytest
import redis

pytestmark = pytest.mark.integration

DEFAULTS = dict(LAB_SCHEDGEN_PROJECT='schedulegen', LAB_SCHEDGEN_URL='http://127.0.0.1:58180',
                LAB_SCHEDGEN_STORAGE_URL='http://127.0.0.1:58190',
                LAB_SCHEDGEN_REDIS_URL='redis://127.0.0.1:56379/3',
                LAB_SCHEDGEN_STATE_DIR='/var/lib/incident-response-lab/schedgen/state')
QUEUE = 'bull:pdf-processing'


@pytest.fixture(scope='module')
def sg(lab_env):
    """The LAB_SCHEDGEN_* variables (lab.env, else the lab's defaults); fails when the part is not up."""
    env = dict((k, lab_env.get(k) or os.environ.get(k) or v) for k, v in DEFAULTS.items())
    try:
        urllib.request.urlopen(env['LAB_SCHEDGEN_URL'] + '/health', timeout=10).read()
    except (OSError, urllib.error.URLError) as exc:
        pytest.fail('the schedule generator lab does not answer on %s (make lab-up starts it): %s'
                    % (env['LAB_SCHEDGEN_URL'], exc))
    return env


@pytest.fixture
def r(sg):
    client = redis.Redis.from_url(sg['LAB_SCHEDGEN_REDIS_URL'], socket_timeout=10)
    yield client
    client.close()


def get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b'null')
    except urllib.error.HTTPError as exc:
        return exc.code, None


def containers(project):
    """Every container of the project: id, state and start time (a restart or a scale shows)."""
    ids = subprocess.run(['docker', 'ps', '--all', '--quiet', '--filter', 'label=com.docker.compose.project=%s' % project],
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    if not ids:
        return []
    out = subprocess.run(['docker', 'inspect', '--format',
                          '{{.Id}} {{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{.State.StartedAt}}']
                         + ids, capture_output=True, text=True, check=True, timeout=60).stdout
    return sorted(out.splitlines())


def running(project, service):
    return [line for line in containers(project) if line.split()[1] == service and line.split()[2] == 'running']


def digest(client):
    return dict((key, client.dump(key)) for key in client.scan_iter(count=1000))


def state(sg, r):
    return containers(sg['LAB_SCHEDGEN_PROJECT']), digest(r), sorted(os.listdir(sg['LAB_SCHEDGEN_STATE_DIR']))


def wait_for(predicate, timeout=60, what='condition'):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(0.5)


def scale(ansible, sg, replicas):
    rc, result, out = ansible.module('service_scale', dict(platform='compose', project=sg['LAB_SCHEDGEN_PROJECT'],
                                                           service='pdf-worker', replicas=replicas, max_replicas=10))
    assert rc == 0, out


# ------------------------------------------------------------------ the lab itself
def test_backend_reports_the_bull_queue_and_the_worker_consumes_it_with_locks(sg, r):
    status, body = get(sg['LAB_SCHEDGEN_URL'] + '/api/jobs/metrics')
    assert status == 200
    assert body['waiting'] == r.llen(QUEUE + ':wait') and body['completed'] == r.zcard(QUEUE + ':completed')
    assert get(sg['LAB_SCHEDGEN_STORAGE_URL'] + '/minio/health/live')[0] == 200
    job = str(r.incr(QUEUE + ':id'))
    r.hset('%s:%s' % (QUEUE, job), mapping=dict(name='__default__', data='{}', opts='{}', timestamp=1, delay=0, priority=0))
    r.lpush(QUEUE + ':wait', job)
    wait_for(lambda: r.zscore(QUEUE + ':completed', job) is not None, what='job %s completed by the pdf-worker' % job)
    fields = r.hgetall('%s:%s' % (QUEUE, job))
    assert int(fields[b'finishedOn']) >= int(fields[b'processedOn']) > 0
    assert not r.exists('%s:%s:lock' % (QUEUE, job)) and job.encode() not in r.lrange(QUEUE + ':active', 0, -1)


def test_gameday_faults_are_idempotent(gameday, sg, r):
    for fault in ('schedgen_redis_oom', 'schedgen_stalled_jobs'):
        assert gameday(fault).rc == 0
        second = gameday(fault)
        assert second.rc == 0 and second.changed == 0, second
    assert r.exists('cache:schedule:1') and r.exists('sess:gameday-1')
    for fault in ('schedgen_redis_oom', 'schedgen_stalled_jobs'):
        assert gameday(fault, 'clear').rc == 0
        again = gameday(fault, 'clear')
        assert again.rc == 0 and again.changed == 0, again
    assert not r.exists('cache:schedule:1')


# ------------------------------------------------------------------ the incidents
def test_redis_oom_flushes_the_cache_keys_only_with_approval(ansible, gameday, sg, r):
    assert gameday('schedgen_redis_oom').rc == 0
    env = dict(sg)
    lab = dict(schedule_generator_cache_keys_max=1000, incident_id='INC-T-SG-OOM')
    before = state(sg, r)
    run = ansible.playbook('playbooks/redis_oom.yml', lab, check=True, env=env)
    assert run.rc == 0, run
    assert 'would delete 3000 keys' in run.output and 'DRY RUN' in run.output
    assert state(sg, r) == before
    run = ansible.playbook('playbooks/redis_oom.yml', lab, env=env)          # not approved: the plan only
    assert run.rc == 0 and 'NOT APPROVED' in run.output, run
    assert digest(r) == before[1]
    sessions = sorted(k for k in r.scan_iter(match='sess:*'))
    run = ansible.playbook('playbooks/redis_oom.yml', dict(lab, approve=True), env=env)
    assert run.rc == 0, run
    assert 'deleted 3000 keys of 3000 matching' in run.output and 'cache keys now 0' in run.output
    assert not list(r.scan_iter(match='cache:*')) and sorted(r.scan_iter(match='sess:*')) == sessions
    run = ansible.playbook('playbooks/redis_oom.yml', dict(lab, approve=True), env=env)
    assert run.rc == 0 and run.changed == 0 and 'nothing to flush' in run.output, run


def test_high_error_rate_restarts_the_backend_and_verifies(ansible, gameday, sg, r):
    assert gameday('schedgen_error_rate').rc == 0
    before = state(sg, r)
    incident = dict(incident_id='INC-T-SG-ERRORS')
    run = ansible.playbook('playbooks/high_error_rate.yml', incident, check=True, env=sg)
    assert run.rc == 0, run
    assert ': INCIDENT;' in run.output and 'backend: would restart' in run.output
    assert state(sg, r) == before
    run = ansible.playbook('playbooks/high_error_rate.yml', incident, env=sg)
    assert run.rc == 0, run
    assert 'Verified: the error rate went from' in run.output and 'to 0.0%' in run.output
    assert 'error_rate' not in os.listdir(sg['LAB_SCHEDGEN_STATE_DIR'])
    assert running(sg['LAB_SCHEDGEN_PROJECT'], 'backend') != [c for c in before[0] if ' backend ' in c]
    run = ansible.playbook('playbooks/high_error_rate.yml', incident, env=sg)
    assert run.rc == 0 and run.changed == 0 and 'Backend: not restarted' in run.output, run


def test_slow_responses_p95_back_under_the_threshold(ansible, gameday, sg, r):
    assert gameday('schedgen_slow_responses').rc == 0
    before = state(sg, r)
    args = dict(schedule_generator_p95_threshold=2, incident_id='INC-T-SG-SLOW')
    run = ansible.playbook('playbooks/slow_responses.yml', args, check=True, env=sg)
    assert run.rc == 0, run
    assert '(threshold 2 s): INCIDENT' in run.output and 'backend: would restart' in run.output
    assert state(sg, r) == before
    run = ansible.playbook('playbooks/slow_responses.yml', args, env=sg)
    assert run.rc == 0 and 'Verified: p95 went from' in run.output, run
    run = ansible.playbook('playbooks/slow_responses.yml', args, env=sg)
    assert run.rc == 0 and run.changed == 0 and ': normal' in run.output, run


def test_auth_failures_sessions_lost_restart_and_login(ansible, gameday, sg, r):
    assert gameday('schedgen_auth_failures').rc == 0
    assert not list(r.scan_iter(match='sess:*'))
    before = state(sg, r)
    incident = dict(incident_id='INC-T-SG-AUTH')
    run = ansible.playbook('playbooks/auth_failures.yml', incident, check=True, env=sg)
    assert run.rc == 0, run
    assert '0 sessions (sess:*, SCAN)' in run.output and 'its session store FAILS (503)' in run.output
    assert 'backend: would restart' in run.output
    assert state(sg, r) == before
    run = ansible.playbook('playbooks/auth_failures.yml', incident, env=sg)
    assert run.rc == 0 and 'Verified: a login works again' in run.output, run
    status, body = get(sg['LAB_SCHEDGEN_URL'] + '/api/auth/status')
    assert status == 200 and body == {'sessionStore': 'ok'}
    run = ansible.playbook('playbooks/auth_failures.yml', incident, env=sg)
    assert run.rc == 0 and run.changed == 0 and 'Backend restart: not restarted' in run.output, run


def test_queue_backlog_and_stalled_jobs_on_the_lab_workers(ansible, gameday, sg, r):
    assert gameday('schedgen_queue_backlog').rc == 0
    assert gameday('schedgen_stalled_jobs').rc == 0
    assert not running(sg['LAB_SCHEDGEN_PROJECT'], 'pdf-worker') and r.llen(QUEUE + ':wait') >= 2000
    args = dict(redis_url=sg['LAB_SCHEDGEN_REDIS_URL'], queue_backlog_worker_service='pdf-worker',
                queue_backlog_worker_project=sg['LAB_SCHEDGEN_PROJECT'], queue_backlog_worker_replicas=3,
                queue_backlog_max_jobs=10, incident_id='INC-T-SG-QUEUE')
    try:
        before = state(sg, r)
        run = ansible.playbook('playbooks/queue_backlog.yml', args, check=True)
        assert run.rc == 0, run
        assert 'would move 5 stalled jobs' in run.output
        assert state(sg, r) == before
        run = ansible.playbook('playbooks/queue_backlog.yml', args)
        assert run.rc == 0, run
        assert 'moved 5 stalled jobs' in run.output and 'Verified: waiting went from' in run.output
        assert 'recorded in incident INC-T-SG-QUEUE' in run.output, run
        assert len(running(sg['LAB_SCHEDGEN_PROJECT'], 'pdf-worker')) == 3
        wait_for(lambda: r.llen(QUEUE + ':wait') == 0, timeout=300, what='the backlog drained by 3 pdf-workers')
        run = ansible.playbook('playbooks/queue_backlog.yml', args)
        assert run.rc == 0 and run.changed == 0, run
    finally:
        scale(ansible, sg, 1)


def relay(project):
    """The fault schedgen_redis_down's relay (service redis of the project): its state lines."""
    return [line for line in containers(project) if line.split()[1] == 'redis']


def backend_redis_port(project):
    ids = [line.split()[0] for line in containers(project) if line.split()[1] == 'backend']
    env = json.loads(subprocess.run(['docker', 'inspect', '--format', '{{json .Config.Env}}', ids[0]],
                                    capture_output=True, text=True, check=True, timeout=60).stdout)
    return dict(item.split('=', 1) for item in env)['REDIS_PORT']


def test_redis_down_restarts_the_schedule_generators_redis_only_with_approval(ansible, gameday, sg, r):
    project = sg['LAB_SCHEDGEN_PROJECT']
    args = dict(redis_url='redis://127.0.0.1:56381/3', schedule_generator_redis_service='redis',
                incident_id='INC-T-SG-RDOWN')
    try:
        assert gameday('schedgen_redis_down').rc == 0
        # What the schedule generator sees is down; the lab's shared Redis is not touched.
        assert get(sg['LAB_SCHEDGEN_URL'] + '/health')[0] == 503 and r.ping()
        assert backend_redis_port(project) == '56381' and ' exited ' in relay(project)[0]
        again = gameday('schedgen_redis_down')
        assert again.rc == 0 and again.changed == 0, again
        before = state(sg, r)
        run = ansible.playbook('playbooks/redis_down.yml', args, check=True, env=sg)
        assert run.rc == 0, run
        assert 'DRY RUN' in run.output and 'db 3: DOWN: PING failed' in run.output
        assert 'Backend /health: UNHEALTHY (503)' in run.output and 'redis: would restart' in run.output
        assert state(sg, r) == before
        run = ansible.playbook('playbooks/redis_down.yml', args, env=sg)               # not approved: the plan only
        assert run.rc == 0 and 'NOT APPROVED' in run.output and 'redis: would restart' in run.output, run
        assert state(sg, r) == before and get(sg['LAB_SCHEDGEN_URL'] + '/health')[0] == 503
        run = ansible.playbook('playbooks/redis_down.yml', dict(args, approve=True), env=sg)
        assert run.rc == 0, run
        assert 'redis: restarted 1 instance' in run.output and 'the backend is healthy again' in run.output, run
        assert get(sg['LAB_SCHEDGEN_URL'] + '/health') == (200, dict(
            status='ok', service='schedule-generator-backend', checks=dict(redis='ok')))
        assert ' running ' in relay(project)[0]
        run = ansible.playbook('playbooks/redis_down.yml', dict(args, approve=True), env=sg)
        assert run.rc == 0 and run.changed == 0 and 'Redis restart: not needed' in run.output, run
    finally:
        cleared = gameday('schedgen_redis_down', 'clear')
    assert cleared.rc == 0, cleared
    assert not relay(project) and backend_redis_port(project) != '56381'
    assert get(sg['LAB_SCHEDGEN_URL'] + '/health')[0] == 200


@pytest.fixture
def own_database(lab):
    """A database of the test's own (the schedule generator's 'schedgen' of the runbook), dropped at the end."""
    name = 'sg_t11_%d' % os.getpid()
    admin = lab.connect()
    with admin.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
        cur.execute('CREATE DATABASE %s' % name)
    held = []

    def hold(count, sql=None, application_name='sg-t11-holder'):
        """count sessions of the app role on the database: idle in transaction, or running sql (async)."""
        conns = []
        for unused in range(count):
            conn = psycopg2.connect(host=lab.env['PGHOST'], port=int(lab.env['PGPORT']), user=lab.env['LAB_PG_APP_USER'],
                                    password=lab.env['LAB_PG_APP_PASSWORD'], dbname=name,
                                    application_name=application_name, async_=bool(sql))
            if sql:
                psycopg2.extras.wait_select(conn)
                conn.cursor().execute(sql)
            else:
                conn.cursor().execute('SELECT 1')
            conns.append(conn)
        held.extend(conns)
        return sorted(conn.info.backend_pid for conn in conns)

    def alive():
        return sorted(row[0] for row in lab.query('SELECT pid FROM pg_stat_activity WHERE datname = %s', (name,)))

    yield dict(name=name, hold=hold, alive=alive)
    for conn in held:
        try:
            conn.close()
        except psycopg2.Error:
            pass
    with admin.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    admin.close()


def test_high_error_rate_pool_exhausted_takes_the_pg_connections_path(ansible, gameday, sg, r, own_database):
    db = own_database['name']
    pids = own_database['hold'](4)                                          # 4 sessions idle in transaction
    assert own_database['alive']() == pids
    args = dict(schedule_generator_databases=[db], schedule_generator_pool_max=4, schedule_generator_pool_pct=100,
                pg_connections_idle_in_transaction_age='1s', pg_connections_cancel_long_queries=False,
                incident_id='INC-T-SG-POOL')
    assert gameday('schedgen_error_rate').rc == 0
    time.sleep(2)
    before = state(sg, r)
    run = ansible.playbook('playbooks/high_error_rate.yml', args, check=True, env=sg)
    assert run.rc == 0, run
    assert 'Connection pool: EXHAUSTED: 4 sessions on %s (pool 4, exhausted at 100%%)' % db in run.output, run
    assert run.output.count('WOULD TERMINATE') == 4 and '4 sessions would be ended' in run.output
    assert state(sg, r) == before and own_database['alive']() == pids
    run = ansible.playbook('playbooks/high_error_rate.yml', args, env=sg)
    assert run.rc == 0, run
    assert '4 sessions ended, ok after' in run.output and 'Verified: the error rate went from' in run.output, run
    assert own_database['alive']() == []
    run = ansible.playbook('playbooks/high_error_rate.yml', args, env=sg)
    assert run.rc == 0 and run.changed == 0, run
    assert 'Connection pool: 0 sessions on %s' % db in run.output


def test_slow_responses_cancels_the_queries_past_the_threshold(ansible, gameday, sg, r, own_database, lab):
    db = own_database['name']
    slow = own_database['hold'](1, sql='SELECT pg_sleep(600)', application_name='sg-t11-slow')
    other = own_database['hold'](1, sql='SELECT pg_sleep(600)', application_name='sg-t11-other')
    kept = own_database['hold'](1, sql='SELECT pg_sleep(600)', application_name='postgres_exporter')

    def active():
        return sorted(row[0] for row in lab.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active'", (db,)))
    wait_for(lambda: active() == sorted(slow + other + kept), what='the three pg_sleep sessions active')
    time.sleep(3)
    args = dict(schedule_generator_p95_threshold=2, schedule_generator_databases=[db],
                schedule_generator_slow_query_age='2s', incident_id='INC-T-SG-SLOWQ')
    assert gameday('schedgen_slow_responses').rc == 0
    before = state(sg, r), active()
    # below the threshold: nothing to cancel
    run = ansible.playbook('playbooks/slow_responses.yml', dict(args, schedule_generator_slow_query_age='1h'),
                           check=True, env=sg)
    assert run.rc == 0 and 'Queries: 0 active past 1h' in run.output and 'nothing cancelled' in run.output, run
    run = ansible.playbook('playbooks/slow_responses.yml', dict(args, schedule_generator_cancel_max=1), check=True,
                           env=sg)                             # the cap: 2 candidates (postgres_exporter is protected)
    assert run.rc != 0 and 'refusing to cancel 2 backends: more than max_backends=1 match' in run.output, run
    run = ansible.playbook('playbooks/slow_responses.yml', dict(args, schedule_generator_cancel_max=5,
                                                                schedule_generator_protected_applications=[
                                                                    'postgres_exporter', 'sg-t11-other']),
                           check=True, env=sg)
    assert run.rc == 0, run
    assert 'Queries: 3 active past 2s on %s' % db in run.output and 'would cancel 1 backend' in run.output, run
    assert (state(sg, r), active()) == before
    run = ansible.playbook('playbooks/slow_responses.yml', dict(args, schedule_generator_protected_applications=[
        'postgres_exporter', 'sg-t11-other']), env=sg)
    assert run.rc == 0 and 'cancelled 1 backend' in run.output and 'Verified: p95 went from' in run.output, run
    # cancelled, not terminated: the session is still there, idle; the protected ones (by application) still run
    assert active() == sorted(other + kept) and slow[0] in own_database['alive']()
    run = ansible.playbook('playbooks/slow_responses.yml', args, env=sg)
    assert run.rc == 0 and run.changed == 0 and ': normal' in run.output and 'nothing cancelled' in run.output, run
    assert active() == sorted(other + kept)


def test_high_error_rate_disk_full_prunes_only_with_approval_and_within_bounds(ansible, gameday, sg, r):
    label = 'incident.response.test=sg-t11-prune-%d' % os.getpid()
    made = subprocess.run(['docker', 'create', '--label', label, '--label', 'incident.response.lab=true',
                           'incident-lab/busybox:latest', 'true'], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    kept = subprocess.run(['docker', 'create', '--label', label, '--label', 'com.docker.compose.project=sg-t11',
                           'incident-lab/busybox:latest', 'true'], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()

    def exists(cid):
        return subprocess.run(['docker', 'inspect', cid], capture_output=True, timeout=60, check=False).returncode == 0
    try:
        used = int(subprocess.run(['df', '--output=pcent', '/var/lib/docker'], capture_output=True, text=True,
                                  check=True, timeout=60).stdout.split()[-1].rstrip('%'))
        args = dict(schedule_generator_disk_pct=max(used, 1), schedule_generator_prune_labels=[label],
                    schedule_generator_prune_min_age=0, incident_id='INC-T-SG-DISK')
        assert gameday('schedgen_error_rate').rc == 0
        before = state(sg, r)
        run = ansible.playbook('playbooks/high_error_rate.yml', args, check=True, env=sg)
        assert run.rc == 0, run
        assert 'Disk: FULL: /var/lib/docker' in run.output and 'would prune 1 stopped containers' in run.output, run
        assert made[:12] in run.output and kept[:12] not in run.output
        assert state(sg, r) == before and exists(made) and exists(kept)
        run = ansible.playbook('playbooks/high_error_rate.yml', dict(args, schedule_generator_prune_max=0), env=sg)
        assert run.rc != 0 and 'more than schedule_generator_prune_max=0: nothing pruned' in run.output, run
        assert exists(made)
        assert gameday('schedgen_error_rate').rc == 0
        run = ansible.playbook('playbooks/high_error_rate.yml', args, env=sg)         # not approved: the plan only
        assert run.rc == 0 and 'NOT APPROVED, would prune 1 stopped containers' in run.output, run
        assert exists(made)
        assert gameday('schedgen_error_rate').rc == 0
        run = ansible.playbook('playbooks/high_error_rate.yml', dict(args, approve=True), env=sg)
        assert run.rc == 0 and 'pruned 1 stopped containers' in run.output, run
        assert not exists(made) and exists(kept)
        run = ansible.playbook('playbooks/high_error_rate.yml', dict(args, approve=True), env=sg)
        assert run.rc == 0 and run.changed == 0 and ': normal;' in run.output, run
    finally:
        subprocess.run(['docker', 'rm', '--force', made, kept], capture_output=True, timeout=60, check=False)


def test_health_check_reports_every_component_read_only(ansible):
    # Read only: every task reports changed=0, in check mode and for real. (The task scheduler project is shared
    # with other tests running in parallel, so its containers are not compared here.)
    for check in (True, False):
        run = ansible.playbook('playbooks/health_check.yml', check=check)
        assert run.rc == 0 and run.changed == 0, run
        assert '=== TASK SCHEDULING SYSTEM HEALTH CHECK:' in run.output
        for component in ('API containers:', 'Scheduler:', 'Workers:', 'API health:', 'Database: OK', 'Work queue:',
                          'Worker heartbeats:', 'Redis: OK'):
            assert component in run.output, (component, run)
    run = ansible.playbook('playbooks/health_check.yml', dict(health_check_api_url='http://127.0.0.1:1',
                                                              health_check_fail_on='critical'))
    assert run.rc != 0 and 'API health: CRITICAL' in run.output and 'System health: critical (' in run.output, run


def test_bad_input_is_one_message(ansible, sg):
    run = ansible.playbook('playbooks/redis_oom.yml', dict(redis_url='redis://127.0.0.1:1/3', incident_id='INC-T-SG-BAD'),
                           env=sg)
    assert run.rc != 0 and 'Redis: ' in run.output and '127.0.0.1:1 db 3' in run.output, run
    assert 'Traceback' not in run.output
