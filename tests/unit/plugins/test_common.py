import datetime
import time

import pytest

from ansible_collections.incident.response.plugins.module_utils._common import (
    DurationError,
    StatusBuilder,
    excerpt,
    format_duration,
    parse_duration,
    parse_time,
    plural,
    redact,
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
])
def test_redact_masks_secrets(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert '********' in masked


def test_redact_keeps_ordinary_queries():
    query = "SELECT * FROM task WHERE name = 'nightly'"
    assert redact(query) == query


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
