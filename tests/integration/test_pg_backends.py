"""pg_backends against the lab's PostgreSQL: check, apply, idempotent check, idempotent apply."""
import time

import pytest

from conftest import assert_clean_failure

pytestmark = pytest.mark.integration


def without(activity, *pids):
    return dict((pid, row) for pid, row in activity.items() if pid not in pids)


TERMINATE_IDLE_TX = dict(action='terminate', states=['idle in transaction'], min_state_age='1s',
                         usenames=['app', 'monitoring'], datnames=['scheduler'])


def test_terminate_idle_in_transaction_in_four_steps(ansible, lab, sessions):
    victims = sessions.idle_in_transaction(3, 'it_victim')
    protected = sessions.idle_in_transaction(1, 'postgres_exporter', role='monitoring')
    bystander = sessions.idle(1, 'it_bystander')
    time.sleep(2)
    # Idle in transaction like the victims, but its state age stays under 0.2 s however long a module takes to
    # start (a fixed "young" session aged past min_state_age on a busy machine and was counted as a victim).
    young = sessions.kept_young('it_young')
    audit_before = lab.table_digest('audit_log')
    activity_before = without(lab.activity(), young)

    # 1. check: the exact plan, nothing signalled
    rc, result, out = ansible.module('pg_backends', TERMINATE_IDLE_TX, check=True, diff=True)
    assert rc == 0, out
    assert young not in {b['pid'] for b in result['backends']}, 'the young session was counted as a victim'
    assert result['changed'] is True
    assert sorted(b['pid'] for b in result['backends']) == sorted(victims)
    assert [p['pid'] for p in result['protected']] == protected
    assert result['protected'][0]['reason'] == 'protected role (member of pg_monitor)'
    assert result['signalled'] == [] and all(a['done'] is False for a in result['actions'])
    assert {a['target'] for a in result['actions']} == {'pid %d' % p for p in victims}
    first = result['backends'][0]
    assert first['usename'] == 'app' and first['datname'] == 'scheduler' and first['state'] == 'idle in transaction'
    assert first['state_age_seconds'] >= 1 and 'INSERT INTO audit_log' in first['query']
    # --diff shows the matching pids before and (predicted) after
    assert '--- before' in out and '+++ after' in out and '+    pids: []' in out
    for pid in victims:
        assert '-    - %d' % pid in out
    assert result['summary'].startswith('would terminate 3 backends')
    assert without(lab.activity(), young) == activity_before, 'check mode changed pg_stat_activity'
    assert lab.table_digest('audit_log') == audit_before

    # 2. apply: exactly those, and they are gone
    rc, result, out = ansible.module('pg_backends', TERMINATE_IDLE_TX)
    assert rc == 0, out
    assert result['changed'] is True
    assert sorted(result['signalled']) == sorted(victims)
    assert result['remaining'] == []
    assert all(a['done'] for a in result['actions'])
    assert young not in set(result['signalled']), 'the young session was terminated'
    now = without(lab.activity(), young)
    assert young in lab.activity()
    assert not set(victims) & set(now)
    for pid in protected + bystander:
        assert pid in now and now[pid] == activity_before[pid], 'pid %s was touched' % pid
    # their transactions were rolled back, nothing else changed
    assert lab.table_digest('audit_log') == audit_before
    assert any('pg_terminate_backend' in q for q in result['executed_queries'])

    # 3. idempotent check and 4. idempotent apply
    for check in (True, False):
        rc, result, out = ansible.module('pg_backends', TERMINATE_IDLE_TX, check=check)
        assert rc == 0, out
        assert result['changed'] is False
        assert result['backends'] == [] and result['actions'] == []
        assert result['summary'].startswith('no backend matches')
    assert set(without(lab.activity(), young)) == set(now)


def test_cancel_long_queries_in_four_steps(ansible, lab, sessions):
    runners = sessions.running(2, 'it_long_query')
    other = sessions.running(1, 'it_short_query', sql='SELECT pg_sleep(600) /* other */')
    time.sleep(1.5)
    args = dict(action='cancel', states=['active'], min_query_age='1s', query_pattern=r'pg_sleep\(600\)$',
                application_names=['it_long_query', 'it_short_query'])
    before = lab.activity()

    rc, result, out = ansible.module('pg_backends', args, check=True)
    assert rc == 0, out
    assert result['changed'] is True and sorted(b['pid'] for b in result['backends']) == sorted(runners)
    assert lab.activity() == before

    rc, result, out = ansible.module('pg_backends', args)
    assert rc == 0, out
    assert sorted(result['signalled']) == sorted(runners) and result['remaining'] == []
    deadline = time.time() + 10
    while time.time() < deadline and len(sessions.errors) < 2:
        time.sleep(0.2)
    assert sorted(sessions.errors) == sorted(runners)
    assert set(sessions.errors.values()) == {'QueryCanceled'}
    # cancelled, not terminated: the sessions are still connected; the other query still runs
    states = dict(lab.query('SELECT pid, state FROM pg_stat_activity WHERE pid = ANY(%s)', (runners + other,)))
    assert states[other[0]] == 'active'
    assert all(states[p] == 'idle' for p in runners)

    for check in (True, False):
        rc, result, out = ansible.module('pg_backends', args, check=check)
        assert rc == 0 and result['changed'] is False, out


def test_refuses_more_than_max_backends_and_touches_nothing(ansible, lab, sessions):
    victims = sessions.idle_in_transaction(3, 'it_capped')
    time.sleep(1.5)
    before = lab.activity()
    rc, result, out = ansible.module('pg_backends', dict(TERMINATE_IDLE_TX, max_backends=2))
    assert_clean_failure(rc, result, out, 'refusing to terminate 3 backends', 'max_backends=2',
                         *[str(p) for p in victims])
    assert lab.activity() == before


def test_protected_application_survives_even_when_named(ansible, lab, sessions):
    guarded = sessions.idle_in_transaction(1, 'pg_dump')
    time.sleep(1.5)
    rc, result, out = ansible.module('pg_backends', dict(action='terminate', application_names=['pg_dump']))
    assert rc == 0 and result['changed'] is False, out
    assert result['protected'][0]['pid'] == guarded[0]
    assert result['protected'][0]['reason'] == 'protected application pg_dump'
    assert lab.pids('pg_dump') == guarded


def test_a_role_without_signal_rights_is_refused_before_anything_happens(ansible, lab, lab_env, sessions):
    own = sessions.idle_in_transaction(1, 'it_perm')
    admin = sessions.idle_in_transaction(1, 'it_perm', role='admin')
    time.sleep(1.5)
    before = lab.activity()
    # monitoring sees every session (pg_monitor) but may signal none of other roles'
    as_monitoring = dict(PGUSER=lab_env['LAB_PG_MONITOR_USER'], PGPASSWORD=lab_env['LAB_PG_MONITOR_PASSWORD'])
    rc, result, out = ansible.module('pg_backends', dict(action='terminate', application_names=['it_perm']),
                                     env=as_monitoring)
    assert_clean_failure(rc, result, out, 'role monitoring may not terminate 2 of the matching backends',
                         'pid %d belongs to app' % own[0], 'pid %d belongs to superuser' % admin[0])
    assert lab.activity() == before


def test_sessions_hidden_from_the_role_are_reported_not_guessed(ansible, lab, lab_env, sessions):
    admin = sessions.idle_in_transaction(1, 'it_hidden', role='admin')
    as_app = dict(PGUSER=lab_env['LAB_PG_APP_USER'], PGPASSWORD=lab_env['LAB_PG_APP_PASSWORD'])
    before = lab.activity()
    rc, result, out = ansible.module('pg_backends', dict(action='terminate', pids=admin), env=as_app)
    assert rc == 0, out
    assert result['changed'] is False and result['backends'] == []
    assert result['protected'][0]['pid'] == admin[0]
    assert 'hidden from this role' in result['protected'][0]['reason']
    assert 'cannot see the state and query of' in out
    assert lab.activity() == before


def test_empty_query_pattern_and_empty_ages_are_refused(ansible, lab, sessions):
    """issue 9: an empty query_pattern matched everything and still counted as a filter; an empty min_*_age
    silently dropped that filter. Both refused before anything is signalled, on the lab's PostgreSQL."""
    victims = sessions.idle_in_transaction(2, 'it_empty_filters')
    cases = [(dict(TERMINATE_IDLE_TX, query_pattern=''), 'query_pattern'),
             (dict(TERMINATE_IDLE_TX, min_state_age=''), 'min_state_age'),
             (dict(TERMINATE_IDLE_TX, min_xact_age=''), 'min_xact_age'),
             (dict(TERMINATE_IDLE_TX, min_query_age=''), 'min_query_age')]
    for args, fragment in cases:
        for check in (True, False):
            rc, result, out = ansible.module('pg_backends', args, check=check)
            assert_clean_failure(rc, result, out, fragment)
            assert sorted(victims) == sorted(lab.pids('it_empty_filters')), (args, check)
    # the other sessions of the shared lab come and go: the test's own are the ones that must be untouched
    assert sorted(victims) == sorted(lab.pids('it_empty_filters'))
