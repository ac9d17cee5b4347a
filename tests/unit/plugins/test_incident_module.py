"""The incident and incident_info modules in-process, on a files store in a temp directory."""
import os

import pytest

from ansible_collections.incident.response.plugins.module_utils import _incident as inc
from ansible_collections.incident.response.plugins.modules import incident, incident_info

from module_harness import Exited, Failed, run


def call(module, store_path, check=False, diff=False, **args):
    args = dict(args, store='files', store_path=store_path)
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    return run(module, args)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'store')


def test_status_times_fill_only_what_is_empty():
    now = '2026-12-01T20:00:00.000Z'
    assert incident.status_times({}, 'investigating', now, {}) == {}
    assert incident.status_times({}, 'identified', now, {}) == dict(acknowledged=now)
    assert incident.status_times({'acknowledged': 'x'}, 'monitoring', now, {}) == dict(mitigated=now)
    assert incident.status_times({}, 'resolved', now, {'resolved': 'y'}) == dict(acknowledged=now, mitigated=now)
    assert set(incident.status_times({}, 'closed', now, {})) == {'acknowledged', 'mitigated', 'resolved', 'closed'}


def test_event_key_is_derived_from_content():
    base = dict(event_type='note', text='bridge opened', event=None, key=None, allow_duplicate=False)
    assert incident.event_key(base) == incident.event_key(dict(base))
    assert incident.event_key(base) != incident.event_key(dict(base, text='bridge closed'))
    assert incident.event_key(dict(base, key='mine')) == 'mine'
    assert incident.event_key(dict(base, allow_duplicate=True)) is None


def test_open_check_mode_writes_nothing(path):
    kind, result = call(incident, path, check=True, title='x', severity='SEV-2')
    assert kind is Exited, result
    assert result['changed'] and result['created']
    assert result['incident']['severity'] == 'SEV2' and result['incident']['priority'] == 'P1'
    assert result['incident_id'].startswith('INC-')
    assert not os.path.exists(path)


def test_open_update_event_close_and_info(path):
    kind, opened = call(incident, path, title='tviews down', system='pg_tviews', severity='SEV 1')
    assert kind is Exited and opened['created']
    incident_id = opened['incident_id']
    assert opened['events'][0]['type'] == 'opened'
    kind, result = call(incident, path, diff=True, state='update', incident_id=incident_id, status='monitoring',
                        impact='reports stale')
    assert kind is Exited and result['changed']
    assert result['diff']['before']['status'] == 'investigating' and result['diff']['after']['status'] == 'monitoring'
    assert result['incident']['times']['mitigated']
    assert [e['type'] for e in result['events']] == ['status', 'updated']
    kind, again = call(incident, path, state='update', incident_id=incident_id, status='monitoring',
                       impact='reports stale')
    assert kind is Exited and not again['changed'] and again['incident']['revision'] == result['incident']['revision']
    kind, result = call(incident, path, state='close', incident_id=incident_id, status='resolved')
    assert kind is Exited and result['incident']['status'] == 'resolved'
    kind, info = call(incident_info, path, incident_id=incident_id)
    assert kind is Exited and info['status'] == 'ok'
    assert [e['type'] for e in info['events']] == ['opened', 'status', 'updated', 'closed']


@pytest.mark.parametrize('args, fragment', [
    (dict(title='x', severity='SEV0'), 'unknown severity'),
    (dict(incident_id='../x'), 'invalid incident id'),
    (dict(incident_id='x' * 65), 'invalid incident id'),
    (dict(state='update', incident_id='nope', status='resolved'), 'does not exist'),
    (dict(state='event', incident_id='nope', text='m'), 'does not exist'),
    (dict(state='update'), 'incident_id'),
    (dict(state='close', incident_id='x', status='mitigating'), None),
    (dict(times=dict(sometime='2026-12-01T00:00:00Z')), 'unknown key'),
    (dict(store_timeout=0), 'at least 1 second'),
])
def test_bad_input_fails_with_one_message(path, args, fragment):
    if args.get('state') == 'close':
        call(incident, path, incident_id='x')
    kind, result = call(incident, path, **args)
    assert kind is Failed, result
    assert fragment is None or fragment in result['msg'], result['msg']
    assert 'Traceback' not in result['msg']


def test_close_refuses_a_status_that_is_not_an_end(path):
    call(incident, path, incident_id='x')
    kind, result = call(incident, path, state='close', incident_id='x', status='mitigating')
    assert kind is Failed and 'resolved or closed' in result['msg']
    assert inc.FileStore(path).get('x')['status'] == 'investigating'


def test_event_needs_a_message(path):
    call(incident, path, incident_id='x')
    kind, result = call(incident, path, state='event', incident_id='x')
    assert kind is Failed and 'needs a text' in result['msg']


def test_info_refuses_a_negative_limit(path):
    kind, result = call(incident_info, path, limit=-1)
    assert kind is Failed and 'limit' in result['msg']
