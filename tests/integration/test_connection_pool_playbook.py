"""connection_pool_exhausted.yml on a fault caused by gameday: check, apply, idempotent check and apply."""
import time

import pytest

pytestmark = pytest.mark.integration

PLAYBOOK = 'playbooks/connection_pool_exhausted.yml'
SESSIONS = 4
# incident_id: the re-runs join the incident of the first run (a new incident would be a change)
VARS = dict(pg_connections_idle_in_transaction_age='3s', pg_connections_databases=['scheduler'],
            incident_id='INC-T-POOL')


@pytest.fixture
def idle_fault(ansible, lab):
    rc, out, _recap = ansible.playbook('playbooks/gameday.yml',
                                       dict(fault='idle_in_transaction', gameday_sessions=SESSIONS))
    assert rc == 0, out
    yield
    rc, out, _recap = ansible.playbook('playbooks/gameday.yml', dict(fault='idle_in_transaction', gameday_action='clear'))
    assert rc == 0, out


def test_playbook_in_four_steps(ansible, lab, idle_fault):
    victims = lab.pids('gameday_idle_tx')
    protected = lab.pids('postgres_exporter')
    assert len(victims) == SESSIONS and len(protected) == 1
    time.sleep(4)
    before = lab.activity()
    audit_before = lab.table_digest('audit_log')

    rc, out, recap = ansible.playbook(PLAYBOOK, VARS, check=True)
    assert rc == 0, out
    assert out.count('WOULD TERMINATE pid') == SESSIONS
    for pid in victims:
        assert 'WOULD TERMINATE pid %d:' % pid in out
    assert 'DRY RUN (--check): nothing was changed' in out
    assert 'would terminate %d backends; 1 protected backend left alone' % SESSIONS in out
    assert lab.activity() == before, '--check changed pg_stat_activity'
    assert lab.table_digest('audit_log') == audit_before

    rc, out, recap = ansible.playbook(PLAYBOOK, VARS)
    assert rc == 0, out
    assert recap['changed'] >= 1 and recap['failed'] == 0
    assert 'terminated %d backends (0 still present' % SESSIONS in out
    assert 'Connections are back under the thresholds.' in out
    assert lab.pids('gameday_idle_tx') == []
    assert lab.pids('postgres_exporter') == protected
    assert lab.table_digest('audit_log') == audit_before, 'terminated transactions must roll back'

    for check in (True, False):
        rc, out, recap = ansible.playbook(PLAYBOOK, VARS, check=check)
        assert rc == 0, out
        assert recap['changed'] == 0, out
        assert 'no backend matches; nothing to terminate' in out


def test_playbook_fails_closed_over_the_cap(ansible, lab, idle_fault):
    time.sleep(4)
    before = lab.activity()
    rc, out, recap = ansible.playbook(PLAYBOOK, dict(VARS, pg_connections_max_backends=2))
    assert rc != 0
    assert 'refusing to terminate %d backends: more than max_backends=2 match' % SESSIONS in out
    assert 'Traceback' not in out
    assert lab.activity() == before
