"""The ``targets`` option of pg_activity_info and pg_backends (issue 13, one module run for many targets).

Argument handling (bad input ends in one clear message, before any connection; Hypothesis: never a traceback),
and the real per-target results against the private PostgreSQL of private_postgres.py: each target's own
sessions, its own cap, a target that cannot be reached fails in its own entry while the others are worked,
check mode signals nothing.
"""
import time

import psycopg2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from module_harness import Exited, Failed, run
from private_postgres import PrivatePostgres
from test_fuzz_args import ANY_TEXT, CHEAP_FUZZ, HOSTILE_TEXT, SCALAR, VALUE, assert_one_message_or_result

from ansible_collections.incident.response.plugins.module_utils import _pg_targets, _postgres
from ansible_collections.incident.response.plugins.modules import pg_activity_info, pg_backends

BACKENDS = dict(action='terminate', states=['idle in transaction'])


@pytest.fixture
def no_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the module tried to connect before validating its arguments')
    monkeypatch.setattr(_postgres.PgClient, '__init__', refuse)


BAD_TARGETS = [
    ([], 'targets is empty'),
    ([{}], 'name'),
    ([dict(name='')], 'targets[0].name must be a non-empty name'),
    ([dict(name='   ')], 'targets[0].name must be a non-empty name'),
    ([dict(name='a'), dict(name='a')], "targets[1].name 'a' is given twice"),
    ([dict(name='a', bogus=1)], 'bogus'),
    ([dict(name='a', login_port='abc')], 'login_port'),
    # ansible-core's own message for an element that is not a dict
    ('a', 'dictionary requested'),
    (5, "'targets' must be a list"),
    ([dict(name='a\x00b')], 'NUL'),
]


@pytest.mark.parametrize('targets, message', BAD_TARGETS)
@pytest.mark.parametrize('module, extra', [(pg_activity_info, {}), (pg_backends, BACKENDS)])
def test_bad_targets_fail_with_one_clear_message(no_connection, module, extra, targets, message):
    kind, result = run(module, dict(extra, targets=targets))
    assert kind is Failed, result
    assert message in result['msg'], result
    assert 'Traceback' not in result['msg']


@pytest.mark.parametrize('targets, message', [
    ([dict(name='a', max_backends=0)], 'targets[0].max_backends must be at least 1'),
    ([dict(name='a'), dict(name='b', max_backends=-3)], 'targets[1].max_backends must be at least 1'),
    ([dict(name='a', datnames=['x'])], None),
])
def test_pg_backends_target_caps_are_checked_before_any_connection(no_connection, monkeypatch, targets, message):
    if message is None:
        # a valid list reaches the targets (here stopped before connecting)
        monkeypatch.setattr(pg_backends, 'run_targets_result', lambda module, found: {'reached': found})
        kind, result = run(pg_backends, dict(BACKENDS, targets=targets))
        assert kind is Exited and result['reached'][0]['name'] == 'a'
        return
    kind, result = run(pg_backends, dict(BACKENDS, targets=targets))
    assert kind is Failed and message in result['msg'], result


def test_module_options_are_still_checked_with_targets(no_connection):
    kind, result = run(pg_backends, dict(action='cancel', states=['idle'], min_state_age='-5m',
                                         targets=[dict(name='a')]))
    assert kind is Failed and 'min_state_age: must not be negative' in result['msg']
    kind, result = run(pg_activity_info, dict(top=-1, targets=[dict(name='a')]))
    assert kind is Failed and 'top must not be negative' in result['msg']


def test_both_modules_take_the_same_target_options():
    """One argspec for the connection overrides (and one doc fragment): only the filter differs."""
    from test_fuzz_args import spec_of
    activity = spec_of(pg_activity_info)['targets']['options']
    backends = spec_of(pg_backends)['targets']['options']
    shared = set(_pg_targets.CONNECTION_OVERRIDES) | {'name'}
    assert set(activity) == shared | {'databases'}
    assert set(backends) == shared | {'datnames', 'max_backends'}
    assert activity['login_password']['no_log'] and backends['login_password']['no_log']


def test_the_doc_fragment_sections_share_their_text_and_match_the_argspec():
    """One doc fragment for targets: its shared part is the same in each module's section, and each section
    documents exactly the suboptions (and types) that module's argspec has."""
    import yaml
    from test_fuzz_args import spec_of
    from ansible_collections.incident.response.plugins.doc_fragments.postgres_targets import ModuleDocFragment
    shared = ModuleDocFragment.DOCUMENTATION.rstrip('\n')
    for section, module in ((ModuleDocFragment.ACTIVITY, pg_activity_info), (ModuleDocFragment.BACKENDS, pg_backends)):
        assert section.startswith(shared + '\n'), 'the shared part of the targets fragment differs'
        documented = yaml.safe_load(section)['options']['targets']['suboptions']
        spec = spec_of(module)['targets']['options']
        assert set(documented) == set(spec)
        for name, option in spec.items():
            assert documented[name].get('type', 'str') == option.get('type', 'str'), name
            assert bool(documented[name].get('required')) == bool(option.get('required')), name


TARGET = st.fixed_dictionaries({}, optional=dict(
    name=st.one_of(st.sampled_from(['a', 'b', 'db1']), ANY_TEXT, SCALAR),
    login_host=st.one_of(st.just('127.0.0.1'), ANY_TEXT, SCALAR),
    login_port=st.one_of(st.just(1), st.integers(), HOSTILE_TEXT, SCALAR),
    login_db=st.one_of(ANY_TEXT, SCALAR),
    login_user=st.one_of(ANY_TEXT, SCALAR),
    login_password=st.one_of(ANY_TEXT, SCALAR),
    databases=st.one_of(st.lists(ANY_TEXT, max_size=2), VALUE),
    datnames=st.one_of(st.lists(ANY_TEXT, max_size=2), VALUE),
    max_backends=st.one_of(st.integers(min_value=-2, max_value=30), st.just(10 ** 400), SCALAR),
    bogus=SCALAR,
))
TARGETS = st.one_of(st.lists(TARGET, max_size=3), st.lists(st.fixed_dictionaries(dict(name=ANY_TEXT)), max_size=3),
                    VALUE)


def _assert_entries(kind, result):
    assert_one_message_or_result(kind, result)
    if kind is Exited and 'targets' in result:
        assert isinstance(result['failed_targets'], list)
        for name, entry in result['targets'].items():
            assert isinstance(name, str)
            if entry.get('failed'):
                assert isinstance(entry.get('msg'), str) and entry['msg'].strip(), entry
                assert 'Traceback' not in entry['msg'] and 'exception' not in entry, entry


@pytest.mark.parametrize('module, extra', [(pg_activity_info, {}), (pg_backends, BACKENDS)],
                         ids=['pg_activity_info', 'pg_backends'])
def test_fuzzed_targets_end_in_one_message_or_a_result_per_target(module, extra):
    """Nothing listens on 127.0.0.1:1: every valid target fails in its own entry with one message."""
    @CHEAP_FUZZ
    @given(TARGETS)
    def check(targets):
        args = dict(extra, login_host='127.0.0.1', login_port=1, connect_timeout=1, targets=targets,
                    _ansible_check_mode=True)
        _assert_entries(*run(module, args))
    check()


# --------------------------------------------------------------------------- against a real (private) server

@pytest.fixture(scope='module')
def postgres():
    server = PrivatePostgres().start()
    server.psql('postgres', 'CREATE DATABASE t_one')
    server.psql('postgres', 'CREATE DATABASE t_two')
    yield server
    server.stop()


def _idle_in_transaction(postgres, dbname, count):
    conns = []
    for dummy in range(count):
        conn = psycopg2.connect(host=postgres.socket_dir, port=5432, user='app', dbname=dbname,
                                application_name='ir_unit_victim')
        with conn.cursor() as cur:
            cur.execute('SELECT pg_backend_pid()')
        conns.append(conn)
    return conns


def _alive(postgres, dbname):
    return int(postgres.psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
                                         "AND application_name = 'ir_unit_victim'" % dbname).strip())


def _targets(postgres, key):
    return [dict(name='one', login_host=postgres.socket_dir, login_db='t_one', **{key: ['t_one']}),
            dict(name='two', login_host=postgres.socket_dir, login_db='t_two', **{key: ['t_two']}),
            dict(name='down', login_host='127.0.0.1', login_port=1, **{key: ['t_one']})]


def test_activity_one_result_per_target_and_the_unreachable_one_fails_alone(postgres):
    conns = _idle_in_transaction(postgres, 't_one', 1)
    try:
        time.sleep(1.2)
        args = dict(login_user='postgres', login_port=5432, ssl_mode='disable', connect_timeout=2,
                    idle_in_transaction_age='1s', targets=_targets(postgres, 'databases'))
        kind, result = run(pg_activity_info, args)
        assert kind is Exited, result
        assert not result.get('failed') and result['changed'] is False
        assert list(result['targets']) == ['one', 'two', 'down']
        assert result['failed_targets'] == ['down']
        one, two, down = (result['targets'][n] for n in ('one', 'two', 'down'))
        assert one['status'] == 'warning' and [s['datname'] for s in one['long_idle_in_transaction']] == ['t_one']
        assert two['status'] == 'ok' and two['long_idle_in_transaction'] == []
        assert down['failed'] is True and 'Unable to connect to PostgreSQL at 127.0.0.1:1' in down['msg']
        assert result['status'] == 'unknown'  # the worst: a target that could not be assessed
        assert any(reason.startswith('one: ') for reason in result['reasons'])
    finally:
        for conn in conns:
            conn.close()


def test_backends_each_target_its_own_sessions_and_cap_check_mode_then_real(postgres):
    conns = _idle_in_transaction(postgres, 't_one', 1) + _idle_in_transaction(postgres, 't_two', 2)
    try:
        time.sleep(1.2)
        targets = _targets(postgres, 'datnames')
        targets[1]['max_backends'] = 1  # two sessions on t_two: refused there, and only there
        args = dict(action='terminate', states=['idle in transaction'], min_state_age='1s', login_user='postgres',
                    login_port=5432, ssl_mode='disable', connect_timeout=2, wait_timeout=10, targets=targets)
        kind, result = run(pg_backends, dict(args, _ansible_check_mode=True))
        assert kind is Exited, result
        assert result['failed_targets'] == ['two', 'down']
        one = result['targets']['one']
        assert one['changed'] is True and [a['done'] for a in one['actions']] == [False]
        assert one['actions'][0]['detail']['host'] == 'one' and one['actions'][0]['detail']['datname'] == 't_one'
        assert 'refusing to terminate 2 backends: more than max_backends=1 match' in result['targets']['two']['msg']
        assert result['actions'] == one['actions'] and result['changed'] is True
        assert _alive(postgres, 't_one') == 1 and _alive(postgres, 't_two') == 2  # check mode: nothing signalled

        kind, result = run(pg_backends, args)
        assert kind is Exited, result
        assert result['targets']['one']['signalled'] and result['targets']['one']['remaining'] == []
        assert _alive(postgres, 't_one') == 0 and _alive(postgres, 't_two') == 2
        assert result['summary'].startswith('terminated 1 backend on 1 target; 2 targets failed: two, down')

        kind, again = run(pg_backends, dict(args, targets=targets[:1]))
        assert kind is Exited and again['changed'] is False and again['failed_targets'] == []
    finally:
        for conn in conns:
            conn.close()


def test_without_targets_the_result_is_unchanged(postgres):
    kind, result = run(pg_activity_info, dict(postgres.connection('postgres')))
    assert kind is Exited and 'targets' not in result and 'failed_targets' not in result
    kind, result = run(pg_backends, dict(BACKENDS, _ansible_check_mode=True, **postgres.connection('postgres')))
    assert kind is Exited and 'targets' not in result and result['changed'] is False
