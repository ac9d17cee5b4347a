"""PgClient, the only way into PostgreSQL, against the lab's real PostgreSQL 15 (in-process, no mock).

The session settings (lock_timeout, statement_timeout), the non-failing query, the transaction context
manager, the rendering of psycopg2.sql objects and the one message for a NUL.
"""
import time

import psycopg2
import pytest
from psycopg2 import sql as pgsql

from ansible_collections.incident.response.plugins.module_utils._postgres import (
    PgClient,
    connection_settings,
    postgres_common_argument_spec,
)

TABLE = 'pytest_pg_client'


class Failed(Exception):
    pass


class Module(object):
    """What PgClient uses of an AnsibleModule: params (the argspec's defaults + the lab's) and fail_json."""

    def __init__(self, lab_env, **params):
        self.params = dict((name, spec.get('default')) for name, spec in postgres_common_argument_spec().items())
        self.params.update(login_host=lab_env['PGHOST'], login_port=int(lab_env['PGPORT']),
                           login_user=lab_env['PGUSER'], login_password=lab_env['PGPASSWORD'],
                           login_db=lab_env['PGDATABASE'])
        self.params.update(params)

    def fail_json(self, **kwargs):
        raise Failed(kwargs)


@pytest.fixture
def table(lab):
    lab.query('DROP TABLE IF EXISTS %s; CREATE TABLE %s (id int PRIMARY KEY, note text)' % (TABLE, TABLE))
    yield TABLE
    lab.query('DROP TABLE IF EXISTS %s' % TABLE)


def test_every_session_carries_lock_and_statement_timeouts(lab_env):
    client = PgClient(Module(lab_env))
    row = client.query_one("SELECT current_setting('lock_timeout') AS lock, "
                           "current_setting('statement_timeout') AS stmt, current_setting('application_name') AS app")
    assert row == dict(lock='10s', stmt='2min', app='incident.response')
    client.close()
    client = PgClient(Module(lab_env, lock_timeout='1500ms', statement_timeout=90))
    row = client.query_one("SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS s")
    assert row == dict(lock='1500ms', s='90s')
    client.close()


def test_a_lock_wait_ends_at_lock_timeout_with_one_message(lab_env, lab, table):
    holder = lab.connect(autocommit=False, application_name='pytest-lock-holder')
    try:
        with holder.cursor() as cur:
            cur.execute('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE' % table)
        client = PgClient(Module(lab_env, lock_timeout='500ms'))
        start = time.monotonic()
        with pytest.raises(Failed) as info:
            client.query('SELECT count(*) FROM %s' % table)
        assert time.monotonic() - start < 30
        msg = info.value.args[0]['msg']
        assert 'lock timeout' in msg and 'lock_timeout 500ms' in msg
    finally:
        holder.rollback()
        holder.close()


def test_a_long_statement_ends_at_statement_timeout(lab_env):
    client = PgClient(Module(lab_env, statement_timeout='300ms'))
    with pytest.raises(Failed) as info:
        client.query('SELECT pg_sleep(30)')
    assert 'statement timeout' in info.value.args[0]['msg'] and 'statement_timeout 300ms' in info.value.args[0]['msg']


def test_try_query_returns_the_error_and_keeps_the_session(lab_env):
    client = PgClient(Module(lab_env))
    rows, error = client.try_query('SELECT * FROM no_such_table_here')
    assert rows is None and 'no_such_table_here' in error
    assert client.try_query('SELECT 1 AS one') == ([dict(one=1)], None)
    assert client.queries[-1] == 'SELECT 1 AS one'
    client.close()


def test_transaction_commits_and_rolls_back(lab_env, lab, table):
    client = PgClient(Module(lab_env))
    with client.transaction():
        assert client.in_transaction
        client.execute('INSERT INTO %s VALUES (1, %%s)' % table, ('kept',))
    assert not client.in_transaction
    with pytest.raises(RuntimeError):
        with client.transaction():
            client.execute('INSERT INTO %s VALUES (2, %%s)' % table, ('rolled back',))
            raise RuntimeError('boom')
    with client.transaction(commit=False):
        client.execute('INSERT INTO %s VALUES (3, %%s)' % table, ('read-only check',))
    assert not client.in_transaction
    client.close()
    assert lab.query('SELECT id, note FROM %s ORDER BY id' % table) == [(1, 'kept')]


def test_failing_inside_a_transaction_changes_nothing(lab_env, lab, table):
    client = PgClient(Module(lab_env))
    with pytest.raises(Failed) as info:
        with client.transaction():
            client.execute('INSERT INTO %s VALUES (1, %%s)' % table, ('x',))
            client.execute('INSERT INTO %s VALUES (1, %%s)' % table, ('duplicate',))
    assert 'duplicate key' in info.value.args[0]['msg']
    assert lab.query('SELECT count(*) FROM %s' % table) == [(0,)]


def test_psycopg2_sql_compositions_are_rendered(lab_env, table):
    client = PgClient(Module(lab_env))
    statement = pgsql.SQL('SELECT count(*) AS n FROM {}').format(pgsql.Identifier(table))
    assert client.render(statement) == 'SELECT count(*) AS n FROM "%s"' % table
    assert client.query_one(statement) == dict(n=0)
    assert client.queries[-1] == 'SELECT count(*) AS n FROM "%s"' % table
    client.close()


@pytest.mark.parametrize('option', ['login_user', 'login_db', 'login_password', 'login_host'])
def test_a_nul_in_a_connection_option_fails_with_one_message(lab_env, option):
    params = Module(lab_env).params
    with pytest.raises(Failed) as info:
        PgClient(Module(lab_env, **{option: params[option] + '\x00x'}))
    msg = info.value.args[0]['msg']
    assert msg == '%s contains a NUL (0x00) character, which PostgreSQL cannot take: nothing was sent' % option
    assert lab_env['PGPASSWORD'] not in repr(info.value.args[0])


def test_a_nul_in_a_bound_value_fails_with_one_message(lab_env):
    client = PgClient(Module(lab_env))
    with pytest.raises(Failed) as info:
        client.query('SELECT %s AS v', ('a\x00b',))
    assert 'a value bound to the query contains a NUL (0x00) character' in info.value.args[0]['msg']


@pytest.mark.parametrize('value, message', [
    ('0.4ms', 'below the resolution of 1ms'),
    ('inf', 'longer than the maximum'),
    ('25d', 'above the maximum of 24d'),
    ('0', 'below the minimum of 1ms'),
    ('', 'must not be empty'),
    ('soon', 'is not a duration'),
])
@pytest.mark.parametrize('option', ['lock_timeout', 'statement_timeout'])
def test_bad_timeouts_fail_before_connecting(lab_env, option, value, message):
    with pytest.raises(Failed) as info:
        connection_settings(Module(lab_env, **{option: value}))
    assert option in info.value.args[0]['msg'] and message in info.value.args[0]['msg']


def test_psycopg2_errors_never_escape(lab_env):
    with pytest.raises(Failed) as info:
        PgClient(Module(lab_env, login_port=1))
    assert info.value.args[0]['msg'].startswith('Unable to connect to PostgreSQL at 127.0.0.1:1')
    assert isinstance(psycopg2.Error, type)
