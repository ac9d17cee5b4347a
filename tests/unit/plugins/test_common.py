import datetime
import time

import pytest

from ansible_collections.incident.response.plugins.module_utils._common import (
    STATUS_ORDER,
    DurationError,
    StatusBuilder,
    diagnosis_result,
    duration_param,
    excerpt,
    format_duration,
    make_action,
    parse_duration,
    parse_time,
    plural,
    redact,
    regex_param,
    remediation_result,
    wait_until,
    worst_status,
)


@pytest.mark.parametrize('value, seconds', [
    (90, 90.0),
    ('90', 90.0),
    ('2.5', 2.5),
    ('30m', 1800.0),
    ('1h30m', 5400.0),
    ('1H 30M', 5400.0),
    ('45s', 45.0),
    ('500ms', 0.5),
    ('2d', 172800.0),
    ('1w', 604800.0),
    (0, 0.0),
])
def test_parse_duration_accepts_seconds_and_units(value, seconds):
    assert parse_duration(value) == seconds


def test_parse_duration_none_means_no_filter():
    assert parse_duration(None) is None
    assert parse_duration('') is None


@pytest.mark.parametrize('value', ['-5m', -1, '-1', -0.5])
def test_parse_duration_refuses_negative_values_naming_the_option(value):
    with pytest.raises(DurationError, match='min_state_age: must not be negative'):
        parse_duration(value, 'min_state_age')


@pytest.mark.parametrize('value', ['thirty minutes', '30x', 'm', '1h30', True, '5m-'])
def test_parse_duration_refuses_garbage(value):
    with pytest.raises(DurationError, match='idle_age'):
        parse_duration(value, 'idle_age')


def test_format_duration_reads_like_an_operator_writes():
    assert format_duration(0) == '0s'
    assert format_duration(95) == '1m35s'
    assert format_duration(3600) == '1h'
    assert format_duration(90061) == '1d1h1m1s'
    assert format_duration(None) is None


def test_plural():
    assert plural(1, 'backend') == '1 backend'
    assert plural(0, 'backend') == '0 backends'
    assert plural(2, 'query', 'queries') == '2 queries'


def test_worst_status_and_builder():
    assert worst_status([]) == 'ok'
    assert worst_status(['ok', 'warning', 'ok']) == 'warning'
    assert worst_status(['warning', 'critical', 'ok']) == 'critical'
    builder = StatusBuilder()
    builder.check(50, 90, 95, 'at %(value)s (%(level)s at %(threshold)s)')
    assert builder.status == 'ok' and builder.reasons == []
    builder.check(92, 90, 95, 'at %(value)s (%(level)s at %(threshold)s)')
    assert builder.status == 'warning' and builder.reasons == ['at 92 (warning at 90)']
    builder.check(96, 90, 95, 'at %(value)s (%(level)s at %(threshold)s)')
    assert builder.status == 'critical' and builder.reasons[-1] == 'at 96 (critical at 95)'
    builder2 = StatusBuilder()
    builder2.check(1000, None, None, '%(value)s')
    assert builder2.status == 'ok'


@pytest.mark.parametrize('text, secret', [
    ("ALTER ROLE app PASSWORD 'hunter2'", 'hunter2'),
    ("alter user app with password 'it''s secret'", "it''s secret"),
    ('CREATE ROLE x LOGIN PASSWORD "quoted"', 'quoted'),
    ('postgresql://app:s3cr3t@db:5432/app', 's3cr3t'),
    ('redis-cli -a foo password=topsecret', 'topsecret'),
    ('token: abcdef123', 'abcdef123'),
    # issue 9: JSON, Authorization headers, named arguments, keyed functions, an empty URL user, redis-cli -a
    ('{"password": "hunter2", "user": "app"}', 'hunter2'),
    ("{'login_password': 'pw-in-a-dict'}", 'pw-in-a-dict'),
    ('Authorization: Bearer eyJhbGciOi.abc', 'eyJhbGciOi.abc'),
    ('{"Authorization": "Basic dXNlcjpwdw=="}', 'dXNlcjpwdw=='),
    ('curl -H "authorization: token ghp_abcdef"', 'ghp_abcdef'),
    ("SELECT connect(password => 'named-arg-pw')", 'named-arg-pw'),
    ("SELECT pgp_sym_decrypt(secret_col, 'sym-key-1')", 'sym-key-1'),
    ("SELECT pgp_sym_encrypt('data', 'sym-key-2', 'cipher-algo=aes256')", 'sym-key-2'),
    ('redis://:redis-pw@127.0.0.1:56379/0', 'redis-pw'),
    ('redis-cli -h 127.0.0.1 -a cli-pw ping', 'cli-pw'),
    ('X-Api-Key: apikey-123', 'apikey-123'),
])
def test_redact_masks_secrets(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert '********' in masked


def test_redact_keeps_ordinary_queries():
    query = "SELECT * FROM task WHERE name = 'nightly'"
    assert redact(query) == query
    for text in ('SELECT upper(name) FROM task', 'worker 3: processed 12 jobs', '{"state": "idle", "count": 2}'):
        assert redact(text) == text


def test_redact_is_linear_on_long_input():
    import time
    start = time.monotonic()
    redact('a' * 200000 + 'password' + 'b' * 200000)
    redact('Bearer ' * 20000)
    assert time.monotonic() - start < 5


def test_excerpt_is_single_line_redacted_and_cut():
    text = "SELECT 1,\n      2 -- PASSWORD 'x'\n" + 'a' * 300
    cut = excerpt(text, 50)
    assert '\n' not in cut and len(cut) == 50 and cut.endswith('...')
    assert "'x'" not in excerpt("ALTER ROLE a PASSWORD 'x'", 200)
    assert excerpt(None, 10) is None
    assert len(excerpt('b' * 500, 0)) == 500


def test_wait_until_returns_when_the_predicate_holds():
    calls = []

    def predicate():
        calls.append(1)
        return len(calls) >= 3 and 'done'
    ok, elapsed, value = wait_until(predicate, timeout=10, sleep=0.1)
    assert ok is True and value == 'done' and len(calls) == 3
    assert elapsed < 5


def test_wait_until_gives_up_after_the_timeout():
    start = time.monotonic()
    ok, elapsed, value = wait_until(lambda: False, timeout=0.3, sleep=0.1)
    assert ok is False and value is False
    assert 0.3 <= time.monotonic() - start < 3


UTC = datetime.timezone.utc


@pytest.mark.parametrize('value, expected', [
    # Docker: nanoseconds, Z
    ('2026-01-02T03:00:05.123456789Z', datetime.datetime(2026, 1, 2, 3, 0, 5, 123456, tzinfo=UTC)),
    # Kubernetes: seconds, Z
    ('2026-11-25T09:58:20Z', datetime.datetime(2026, 11, 25, 9, 58, 20, tzinfo=UTC)),
    # An offset, and no offset at all (UTC)
    ('2026-01-02T04:00:05+01:00', datetime.datetime(2026, 1, 2, 3, 0, 5, tzinfo=UTC)),
    ('2026-01-02T03:00:05', datetime.datetime(2026, 1, 2, 3, 0, 5, tzinfo=UTC)),
])
def test_parse_time_of_both_platforms(value, expected):
    assert parse_time(value) == expected
    assert parse_time(value).utcoffset() is not None


@pytest.mark.parametrize('value', [None, '', '0001-01-01T00:00:00Z', 'garbage', '2026-13-45T99:99:99Z',
                                   '2026-01-02T03:00:05+99:00', 12])
def test_parse_time_unknown_is_none_never_an_exception(value):
    assert parse_time(value) is None


# --- result builders and argument helpers (issue 7) -------------------------------------------

class _Fail(Exception):
    pass


class _FakeModule(object):
    """The two things the argument helpers use of an AnsibleModule: params and fail_json."""

    def __init__(self, **params):
        self.params = params

    def fail_json(self, **kwargs):
        raise _Fail(kwargs['msg'])


@pytest.mark.parametrize('value', [float('inf'), float('nan'), 'inf', 'nan', '1e400', 10 ** 400, '9' * 400 + 's',
                                   '1e308w', '20000d'])
def test_parse_duration_refuses_non_finite_and_huge_values(value):
    with pytest.raises(DurationError, match='max_hold'):
        parse_duration(value, 'max_hold')


def test_status_order_has_unknown_and_worst_status_ranks_it_below_critical():
    assert STATUS_ORDER == ('ok', 'warning', 'critical', 'unknown')
    assert worst_status(['ok', 'unknown', 'warning']) == 'unknown'
    assert worst_status(['unknown', 'critical']) == 'critical'


def test_diagnosis_result_shape():
    result = diagnosis_result('warning', ('one reason',), backends=[], summary='s')
    assert result == dict(changed=False, status='warning', reasons=['one reason'], backends=[], summary='s')
    assert diagnosis_result('unknown', ['could not connect'])['status'] == 'unknown'
    with pytest.raises(ValueError):
        diagnosis_result('down', [])


def test_remediation_result_shape_and_the_diff_rule():
    actions = [make_action('cancel', 'pid 1', {'query': 'x'}, done=True)]
    result = remediation_result(True, actions, '1 cancelled', diff={'before': 1, 'after': 2}, count=1)
    assert result == dict(changed=True, actions=actions, summary='1 cancelled', count=1)
    with_diff = remediation_result(True, actions, 's', diff={'before': 1, 'after': 2}, want_diff=True)
    assert with_diff['diff'] == {'before': 1, 'after': 2}
    assert 'diff' not in remediation_result(False, [], 'nothing', diff=None, want_diff=True)
    with pytest.raises(ValueError, match='check mode'):
        remediation_result(True, actions, 's', check_mode=True)
    with pytest.raises(ValueError, match='make_action'):
        remediation_result(True, [{'action': 'x'}], 's')


@pytest.mark.parametrize('value, kwargs, seconds', [
    ('30s', {}, 30.0),
    (None, {}, None),
    ('', {}, None),
    ('1.4ms', {'resolution': 0.001}, 0.0014),
    ('0', {'resolution': 0.001}, 0.0),
    ('24d', {'maximum': 2147483.647}, 24 * 86400.0),
])
def test_duration_param_accepts(value, kwargs, seconds):
    assert duration_param(_FakeModule(t=value), 't', **kwargs) == seconds


@pytest.mark.parametrize('value, kwargs, message', [
    ('', {'allow_empty': False}, 'min_state_age must not be empty'),
    ('  ', {'allow_empty': False}, 'min_state_age must not be empty'),
    ('inf', {}, 'longer than the maximum'),
    (float('nan'), {}, 'not a number'),
    (10 ** 400, {}, 'longer than the maximum'),
    ('0.4ms', {'resolution': 0.001}, 'below the resolution of 1ms'),
    ('25d', {'maximum': 2147483.647}, 'above the maximum'),
    ('0.5', {'minimum': 1}, 'below the minimum'),
    ('soon', {}, 'is not a duration'),
    ([1], {}, 'expected a duration'),
])
def test_duration_param_fails_with_one_message(value, kwargs, message):
    with pytest.raises(_Fail, match=message) as info:
        duration_param(_FakeModule(min_state_age=value), 'min_state_age', **kwargs)
    assert 'min_state_age' in str(info.value)


def test_regex_param_compiles_and_bounds():
    module = _FakeModule(query_pattern='pg_tviews_refresh')
    pattern = regex_param(module, 'query_pattern')
    assert pattern.search('SELECT pg_tviews_refresh(1)') and not pattern.search('SELECT 1')
    assert pattern.search(None) is None
    assert regex_param(_FakeModule(p=None), 'p') is None
    assert regex_param(_FakeModule(p=''), 'p', allow_empty=True).search('x')
    cut = regex_param(_FakeModule(p='b$'), 'p', max_input=10)
    assert not cut.search('a' * 20 + 'b')


@pytest.mark.parametrize('value, message', [
    ('', 'must not be empty: an empty pattern matches everything'),
    ('(unclosed', 'not a valid regular expression'),
    ('(a+)+$', 'nests a repeat inside a repeat'),
    ('(a*)*b', 'nests a repeat inside a repeat'),
    ('(x|(a+))+$', 'nests a repeat inside a repeat'),
    ('(' * 2000 + ')' * 2000, 'not a valid regular expression|nests'),
    (5, 'expected a regular expression'),
])
def test_regex_param_refuses(value, message):
    with pytest.raises(_Fail, match=message) as info:
        regex_param(_FakeModule(body_pattern=value), 'body_pattern')
    assert 'body_pattern' in str(info.value)


def test_regex_param_bounds_the_time_of_a_slow_match():
    # Not nested, yet slow (polynomial): the time bound turns it into one message.
    module = _FakeModule(p=None)
    slow = regex_param(module, 'p', value='a*a*a*a*a*a*a*a*b', timeout=0.2, max_input=10 ** 6)
    start = time.monotonic()
    with pytest.raises(_Fail, match='took more than 0.2s'):
        slow.search('a' * 2000)
    assert time.monotonic() - start < 30
