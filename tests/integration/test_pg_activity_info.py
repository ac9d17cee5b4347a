"""pg_activity_info against the lab's PostgreSQL."""
import time

import pytest

pytestmark = pytest.mark.integration


def test_reports_states_lock_waits_blockers_and_old_transactions(ansible, lab, sessions):
    idle_tx = sessions.idle_in_transaction(2, 'it_info_idle')
    blocker, blocker_pid = sessions.open('it_info_blocker', autocommit=False)
    with blocker.cursor() as cur:
        cur.execute('UPDATE task SET enabled = enabled WHERE id = (SELECT min(id) FROM task)')
    waiters = sessions.running(
        2, 'it_info_waiter', sql='UPDATE task SET enabled = enabled WHERE id = (SELECT min(id) FROM task)')
    time.sleep(1.5)
    before = lab.activity()

    rc, result, out = ansible.module('pg_activity_info', dict(idle_in_transaction_age='1s', lock_waiters_warning=2),
                                     check=True)
    assert rc == 0, out
    assert result['changed'] is False
    assert result['server_version'].split('.')[0] in ('13', '14', '15', '16', '17', '18')
    assert result['status'] == 'warning'
    assert '2 sessions waiting on locks (warning at 2)' in result['reasons']
    assert sorted(s['pid'] for s in result['lock_waiters']) == sorted(waiters)
    chains = dict((c['blocker']['pid'], c['blocked_pids']) for c in result['blocking_chains'])
    assert blocker_pid in chains and set(chains[blocker_pid]) <= set(waiters)
    long_idle = {s['pid'] for s in result['long_idle_in_transaction']}
    assert set(idle_tx) | {blocker_pid} <= long_idle
    assert result['connections']['by_state']['idle in transaction'] >= 3
    assert result['connections']['max_connections'] == int(lab.query('SHOW max_connections')[0][0])
    assert result['by_application']['it_info_waiter'] == 2
    assert result['oldest_transactions'][0]['xact_age_seconds'] >= result['oldest_transactions'][-1]['xact_age_seconds']
    assert lab.activity() == before, 'a read-only module changed pg_stat_activity'

    blocker.rollback()


def test_thresholds_drive_the_status(ansible, lab):
    rc, result, out = ansible.module('pg_activity_info', dict(connections_warning_pct=0, connections_critical_pct=100))
    assert rc == 0, out
    assert result['status'] == 'warning'
    assert result['reasons'][0].startswith('connections at ')
    rc, result, out = ansible.module('pg_activity_info', dict(databases=['no_such_db']))
    assert rc == 0 and result['connections']['client_backends'] == 0, out


def test_monitoring_role_can_assess(ansible, lab_env, sessions):
    victims = sessions.idle_in_transaction(1, 'it_info_seen')
    as_monitoring = dict(PGUSER=lab_env['LAB_PG_MONITOR_USER'], PGPASSWORD=lab_env['LAB_PG_MONITOR_PASSWORD'])
    rc, result, out = ansible.module('pg_activity_info', dict(idle_in_transaction_age=0), env=as_monitoring)
    assert rc == 0, out
    seen = [s for s in result['long_idle_in_transaction'] if s['pid'] == victims[0]]
    assert seen and 'INSERT INTO audit_log' in seen[0]['query']
