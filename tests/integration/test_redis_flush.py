"""redis_flush against the lab's real Redis (LAB_REDIS_URL), in database 9 only (FLUSHDB of that db before and after
each test), so that nothing else in the lab's Redis is disturbed.

The four steps (check, apply, idempotent check, idempotent apply) with every key of the db (DUMP) compared before
and after the check step; the export file is proven restorable by RESTORE-ing it and comparing the keys again.
"""
import base64
import json
import os
import stat

import pytest
import redis

from conftest import assert_clean_failure

pytestmark = pytest.mark.integration

DB = 9
SECRET = 'Flush-Test-Secret-4d1a7'


@pytest.fixture(scope='module')
def base(lab_env):
    url = lab_env['LAB_REDIS_URL']
    return url.rsplit('/', 1)[0] if url.count('/') > 2 else url


@pytest.fixture
def r(base):
    client = redis.Redis.from_url('%s/%d' % (base, DB), socket_timeout=10)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def url(base):
    return '%s/%d' % (base, DB)


def digest(client):
    """Every key of the db with its serialized value and TTL presence: any change shows."""
    return dict((key, (client.dump(key), client.pttl(key) > 0)) for key in client.scan_iter(count=1000))


def fill(client):
    """Cache keys of several types (one with a TTL), plus queue and session keys that must survive."""
    client.mset(dict(('cache:page:%d' % i, 'x' * 200) for i in range(120)))
    client.hset('cache:user:1', mapping={'name': 'ada', 'plan': 'pro'})
    client.rpush('cache:list', 'a', 'b', 'c')
    client.zadd('cache:rank', {'a': 1, 'b': 2})
    client.set('cache:ttl', 'soon', ex=3600)
    client.set(b'cache:bin:\xff\x00', b'\x00\x01\xfe')
    client.mset(dict(('sess:%d' % i, 'user-%d' % i) for i in range(40)))
    client.rpush('bull:pdf-processing:wait', '1', '2')
    client.hset('bull:pdf-processing:1', mapping={'data': '{}'})
    client.set('cachex:other', 'not matched')


def test_flush_four_steps_keeps_protected_keys_and_a_restorable_export(ansible, r, url, tmp_path):
    fill(r)
    everything = digest(r)
    cache = dict((k, v) for k, v in everything.items() if k.startswith(b'cache:'))
    assert len(cache) == 125
    args = dict(url=url, patterns=['cache:*', '*page*'], allow_all_keys=False, approve=True,
                export_dir=str(tmp_path / 'exports'))

    # 1. check: the count and the plan, nothing changed, no export written
    rc, result, out = ansible.module('redis_flush', args, check=True)
    assert rc == 0, out
    assert result['changed'] is True and result['matched'] == 125 and result['deleted'] == 0
    assert result['by_pattern'] == {'cache:*': dict(matched=125, protected=0), '*page*': dict(matched=0, protected=0)}
    assert result['export_file'] is None and not (tmp_path / 'exports').exists()
    assert [a['done'] for a in result['actions']] == [False] and result['actions'][0]['detail'] == dict(keys=125)
    assert 'would delete 125 keys' in result['summary']
    assert digest(r) == everything

    # 2. apply: exactly the cache keys go, kept first in a 0600 file
    rc, result, out = ansible.module('redis_flush', args)
    assert rc == 0, out
    assert result['changed'] is True and result['deleted'] == 125 and result['changed_meanwhile'] == []
    after = digest(r)
    assert set(after) == set(everything) - set(cache)
    assert all(after[k] == everything[k] for k in after)
    path = result['export_file']
    assert os.path.dirname(path) == str(tmp_path / 'exports')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert set(result['memory']) == {'before', 'after'}
    assert result['memory']['before']['used_memory'] > 0 and 'used_memory_human' in result['memory']['after']
    assert result['freed_bytes'] == result['memory']['before']['used_memory'] - result['memory']['after']['used_memory']
    assert 'kept first in %s' % path in result['summary']

    # 3. idempotent check and 4. idempotent apply: nothing left to do
    for check in (True, False):
        rc, result, out = ansible.module('redis_flush', args, check=check)
        assert rc == 0, out
        assert result['changed'] is False and result['matched'] == 0 and result['actions'] == [], result
        assert 'nothing to delete' in result['summary']
        assert digest(r) == after

    # the export puts every key back as it was (value and TTL)
    with open(path) as handle:
        document = json.load(handle)
    assert len(document['keys']) == 125
    for entry in document['keys']:
        r.restore(base64.b64decode(entry['key_b64']), max(entry['pttl'], 0), base64.b64decode(entry['dump_b64']),
                  replace=True)
    assert digest(r) == everything
    assert r.ttl('cache:ttl') > 3000 and r.get(b'cache:bin:\xff\x00') == b'\x00\x01\xfe'


def test_flush_protects_queue_and_session_keys_unless_named(ansible, r, url, tmp_path):
    fill(r)
    before = digest(r)
    exports = str(tmp_path / 'x')
    rc, result, out = ansible.module('redis_flush', dict(url=url, patterns=['*'], allow_all_keys=True,
                                                         export_dir=exports), check=True)
    assert rc == 0, out
    assert result['matched'] == 126 and result['protected'] == 42, result   # 125 cache + cachex; 40 sess + 2 bull
    assert digest(r) == before
    # sessions named explicitly: only they go
    rc, result, out = ansible.module('redis_flush', dict(url=url, patterns=['sess:*'], approve=True, export_dir=exports))
    assert rc == 0, out
    assert result['deleted'] == 40
    left = digest(r)
    assert not [k for k in left if k.startswith(b'sess:')]
    assert len(left) == len(before) - 40 and b'bull:pdf-processing:wait' in left


def test_flush_refuses_without_approve_over_the_cap_and_match_all(ansible, r, url, tmp_path):
    fill(r)
    before = digest(r)
    exports = str(tmp_path / 'x')
    rc, result, out = ansible.module('redis_flush', dict(url=url, patterns=['cache:*'], export_dir=exports))
    assert_clean_failure(rc, result, out, 'refusing to delete 125 keys', 'without approve=true')
    rc, result, out = ansible.module('redis_flush', dict(url=url, patterns=['cache:*'], approve=True, max_keys=100,
                                                         export_dir=exports))
    assert_clean_failure(rc, result, out, 'refusing to delete 125 keys', 'more than max_keys=100')
    rc, result, out = ansible.module('redis_flush', dict(url=url, patterns=['**'], approve=True, export_dir=exports))
    assert_clean_failure(rc, result, out, "'**' matches every key", 'allow_all_keys=true')
    rc, result, out = ansible.module('redis_flush', dict(url=url, patterns=[''], approve=True))
    assert_clean_failure(rc, result, out, 'an empty pattern')
    rc, result, out = ansible.module('redis_flush', dict(url=url, patterns=['cache:*'], scan_timeout='forever'))
    assert_clean_failure(rc, result, out, 'scan_timeout')
    assert digest(r) == before and not os.path.exists(exports)


def test_flush_redis_down_and_wrong_password_are_one_message(ansible, r, url):
    rc, result, out = ansible.module('redis_flush', dict(url='redis://127.0.0.1:1/%d' % DB, patterns=['cache:*'],
                                                         timeout=2))
    assert_clean_failure(rc, result, out, '127.0.0.1:1 db %d' % DB)
    rc, result, out = ansible.module('redis_flush', dict(url=url, username='ir-nobody', password=SECRET,
                                                         patterns=['cache:*']))
    assert_clean_failure(rc, result, out, 'db %d as ir-nobody' % DB)
    assert SECRET not in out and SECRET not in json.dumps(result)
