import datetime

import pytest

from ansible_collections.incident.response.plugins.module_utils._alertmanager import (
    AlertmanagerClient, AlertmanagerError, format_time, matcher_key, matches_everything, normalize_matcher,
    parse_time)


def m(name, value, regex=False, equal=True):
    return dict(name=name, value=value, isRegex=regex, isEqual=equal)


@pytest.mark.parametrize('matchers', [
    [],
    [m('alertname', '.*', regex=True)],
    [m('alertname', '.+', regex=True)],
    [m('alertname', '', equal=False)],
    [m('alertname', '.*', regex=True), m('severity', '.*', regex=True)],
])
def test_matches_everything(matchers):
    assert matches_everything(matchers)


@pytest.mark.parametrize('matchers', [
    [m('alertname', 'NoActiveWorkers')],
    [m('alertname', '.*', regex=True), m('service', 'worker')],
    [m('alertname', 'No.*', regex=True)],
    [m('alertname', 'NoActiveWorkers', equal=False)],
])
def test_narrow_matchers(matchers):
    assert not matches_everything(matchers)


def test_matcher_key_ignores_order():
    assert matcher_key([m('a', '1'), m('b', '2')]) == matcher_key([m('b', '2'), m('a', '1')])
    assert matcher_key([m('a', '1')]) != matcher_key([m('a', '1', regex=True)])


@pytest.mark.parametrize('bad, message', [
    ('x', 'expected a mapping'),
    (dict(value='x'), 'name is required'),
    (dict(name='a'), 'value is required'),
    (dict(name='a', value='(', isRegex=True), 'not a valid regular expression'),
    (dict(name='a', value='x', op='='), 'unknown keys op'),
])
def test_normalize_matcher_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        normalize_matcher(bad)


def test_times_round_trip():
    stamp = parse_time('2026-12-01T21:00:00.123456789Z')
    assert stamp == datetime.datetime(2026, 12, 1, 21, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    assert format_time(stamp) == '2026-12-01T21:00:00.123Z'
    assert parse_time('2026-12-01T23:00:00+02:00') == parse_time('2026-12-01T21:00:00Z')
    with pytest.raises(ValueError, match='not an RFC 3339 time'):
        parse_time('tomorrow', 'ends_at')
    with pytest.raises(ValueError, match='not a valid time'):
        parse_time('2026-13-01T00:00:00Z')


@pytest.mark.parametrize('url, message', [(None, 'url is required'), ('', 'url is required'),
                                          ('localhost:9093', 'not an http')])
def test_client_url_errors(url, message):
    with pytest.raises(AlertmanagerError, match=message):
        AlertmanagerClient(dict(url=url))


def test_client_strips_api_suffix():
    assert AlertmanagerClient(dict(url='http://am:9093/api/v2/')).url == 'http://am:9093'
