"""Hypothesis over the argument handling of the modules test_fuzz_args.py and test_service_fuzz.py do not cover
(issue 9): Alertmanager, Redis/Bull, the incident record and its readers, alert routing.

In-process, no server: Alertmanager and Redis are addressed where nothing listens (127.0.0.1:1), so what passes
validation fails at the connection with one message; the incident modules use a files store of their own in a
temporary directory (with one incident in it, so that some examples get past "incident not found"). Modules
that change something run in check mode (nothing is written, nothing is sent). Every input ends in a result or
one ``msg``, never a traceback. ``test_every_module_is_fuzzed`` keeps the three files covering plugins/modules.
"""
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from module_harness import Exited, run
from test_fuzz_args import ANY_TEXT, CHEAP_FUZZ, SPECS as PG_SPECS, assert_one_message_or_result, options, spec_of
from test_pgbouncer_fuzz import SPECS as PGBOUNCER_SPECS
from test_service_fuzz import SPECS as SERVICE_SPECS

from ansible_collections.incident.response.plugins.modules import (
    alert_route_info,
    alertmanager_alert_info,
    alertmanager_silence,
    bull_queue,
    bull_queue_info,
    incident,
    incident_info,
    incident_metrics_info,
    incident_monitor,
    incident_notify,
    incident_review,
    incident_timers_info,
    redis_flush,
    redis_info,
)

MODULES_DIR = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'plugins', 'modules')
NOWHERE = 'http://127.0.0.1:1'
REDIS_NOWHERE = 'redis://127.0.0.1:1/0'
STORE = ['store', 'store_path', 'store_dsn', 'store_schema', 'store_timeout']


def all_options(module, leave_out=()):
    return [name for name in sorted(spec_of(module)) if name not in leave_out]


# name: (module, options fuzzed, fixed values, check mode only)
SPECS = dict(
    alert_route_info=(alert_route_info, all_options(alert_route_info), {}, False),
    alertmanager_alert_info=(alertmanager_alert_info, all_options(alertmanager_alert_info, ('url',)),
                             dict(url=NOWHERE, timeout=1), False),
    alertmanager_silence=(alertmanager_silence, all_options(alertmanager_silence, ('url',)),
                          dict(url=NOWHERE, timeout=1), True),
    redis_info=(redis_info, all_options(redis_info, ('url', 'host', 'port', 'unix_socket')),
                dict(url=REDIS_NOWHERE, timeout=1), False),
    bull_queue_info=(bull_queue_info, all_options(bull_queue_info, ('url', 'host', 'port', 'unix_socket')),
                     dict(url=REDIS_NOWHERE, timeout=1), False),
    bull_queue=(bull_queue, all_options(bull_queue, ('url', 'host', 'port', 'unix_socket', 'export_dir')),
                dict(url=REDIS_NOWHERE, timeout=1), True),
    redis_flush=(redis_flush, all_options(redis_flush, ('url', 'host', 'port', 'unix_socket', 'export_dir')),
                 dict(url=REDIS_NOWHERE, timeout=1), True),
    incident=(incident, all_options(incident, STORE), {}, True),
    incident_info=(incident_info, all_options(incident_info, STORE), {}, False),
    incident_metrics_info=(incident_metrics_info, all_options(incident_metrics_info, STORE), {}, False),
    incident_monitor=(incident_monitor, all_options(incident_monitor, STORE), {}, True),
    incident_notify=(incident_notify, all_options(incident_notify, STORE), {}, True),
    incident_review=(incident_review, all_options(incident_review, STORE + ['dest']), {}, True),
    incident_timers_info=(incident_timers_info, all_options(incident_timers_info, STORE), {}, False),
)
INCIDENT_ID = st.one_of(st.just('INC-2026-12-01-001'), ANY_TEXT)
STEERING = dict(incident_id=INCIDENT_ID)


@pytest.fixture(scope='module')
def store(tmp_path_factory):
    """A files store with one incident in it (made by the incident module itself)."""
    path = str(tmp_path_factory.mktemp('fuzz-store'))
    kind, result = run(incident, dict(state='open', incident_id='INC-2026-12-01-001', title='fuzz', system='fuzz',
                                      severity='SEV3', store='files', store_path=path))
    assert kind is Exited, result
    return path


@pytest.mark.parametrize('name', sorted(SPECS))
def test_every_input_ends_in_a_result_or_one_message(name, store, tmp_path):  # pylint: disable=redefined-outer-name
    module, names, fixed, check_only = SPECS[name]
    steering = dict((key, value) for key, value in STEERING.items() if key in names)
    before = sorted(os.listdir(store))

    @CHEAP_FUZZ
    @given(options(module, names, **steering), st.booleans())
    def check(args, check_mode):
        args = dict(args, **fixed)
        if 'store' in spec_of(module):
            args.update(store='files', store_path=store)
        if name == 'incident_review':
            args['dest'] = str(tmp_path)
        if name in ('bull_queue', 'redis_flush'):
            args['export_dir'] = str(tmp_path)
        args['_ansible_check_mode'] = check_mode or check_only
        assert_one_message_or_result(*run(module, args))
    check()
    if check_only:
        assert sorted(os.listdir(store)) == before, 'check mode changed the store'


def test_every_module_is_fuzzed():
    modules = sorted(f[:-3] for f in os.listdir(MODULES_DIR) if f.endswith('.py') and not f.startswith('_'))
    # test_security.py fuzzes the three security modules with strategies of its own (test_fuzz_<module>).
    covered = (set(SPECS) | set(PG_SPECS) | set(SERVICE_SPECS) | set(PGBOUNCER_SPECS)
               | {'http_check', 'evidence_capture', 'firewall_block', 'packet_capture'})
    assert len(modules) >= 25
    assert [m for m in modules if m not in covered] == []


# The tracebacks this fuzz found (issue 9), kept as named cases: each is now one message.
@pytest.mark.parametrize('module, args, fragment', [
    (alertmanager_alert_info, dict(url=NOWHERE, bearer_token='\u0100'), 'bearer_token must be one line of latin-1'),
    (alertmanager_alert_info, dict(url=NOWHERE, bearer_token='a\r\nX-Evil: 1'), 'bearer_token must be one line'),
    (alertmanager_alert_info, dict(url=NOWHERE, ca_path='\x00'), 'ca_path: a path must not contain a NUL'),
    (redis_info, dict(url=REDIS_NOWHERE, db='inf'), 'db: '),
    (redis_info, dict(url=REDIS_NOWHERE, clients_critical_percent=10 ** 400), 'clients_critical_percent: '),
    (incident, dict(incident_id='INC-2026-12-01-001', alert=False, _ansible_check_mode=True), 'alert: expected a dict'),
])
def test_found_by_fuzzing(module, args, fragment, store):  # pylint: disable=redefined-outer-name
    if 'store' in spec_of(module):
        args = dict(args, store='files', store_path=store)
    kind, result = run(module, args)
    # a failure with one msg, or (a diagnosis that cannot reach its target) status unknown with the reason
    said = result['msg'] if kind is not Exited else ' '.join(result.get('reasons') or [])
    assert fragment in said, result
    if kind is Exited:
        assert result['status'] == 'unknown', result
