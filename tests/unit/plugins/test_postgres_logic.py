import re

import pytest

from ansible_collections.incident.response.plugins.module_utils._postgres import (
    BackendCriteria,
    describe_target,
    protection_reason,
    session_view,
)
from ansible_collections.incident.response.plugins.modules.pg_activity_info import assess
from ansible_collections.incident.response.plugins.modules.pg_backends import (
    build_criteria,
    permission_problems,
    select_backends,
)


def backend(pid, **kw):
    row = dict(pid=pid, datname='scheduler', usename='app', application_name='api', client_addr='127.0.0.1',
               backend_type='client backend', state='idle', wait_event_type='Client', wait_event='ClientRead',
               query='SELECT 1', backend_age=100.0, xact_age=None, query_age=10.0, state_age=10.0,
               blocked_by=[], is_self=False, is_superuser=False, is_replication_role=False,
               protected_by_roles=[], leader_pid=None, query_id=None)
    row.update(kw)
    return row


IDLE_TX = dict(state='idle in transaction', xact_age=2000.0, state_age=1900.0)


def test_empty_criteria_are_detected():
    assert BackendCriteria().is_empty()
    assert not BackendCriteria(states=['idle']).is_empty()
    assert not BackendCriteria(min_state_age=0).is_empty()


def test_every_filter_must_match():
    row = backend(1, **IDLE_TX)
    assert BackendCriteria(states=['idle in transaction'], min_state_age=1800).matches(row)
    assert not BackendCriteria(states=['idle in transaction'], min_state_age=3600).matches(row)
    assert not BackendCriteria(states=['active']).matches(row)
    assert not BackendCriteria(states=['idle in transaction'], datnames=['other']).matches(row)
    assert BackendCriteria(usenames=['app'], application_names=['api']).matches(row)
    assert not BackendCriteria(application_names=['worker']).matches(row)
    assert not BackendCriteria(wait_event_types=['Lock']).matches(row)
    assert BackendCriteria(pids=[1]).matches(row) and not BackendCriteria(pids=[2]).matches(row)


def test_age_filters_do_not_match_missing_timestamps():
    row = backend(1, xact_age=None)
    assert not BackendCriteria(min_xact_age=0).matches(row)


def test_query_pattern_is_a_regular_expression_search():
    row = backend(1, query="SELECT pg_tviews_refresh('orders')")
    assert BackendCriteria(query_pattern=re.compile(r'pg_tviews_refresh\(')).matches(row)
    assert not BackendCriteria(query_pattern=re.compile(r'^UPDATE')).matches(row)
    assert not BackendCriteria(query_pattern=re.compile('x')).matches(backend(2, query=None))


@pytest.mark.parametrize('overrides, reason', [
    (dict(is_self=True), 'own session'),
    (dict(backend_type='autovacuum worker'), 'not a client backend (autovacuum worker)'),
    (dict(backend_type='walsender'), 'not a client backend (walsender)'),
    (dict(protected_by_roles=['pg_monitor']), 'protected role (member of pg_monitor)'),
    (dict(is_replication_role=True, usename='replicator'), 'replication role replicator'),
    (dict(application_name='pg_dump'), 'protected application pg_dump'),
])
def test_protection_reasons(overrides, reason):
    assert protection_reason(backend(1, **overrides), ['pg_dump'], True) == reason


def test_protection_can_be_relaxed_for_replication_roles():
    row = backend(1, is_replication_role=True)
    assert protection_reason(row, [], protect_replication=False) is None
    assert protection_reason(backend(2), [], True) is None


def test_select_backends_splits_targets_and_protected():
    rows = [
        backend(1, **IDLE_TX),
        backend(2, application_name='postgres_exporter', **IDLE_TX),
        backend(3, is_self=True, **IDLE_TX),
        backend(4, backend_type='parallel worker', **IDLE_TX),
        backend(5, state='active'),
    ]
    criteria = BackendCriteria(states=['idle in transaction'])
    targets, protected = select_backends(rows, criteria, ['postgres_exporter'], True)
    assert [r['pid'] for r in targets] == [1]
    # The own session is never reported; a protected client is reported with its reason.
    assert [(r['pid'], reason) for r, reason in protected] == [(2, 'protected application postgres_exporter')]


class _Failed(Exception):
    pass


class _Module(object):
    def __init__(self, **params):
        self.params = params

    def fail_json(self, **kwargs):
        raise _Failed(kwargs['msg'])


def test_build_criteria_parses_ages_and_pattern():
    criteria = build_criteria(_Module(states=['active'], min_query_age='5m', query_pattern='refresh'))
    assert criteria.min_query_age == 300 and criteria.query_pattern.pattern == 'refresh'
    with pytest.raises(_Failed, match='query_pattern .* is not a valid regular expression'):
        build_criteria(_Module(query_pattern='(unclosed'))


@pytest.mark.parametrize('params, message', [
    (dict(query_pattern=''), 'query_pattern must not be empty'),
    (dict(min_state_age=''), 'min_state_age must not be empty'),
    (dict(min_xact_age=' '), 'min_xact_age must not be empty'),
    (dict(min_query_age='1e400'), 'min_query_age'),
    (dict(query_pattern='(a+)+$'), 'nests a repeat inside a repeat'),
])
def test_build_criteria_refuses_what_would_drop_or_widen_a_filter(params, message):
    # issue 9: an empty query_pattern matched everything and an empty min_*_age silently dropped its filter
    with pytest.raises(_Failed, match=message):
        build_criteria(_Module(**params))


def test_permission_problems_refuse_up_front():
    targets = [backend(1), backend(2, usename='other'), backend(3, usename='postgres', is_superuser=True)]
    plain = dict(name='app', superuser=False, signal_backend=False)
    assert permission_problems(plain, targets) == ['pid 2 belongs to other', 'pid 3 belongs to superuser postgres']
    signaller = dict(name='ops', superuser=False, signal_backend=True)
    assert permission_problems(signaller, targets) == ['pid 3 belongs to superuser postgres']
    assert permission_problems(dict(name='postgres', superuser=True, signal_backend=True), targets) == []


def test_session_view_rounds_ages_and_redacts_queries():
    view = session_view(backend(7, query="ALTER ROLE app PASSWORD 'hunter2'", state_age=12.345), 200)
    assert view['state_age_seconds'] == 12.3 and view['xact_age_seconds'] is None
    assert 'hunter2' not in view['query']


def test_describe_target_never_names_the_password():
    params = dict(login_host='db', login_port=5432, login_user='app', login_db='x', login_password='pw',
                  login_unix_socket=None)
    assert describe_target(params) == 'db:5432 as app (database x)'
    params['login_unix_socket'] = '/run/pg'
    assert describe_target(params) == 'socket /run/pg port 5432 as app (database x)'


LIMITS = dict(max_connections=100, superuser_reserved_connections=3, reserved_connections=0)
THRESHOLDS = dict(connections_warning_pct=90, connections_critical_pct=95, lock_waiters_warning=5,
                  lock_waiters_critical_pct=80, idle_in_transaction_age=1800, long_query_age=300)


def test_assess_ok_when_nothing_crosses_a_threshold():
    rows = [backend(i) for i in range(1, 11)] + [backend(99, is_self=True)]
    result = assess(rows, LIMITS, THRESHOLDS)
    assert result['status'] == 'ok' and result['reasons'] == []
    assert result['connections']['client_backends'] == 10
    assert result['connections']['utilisation_pct'] == 10.0
    assert result['connections']['available'] == 87
    assert result['by_database'] == {'scheduler': 10}


@pytest.mark.parametrize('count, status', [(89, 'ok'), (90, 'warning'), (95, 'critical')])
def test_assess_connection_thresholds_are_check_postgres_defaults(count, status):
    rows = [backend(i) for i in range(count)]
    result = assess(rows, LIMITS, THRESHOLDS)
    assert result['status'] == status
    if status != 'ok':
        assert 'max_connections 100' in result['reasons'][0]


def test_assess_finds_lock_waiters_blockers_and_old_transactions():
    rows = [
        backend(1, **IDLE_TX),
        backend(2, state='active', wait_event_type='Lock', wait_event='transactionid', blocked_by=[1],
                query_age=400.0, xact_age=400.0),
        backend(3, state='active', wait_event_type='Lock', wait_event='transactionid', blocked_by=[1, 2],
                query_age=20.0, xact_age=20.0),
        backend(4, datname='other', usename='report', application_name=''),
    ]
    result = assess(rows, LIMITS, THRESHOLDS)
    assert result['status'] == 'warning'
    assert [s['pid'] for s in result['lock_waiters']] == [2, 3]
    assert [(c['blocker']['pid'], c['blocked_pids']) for c in result['blocking_chains']] == [(1, [2, 3]), (2, [3])]
    assert [s['pid'] for s in result['oldest_transactions']] == [1, 2, 3]
    assert [s['pid'] for s in result['long_idle_in_transaction']] == [1]
    assert [s['pid'] for s in result['long_running_queries']] == [2]
    assert result['connections']['by_state']['idle in transaction'] == 1
    assert result['by_application'] == {'api': 3, '': 1}
    assert '1 session idle in transaction for at least 30m' in result['reasons']
    assert '1 query running for at least 5m' in result['reasons']


def test_assess_lock_waiters_critical_at_share_of_max_connections():
    rows = [backend(i, state='active', wait_event_type='Lock') for i in range(81)]
    limits = dict(LIMITS, max_connections=100)
    result = assess(rows, limits, dict(THRESHOLDS, connections_warning_pct=100, connections_critical_pct=100))
    assert result['status'] == 'critical'
    assert result['reasons'] == ['81 sessions waiting on locks (critical at 80.0)']


def test_assess_databases_filter_limits_breakdowns_not_utilisation():
    rows = [backend(1), backend(2, datname='other')]
    result = assess(rows, LIMITS, THRESHOLDS, databases=['scheduler'])
    assert result['connections']['client_backends'] == 1
    assert result['connections']['utilisation_pct'] == 2.0


def test_sessions_hidden_from_the_role_are_protected_and_counted():
    from ansible_collections.incident.response.plugins.module_utils._postgres import hidden_sessions_warning
    hidden = backend(5, backend_type=None, state=None, application_name=None, query='<insufficient privilege>')
    background = backend(6, backend_type=None, datname=None, usename=None, state=None)
    assert protection_reason(hidden, [], True).startswith('details hidden from this role')
    targets, protected = select_backends([hidden, background], BackendCriteria(pids=[5, 6]), [], True)
    assert targets == [] and [r['pid'] for r, _reason in protected] == [5]
    assert 'cannot see the state and query of 1 sessions' in hidden_sessions_warning([hidden, background], 'app')
    assert hidden_sessions_warning([backend(1)], 'app') is None
