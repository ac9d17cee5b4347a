"""pg_query_info against the lab's PostgreSQL: rows, bound parameters, the row cap, the read-only transaction that
refuses every write (the table compared before and after), statement_timeout, bad SQL, an unreachable server and a
wrong password (never in the output), module_defaults of group/incident.response.postgres."""
import json
import os
import subprocess

import pytest

from conftest import BIN, ROOT, assert_clean_failure

pytestmark = pytest.mark.integration

PROBE = 'pgq_it_probe_%d' % os.getpid()
WRITER = 'pgq_it_write_%d' % os.getpid()


@pytest.fixture(scope='module')
def probe(lab):
    """A table of this test module (three rows) and a function that writes into it."""
    lab.query('CREATE TABLE %s (id int PRIMARY KEY, note text, seen timestamptz DEFAULT now())' % PROBE)
    lab.query("INSERT INTO %s (id, note) VALUES (1, 'one'), (2, 'two'), (3, NULL)" % PROBE)
    lab.query("CREATE FUNCTION %s() RETURNS int LANGUAGE sql AS $$ INSERT INTO %s (id, note) VALUES (99, 'written') "
              "RETURNING id $$" % (WRITER, PROBE))
    yield PROBE
    lab.query('DROP FUNCTION IF EXISTS %s()' % WRITER)
    lab.query('DROP TABLE IF EXISTS %s' % PROBE)


def test_rows_as_dicts_in_check_mode_and_for_real(ansible, lab, probe):
    before = lab.table_digest(probe)
    for check in (True, False):
        rc, result, out = ansible.module('pg_query_info', dict(
            query='SELECT id, note, seen, 1.50::numeric AS n, count(*) OVER () AS total FROM %s ORDER BY id' % probe),
            check=check)
        assert rc == 0, out
        assert result['changed'] is False and result['status'] == 'ok' and result['reasons'] == []
        assert result['columns'] == ['id', 'note', 'seen', 'n', 'total']
        assert [(r['id'], r['note'], r['n'], r['total']) for r in result['rows']] == [
            (1, 'one', 1.5, 3), (2, 'two', 1.5, 3), (3, None, 1.5, 3)]
        assert result['rows'][0]['seen'][:4].isdigit() and 'T' in result['rows'][0]['seen']
        assert result['row_count'] == 3 and result['truncated'] is False
        assert any(probe in q for q in result['executed_queries'])
    assert lab.table_digest(probe) == before


def test_bound_parameters_positional_and_named(ansible, probe):
    hostile = "x'); DELETE FROM %s; --" % probe
    rc, result, out = ansible.module('pg_query_info', dict(
        query='SELECT id, note, %s::text AS echoed FROM ' + probe + ' WHERE id = ANY(%s) ORDER BY id',
        positional_args=[hostile, [1, 3]]))
    assert rc == 0, out
    assert [(r['id'], r['echoed']) for r in result['rows']] == [(1, hostile), (3, hostile)]
    rc, result, out = ansible.module('pg_query_info', dict(
        query='SELECT count(*) AS n, %(label)s AS label, %(doc)s::jsonb AS doc FROM ' + probe
              + ' WHERE note LIKE %(pattern)s',
        named_args=dict(label='t-notes', doc=dict(a=[1, 2]), pattern='t%')))
    assert rc == 0, out
    assert result['rows'] == [dict(n=1, label='t-notes', doc=dict(a=[1, 2]))]
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT %s, %s', positional_args=[1]))
    assert_clean_failure(rc, result, out, "the arguments do not fit the query's placeholders, nothing was run")


def test_max_rows_cuts_and_says_so(ansible):
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT g FROM generate_series(1, 10) g', max_rows=3))
    assert rc == 0, out
    assert [r['g'] for r in result['rows']] == [1, 2, 3] and result['row_count'] == 3 and result['truncated'] is True
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT g FROM generate_series(1, 10) g', max_rows=10))
    assert rc == 0 and result['row_count'] == 10 and result['truncated'] is False, out
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT 1 AS a WHERE false', max_rows=0))
    assert rc == 0 and result['rows'] == [] and result['columns'] == ['a'] and result['truncated'] is False, out
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT 1', max_rows=100001))
    assert_clean_failure(rc, result, out, 'max_rows must be between 0 and 100000')


@pytest.mark.parametrize('query, fragment', [
    ('WITH d AS (DELETE FROM {probe} RETURNING id) SELECT * FROM d', 'data-modifying statements'),
    ('SELECT {writer}()', 'read-only transaction'),
    ('SELECT * FROM {probe} FOR UPDATE', 'read-only transaction'),
    ("SELECT pg_catalog.set_config('transaction_read_only', 'off', true), {writer}()",
     'transaction read-write mode must be set before any query'),
    ('SELECT 1; COMMIT; DELETE FROM {probe}', 'query refused, nothing was run: more than one statement'),
    ("SELECT E'\\\\'; COMMIT; DELETE FROM {probe}; --'", None),
    ('DELETE FROM {probe}', "query refused, nothing was run: the statement must be a read"),
    ('SELECT * INTO pgq_it_copy FROM {probe}', 'INTO is not allowed'),
])
def test_the_read_only_transaction_refuses_every_write(ansible, lab, probe, query, fragment):
    before = lab.table_digest(probe)
    for check in (True, False):
        rc, result, out = ansible.module('pg_query_info', dict(query=query.format(probe=probe, writer=WRITER)),
                                         check=check)
        if fragment is None:
            # E'\\' is a string holding one backslash, then a real "; COMMIT; DELETE": refused as two statements;
            # and never anything else than a refusal or a read
            assert rc != 0 and 'more than one statement' in result.get('msg', ''), out
        else:
            assert_clean_failure(rc, result, out, fragment)
        assert lab.table_digest(probe) == before
    assert not lab.query("SELECT 1 FROM pg_class WHERE relname = 'pgq_it_copy'")


def test_statement_timeout_ends_a_sleep(ansible, lab):
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT pg_sleep(60) AS slept', statement_timeout='1s'))
    assert_clean_failure(rc, result, out, 'canceling statement due to statement timeout', '(statement_timeout 1s)')
    # the server ended it: no session of ours is still sleeping
    assert not lab.query("SELECT pid FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(60) AS slept%%' "
                         "AND pid <> pg_backend_pid()")


def test_bad_sql_is_one_message(ansible):
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT * FROM pgq_no_such_table'))
    assert_clean_failure(rc, result, out, 'Query failed on PostgreSQL at', 'relation "pgq_no_such_table" does not exist')
    rc, result, out = ansible.module('pg_query_info', dict(query='SELEC 1'))
    assert_clean_failure(rc, result, out, "the statement must be a read that returns rows")
    rc, result, out = ansible.module('pg_query_info', dict(query="SELECT 'unclosed"))
    assert_clean_failure(rc, result, out, 'a string is not closed')


def test_server_down_and_wrong_password(ansible, lab_env):
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT 1', login_port=1))
    assert_clean_failure(rc, result, out, 'Unable to connect to PostgreSQL at %s:1' % lab_env['PGHOST'])
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT 1', login_port=1, unreachable='unknown'))
    assert rc == 0 and result['status'] == 'unknown' and 'rows' not in result, out
    assert result['reasons'] == [result['msg']]
    wrong = 'pgq-Wrong-Password-%d' % os.getpid()
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT 1', login_password=wrong))
    assert_clean_failure(rc, result, out, 'password authentication failed')
    assert wrong not in out and wrong not in json.dumps(result)
    rc, result, out = ansible.module('pg_query_info', dict(query='SELECT 1'), env=dict(PGPASSWORD=wrong))
    assert_clean_failure(rc, result, out, 'password authentication failed')
    assert wrong not in out and wrong not in json.dumps(result)
    assert lab_env['PGPASSWORD'] not in out


def test_module_defaults_of_the_postgres_group_apply(ansible_env, tmp_path):
    playbook = tmp_path / 'defaults.yml'
    playbook.write_text('''
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/incident.response.postgres:
      login_port: "{{ port }}"
      statement_timeout: 7s
  tasks:
    - incident.response.pg_query_info:
        query: SELECT current_setting('statement_timeout') AS timeout, current_setting('transaction_read_only') AS ro
      register: answer
    - ansible.builtin.debug:
        msg: "answer {{ answer.rows[0].timeout }} {{ answer.rows[0].ro }}"
''')
    cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventory', 'lab.yml'), str(playbook)]
    proc = subprocess.run(cmd + ['-e', 'port=%s' % ansible_env['PGPORT']], cwd=ROOT, env=ansible_env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and 'answer 7s on' in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run(cmd + ['-e', 'port=1'], cwd=ROOT, env=ansible_env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode != 0 and ':1 as ' in proc.stdout and 'Traceback' not in proc.stdout + proc.stderr
