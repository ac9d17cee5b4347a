"""redis_info, bull_queue_info and bull_queue against the lab's real Redis (LAB_REDIS_URL).

The tests use databases of their own (7 and 8) and a queue prefix of their own, and FLUSHDB only those, so that
they never disturb anything else in the lab's Redis. The Bull and BullMQ keys are written the way Bull 3/4 and
BullMQ write them (job hashes, wait/active/paused lists, delayed/failed/completed/prioritized sets, meta, locks).
A second, private redis-server (started here on loopback with a password and a Unix socket) tests
authentication and sockets; it is the real server binary, not a stand-in.
"""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest
import redis

from conftest import assert_clean_failure

pytestmark = pytest.mark.integration

DB = 7
DB_MQ = 8
PREFIX = 'irtest-bull'
SECRET = 'Redis-Test-Secret-9f3c1'


@pytest.fixture(scope='module')
def redis_base(lab_env):
    url = lab_env['LAB_REDIS_URL']
    base = url.rsplit('/', 1)[0] if url.count('/') > 2 else url
    return base


def _client(base, db):
    return redis.Redis.from_url('%s/%d' % (base, db), decode_responses=True, socket_timeout=10)


@pytest.fixture
def r(redis_base):
    """db 7 of the lab's Redis, empty at the start and at the end of the test."""
    client = _client(redis_base, DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def rmq(redis_base):
    client = _client(redis_base, DB_MQ)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def url(base, db):
    return '%s/%d' % (base, db)


def digest(client):
    """Every key of the db with its serialized value: any change shows."""
    return dict((key, client.dump(key)) for key in client.scan_iter(count=1000))


def now_ms(client):
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


# ------------------------------------------------------------------ Bull 3/4 and BullMQ, written as they write
class BullWriter(object):
    """Writes jobs with the commands of Bull 3's (layout bull) or BullMQ 5's (layout bullmq) Lua scripts."""

    def __init__(self, client, queue, prefix=PREFIX, layout='bull'):
        self.r = client
        self.prefix = prefix
        self.queue = queue
        self.layout = layout
        self.base = '%s:%s:' % (prefix, queue)
        if layout == 'bullmq':
            client.hset(self.base + 'meta', mapping={'opts.maxLenEvents': 10000, 'version': 'bullmq:5.12.0'})

    def key(self, suffix):
        return self.base + suffix

    def add(self, data=None, timestamp=None, priority=0, **fields):
        job_id = str(self.r.incr(self.key('id')))
        stamp = timestamp if timestamp is not None else now_ms(self.r)
        job = {'name': '__default__' if self.layout == 'bull' else 'render', 'data': json.dumps(data or {'doc': job_id}),
               'opts': json.dumps({'attempts': 1, 'priority': priority} if priority else {'attempts': 1}),
               'timestamp': stamp, 'delay': 0, 'priority': priority}
        job.update(fields)
        self.r.hset(self.key(job_id), mapping=job)
        if self.layout == 'bullmq':
            if priority:
                self.r.zadd(self.key('prioritized'), {job_id: priority * 2 ** 32 + self.r.incr(self.key('pc'))})
            else:
                self.r.lpush(self.key('wait'), job_id)
            self.r.zadd(self.key('marker'), {'0': 0})
            self.r.xadd(self.key('events'), {'event': 'waiting', 'jobId': job_id}, maxlen=10000, approximate=True)
        else:
            paused = self.r.exists(self.key('meta-paused'))
            self.r.lpush(self.key('paused' if paused else 'wait'), job_id)
            self.r.publish(self.key('waiting'), job_id)
        return job_id

    def take(self, locked=True):
        """A worker takes the oldest waiting job (RPOPLPUSH wait -> active) and locks it."""
        job_id = self.r.rpoplpush(self.key('wait'), self.key('active'))
        if locked:
            self.r.set(self.key(job_id) + ':lock', 'worker-token-%s' % job_id, px=600000)
        self.r.hset(self.key(job_id), 'processedOn', now_ms(self.r))
        return job_id

    def finish(self, job_id, state, finished_on):
        """Complete or fail an active job (LREM active, ZADD completed/failed with finishedOn)."""
        self.r.lrem(self.key('active'), 1, job_id)
        self.r.delete(self.key(job_id) + ':lock')
        fields = {'finishedOn': finished_on}
        if state == 'failed':
            fields.update(failedReason='PDF rendering failed: timeout', stacktrace=json.dumps(['Error: timeout']))
        else:
            fields.update(returnvalue=json.dumps({'pages': 3}))
        self.r.hset(self.key(job_id), mapping=fields)
        self.r.zadd(self.key(state), {job_id: finished_on})
        self.r.rpush(self.key(job_id) + ':logs', 'rendering page 1')

    def delay(self, delay_ms):
        job_id = str(self.r.incr(self.key('id')))
        stamp = now_ms(self.r)
        self.r.hset(self.key(job_id), mapping={'name': 'render', 'data': '{}', 'opts': json.dumps({'delay': delay_ms}),
                                               'timestamp': stamp, 'delay': delay_ms})
        self.r.zadd(self.key('delayed'), {job_id: (stamp + delay_ms) * 0x1000})
        return job_id


# ------------------------------------------------------------------ a private redis-server with a password
def _free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture(scope='module')
def private_redis():
    """A real redis-server of the test's own on loopback: requirepass and a Unix socket."""
    server = shutil.which('redis-server')
    if not server:
        pytest.fail('redis-server not found (bindep: redis-server)')
    tmp = tempfile.mkdtemp(prefix='ir-redis-')
    port = _free_port()
    sock = os.path.join(tmp, 'redis.sock')
    proc = subprocess.Popen([server, '--port', str(port), '--bind', '127.0.0.1', '--requirepass', SECRET,
                             '--unixsocket', sock, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no',
                             '--dir', tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host='127.0.0.1', port=port, password=SECRET, socket_timeout=2)
    deadline = time.time() + 30
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail('the private redis-server did not start')
            time.sleep(0.2)
    yield dict(port=port, socket=sock, client=client)
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(tmp, ignore_errors=True)


# ================================================================== redis_info
def test_redis_info_reads_a_real_server_and_counts_keys_with_scan(ansible, r, redis_base):
    r.mset(dict(('sess:%d' % i, 'user-%d' % i) for i in range(250)))
    r.mset(dict(('cache:%d' % i, 'x') for i in range(30)))
    before = digest(r)
    rc, result, out = ansible.module('redis_info', dict(url=url(redis_base, DB), patterns=['sess:*', 'cache:*', 'none:*']))
    assert rc == 0, out
    assert result['reachable'] is True and result['status'] in ('ok', 'warning'), result
    assert result['target'] == '127.0.0.1:56379 db %d' % DB
    assert result['key_counts']['sess:*'] == dict(count=250, complete=True, examined=result['key_counts']['sess:*']['examined'])
    assert result['key_counts']['cache:*']['count'] == 30
    assert result['key_counts']['none:*']['count'] == 0
    assert result['keyspace']['db%d' % DB]['keys'] == 280
    assert result['replication']['role'] == 'master'
    assert result['memory']['used_memory'] > 0 and result['ping_ms'] >= 0
    assert set(result['persistence']) >= {'rdb_last_save_time', 'aof_enabled', 'rdb_last_bgsave_status'}
    assert set(result['stats']) >= {'evicted_keys', 'expired_keys'}
    assert digest(r) == before


def test_redis_info_scan_is_bounded(ansible, r, redis_base):
    r.mset(dict(('sess:%d' % i, 'u') for i in range(3000)))
    rc, result, out = ansible.module('redis_info', dict(url=url(redis_base, DB), patterns=['sess:*'], max_keys_scanned=50))
    assert rc == 0, out
    counted = result['key_counts']['sess:*']
    assert counted['complete'] is False and counted['examined'] <= 50 and counted['count'] < 3000, counted


def test_redis_info_thresholds_give_status_and_reasons(ansible, r, redis_base):
    rc, result, out = ansible.module('redis_info', dict(url=url(redis_base, DB), latency_warning_ms=0,
                                                        latency_critical_ms=100000))
    assert rc == 0, out
    assert result['status'] == 'warning' and any('PING took' in reason for reason in result['reasons']), result


def test_redis_info_unreachable_is_unknown_not_a_failure(ansible):
    rc, result, out = ansible.module('redis_info', dict(host='127.0.0.1', port=1, timeout=2))
    assert rc == 0, out
    assert result['status'] == 'unknown' and result['reachable'] is False
    assert '127.0.0.1:1' in result['reasons'][0] and 'Traceback' not in out


def test_redis_info_password_socket_and_redis_url_never_echo_the_secret(ansible, private_redis):
    port = private_redis['port']
    rc, result, out = ansible.module('redis_info', dict(port=port, password='wrong-' + SECRET, timeout=3))
    assert rc == 0 and result['status'] == 'unknown', out
    assert 'WRONGPASS' in result['reasons'][0] or 'invalid' in result['reasons'][0], result
    rc, result2, out2 = ansible.module('redis_info', dict(port=port, timeout=3))
    assert rc == 0 and result2['status'] == 'unknown' and 'authenticat' in result2['reasons'][0].lower(), out2
    # the password in REDIS_URL (environment fallback) and through the socket
    rc, result3, out3 = ansible.module('redis_info', {}, env=dict(REDIS_URL='redis://:%s@127.0.0.1:%d/0' % (SECRET, port)))
    assert rc == 0 and result3['status'] == 'ok' and result3['target'] == '127.0.0.1:%d db 0' % port, out3
    rc, result4, out4 = ansible.module('redis_info', dict(unix_socket=private_redis['socket'], password=SECRET))
    assert rc == 0 and result4['status'] == 'ok' and result4['target'].startswith('socket '), out4
    for text in (out, out2, out3, out4, json.dumps([result, result2, result3, result4])):
        assert 'Redis-Test-Secret' not in text


@pytest.mark.parametrize('args, fragment', [
    (dict(url='http://127.0.0.1:56379'), 'must start with redis://'),
    (dict(url='redis://127.0.0.1:56379/abc'), 'database number is not a number'),
    (dict(port=70000), 'port must be between 1 and 65535'),
    (dict(timeout=0), 'timeout must be at least 1 second'),
    (dict(patterns=['']), 'an empty pattern'),
    (dict(scan_timeout='soon'), 'scan_timeout'),
])
def test_redis_info_bad_input(ansible, args, fragment):
    rc, result, out = ansible.module('redis_info', args)
    assert_clean_failure(rc, result, out, fragment)


# ================================================================== bull_queue_info
def test_bull_queue_info_counts_oldest_and_stalled_on_bull_layout(ansible, r, redis_base):
    q = BullWriter(r, 'pdf-processing')
    old = now_ms(r) - 3600 * 1000
    first = q.add(timestamp=old)
    for _index in range(612):
        q.add()
    held = q.take(locked=True)
    stalled_a = q.take(locked=False)
    stalled_b = q.take(locked=False)
    assert held == first
    done = q.take()
    q.finish(done, 'completed', now_ms(r))
    failed = q.take()
    q.finish(failed, 'failed', now_ms(r))
    q.delay(60000)
    before = digest(r)
    rc, result, out = ansible.module('bull_queue_info', dict(url=url(redis_base, DB), prefix=PREFIX,
                                                             queues=['pdf-processing']))
    assert rc == 0, out
    queue = result['queues'][0]
    assert queue['layout'] == 'bull' and queue['exists'] is True and queue['is_paused'] is False
    assert queue['counts'] == dict(waiting=608, wait=608, prioritized=0, active=3, delayed=1, failed=1, completed=1,
                                   paused=0)
    assert sorted(queue['stalled_jobs']) == sorted([stalled_a, stalled_b]) and queue['stalled_count'] == 2
    assert queue['oldest_waiting_job']['id'] == str(int(stalled_b) + 3)
    assert result['status'] == 'critical' and result['severity'] == 'SEV3' and result['priority'] == 'P3'
    assert any('608 waiting jobs (more than 500' in reason for reason in result['reasons']), result
    assert any('2 stalled jobs' in reason for reason in result['reasons']), result
    assert digest(r) == before


def test_bull_queue_info_runbook_thresholds_and_age(ansible, r, redis_base):
    q = BullWriter(r, 'pdf-processing')
    q.add(timestamp=now_ms(r) - 7200 * 1000)
    for _index in range(149):
        q.add()
    args = dict(url=url(redis_base, DB), prefix=PREFIX, queues=['pdf-processing'])
    rc, result, out = ansible.module('bull_queue_info', args)
    assert rc == 0 and result['status'] == 'warning' and result['severity'] is None, out
    assert 'normal is fewer than 100' in result['reasons'][0]
    assert result['queues'][0]['oldest_waiting_job']['id'] == '1'
    assert result['queues'][0]['oldest_waiting_job']['age_seconds'] >= 7200
    rc, result, out = ansible.module('bull_queue_info', dict(args, waiting_warning=200, oldest_waiting_warning='1h'))
    assert rc == 0 and result['status'] == 'warning' and len(result['reasons']) == 1, out
    assert 'has waited 2h' in result['reasons'][0]
    rc, result, out = ansible.module('bull_queue_info', dict(args, waiting_warning=200))
    assert rc == 0 and result['status'] == 'ok' and result['reasons'] == [], out


def test_bull_queue_info_bullmq_layout_is_detected_with_prioritized_and_paused(ansible, rmq, redis_base):
    q = BullWriter(rmq, 'reports', layout='bullmq')
    for _index in range(5):
        q.add()
    q.add(priority=3)
    q.add(priority=1)
    stalled = q.take(locked=False)
    before = digest(rmq)
    rc, result, out = ansible.module('bull_queue_info', dict(url=url(redis_base, DB_MQ), prefix=PREFIX))
    assert rc == 0, out
    assert result['discovery_complete'] is True and [x['name'] for x in result['queues']] == ['reports']
    queue = result['queues'][0]
    assert queue['layout'] == 'bullmq'
    assert queue['counts']['waiting'] == 6 and queue['counts']['prioritized'] == 2 and queue['counts']['wait'] == 4
    assert queue['stalled_jobs'] == [stalled]
    assert digest(rmq) == before


def test_bull_queue_info_unknown_queue_and_unreachable_redis(ansible, r, redis_base):
    rc, result, out = ansible.module('bull_queue_info', dict(url=url(redis_base, DB), prefix=PREFIX,
                                                             queues=['no-such-queue']))
    assert rc == 0 and result['status'] == 'unknown', out
    assert 'queue no-such-queue has no keys under prefix %s' % PREFIX in result['reasons'][0]
    rc, result, out = ansible.module('bull_queue_info', dict(port=1, queues=['pdf-processing'], timeout=2))
    assert rc == 0 and result['status'] == 'unknown' and result['reachable'] is False, out


# ================================================================== bull_queue: the four steps
def four_steps(ansible, client, args, after_check=None):
    """check, apply, idempotent check, idempotent apply; returns the four results.

    The Redis keys are compared before and after the check step; ``after_check()`` may assert more.
    """
    before = digest(client)
    rc, check, out = ansible.module('bull_queue', args, check=True)
    assert rc == 0, out
    assert check['changed'] is True, check
    assert digest(client) == before, 'check mode changed Redis keys'
    if after_check:
        after_check()
    rc, apply, out = ansible.module('bull_queue', args)
    assert rc == 0 and apply['changed'] is True, out
    assert [a['target'] for a in apply['actions']] == [a['target'] for a in check['actions']]
    assert all(a['done'] for a in apply['actions']) and not any(a['done'] for a in check['actions'])
    after_apply = digest(client)
    rc, check2, out = ansible.module('bull_queue', args, check=True)
    assert rc == 0 and check2['changed'] is False and check2['actions'] == [], out
    rc, apply2, out = ansible.module('bull_queue', args)
    assert rc == 0 and apply2['changed'] is False and apply2['actions'] == [], out
    assert digest(client) == after_apply
    return check, apply, check2, apply2


@pytest.mark.parametrize('layout', ['bull', 'bullmq'])
def test_bull_queue_recover_stalled_four_steps(ansible, r, redis_base, layout):
    q = BullWriter(r, 'pdf-processing', layout=layout)
    for _index in range(6):
        q.add()
    held = q.take(locked=True)
    stalled = [q.take(locked=False), q.take(locked=False)]
    twice = q.take(locked=False)
    counter = 'stc' if layout == 'bullmq' else 'stalledCounter'
    r.hset(q.key(twice), counter, 1)  # stalled once already: goes to failed, as Bull does
    args = dict(url=url(redis_base, DB), prefix=PREFIX, queue='pdf-processing', action='recover_stalled')
    check, apply, _c2, _a2 = four_steps(ansible, r, args)
    assert sorted(check['jobs']) == sorted(stalled + [twice])
    assert r.lrange(q.key('active'), 0, -1) == [held]
    # back at the right end of the wait list: the next ones a worker takes (RPUSH, as Bull does)
    assert sorted(r.lrange(q.key('wait'), -2, -1)) == sorted(stalled)
    assert [r.hget(q.key(j), counter) for j in stalled] == ['1', '1']
    assert r.zscore(q.key('failed'), twice) is not None
    assert r.hget(q.key(twice), 'failedReason') == 'job stalled more than allowable limit'
    assert 'moved 2 stalled jobs' in apply['summary'] and '1 to failed' in apply['summary']
    assert apply['counts']['active'] == 1 and check['counts']['active'] == 4
    if layout == 'bullmq':
        assert r.zscore(q.key('marker'), '0') == 0


def test_bull_queue_recover_stalled_leaves_a_job_a_worker_relocked(ansible, r, redis_base):
    q = BullWriter(r, 'pdf-processing')
    q.add()
    job = q.take(locked=False)
    args = dict(url=url(redis_base, DB), prefix=PREFIX, queue='pdf-processing', action='recover_stalled')
    rc, check, out = ansible.module('bull_queue', args, check=True)
    assert rc == 0 and check['jobs'] == [job], out
    r.set(q.key(job) + ':lock', 'token', px=600000)  # a worker takes it back between plan and apply
    rc, apply, out = ansible.module('bull_queue', args)
    assert rc == 0 and apply['changed'] is False and apply['jobs'] == [], out
    assert r.lrange(q.key('active'), 0, -1) == [job]


@pytest.mark.parametrize('state', ['failed', 'completed'])
def test_bull_queue_clean_keeps_an_export_first_four_steps(ansible, r, redis_base, tmp_path, state):
    q = BullWriter(r, 'pdf-processing')
    for _index in range(5):
        q.add()
    now = now_ms(r)
    old = [q.take(), q.take(), q.take()]
    for job in old:
        q.finish(job, state, now - 10 * 86400 * 1000)
    young = q.take()
    q.finish(young, state, now - 3600 * 1000)
    kept = dict((job, r.hgetall(q.key(job))) for job in old)
    export_dir = str(tmp_path / 'exports')
    args = dict(url=url(redis_base, DB), prefix=PREFIX, queue='pdf-processing', action='clean', job_state=state,
                older_than='7d', export_dir=export_dir)

    def no_export():
        assert not os.path.exists(export_dir), 'check mode wrote an export'
    check, apply, _c2, _a2 = four_steps(ansible, r, args, after_check=no_export)
    assert sorted(check['jobs']) == sorted(old) and check['export_file'] is None
    assert r.zrange(q.key(state), 0, -1) == [young]
    assert not any(r.exists(q.key(job)) or r.exists(q.key(job) + ':logs') for job in old)
    assert r.exists(q.key(young))
    path = apply['export_file']
    assert path and os.path.dirname(path) == export_dir
    assert stat.S_IMODE(os.stat(export_dir).st_mode) == 0o700 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as handle:
        exported = json.load(handle)
    assert exported['queue'] == 'pdf-processing' and exported['state'] == state and exported['db'] == DB
    assert dict((job['id'], job['hash']) for job in exported['jobs']) == kept
    assert all(job['logs'] == ['rendering page 1'] for job in exported['jobs'])
    # the export is enough to put the jobs back
    for job in exported['jobs']:
        r.hset(q.key(job['id']), mapping=job['hash'])
        r.zadd(q.key(state), {job['id']: job['score']})
    assert sorted(r.zrange(q.key(state), 0, -1)) == sorted(old + [young])


def test_bull_queue_clean_refuses_more_than_max_jobs(ansible, r, redis_base, tmp_path):
    q = BullWriter(r, 'pdf-processing')
    for _index in range(4):
        q.add()
    for _index in range(4):
        q.finish(q.take(), 'failed', now_ms(r) - 86400 * 1000)
    before = digest(r)
    rc, result, out = ansible.module('bull_queue', dict(url=url(redis_base, DB), prefix=PREFIX, queue='pdf-processing',
                                                        action='clean', job_state='failed', older_than='1h', max_jobs=3,
                                                        export_dir=str(tmp_path / 'x')))
    assert_clean_failure(rc, result, out, 'refusing to remove 4 failed jobs', 'max_jobs=3')
    assert digest(r) == before and not os.path.exists(str(tmp_path / 'x'))


@pytest.mark.parametrize('layout', ['bull', 'bullmq'])
def test_bull_queue_pause_and_resume_four_steps(ansible, r, redis_base, layout):
    q = BullWriter(r, 'pdf-processing', layout=layout)
    jobs = [q.add() for _index in range(3)]
    order = r.lrange(q.key('wait'), 0, -1)
    base = dict(url=url(redis_base, DB), prefix=PREFIX, queue='pdf-processing')
    check, apply, _c2, _a2 = four_steps(ansible, r, dict(base, action='pause'))
    assert check['actions'][0]['detail']['moves_jobs'] == 3
    assert r.lrange(q.key('paused'), 0, -1) == order and not r.exists(q.key('wait'))
    if layout == 'bullmq':
        assert r.hget(q.key('meta'), 'paused') == '1' and not r.exists(q.key('marker'))
    else:
        assert r.get(q.key('meta-paused')) == '1'
    rc, info, out = ansible.module('bull_queue_info', dict(base_url_args(base), queues=['pdf-processing']))
    assert rc == 0 and info['queues'][0]['is_paused'] is True and info['queues'][0]['counts']['waiting'] == 3, out
    four_steps(ansible, r, dict(base, action='resume'))
    assert r.lrange(q.key('wait'), 0, -1) == order and len(jobs) == 3
    assert not r.exists(q.key('meta-paused')) and not r.hexists(q.key('meta'), 'paused')


def base_url_args(base):
    return dict(url=base['url'], prefix=base['prefix'])


@pytest.mark.parametrize('args, fragment', [
    (dict(queue='no-such-queue', action='pause'), 'queue no-such-queue has no keys under prefix'),
    (dict(queue='pdf-processing', action='clean', job_state='failed'), 'missing: older_than'),
    (dict(queue='pdf-processing', action='clean', job_state='failed', older_than='-1d'), 'must not be negative'),
    (dict(queue='pdf-*', action='pause'), 'not a queue name'),
    (dict(queue='pdf-processing', action='recover_stalled', max_jobs=0), 'max_jobs must be at least 1'),
    (dict(queue='pdf-processing', action='explode'), 'value of action must be one of'),
])
def test_bull_queue_bad_input(ansible, r, redis_base, args, fragment):
    BullWriter(r, 'pdf-processing').add()
    before = digest(r)
    rc, result, out = ansible.module('bull_queue', dict(args, url=url(redis_base, DB), prefix=PREFIX))
    assert_clean_failure(rc, result, out, fragment)
    assert digest(r) == before


def test_bull_queue_redis_down_and_wrong_password_fail_clearly(ansible, private_redis):
    rc, result, out = ansible.module('bull_queue', dict(port=1, queue='q', action='pause', timeout=2))
    assert_clean_failure(rc, result, out, 'Redis at 127.0.0.1:1 db 0')
    # the password comes from REDIS_URL here: ansible-core itself echoes a failed ad hoc task's -a arguments
    rc, result, out = ansible.module('bull_queue', dict(queue='q', action='pause'),
                                     env=dict(REDIS_URL='redis://:nope-%s@127.0.0.1:%d/0' % (SECRET, private_redis['port'])))
    assert_clean_failure(rc, result, out, 'Redis at 127.0.0.1:%d' % private_redis['port'])
    assert SECRET not in out and SECRET not in json.dumps(result)
    rc, result, out = ansible.module('bull_queue', dict(queue='q', action='pause'),
                                     env=dict(REDIS_URL='redis://:%s@127.0.0.1:%d/0' % (SECRET, private_redis['port'])))
    assert_clean_failure(rc, result, out, 'queue q has no keys under prefix bull on Redis at 127.0.0.1:%d db 0'
                         % private_redis['port'])
    assert SECRET not in out and SECRET not in json.dumps(result)


def test_redis_missing_on_the_target(ansible, tmp_path):
    bare = tmp_path / 'bare'
    subprocess.run(['python3', '-m', 'venv', '--without-pip', str(bare)], check=True)
    python = str(bare / 'bin' / 'python')
    assert subprocess.run([python, '-c', 'import redis'], capture_output=True, check=False).returncode != 0
    for module in ('redis_info', 'bull_queue_info'):
        rc, result, out = ansible.module(module, {}, extra=['-e', 'ansible_python_interpreter=%s' % python])
        assert_clean_failure(rc, result, out, 'redis (redis-py)', 'on the host that runs the module (the target)')


# ================================================================== playbooks/queue_backlog.yml
class StandInWorker(object):
    """A STAND-IN for the schedule generator's pdf-worker in the test's own db and prefix (the lab's real pdf-workers run in
    db 3: test_schedule_generator.py): a thread that takes jobs the way a Bull worker does (RPOPLPUSH wait -> active, lock,
    then completed) at a steady rate, on the real Redis."""

    def __init__(self, writer, every=0.2):
        self.writer = writer
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        client = redis.Redis(connection_pool=self.writer.r.connection_pool)
        while not self.stop.wait(self.every):
            if not client.llen(self.writer.key('wait')):
                continue
            job = self.writer.take(locked=True)
            self.writer.finish(job, 'completed', now_ms(client))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def test_queue_backlog_playbook_check_apply_idempotent(ansible, r, redis_base):
    q = BullWriter(r, 'pdf-processing')
    for _index in range(620):
        q.add()
    stalled = [q.take(locked=False), q.take(locked=False)]
    # a re-run joins the incident of the first run (the incident's id), as an operator's second run does
    extra = dict(redis_url=url(redis_base, DB), queue_backlog_prefix=PREFIX, queue_backlog_verify_window=60,
                 queue_backlog_verify_delay=2, incident_id='INC-T-QB-BULL-%d' % os.getpid())
    before = digest(r)
    run = ansible.playbook('playbooks/queue_backlog.yml', extra, check=True)
    assert run.rc == 0, run
    assert 'DRY RUN (--check)' in run.output and '618 waiting' in run.output and '2 stalled' in run.output, run
    assert 'would move 2 stalled jobs' in run.output, run
    assert digest(r) == before, 'check mode changed Redis keys'
    with StandInWorker(q):
        run = ansible.playbook('playbooks/queue_backlog.yml', extra)
        assert run.rc == 0 and run.changed >= 1, run
        assert 'moved 2 stalled jobs' in run.output, run
        assert 'recorded in incident %s' % extra['incident_id'] in run.output, run
        went = re.search(r'Verified: waiting went from (\d+) to (\d+)', run.output)
        assert went and int(went.group(2)) < int(went.group(1)) <= 618, run
        assert not set(stalled) & set(r.lrange(q.key('active'), 0, -1))
        run = ansible.playbook('playbooks/queue_backlog.yml', extra)
        assert run.rc == 0 and run.changed == 0, run
        assert 'none to recover' in run.output, run


def test_queue_backlog_playbook_unknown_queue_stops(ansible, r, redis_base):
    run = ansible.playbook('playbooks/queue_backlog.yml', dict(redis_url=url(redis_base, DB), queue_backlog_prefix=PREFIX,
                                                               queue_backlog_queue='nope'))
    assert run.rc != 0 and 'queue nope has no keys under prefix' in run.output, run
