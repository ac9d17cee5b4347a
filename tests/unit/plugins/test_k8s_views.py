"""Pure views of Kubernetes objects (_k8s_views.py): pods, deployments, revisions, on hand-written objects."""
import datetime

import pytest

from ansible_collections.incident.response.plugins.module_utils._common import BackendError
from ansible_collections.incident.response.plugins.module_utils._k8s_views import (
    REVISION_ANNOTATION, deployment_view, history_entries, pick_rollback_target, pod_view, selector_string,
    template_without_hash)

NOW = datetime.datetime(2026, 11, 25, 10, 0, 0, tzinfo=datetime.timezone.utc)


def pod(name='web-abc-1', phase='Running', ready=True, rs='web-abc', deleting=False, containers=None):
    meta = dict(name=name, ownerReferences=[dict(kind='ReplicaSet', name=rs, uid='uid-' + rs)])
    if deleting:
        meta['deletionTimestamp'] = '2026-11-25T09:59:00Z'
    statuses = containers if containers is not None else [
        dict(name='app', ready=ready, restartCount=0, state={'running': {'startedAt': '2026-11-25T09:58:20Z'}})]
    return dict(metadata=meta, spec=dict(containers=[dict(name='app', image='web:2')], nodeName='n1'),
                status=dict(phase=phase, containerStatuses=statuses,
                            conditions=[dict(type='Ready', status='True' if ready else 'False')]))


def test_selector_string_renders_labels_and_expressions():
    selector = dict(matchLabels={'app': 'web', 'tier': 'api'},
                    matchExpressions=[dict(key='env', operator='In', values=['prod', 'stage']),
                                      dict(key='canary', operator='DoesNotExist'),
                                      dict(key='zone', operator='NotIn', values=['b']),
                                      dict(key='team', operator='Exists')])
    assert selector_string(selector) == 'app=web,tier=api,env in (prod,stage),!canary,zone notin (b),team'
    assert selector_string(None) == ''


def test_pod_view_running_ready_pod():
    view = pod_view(pod(), {'web-abc': 3}, now=NOW)
    assert view['state'] == 'running' and view['health'] == 'healthy'
    assert view['uptime_seconds'] == 100 and view['revision'] == 3 and view['exit_code'] is None
    assert view['image'] == 'web:2' and view['id'] == 'web-abc-1'


@pytest.mark.parametrize('kwargs, state, health', [
    (dict(phase='Pending', ready=False), 'pending', 'starting'),
    (dict(deleting=True), 'terminating', 'none'),
    (dict(phase='Failed', ready=False), 'exited', 'none'),
    (dict(phase='Unknown'), 'unknown', 'none'),
    (dict(ready=False), 'running', 'unhealthy'),
])
def test_pod_view_states(kwargs, state, health):
    view = pod_view(pod(**kwargs), now=NOW)
    assert (view['state'], view['health']) == (state, health)


def test_pod_view_crashloop_reports_exit_code_restarts_and_oom():
    statuses = [dict(name='app', ready=False, restartCount=4,
                     state={'waiting': {'reason': 'CrashLoopBackOff'}},
                     lastState={'terminated': {'exitCode': 137, 'reason': 'OOMKilled'}})]
    view = pod_view(pod(ready=False, containers=statuses), now=NOW)
    assert view['state'] == 'restarting' and view['health'] == 'unhealthy'
    assert view['restart_count'] == 4 and view['exit_code'] == 137 and view['oom_killed'] is True
    assert view['uptime_seconds'] is None


def _rs(name, revision, image):
    return dict(metadata=dict(name=name, uid='uid-' + name, annotations={REVISION_ANNOTATION: str(revision)}),
                spec=dict(replicas=0, template=dict(metadata=dict(labels={'app': 'web', 'pod-template-hash': name}),
                                                    spec=dict(containers=[dict(name='app', image=image)]))))


def _deployment(image='web:2', replicas=2, generation=2, observed=2, revision=2):
    return dict(metadata=dict(name='web', namespace='prod', generation=generation,
                              annotations={REVISION_ANNOTATION: str(revision)}),
                spec=dict(replicas=replicas, template=dict(metadata=dict(labels={'app': 'web'}),
                                                           spec=dict(containers=[dict(name='app', image=image)]))),
                status=dict(observedGeneration=observed, availableReplicas=2))


def test_deployment_view_counts_only_pods_of_the_current_template_as_ready():
    replicasets = [_rs('web-abc', 1, 'web:1'), _rs('web-def', 2, 'web:2')]
    pods = [pod('web-abc-1', rs='web-abc'), pod('web-abc-2', rs='web-abc'), pod('web-def-1', rs='web-def')]
    view = deployment_view(_deployment(), replicasets, pods, now=NOW)
    assert view['desired_replicas'] == 2 and view['running_replicas'] == 3
    assert view['ready_replicas'] == 1 and view['updated_replicas'] == 1
    assert view['rollout_complete'] is False and view['revision'] == 2 and view['image'] == 'web:2'
    assert [i['revision'] for i in view['instances']] == [1, 1, 2]


def test_deployment_view_rollout_complete_needs_the_new_generation_observed():
    replicasets = [_rs('web-def', 2, 'web:2')]
    pods = [pod('web-def-1', rs='web-def'), pod('web-def-2', rs='web-def')]
    assert deployment_view(_deployment(), replicasets, pods)['rollout_complete'] is True
    assert deployment_view(_deployment(generation=3), replicasets, pods)['rollout_complete'] is False


def test_rollback_target_previous_given_and_missing():
    replicasets = [_rs('web-abc', 1, 'web:1'), _rs('web-def', 3, 'web:3'), _rs('web-ghi', 2, 'web:2')]
    assert pick_rollback_target('web', 'prod', 3, replicasets)['metadata']['name'] == 'web-ghi'
    assert pick_rollback_target('web', 'prod', 3, replicasets, revision=1)['metadata']['name'] == 'web-abc'
    with pytest.raises(BackendError, match='deployment web has no revision 7 in namespace prod'):
        pick_rollback_target('web', 'prod', 3, replicasets, revision=7)
    with pytest.raises(BackendError, match=r'deployment web has no previous revision in namespace prod \(revisions '
                                           r'kept: 1\)'):
        pick_rollback_target('web', 'prod', 1, [_rs('web-abc', 1, 'web:1')])


def test_template_without_hash_keeps_the_source():
    rs = _rs('web-abc', 1, 'web:1')
    template = template_without_hash(rs['spec']['template'])
    assert template['metadata']['labels'] == {'app': 'web'}
    assert rs['spec']['template']['metadata']['labels']['pod-template-hash'] == 'web-abc'


def test_history_entries_oldest_first_with_the_current_one_marked():
    replicasets = [_rs('web-def', 2, 'web:2'), _rs('web-abc', 1, 'web:1'), dict(metadata=dict(name='stray'))]
    entries = history_entries(_deployment(), replicasets)
    assert [(e['revision'], e['image'], e['current'], e['replicaset']) for e in entries] == [
        (1, 'web:1', False, 'web-abc'), (2, 'web:2', True, 'web-def')]


def test_duplicate_revision_annotations_are_one_clear_message_not_a_traceback():
    """Issue 9 (fuzzing): two ReplicaSets with one revision number made sorting compare dicts (TypeError)."""
    twins = [_rs('web-abc', 1, 'web:1'), _rs('web-xyz', 1, 'web:1b'), _rs('web-def', 2, 'web:2')]
    with pytest.raises(BackendError, match=r'deployment web has 2 ReplicaSets with revision 1 in namespace prod '
                                           r'\(web-abc, web-xyz\)'):
        pick_rollback_target('web', 'prod', 2, twins)
    with pytest.raises(BackendError, match='2 ReplicaSets with revision 1'):
        pick_rollback_target('web', 'prod', 2, twins, revision=1)
    # A duplicate that is not the target does not stand in the way.
    target = pick_rollback_target('web', 'prod', 3, [_rs('a', 1, 'x:1'), _rs('b', 1, 'x:1b'), _rs('c', 2, 'x:2'),
                                                     _rs('d', 3, 'x:3')])
    assert target['metadata']['name'] == 'c'
    assert [e['revision'] for e in history_entries(_deployment(), twins)] == [1, 1, 2]
