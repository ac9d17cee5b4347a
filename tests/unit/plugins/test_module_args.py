"""Argument handling of the modules: bad input ends in one clear message, before any connection."""
import pytest

from module_harness import Exited, Failed, run

from ansible_collections.incident.response.plugins.module_utils import _postgres
from ansible_collections.incident.response.plugins.modules import pg_activity_info, pg_backends


@pytest.fixture
def no_connection(monkeypatch):
    """Any attempt to reach a server is a test failure: argument errors must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError('the module tried to connect before validating its arguments')
    monkeypatch.setattr(_postgres.PgClient, '__init__', refuse)


@pytest.mark.parametrize('args, message', [
    (dict(action='terminate'), 'needs at least one filter'),
    (dict(action='terminate', query_pattern='(unclosed'), "query_pattern '(unclosed' is not a valid regular"),
    (dict(action='cancel', min_state_age='-5m'), 'min_state_age: must not be negative'),
    (dict(action='cancel', min_xact_age='soon'), "min_xact_age: 'soon' is not a duration"),
    (dict(action='cancel', query_pattern=''), 'query_pattern must not be empty'),
    (dict(action='cancel', states=['idle'], min_state_age=''), 'min_state_age must not be empty'),
    (dict(action='cancel', query_pattern='(a+)+$'), 'nests a repeat inside a repeat'),
    (dict(action='cancel', states=['idle'], max_backends=0), 'max_backends must be at least 1'),
    (dict(action='cancel', states=['idle'], wait_timeout=-1), 'wait_timeout must not be negative'),
    (dict(action='cancel', states=['waiting']), 'value of states must be one or more of'),
    (dict(action='kill', states=['idle']), 'value of action must be one of'),
    (dict(action='cancel', wait_event_types=['lock']), 'value of wait_event_types must be one or more of'),
    (dict(states=['idle']), 'missing required arguments: action'),
])
def test_pg_backends_bad_input_fails_with_one_clear_message(no_connection, args, message):
    kind, result = run(pg_backends, args)
    assert kind is Failed
    assert message in result['msg']


@pytest.mark.parametrize('args, message', [
    (dict(connections_warning_pct=150), 'connections_warning_pct must be between 0 and 100'),
    (dict(connections_warning_pct=96), 'must not exceed connections_critical_pct'),
    (dict(idle_in_transaction_age='-1'), 'idle_in_transaction_age: must not be negative'),
    (dict(long_query_age='five minutes'), "long_query_age: 'five minutes' is not a duration"),
    (dict(top=-1), 'top must not be negative'),
    # issue 9, found by fuzzing: empty or null ages, durations beyond the float range, timeouts
    (dict(idle_in_transaction_age=''), 'idle_in_transaction_age must be a duration'),
    (dict(long_query_age=None), 'long_query_age must be a duration'),
    (dict(long_query_age=10 ** 400), 'long_query_age'),
])
def test_pg_activity_info_bad_input(no_connection, args, message):
    kind, result = run(pg_activity_info, args)
    assert kind is Failed
    assert message in result['msg']


def test_missing_psycopg2_names_the_library_and_where_it_belongs(monkeypatch):
    monkeypatch.setattr(_postgres, 'HAS_PSYCOPG2', False)
    monkeypatch.setattr(_postgres, 'PSYCOPG2_IMPORT_ERROR', 'ImportError: No module named psycopg2')
    kind, result = run(pg_activity_info, {})
    assert kind is Failed
    assert 'psycopg2' in result['msg'] and 'the target' in result['msg']


def test_connection_options_fall_back_to_pg_environment(monkeypatch):
    seen = {}

    def fake_init(self, module, autocommit=True):
        seen.update(module.params)
        raise Exited({})
    monkeypatch.setattr(_postgres.PgClient, '__init__', fake_init)
    for name, value in dict(PGHOST='db.example.com', PGPORT='6543', PGUSER='ops', PGPASSWORD='pw',
                            PGDATABASE='app').items():
        monkeypatch.setenv(name, value)
    run(pg_activity_info, {})
    assert (seen['login_host'], seen['login_port'], seen['login_user'], seen['login_password'], seen['login_db']) == \
        ('db.example.com', 6543, 'ops', 'pw', 'app')


def test_password_is_no_log():
    spec = _postgres.postgres_common_argument_spec()
    assert spec['login_password']['no_log'] is True


@pytest.mark.parametrize('args, message', [
    # ansible-core's own int/float checks raise OverflowError on these (found by fuzzing, issue 9)
    (dict(lock_waiters_warning='inf'), "lock_waiters_warning: 'inf' is out of range or not a number"),
    (dict(connections_warning_pct=10 ** 400), 'connections_warning_pct: 1000'),
    (dict(top=float('inf')), 'top: inf is out of range or not a number'),
])
def test_values_ansible_core_cannot_convert_end_in_one_message(no_connection, args, message):
    kind, result = run(pg_activity_info, args)
    assert kind is Failed
    assert result['msg'].startswith(message)


@pytest.fixture
def no_server(monkeypatch):
    """PgClient runs, but reaching a server is a test failure: its own checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError('the module tried to connect before checking its connection options')
    monkeypatch.setattr(_postgres.psycopg2, 'connect', refuse)


@pytest.mark.parametrize('module, args, message', [
    (pg_activity_info, dict(statement_timeout='inf'), 'statement_timeout'),
    (pg_activity_info, dict(statement_timeout='0.4ms'), 'below the resolution of 1ms'),
    (pg_activity_info, dict(lock_timeout='nan'), 'lock_timeout'),
    (pg_activity_info, dict(lock_timeout='25d'), 'lock_timeout'),
    (pg_activity_info, dict(login_user='ops\x00'), 'login_user contains a NUL (0x00) character'),
    (pg_activity_info, dict(login_password='pw\x00'), 'login_password contains a NUL (0x00) character'),
    (pg_backends, dict(action='cancel', states=['idle'], datnames=['x\x00y']), 'datnames[0] contains a NUL'),
])
def test_connection_options_are_checked_before_connecting(no_server, module, args, message):
    kind, result = run(module, args)
    assert kind is Failed
    assert message in result['msg']
    assert 'pw\x00' not in result['msg'] and 'ops\x00' not in result['msg']  # never the value itself
