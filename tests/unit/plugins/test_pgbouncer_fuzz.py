"""Hypothesis over the argument handling of pgbouncer_info and pgbouncer_pool (the pattern of test_fuzz_args.py).

Every input ends in a result or one ``msg``, never a traceback: against a port where nothing listens
(127.0.0.1:1), and in check mode against the private, real PgBouncer of private_pgbouncer.py, whose state
(SHOW DATABASES) the check runs must leave as it was.
"""
import psycopg2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from module_harness import run
from private_pgbouncer import PrivatePgBouncer
from test_fuzz_args import FUZZ, assert_one_message_or_result, options

from ansible_collections.incident.response.plugins.modules import pgbouncer_info, pgbouncer_pool

CONNECTION = ['user', 'password', 'connect_timeout', 'command_timeout']
SPECS = dict(
    pgbouncer_info=(pgbouncer_info, CONNECTION + [
        'databases', 'max_wait_warning', 'max_wait_critical', 'utilisation_warning_pct', 'utilisation_critical_pct',
        'unreachable']),
    pgbouncer_pool=(pgbouncer_pool, CONNECTION + [
        'action', 'databases', 'allow_kill', 'resume_after_kill', 'wait_timeout']),
)
STEERING = dict(
    pgbouncer_pool=dict(action=st.sampled_from(['reconnect', 'pause', 'resume', 'kill', 'wait_close']),
                        databases=st.one_of(st.just(['appdb']), st.lists(st.text(max_size=8), max_size=2))),
)


@pytest.fixture(scope='module')
def pgbouncer():
    server = PrivatePgBouncer().start()
    yield server
    server.stop()


def databases_state(server):
    conn = psycopg2.connect(dbname='pgbouncer', **dict((('host', server.base), ('port', 6432), ('user', 'ir_admin'))))
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute('SHOW DATABASES')
        return sorted(row for row in cur.fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize('name', sorted(SPECS))
def test_no_pgbouncer_every_input_ends_in_one_message(name):
    module, names = SPECS[name]

    @FUZZ
    @given(options(module, names, **STEERING.get(name, {})))
    def check(args):
        args = dict(args, host='127.0.0.1', port=1, _ansible_check_mode=True)
        assert_one_message_or_result(*run(module, args))
    check()


@pytest.mark.parametrize('name', sorted(SPECS))
def test_private_pgbouncer_check_mode_every_input_ends_in_a_result_or_one_message(pgbouncer, name):
    module, names = SPECS[name]
    names = [n for n in names if n not in ('user', 'password', 'unreachable')]
    before = databases_state(pgbouncer)

    @FUZZ
    @given(options(module, names, **STEERING.get(name, {})))
    def check(args):
        args = dict(args, _ansible_check_mode=True, **pgbouncer.connection())
        assert_one_message_or_result(*run(module, args))
    check()
    assert databases_state(pgbouncer) == before, 'check mode changed PgBouncer'
