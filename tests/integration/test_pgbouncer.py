"""pgbouncer_info and pgbouncer_pool against the lab's real PgBouncer (127.0.0.1:56432, pool of 3 per user).

pgbouncer_pool in four steps (check, apply, idempotent check, idempotent apply) with SHOW POOLS / SHOW DATABASES
compared before and after the check step; the bounded waits (PAUSE, WAIT_CLOSE) on a real transaction that holds
its server connection; bad input: one clear message, never a traceback.
"""
import pytest

from conftest import assert_clean_failure
from pgbouncer_helpers import Bouncer

pytestmark = pytest.mark.integration


@pytest.fixture
def bouncer(lab_env):
    fixture = Bouncer(lab_env)
    fixture.normal()
    yield fixture
    fixture.close()
    fixture.normal()


def four_steps(ansible, bouncer, args, expect_command, changed_state):
    """check (state unchanged), apply (changed_state(bouncer) true), idempotent check and apply (changed false)."""
    before = bouncer.state()
    rc, result, out = ansible.module('pgbouncer_pool', bouncer.args(**args), check=True)
    assert rc == 0, out
    assert result['changed'] is True and expect_command in result['commands'], result
    assert all(a['done'] is False for a in result['actions'])
    assert result['summary'].startswith('would send ')
    assert bouncer.state() == before, '--check changed PgBouncer'

    rc, result, out = ansible.module('pgbouncer_pool', bouncer.args(**args))
    assert rc == 0, out
    assert result['changed'] is True and expect_command in result['commands'], result
    assert all(a['done'] is True for a in result['actions'])
    bouncer.wait_for(lambda: changed_state(bouncer))

    for check in (True, False):
        rc, result, out = ansible.module('pgbouncer_pool', bouncer.args(**args), check=check)
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == [] and result['commands'] == [], result
        assert 'nothing to do' in result['summary']
    return result


def test_info_on_a_quiet_pool(ansible, bouncer):
    conn = bouncer.client()
    conn.cursor().execute('SELECT 1')
    rc, result, out = ansible.module('pgbouncer_info', bouncer.args(databases=['scheduler']))
    assert rc == 0, out
    assert result['status'] == 'ok', result['reasons']
    assert result['version'].startswith('PgBouncer ')
    assert set(result['databases']) == {'scheduler'}
    assert result['databases']['scheduler']['pool_size'] == 3 and result['databases']['scheduler']['paused'] is False
    pool = [p for p in result['pools'] if p['user'] == bouncer.lab_env['LAB_PG_APP_USER']][0]
    assert pool['cl_waiting'] == 0 and pool['pool_mode'] == 'transaction' and pool['exhausted'] is False
    assert result['clients']['scheduler']['by_application'].get('pytest-pgbouncer') == 1
    assert result['totals']['cl_waiting'] == 0
    assert bouncer.password not in out


def test_pause_and_resume_in_four_steps(ansible, bouncer):
    conn = bouncer.client()
    conn.cursor().execute('SELECT 1')  # a client with a server connection behind it
    four_steps(ansible, bouncer, dict(action='pause', databases=['scheduler']), 'PAUSE "scheduler"',
               lambda b: b.paused() == 1)
    rc, result, out = ansible.module('pgbouncer_info', bouncer.args())
    assert rc == 0 and result['status'] == 'warning', out
    assert 'database scheduler is paused (PAUSE): its clients wait until RESUME' in result['reasons']
    result = four_steps(ansible, bouncer, dict(action='resume', databases=['scheduler']), 'RESUME "scheduler"',
                        lambda b: b.paused() == 0)
    assert result['summary'] == 'scheduler is not paused; nothing to do'
    conn.cursor().execute('SELECT 1')  # the client goes on after the resume


def test_reconnect_in_four_steps_with_diff(ansible, bouncer):
    conn = bouncer.client()
    conn.cursor().execute('SELECT 1')
    bouncer.wait_for(lambda: [s for s in bouncer.show('SERVERS') if s['database'] == 'scheduler'])
    rc, result, out = ansible.module('pgbouncer_pool', bouncer.args(action='reconnect', databases=['scheduler']),
                                     check=True, diff=True)
    assert rc == 0 and result['changed'] is True, out
    # --diff shows each database's state before and after (the tree drops 'diff': read the output)
    assert '--- before' in out and '+++ after' in out and 'close_needed' in out
    four_steps(ansible, bouncer, dict(action='reconnect', databases=['scheduler']), 'RECONNECT "scheduler"',
               lambda b: all(s['close_needed'] for s in b.show('SERVERS') if s['database'] == 'scheduler'))
    conn.cursor().execute('SELECT 1')  # clients stay connected through a RECONNECT


def test_kill_in_four_steps_drops_the_clients_and_resumes(ansible, bouncer):
    import psycopg2  # pylint: disable=import-outside-toplevel
    conn = bouncer.client(application_name='pytest-kill-victim')
    conn.cursor().execute('SELECT 1')
    result = four_steps(ansible, bouncer, dict(action='kill', databases=['scheduler'], allow_kill=True),
                        'KILL "scheduler"',
                        lambda b: not [c for c in b.show('CLIENTS') if c['database'] == 'scheduler'])
    assert result['summary'] == 'scheduler has no connection to kill; nothing to do'
    assert bouncer.paused() == 0, 'KILL leaves the database paused: the module resumes it'
    with pytest.raises(psycopg2.Error):
        conn.cursor().execute('SELECT 1')
    bouncer.client().cursor().execute('SELECT 1')  # new clients get in at once


def test_pause_is_bounded_and_undone(ansible, bouncer):
    holder = bouncer.client(autocommit=False, application_name='pytest-holds-a-server')
    holder.cursor().execute('SELECT 1')  # in a transaction: its server connection is held
    rc, result, out = ansible.module('pgbouncer_pool', bouncer.args(action='pause', databases=['scheduler'],
                                                                    wait_timeout='2s'))
    assert_clean_failure(rc, result, out, 'PAUSE "scheduler" did not complete within wait_timeout 2s',
                         'RESUME was sent, the database runs as before')
    assert bouncer.paused() == 0
    holder.cursor().execute('SELECT 1')  # the transaction goes on
    holder.rollback()


def test_wait_close_is_bounded_then_completes(ansible, bouncer):
    holder = bouncer.client(autocommit=False, application_name='pytest-holds-a-server')
    holder.cursor().execute('SELECT 1')
    bouncer.command('RECONNECT "scheduler"')
    args = bouncer.args(action='wait_close', databases=['scheduler'], wait_timeout='2s')
    rc, result, out = ansible.module('pgbouncer_pool', args)
    assert_clean_failure(rc, result, out, 'WAIT_CLOSE "scheduler" did not complete within wait_timeout 2s')
    holder.rollback()  # the server connection is released, and closed
    rc, result, out = ansible.module('pgbouncer_pool', dict(args, wait_timeout='20s'))
    assert rc == 0, out
    assert not [s for s in bouncer.show('SERVERS') if s['database'] == 'scheduler' and s['close_needed']]
    rc, result, out = ansible.module('pgbouncer_pool', args)
    assert rc == 0 and result['changed'] is False, out


# ------------------------------------------------------------------------------------------------ bad input
def test_pgbouncer_down(ansible, bouncer):
    rc, result, out = ansible.module('pgbouncer_info', dict(host='127.0.0.1', port=1, user='x', password='pw'))
    assert_clean_failure(rc, result, out, 'Unable to connect to PgBouncer at 127.0.0.1:1 as x (admin console)')
    rc, result, out = ansible.module('pgbouncer_info', dict(host='127.0.0.1', port=1, unreachable='unknown'))
    assert rc == 0, out
    assert result['status'] == 'unknown' and result['reasons'][0].startswith('Unable to connect to PgBouncer')
    rc, result, out = ansible.module('pgbouncer_pool', dict(host='127.0.0.1', port=1, action='pause',
                                                            databases=['scheduler']))
    assert_clean_failure(rc, result, out, 'Unable to connect to PgBouncer at 127.0.0.1:1')


def test_wrong_admin_password(ansible, bouncer):
    before = bouncer.state()
    secret = 'not-the-password-%d' % bouncer.port
    rc, result, out = ansible.module('pgbouncer_pool', dict(bouncer.args(action='pause', databases=['scheduler']),
                                                            password=secret))
    assert_clean_failure(rc, result, out, 'Unable to connect to PgBouncer at %s:%s as %s'
                         % (bouncer.host, bouncer.port, bouncer.user))
    assert secret not in out and bouncer.password not in out
    assert bouncer.state() == before


def test_unknown_database(ansible, bouncer):
    before = bouncer.state()
    rc, result, out = ansible.module('pgbouncer_pool', bouncer.args(action='pause', databases=['nosuchdb']))
    assert_clean_failure(rc, result, out, 'does not know the database nosuchdb (it serves: scheduler); nothing was sent')
    rc, result, out = ansible.module('pgbouncer_info', bouncer.args(databases=['nosuchdb']))
    assert_clean_failure(rc, result, out, 'does not know the database nosuchdb')
    assert bouncer.state() == before


@pytest.mark.parametrize('args, fragment', [
    (dict(action='kill', allow_kill=True), 'databases must name at least one PgBouncer database'),
    (dict(action='kill', allow_kill=True, databases=[]), 'never sends a command for all databases at once'),
    (dict(action='pause', databases=['pgbouncer']), "it is PgBouncer's admin console, not a pool"),
    (dict(action='kill', databases=['scheduler']), 'set allow_kill: true'),
])
def test_refusals_send_nothing(ansible, bouncer, args, fragment):
    before = bouncer.state()
    rc, result, out = ansible.module('pgbouncer_pool', bouncer.args(**args))
    assert_clean_failure(rc, result, out, fragment)
    assert bouncer.state() == before
