"""The timeline events (plugins/plugin_utils/_timeline.py) and the job-events converter, without a run."""
import importlib.util
import json
import os

from ansible_collections.incident.response.plugins.plugin_utils import _timeline as tl

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))


def load_converter():
    spec = importlib.util.spec_from_file_location('job_events_to_timeline',
                                                  os.path.join(ROOT, 'scripts', 'job_events_to_timeline.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outcomes():
    assert tl.outcome_of('ok', dict(changed=True)) == 'changed'
    assert tl.outcome_of('ok', dict(changed=False)) == 'ok'
    for kind in ('failed', 'skipped', 'unreachable'):
        assert tl.outcome_of(kind, {}) == kind


def test_collection_modules_give_summary_actions_status_others_nothing():
    result = dict(changed=True, summary='terminated 2 backends', actions=[dict(action='terminate', done=True)])
    assert tl.module_details('incident.response.pg_backends', result) == dict(
        summary='terminated 2 backends', actions=[dict(action='terminate', done=True)])
    assert tl.module_details('ansible.builtin.command', result) == {}
    diag = dict(status='critical', reasons=['95% of max_connections'], severity='SEV2', priority='P1')
    assert tl.module_details('incident.response.pg_activity_info', diag) == diag
    loop = dict(results=[dict(summary='a', actions=[1]), dict(summary='b', actions=[2])])
    assert tl.module_details('incident.response.pg_backends', loop) == dict(summary='a; b', actions=[1, 2])


def test_no_log_is_censored_and_failures_carry_their_message():
    event = tl.task_event('h', 'p', 't', 'incident.response.pg_backends', 'ok',
                          dict(censored='hidden', summary='secret', _ansible_no_log=True))
    assert event['censored'] is True and 'summary' not in event and 'secret' not in json.dumps(event)
    event = tl.task_event('h', 'p', 't', 'ansible.builtin.fail', 'failed', dict(msg='boom'), ignore_errors=True)
    assert (event['outcome'], event['message'], event['ignored']) == ('failed', 'boom', True)


def test_secret_values_are_masked_everywhere():
    secrets = tl.secret_values(dict(pg_login_password='hunter22', webhook_url='https://x/T/B/tok', name='alice'))
    assert secrets == {'hunter22', 'https://x/T/B/tok'}
    masked = tl.mask_literals(dict(a=['pw hunter22', dict(b='https://x/T/B/tok?')], n=3), secrets)
    assert masked == dict(a=['pw ********', dict(b='********?')], n=3)


def test_times_are_utc_with_milliseconds():
    assert tl.iso('2026-12-01T20:05:29.857008+00:00') == '2026-12-01T20:05:29.857Z'
    assert tl.iso('2026-12-01T21:05:29.5+01:00') == '2026-12-01T20:05:29.500Z'
    assert tl.iso(None) is None


def test_incident_id_from_the_role_fact_or_the_module():
    assert tl.incident_id_from_result('ansible.builtin.set_fact', dict(ansible_facts=dict(incident_id='INC-1'))) == 'INC-1'
    assert tl.incident_id_from_result('incident.response.incident', dict(incident_id='INC-2')) == 'INC-2'
    assert tl.incident_id_from_result('incident.response.incident', dict(incident_id='INC-2', failed=True)) is None
    assert tl.incident_id_from_result('ansible.builtin.debug', dict(incident_id='INC-3')) is None
    args = dict(invocation=dict(module_args=dict(store='files', store_path='/s', store_dsn='VALUE_SPECIFIED_IN_NO_LOG_PARAMETER')))
    assert tl.store_params_from_result('incident.response.incident', args) == dict(store='files', store_path='/s')


def test_converter_builds_the_callbacks_events_from_job_events():
    converter = load_converter()
    data = dict(play='P', play_uuid='pu', play_pattern='localhost', task='T', task_uuid='tu_2', host='localhost',
                resolved_action='incident.response.pg_backends', start='2026-12-01T20:00:00+00:00',
                end='2026-12-01T20:00:01+00:00', res=dict(changed=True, summary='s', actions=[]))
    events = [
        dict(event='playbook_on_start', counter=1, event_data={}),
        dict(event='playbook_on_play_start', counter=2, created='2026-12-01T19:59:59+00:00', event_data=data),
        dict(event='runner_on_start', counter=3, event_data=data),
        dict(event='runner_on_ok', counter=4, created='2026-12-01T20:00:01+00:00', event_data=data),
        dict(event='playbook_on_stats', counter=5, created='2026-12-01T20:00:02+00:00',
             event_data=dict(ok=dict(localhost=1), changed=dict(localhost=1), processed=dict(localhost=1))),
    ]
    timeline, found, store = converter.convert(events, 'job1', False, 'runner')
    assert [e['type'] for e in timeline] == ['play_start', 'task', 'play_end', 'stats']
    task = timeline[1]
    assert (task['outcome'], task['summary'], task['task_uuid'], task['key']) == ('changed', 's', 'tu', 'job:job1:4')
    assert task['start'] == '2026-12-01T20:00:00.000Z' and task['end'] == '2026-12-01T20:00:01.000Z'
    assert timeline[2]['key'] == 'job:job1:5:play_end'
    assert timeline[3]['hosts']['localhost'] == dict(ok=1, changed=1, failures=0, unreachable=0, skipped=0,
                                                     rescued=0, ignored=0)
    assert found is None and store == {}
    assert converter.is_check_run(['ansible-playbook', '--check', 'x.yml'])
    assert converter.is_check_run(['ansible-playbook', '-vC', 'x.yml'])
    assert not converter.is_check_run(['ansible-playbook', '-v', 'x.yml'])


BATCH = dict(changed=True, summary='terminated 1 backend on 1 target; 1 target failed: db2',
             actions=[dict(action='terminate', target='pid 7', done=True, detail=dict(host='db1', datname='db1'))],
             failed_targets=['db2'],
             targets=dict(db1=dict(changed=True, summary='terminated 1 backend',
                                   actions=[dict(action='terminate', target='pid 7', done=True,
                                                 detail=dict(host='db1', datname='db1'))]),
                          db2=dict(changed=False, failed=True, msg='refusing to terminate 2 backends'),
                          db3=dict(changed=False, summary='no backend matches; nothing to terminate', actions=[])))


def test_a_run_over_many_targets_is_one_event_per_target_named_by_the_target():
    events = tl.task_events('db1', 'p', 'End sessions', 'incident.response.pg_backends', 'ok', BATCH, task_uuid='u')
    assert [(e['host'], e['outcome'], e['ran_on']) for e in events] == [
        ('db1', 'changed', 'db1'), ('db2', 'failed', 'db1'), ('db3', 'ok', 'db1')]
    assert events[0]['actions'][0]['detail']['host'] == 'db1' and events[0]['summary'] == 'terminated 1 backend'
    assert events[1]['message'] == 'refusing to terminate 2 backends' and 'actions' not in events[1]
    assert all(e['task_uuid'] == 'u' for e in events)
    # not split: an ordinary result, another module's, a failed or censored task
    assert len(tl.task_events('h', 'p', 't', 'incident.response.pg_backends', 'ok', dict(changed=True))) == 1
    assert len(tl.task_events('h', 'p', 't', 'ansible.builtin.set_fact', 'ok', BATCH)) == 1
    assert len(tl.task_events('h', 'p', 't', 'incident.response.pg_backends', 'failed', BATCH)) == 1
    censored = tl.task_events('h', 'p', 't', 'incident.response.pg_backends', 'ok', BATCH, no_log=True)
    assert len(censored) == 1 and censored[0]['censored'] is True


def test_converter_splits_a_run_over_many_targets_with_a_key_per_target():
    converter = load_converter()
    data = dict(play='P', task='T', task_uuid='tu', host='db1', resolved_action='incident.response.pg_backends',
                res=BATCH)
    events = [dict(event='runner_on_ok', counter=4, created='2026-12-01T20:00:01+00:00', event_data=data)]
    timeline, _found, _store = converter.convert(events, 'job1', False, 'runner')
    assert [(e['host'], e['key']) for e in timeline] == [
        ('db1', 'job:job1:4:db1'), ('db2', 'job:job1:4:db2'), ('db3', 'job:job1:4:db3')]
