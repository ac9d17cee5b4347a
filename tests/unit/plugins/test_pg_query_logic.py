"""pg_query_info's pure parts: the one-statement lexer (single_statement) and the conversion of result values.

The lexer is the guard against a second statement after the read-only transaction ended (``SELECT 1; COMMIT;
DELETE ...``): where it could misread PostgreSQL's quoting, it must read less as quoted than PostgreSQL does (and
refuse), never more. tests/integration/test_pg_query_info.py runs the same statements against the lab's server.
"""
import datetime
import decimal
import uuid

import pytest

from ansible_collections.incident.response.plugins.module_utils._postgres import single_statement
from ansible_collections.incident.response.plugins.modules.pg_query_info import bind_value, result_value


@pytest.mark.parametrize('text, statement', [
    ('SELECT 1', 'SELECT 1'),
    ('select 1;', 'select 1'),
    ('SELECT 1 ;  -- the end\n', 'SELECT 1'),
    ('SELECT 1;;', 'SELECT 1'),
    ('SELECT 1; /* a comment */', 'SELECT 1'),
    ("SELECT ';' AS semicolon", "SELECT ';' AS semicolon"),
    ("SELECT 'it''s; fine'", "SELECT 'it''s; fine'"),
    ("SELECT E'\\'; still the string'", "SELECT E'\\'; still the string'"),
    ('SELECT "a;b" FROM t', 'SELECT "a;b" FROM t'),
    ('SELECT $$;$$, $tag$ ; $$ ; $tag$', 'SELECT $$;$$, $tag$ ; $$ ; $tag$'),
    ('SELECT 1 /* ; /* nested ; */ ; */', 'SELECT 1 /* ; /* nested ; */ ; */'),
    ('-- a comment first\nSELECT 1', '-- a comment first\nSELECT 1'),
    ('(SELECT 1) UNION (SELECT 2)', '(SELECT 1) UNION (SELECT 2)'),
    ('WITH a AS (SELECT 1) SELECT * FROM a', 'WITH a AS (SELECT 1) SELECT * FROM a'),
    ('VALUES (1), (2)', 'VALUES (1), (2)'),
    ('TABLE worker_heartbeat', 'TABLE worker_heartbeat'),
    ('SELECT $1', 'SELECT $1'),
])
def test_one_statement_is_taken(text, statement):
    assert single_statement(text) == statement


@pytest.mark.parametrize('text, fragment', [
    ('SELECT 1; DELETE FROM t', 'more than one statement'),
    ('SELECT 1; COMMIT; DELETE FROM t', 'more than one statement'),
    ('SELECT 1;;COMMIT', 'more than one statement'),
    # PostgreSQL reads xe'\' as the identifier xe and the string '\' (no E prefix): the ; is outside
    ("SELECT xe'\\'; DELETE FROM t; --'", 'more than one statement'),
    # with standard_conforming_strings off PostgreSQL reads more as quoted than this: refused, never let through
    ("SELECT 'a\\'; DELETE FROM t; --'", 'more than one statement'),
    # a$b$ is one identifier for PostgreSQL (a $ inside a name opens no dollar quote)
    ('SELECT a$b$; DELETE FROM t; SELECT $b$', 'more than one statement'),
    ('SELECT 1 /* not closed', 'comment is not closed'),
    ("SELECT 'not closed", 'string is not closed'),
    ('SELECT "not closed', 'quoted identifier is not closed'),
    ('SELECT $x$ not closed', 'quoted string is not closed'),
    ('', 'the query is empty'),
    ('  -- only a comment', 'the query is empty'),
    (';', 'the query is empty'),
    ('DELETE FROM t', "got 'delete'"),
    ('COMMIT', "got 'commit'"),
    ('SET default_transaction_read_only = off', "got 'set'"),
    ('COPY t TO PROGRAM \'true\'', "got 'copy'"),
    ('SHOW max_connections', "got 'show'"),
    ('DO $$ BEGIN END $$', "got 'do'"),
    ('123', "got '123'"),
])
def test_anything_else_is_refused(text, fragment):
    with pytest.raises(ValueError) as info:
        single_statement(text)
    assert fragment in str(info.value)


def test_result_values_as_json_takes_them():
    tz = datetime.timezone.utc
    assert result_value(decimal.Decimal('12')) == 12 and isinstance(result_value(decimal.Decimal('12')), int)
    assert result_value(decimal.Decimal('2.000')) == 2.0 and isinstance(result_value(decimal.Decimal('2.000')), float)
    assert result_value(decimal.Decimal('1E+3')) == 1000
    assert result_value(decimal.Decimal('NaN')) == 'NaN' and result_value(float('inf')) == 'inf'
    assert result_value(datetime.datetime(2026, 12, 2, 7, 0, 1, 5, tzinfo=tz)) == '2026-12-02T07:00:01.000005+00:00'
    assert result_value(datetime.date(2026, 12, 2)) == '2026-12-02'
    assert result_value(datetime.timedelta(minutes=5)) == 300.0
    assert result_value(memoryview(b'\x00\xff')) == '\\x00ff'
    assert result_value({'a': [decimal.Decimal('1.5'), None]}) == {'a': [1.5, None]}
    assert result_value(uuid.UUID(int=1)) == '00000000-0000-0000-0000-000000000001'
    assert result_value(True) is True and result_value('x') == 'x'


def test_bound_dicts_become_json_and_lists_arrays():
    value = bind_value([{'a': 1}, 2])
    assert value[0].adapted == {'a': 1} and value[1] == 2
