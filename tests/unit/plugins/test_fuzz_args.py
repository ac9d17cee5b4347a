"""Hypothesis over the argument handling of the PostgreSQL modules and http_check (issue 9).

In-process, through the harness: every input ends in a result (exit_json) or one ``msg`` (fail_json), never a
Python traceback. The PostgreSQL modules are pointed at a port where nothing listens (127.0.0.1:1), so every
input either fails its validation or reaches the connection and fails there with one message; the read-only
modules (and pg_backends/tview_state/tview_queue in check mode) also run against the private PostgreSQL of
private_postgres.py, so that what passes validation reaches a real server as bound values. http_check talks to
a STAND-IN for the network (open_url replaced by a function that answers with a fuzzed body), and its sleeps are
skipped, so that an ``interval`` of an hour costs nothing.

Example counts come from the profiles below (HYPOTHESIS_PROFILE=ci|review|quick).
"""
import os

from unittest import mock

import pytest
from ansible.module_utils import basic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from module_harness import Exited, Failed, run
from private_postgres import PrivatePostgres

from ansible_collections.incident.response.plugins.modules import (
    http_check,
    pg_activity_info,
    pg_backends,
    pg_query_info,
    tview_emergency,
    tview_info,
    tview_lock,
    tview_queue,
    tview_state,
)

# Profiles (HYPOTHESIS_PROFILE): ``ci`` (the default: 400 examples per module where an example is cheap, in
# process with no server, 100 where one reaches a real server), ``review`` (400 everywhere, as the review that
# found the tracebacks ran), ``quick`` (25, while editing). HYPOTHESIS_EXAMPLES overrides both counts.
_COMMON = dict(deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large])
PROFILES = dict(ci=(400, 100), review=(400, 400), quick=(25, 25))
for _name, (_cheap, _costly) in PROFILES.items():
    settings.register_profile(_name, max_examples=_costly, **_COMMON)
PROFILE = os.environ.get('HYPOTHESIS_PROFILE', 'ci')
if PROFILE not in PROFILES:
    raise ValueError('HYPOTHESIS_PROFILE must be one of %s, got %r' % (', '.join(sorted(PROFILES)), PROFILE))
settings.load_profile(PROFILE)
CHEAP_EXAMPLES, EXAMPLES = PROFILES[PROFILE]
if os.environ.get('HYPOTHESIS_EXAMPLES'):
    CHEAP_EXAMPLES = EXAMPLES = int(os.environ['HYPOTHESIS_EXAMPLES'])
#: examples that reach a real server (the private PostgreSQL, the FAKE Kubernetes API server)
FUZZ = settings(max_examples=EXAMPLES, **_COMMON)
#: in-process examples with no server (a port where nothing listens, a STAND-IN, a temporary store)
CHEAP_FUZZ = settings(max_examples=CHEAP_EXAMPLES, **_COMMON)

# Values that broke modules before (issue 9) or are known to break parsers, mixed with anything at all.
HOSTILE_TEXT = st.sampled_from([
    '', ' ', 'inf', '-inf', 'nan', 'NaN', '1e400', '9' * 400, '9' * 400 + 's', '0.4ms', '0.0001', '1e308w', '-5m',
    '30m', '1h30m', '500ms', '\x00', 'a\x00b', '(a+)+$', '(a*)*b', '(x|(a+))+$', '(', '[', '\\', '.*', '%s',
    "'; DROP TABLE x; --", 'tcp://h:notaport', 'http://u:pw@127.0.0.1:1/x', '\r\nX: y', '\u2603', 'None',
])
ANY_TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=40))
NUMBERS = st.one_of(st.integers(min_value=-10 ** 30, max_value=10 ** 30), st.integers(min_value=-3, max_value=3),
                    st.floats(allow_nan=True, allow_infinity=True), st.just(10 ** 400))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBERS, ANY_TEXT)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(ANY_TEXT, SCALAR, max_size=2))


class _Spec(Exception):
    pass


def spec_of(module):
    """The argument_spec a module builds (its AnsibleModule is stopped before it reads anything)."""
    def capture(self, argument_spec, **kwargs):
        raise _Spec(argument_spec)
    with mock.patch.object(basic.AnsibleModule, '__init__', capture):
        with pytest.raises(_Spec) as info:
            module.main()
    return info.value.args[0]


def _typed(spec):
    """Values of the option's own type, with hostile contents (they get past ansible-core's type checks and
    reach the module's own code)."""
    kind = spec.get('type', 'str')
    if spec.get('choices'):
        choice = st.sampled_from(list(spec['choices']))
        return st.lists(choice, max_size=3) if kind == 'list' else choice
    if kind == 'int':
        return st.one_of(st.integers(min_value=-3, max_value=100), st.integers(), st.just(10 ** 400))
    if kind == 'float':
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-3, max_value=100))
    if kind == 'bool':
        return st.booleans()
    if kind == 'list':
        element = dict(int=st.integers(min_value=-2, max_value=10 ** 6)).get(spec.get('elements'), ANY_TEXT)
        return st.lists(element, max_size=3)
    if kind == 'dict':
        return st.dictionaries(ANY_TEXT, SCALAR, max_size=2)
    if kind == 'raw':
        return SCALAR
    return ANY_TEXT


def options(module, names, **fixed):
    """A dict with a random subset of ``names``: half of the examples with values of each option's type,
    half with anything at all (plus the ``fixed`` strategies)."""
    spec = spec_of(module)
    names = [name for name in names if name not in fixed]
    typed = st.fixed_dictionaries(dict(fixed), optional=dict((name, _typed(spec[name])) for name in names))
    wild = st.fixed_dictionaries(dict(fixed), optional=dict((name, st.one_of(_typed(spec[name]), VALUE))
                                                            for name in names))
    return st.one_of(typed, wild)


CONNECTION = ['login_user', 'login_password', 'login_db', 'connect_timeout', 'lock_timeout', 'statement_timeout',
              'ssl_mode']
SPECS = dict(
    pg_activity_info=(pg_activity_info, CONNECTION + [
        'connections_warning_pct', 'connections_critical_pct', 'lock_waiters_warning', 'lock_waiters_critical_pct',
        'idle_in_transaction_age', 'long_query_age', 'databases', 'top', 'query_excerpt_length', 'unreachable']),
    pg_backends=(pg_backends, CONNECTION + [
        'action', 'states', 'min_state_age', 'min_xact_age', 'min_query_age', 'datnames', 'usenames',
        'application_names', 'query_pattern', 'wait_event_types', 'pids', 'max_backends', 'protected_roles',
        'protect_replication', 'protected_applications', 'query_excerpt_length', 'wait', 'wait_timeout',
        'wait_sleep']),
    pg_query_info=(pg_query_info, CONNECTION + [
        'query', 'positional_args', 'named_args', 'max_rows', 'unreachable']),
    tview_info=(tview_info, CONNECTION + [
        'contract', 'stale_after', 'failing_share', 'max_pending', 'connection_share', 'exit_healthy_share',
        'integrity_check', 'integrity_limit', 'error_limit', 'unreachable']),
    tview_state=(tview_state, CONNECTION + [
        'state', 'all', 'names', 'error_pattern', 'reason', 'incident_id', 'clear_errors', 'contract', 'roles']),
    tview_queue=(tview_queue, CONNECTION + [
        'action', 'incident_id', 'names', 'contract', 'top', 'return_rows', 'max_rows']),
    tview_lock=(tview_lock, CONNECTION + ['state', 'name', 'max_hold', 'watch_pid']),
    # evidence_dir is left out: nothing listens, and no example may write a file anywhere
    tview_emergency=(tview_emergency, CONNECTION + [
        'step', 'protocol', 'plan_digest', 'incident_id', 'reason', 'refresh_pattern', 'max_backends',
        'protected_roles', 'protected_applications', 'stabilise_age', 'lock_name', 'contract', 'stale_after',
        'failing_share', 'max_pending', 'connection_share', 'exit_healthy_share', 'integrity_check',
        'integrity_limit', 'integrity_timeout', 'error_limit', 'return_tviews', 'approve_current_plan', 'force']),
)
# Useful values for the required or decisive options, so that examples get past the first check.
STEERING = dict(
    pg_backends=dict(action=st.sampled_from(['cancel', 'terminate']),
                     states=st.just(['idle in transaction'])),
    tview_state=dict(state=st.sampled_from(['disabled', 'enabled'])),
    # statements that get past the lexer (and some that try to write or to escape the transaction), mixed with
    # anything at all; placeholders that the fuzzed arguments may or may not fit
    pg_query_info=dict(query=st.one_of(st.sampled_from([
        'SELECT 1', 'SELECT %s AS a', 'SELECT %(a)s AS a, %(b)s AS b', 'SELECT * FROM pg_tviews_metadata',
        'SELECT pg_sleep(0.01)', 'WITH d AS (DELETE FROM pg_tviews_metadata RETURNING 1) SELECT * FROM d',
        "SELECT 1; COMMIT; DELETE FROM pg_tviews_metadata", "SELECT E'\\'; DELETE FROM pg_tviews_metadata; --'",
        'SELECT $a$;$a$', 'VALUES (1), (2)', 'TABLE pg_tviews_metadata', 'SELECT 1 AS a, 2 AS a',
        "SELECT '\\x00'::bytea, 'NaN'::numeric, '1 day'::interval, now(), '{}'::jsonb, 'nan'::float8",
        'SELECT * FROM pg_tviews_metadata FOR UPDATE', 'SELECT %s::int', "SELECT 'a%'", 'SELECT 1 /* ; */ ;',
    ]), ANY_TEXT)),
    tview_emergency=dict(step=st.sampled_from(['plan', 'act'])),
)


def assert_one_message_or_result(kind, result):
    assert kind in (Exited, Failed)
    if kind is Failed:
        assert isinstance(result.get('msg'), str) and result['msg'].strip(), result
        assert 'Traceback' not in result['msg'] and 'exception' not in result, result


@pytest.fixture(scope='module')
def postgres():
    server = PrivatePostgres().start()
    yield server
    server.stop()


@pytest.mark.parametrize('name', sorted(SPECS))
def test_no_server_every_input_ends_in_one_message(name):
    module, names = SPECS[name]

    @CHEAP_FUZZ
    @given(options(module, names, **STEERING.get(name, {})))
    def check(args):
        args = dict(args, login_host='127.0.0.1', login_port=1, _ansible_check_mode=True)
        assert_one_message_or_result(*run(module, args))
    check()


@pytest.mark.parametrize('name, db', [('pg_activity_info', 'postgres'), ('pg_backends', 'postgres'),
                                      ('pg_query_info', 'tviews_runbook'),
                                      ('tview_info', 'tviews_runbook'), ('tview_state', 'tviews_runbook'),
                                      ('tview_queue', 'tviews_runbook')])
def test_private_server_check_mode_every_input_ends_in_a_result_or_one_message(postgres, name, db):
    module, names = SPECS[name]
    names = [n for n in names if n not in ('login_user', 'login_password', 'login_db', 'unreachable')]
    before = postgres.psql('tviews_runbook', 'SELECT md5(string_agg(t::text, \'|\' ORDER BY t::text)) '
                                             'FROM pg_tviews_metadata t')

    @FUZZ
    @given(options(module, names, **STEERING.get(name, {})))
    def check(args):
        args = dict(args, _ansible_check_mode=True, **postgres.connection(db))
        assert_one_message_or_result(*run(module, args))
    check()
    after = postgres.psql('tviews_runbook', 'SELECT md5(string_agg(t::text, \'|\' ORDER BY t::text)) '
                                            'FROM pg_tviews_metadata t')
    assert after == before, 'check mode changed the catalog'


class _Answer(object):
    """STAND-IN for an HTTP answer (no network in the fuzz): a status and a fuzzed body."""

    def __init__(self, body):
        self.body = body

    def getcode(self):
        return 200

    def read(self):
        return self.body


def test_http_check_every_input_ends_in_a_result_or_one_message(monkeypatch):
    bodies = []
    monkeypatch.setattr(http_check, 'open_url', lambda *a, **k: _Answer(bodies[-1] if bodies else b''))
    monkeypatch.setattr(http_check.time, 'sleep', lambda seconds: None)
    names = ['count', 'interval', 'method', 'expect_status', 'body_pattern', 'headers', 'request_timeout',
             'validate_certs', 'p95_warning', 'p95_critical']
    urls = st.one_of(st.just(['http://127.0.0.1:1/health']), st.lists(ANY_TEXT, max_size=2), VALUE)

    @CHEAP_FUZZ
    @given(options(http_check, names, urls=urls), st.one_of(st.binary(max_size=200), st.just(b'a' * 5000 + b'b')))
    def check(args, body):
        bodies.append(body)
        if isinstance(args.get('count'), int) and args['count'] > 5:
            args['count'] = 5  # the number of probes is not what is fuzzed here
        assert_one_message_or_result(*run(http_check, args))
    check()
