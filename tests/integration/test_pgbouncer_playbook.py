"""The pgbouncer_pool_exhausted gameday fault on the lab's real PgBouncer, and connection_pool_exhausted.yml with
PgBouncer configured: the plan says PgBouncer's side is exhausted (not the server's), the cure ends the
transactions that hold the pool's server connections, clients waiting drop to zero and the protected
application's session survives; check, apply, idempotent check, idempotent apply; the gentle reset task file."""
import json
import os
import time

import pytest

from conftest import LAB_DIR
from pgbouncer_helpers import Bouncer

pytestmark = pytest.mark.integration

PLAYBOOK = 'playbooks/connection_pool_exhausted.yml'
FAULT = 'pgbouncer_pool_exhausted'


@pytest.fixture
def bouncer(lab_env):
    fixture = Bouncer(lab_env)
    fixture.normal()
    yield fixture
    fixture.close()
    fixture.normal()


def pool_vars(bouncer, **extra):
    return dict(extra, pg_connections_idle_in_transaction_age='3s', pg_connections_databases=['scheduler'],
                pg_connections_pgbouncer_host=bouncer.host, pg_connections_pgbouncer_port=str(bouncer.port),
                pg_connections_pgbouncer_user=bouncer.user, pg_connections_pgbouncer_password=bouncer.password)


def holder_state():
    with open(os.path.join(LAB_DIR, 'gameday', FAULT + '.ready')) as handle:
        return json.load(handle)


@pytest.fixture
def exhausted(gameday, bouncer):
    run = gameday(FAULT)
    assert run.rc == 0, run
    assert 'clients idle in transaction' in run.output
    yield holder_state()
    run = gameday(FAULT, action='clear')
    assert run.rc == 0, run


def test_the_fault_exhausts_the_pool_and_is_idempotent(ansible, bouncer, gameday, exhausted):
    app = bouncer.lab_env['LAB_PG_APP_USER']
    pool = bouncer.pool(user=app)
    assert pool['cl_waiting'] >= 3 and pool['sv_active'] == 3, pool
    assert len(exhausted['sessions']) == 3 and len(exhausted['protected']) == 1
    rc, result, out = ansible.module('pgbouncer_info', bouncer.args(databases=['scheduler'], max_wait_warning='1ms',
                                                                    max_wait_critical='2ms'))
    assert rc == 0, out
    assert result['status'] == 'critical'
    assert result['totals']['exhausted_pools'] == ['scheduler/%s' % app]
    assert any(r.startswith('pool scheduler/%s: 3 clients waiting' % app) for r in result['reasons']), result
    again = gameday(FAULT)  # causing it again changes nothing
    assert again.rc == 0 and again.recap['changed'] == 0, again


def test_playbook_says_which_side_cures_and_spares_the_protected_session(ansible, lab, bouncer, exhausted):
    protected = exhausted['protected']
    assert lab.pids('postgres_exporter') == protected
    time.sleep(4)  # the holders' transactions pass pg_connections_idle_in_transaction_age (3s)
    before, activity, audit = bouncer.state(), lab.activity(), lab.table_digest('audit_log')
    variables = pool_vars(bouncer, incident_id='INC-T-PGBOUNCER')

    run = ansible.playbook(PLAYBOOK, variables, check=True)
    assert run.rc == 0, run
    assert 'Exhausted side: PGBOUNCER' in run.output
    assert 'The PgBouncer pool is exhausted, not the server' in run.output
    assert 'would terminate 3 backends; 1 protected backend left alone' in run.output
    for pid in exhausted['sessions']:
        assert 'WOULD TERMINATE pid %d:' % pid in run.output
    assert bouncer.state() == before, '--check changed PgBouncer'
    assert lab.activity() == activity, '--check changed pg_stat_activity'
    assert bouncer.password not in run.output

    run = ansible.playbook(PLAYBOOK, variables)
    assert run.rc == 0, run
    assert 'terminated 3 backends' in run.output
    assert 'No client waits in PgBouncer.' in run.output
    assert 'PgBouncer clients waiting: before 3, after 0' in run.output
    assert bouncer.pool(user=bouncer.lab_env['LAB_PG_APP_USER'])['cl_waiting'] == 0
    assert lab.pids('postgres_exporter') == protected, 'the protected session must survive'
    assert holder_state()['protected'] == protected
    assert lab.table_digest('audit_log') == audit, 'the ended transactions roll back'
    assert bouncer.password not in run.output

    for check in (True, False):
        run = ansible.playbook(PLAYBOOK, variables, check=check)
        assert run.rc == 0, run
        assert run.recap['changed'] == 0, run
        assert 'Exhausted side: NONE' in run.output


def test_reset_task_file_reconnects_the_exhausted_pool(ansible, lab, bouncer, exhausted):
    """pgbouncer_reset.yml (the include for the emergency path): check mode shows RECONNECT, the run sends it."""
    playbook = os.path.join('tests', 'integration', 'files', 'pgbouncer_reset.yml')
    variables = pool_vars(bouncer, pg_connections_pgbouncer_reset='reconnect')
    before = bouncer.state()
    run = ansible.playbook(playbook, variables, check=True)
    assert run.rc == 0, run
    assert 'PgBouncer reset (reconnect): would send RECONNECT "scheduler"' in run.output
    assert bouncer.state() == before
    run = ansible.playbook(playbook, variables)
    assert run.rc == 0, run
    assert 'PgBouncer reset (reconnect): sent RECONNECT "scheduler"' in run.output
    # The holders' server connections are marked to close when released; PgBouncer does not count marked ones
    # against pool_size, so the waiting clients get new server connections at once.
    held = [s for s in bouncer.show('SERVERS') if s['database'] == 'scheduler'
            and s['user'] == bouncer.lab_env['LAB_PG_APP_USER'] and s['state'] == 'active']
    assert len(held) == 3 and all(s['close_needed'] for s in held), held
    bouncer.wait_for(lambda: bouncer.pool(user=bouncer.lab_env['LAB_PG_APP_USER'])['cl_waiting'] == 0)
    assert lab.pids('postgres_exporter') == exhausted['protected'], 'RECONNECT disconnects no client'
    run = ansible.playbook(playbook, dict(variables, pg_connections_pgbouncer_reset='kill',
                                          pg_connections_pgbouncer_reset_databases=['scheduler']))
    assert run.rc != 0 and 'set allow_kill: true' in run.output and 'Traceback' not in run.output
