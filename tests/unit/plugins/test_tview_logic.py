"""pg_tviews: the runbooks' decisions (emergency level, SEV class, exit criteria) and argument handling."""
import pytest

from module_harness import Failed, run

from ansible_collections.incident.response.plugins.module_utils import _postgres
from ansible_collections.incident.response.plugins.module_utils._tviews import (
    emergency_level,
    exit_criteria,
    overall_status,
    sev_class,
)
from ansible_collections.incident.response.plugins.modules import tview_info, tview_lock, tview_queue, tview_state


def facts(**kwargs):
    base = dict(total=20, with_errors=0, healthy=20, pending=5, lock_waiting_connections=0, max_connections=100,
                stale_count=0, disabled=0)
    base.update(kwargs)
    return base


@pytest.mark.parametrize('kwargs, level, label, action', [
    (dict(with_errors=11, healthy=9), 'CRITICAL', 'CRITICAL: Majority of TVIEWs failing', 'EXECUTE_EMERGENCY_PROTOCOL'),
    (dict(with_errors=10, healthy=10), 'MONITOR', 'MONITOR: Issues detected but not critical', 'FOLLOW_STANDARD_INCIDENTS'),
    (dict(pending=10001), 'CRITICAL', 'CRITICAL: Massive refresh backlog', 'EXECUTE_EMERGENCY_PROTOCOL'),
    (dict(pending=10000), 'OK', 'OK: no issue detected', 'NONE'),
    (dict(lock_waiting_connections=81), 'CRITICAL', 'CRITICAL: Connection exhaustion', 'EXECUTE_EMERGENCY_PROTOCOL'),
    (dict(lock_waiting_connections=80), 'OK', 'OK: no issue detected', 'NONE'),
    (dict(stale_count=1), 'HIGH', 'HIGH: TVIEWs stale', 'FOLLOW_STANDARD_INCIDENTS'),
    (dict(disabled=3), 'MONITOR', 'MONITOR: Issues detected but not critical', 'FOLLOW_STANDARD_INCIDENTS'),
    (dict(), 'OK', 'OK: no issue detected', 'NONE'),
])
def test_emergency_level_follows_the_runbook(kwargs, level, label, action):
    decided = emergency_level(facts(**kwargs))
    assert (decided['level'], decided['label'], decided['recommended_action']) == (level, label, action)


def test_emergency_level_keeps_the_runbook_order_and_all_reasons():
    decided = emergency_level(facts(with_errors=15, healthy=5, pending=20000, stale_count=4))
    assert decided['label'] == 'CRITICAL: Majority of TVIEWs failing'
    assert len(decided['reasons']) == 2
    assert '20000 pending refreshes' in decided['reasons'][1]


def test_emergency_level_thresholds_are_parameters():
    assert emergency_level(facts(pending=600), dict(max_pending=500))['level'] == 'CRITICAL'
    assert emergency_level(facts(with_errors=3), dict(failing_share=0.1))['level'] == 'CRITICAL'


def test_emergency_level_on_the_extension_contract_names_what_it_cannot_evaluate():
    decided = emergency_level(dict(total=8, with_errors=None, pending=None, stale_count=None,
                                   lock_waiting_connections=0, max_connections=100, suspended=True))
    assert decided['level'] == 'MONITOR'
    assert len(decided['unevaluated']) == 3
    assert any('pg_tviews_queue' in u for u in decided['unevaluated'])


@pytest.mark.parametrize('kwargs, integrity_failures, sev, priority', [
    (dict(with_errors=11, healthy=9), 0, 'SEV1', 'P0'),
    (dict(), 2, 'SEV1', 'P0'),
    (dict(pending=20000), 0, 'SEV2', 'P1'),
    (dict(stale_count=2), 0, 'SEV2', 'P1'),
    (dict(with_errors=1, healthy=19), 0, 'SEV3', 'P2'),
    (dict(), 0, 'SEV4', 'P3'),
])
def test_sev_class(kwargs, integrity_failures, sev, priority):
    f = facts(**kwargs)
    result = sev_class(f, emergency_level(f), integrity_failures)
    assert (result['severity'], result['priority']) == (sev, priority)


@pytest.mark.parametrize('healthy, met', [(20, True), (19, False), (18, False)])
def test_exit_criteria_need_more_than_95_percent_healthy(healthy, met):
    result = exit_criteria(facts(healthy=healthy, with_errors=20 - healthy))
    assert result['met'] is met
    assert result['criteria'][0]['name'] == 'tviews_healthy'


def test_exit_criteria_fail_on_integrity_failures():
    result = exit_criteria(facts(), integrity=[dict(name='tv_a', ok=True), dict(name='tv_b', ok=False, error='x')])
    assert result['met'] is False
    assert 'tv_b' in result['criteria'][1]['detail']


def test_exit_criteria_unknown_without_per_tview_health():
    assert exit_criteria(dict(total=8, healthy=None))['met'] is None
    assert exit_criteria(dict(total=8, healthy=None, health_problems=0))['met'] is True
    assert exit_criteria(dict(total=8, healthy=None, health_problems=0, suspended=True))['met'] is False


def test_overall_status():
    assert overall_status(dict(level='OK')) == 'ok'
    assert overall_status(dict(level='HIGH')) == 'warning'
    assert overall_status(dict(level='OK'), [dict(name='a', ok=False)]) == 'critical'


def test_tview_state_wanted_change():
    row = dict(emergency_disabled=False, emergency_disable_time=None, emergency_disable_reason=None, last_error='x')
    assert tview_state.wanted_change(row, 'disabled', False)
    assert not tview_state.wanted_change(row, 'enabled', False)
    assert tview_state.wanted_change(row, 'enabled', True)
    assert not tview_state.wanted_change(dict(row, emergency_disabled=True), 'disabled', False)


# --- argument handling: one clear message, before any connection ---------------------------

@pytest.fixture
def no_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the module tried to connect before validating its arguments')
    monkeypatch.setattr(_postgres.PgClient, '__init__', refuse)


@pytest.mark.parametrize('module, args, message', [
    (tview_info, dict(stale_after='-1h'), 'stale_after: must not be negative'),
    (tview_info, dict(stale_after=0), 'stale_after must be a positive duration'),
    (tview_info, dict(statement_timeout='soon'), "statement_timeout: 'soon' is not a duration"),
    (tview_info, dict(failing_share=1.5), 'failing_share must be between 0 and 1'),
    (tview_info, dict(max_pending=-1), 'max_pending must not be negative'),
    (tview_info, dict(contract='other'), 'value of contract must be one of'),
    (tview_state, dict(state='disabled'), 'choose the TVIEWs: all=true, names or error_pattern'),
    (tview_state, dict(state='disabled', all=True, names=['tv_a']), 'mutually exclusive'),
    (tview_state, dict(state='disabled', names=[]), 'names must not be empty'),
    (tview_state, dict(state='off', all=True), 'value of state must be one of'),
    (tview_state, dict(all=True), 'missing required arguments: state'),
    (tview_queue, dict(action='archive'), 'action=archive needs incident_id'),
    (tview_queue, dict(action='restore', incident_id=' '), 'action=restore needs incident_id'),
    (tview_queue, dict(action='purge'), 'value of action must be one of'),
    (tview_queue, dict(top=-1), 'top must not be negative'),
    (tview_queue, dict(max_rows=-5), 'max_rows must not be negative'),
    (tview_lock, dict(max_hold='forever'), "max_hold: 'forever' is not a duration"),
    (tview_lock, dict(max_hold=0), 'max_hold must be a positive duration'),
    (tview_lock, dict(max_hold='nan'), 'max_hold'),
    (tview_lock, dict(max_hold=float('inf')), 'max_hold'),
    (tview_info, dict(statement_timeout='0.4ms'), 'below the resolution of 1ms'),
    (tview_info, dict(statement_timeout='inf'), 'statement_timeout'),
    (tview_lock, dict(state='held'), 'value of state must be one of'),
])
def test_bad_input_fails_with_one_clear_message(no_connection, module, args, message):
    kind, result = run(module, args)
    assert kind is Failed
    assert message in result['msg']
