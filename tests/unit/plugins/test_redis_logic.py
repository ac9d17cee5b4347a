"""The Redis connection settings (url / REDIS_URL, explicit options, defaults) and small helpers."""
import pytest

from ansible_collections.incident.response.plugins.module_utils import _redis
from ansible_collections.incident.response.plugins.modules import bull_queue


def params(**kwargs):
    base = dict(url=None, host=None, port=None, db=None, username=None, password=None, unix_socket=None, tls=None,
                ca_cert=None, validate_certs=True, timeout=5)
    base.update(kwargs)
    return base


def test_defaults_without_url():
    s = _redis.resolve_connection(params())
    assert (s['host'], s['port'], s['db'], s['password'], s['tls'], s['unix_socket']) == \
        ('127.0.0.1', 6379, 0, None, False, None)
    assert _redis.describe_target(s) == '127.0.0.1:6379 db 0'


def test_url_parts_and_explicit_options_win():
    s = _redis.resolve_connection(params(url='rediss://app:p%40ss@redis.example:6380/3', db=5))
    assert (s['host'], s['port'], s['db'], s['username'], s['password'], s['tls']) == \
        ('redis.example', 6380, 5, 'app', 'p@ss', True)
    assert 'p@ss' not in _redis.describe_target(s) and _redis.describe_target(s) == 'redis.example:6380 db 5 as app (TLS)'


def test_unix_url():
    s = _redis.resolve_connection(params(url='unix://:secret@/run/redis/redis.sock?db=2'))
    assert (s['unix_socket'], s['db'], s['password']) == ('/run/redis/redis.sock', 2, 'secret')
    assert _redis.describe_target(s) == 'socket /run/redis/redis.sock db 2'


def test_explicit_host_overrides_a_unix_url():
    s = _redis.resolve_connection(params(url='unix:///run/redis.sock', host='10.0.0.5'))
    assert s['unix_socket'] is None and s['host'] == '10.0.0.5'


@pytest.mark.parametrize('url, fragment', [
    ('http://x', 'must start with redis://'),
    ('redis://h:port/0', 'port is not a number'),
    ('redis://h/zero', 'database number is not a number'),
    ('unix://', 'needs the socket path'),
])
def test_bad_urls(url, fragment):
    with pytest.raises(ValueError, match=fragment):
        _redis.parse_redis_url(url)


def test_error_text_masks_the_password():
    assert 'hunter2' not in _redis.error_text(Exception('AUTH hunter2 failed'), 'hunter2')
    assert 'hunter2' not in _redis.error_text(Exception('redis://u:hunter2@h:1/0 refused'))


def test_read_only_client_refuses_writes():
    client = _redis.RedisClient(params(port=1, timeout=1), read_only=True)
    for command in ('SET', 'EVAL', 'DEL', 'FLUSHDB', 'LPUSH'):
        with pytest.raises(_redis.RedisError, match='this module only reads'):
            client.call(command, 'k')
    with pytest.raises(_redis.RedisError, match='this module only reads'):
        client.script('return 1', [], [])


def test_scored_reads_flat_and_paired_replies():
    assert bull_queue.scored(['1', '1000', '2', '2000.0']) == [('1', 1000), ('2', 2000)]
    assert bull_queue.scored([['1', 1000.0]]) == [('1', 1000)]
    assert bull_queue.scored([]) == []


def test_flush_protects_queue_and_session_keys_unless_the_pattern_names_them():
    from ansible_collections.incident.response.plugins.modules import redis_flush
    prefixes = ['bull:', 'sess:']
    assert redis_flush.protected_by(b'sess:42', '*', prefixes) == 'sess:'
    assert redis_flush.protected_by(b'sess:42', 's*', prefixes) == 'sess:'
    assert redis_flush.protected_by(b'sess:42', 'sess:*', prefixes) is None
    assert redis_flush.protected_by(b'bull:pdf-processing:wait', '*:wait', prefixes) == 'bull:'
    assert redis_flush.protected_by(b'bull:pdf-processing:wait', 'bull:pdf-processing:*', prefixes) is None
    assert redis_flush.protected_by(b'cache:1', '*', prefixes) is None


@pytest.mark.parametrize('args, fragment', [
    (dict(patterns=['*']), "'*' matches every key"),
    (dict(patterns=['']), 'an empty pattern'),
    (dict(patterns=[]), 'at least one key pattern'),
    (dict(patterns=['cache:*'], max_keys=0), 'max_keys must be at least 1'),
    (dict(patterns=['cache:*'], protected_prefixes=['']), 'an empty prefix'),
    (dict(patterns=['cache:*'], scan_timeout='inf'), 'scan_timeout'),
    (dict(patterns=['cache:*'], max_keys='inf'), 'max_keys'),
])
def test_flush_bad_input_is_one_message(args, fragment):
    from module_harness import Failed, run  # pylint: disable=import-error
    from ansible_collections.incident.response.plugins.modules import redis_flush
    kind, result = run(redis_flush, dict(args, unix_socket='/nonexistent/redis.sock'))
    assert kind is Failed and fragment in result['msg'], result
