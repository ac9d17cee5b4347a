"""The Kubernetes backend: pure logic, and every interface method against the FAKE API server.

The FAKE server (tests/fake_k8s/server.py) is not Kubernetes: it answers the endpoints the backend calls
with real object shapes and a toy controller. Integration tests run the modules against it (and
against a real cluster with make test-k8s).
"""
import datetime
import json
import os
import sys
import time

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.incident.response.plugins.module_utils import _kubernetes
from ansible_collections.incident.response.plugins.module_utils._common import BackendError
from ansible_collections.incident.response.plugins.module_utils._kubernetes import (
    KubernetesBackend, deployment_view, kubernetes_argument_spec, pick_rollback_target, pod_view, selector_string,
    template_without_hash)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
from fake_k8s.server import FakeKubeServer, deployment_manifest, json_patch, merge_patch  # noqa: E402 pylint: disable=wrong-import-position

NOW = datetime.datetime(2026, 11, 25, 10, 0, 0, tzinfo=datetime.timezone.utc)


class Failed(Exception):
    pass


class FakeModule(object):
    """What the backend uses of an AnsibleModule: params and fail_json."""

    def __init__(self, **params):
        self.params = dict((key, None) for key in kubernetes_argument_spec())
        self.params['namespace'] = 'default'
        self.params.update(params)

    def fail_json(self, **kwargs):
        raise Failed(kwargs)


def pod(name='web-abc-1', phase='Running', ready=True, rs='web-abc', deleting=False, containers=None):
    meta = dict(name=name, ownerReferences=[dict(kind='ReplicaSet', name=rs, uid='uid-' + rs)])
    if deleting:
        meta['deletionTimestamp'] = '2026-11-25T09:59:00Z'
    statuses = containers if containers is not None else [
        dict(name='app', ready=ready, restartCount=0, state={'running': {'startedAt': '2026-11-25T09:58:20Z'}})]
    return dict(metadata=meta, spec=dict(containers=[dict(name='app', image='web:2')], nodeName='n1'),
                status=dict(phase=phase, containerStatuses=statuses,
                            conditions=[dict(type='Ready', status='True' if ready else 'False')]))


# ---------------------------------------------------------------- pure logic
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
    return dict(metadata=dict(name=name, uid='uid-' + name, annotations={_kubernetes.REVISION_ANNOTATION: str(revision)}),
                spec=dict(replicas=0, template=dict(metadata=dict(labels={'app': 'web', 'pod-template-hash': name}),
                                                    spec=dict(containers=[dict(name='app', image=image)]))))


def _deployment(image='web:2', replicas=2, generation=2, observed=2, revision=2):
    return dict(metadata=dict(name='web', namespace='prod', generation=generation,
                              annotations={_kubernetes.REVISION_ANNOTATION: str(revision)}),
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


def test_argument_spec_kubeconfig_falls_back_to_the_environment(monkeypatch):
    monkeypatch.delenv('K8S_AUTH_KUBECONFIG', raising=False)
    monkeypatch.setenv('KUBECONFIG', '/etc/kube/prod.yml')
    with patch_module_args({}):
        module = basic.AnsibleModule(argument_spec=kubernetes_argument_spec())
    assert module.params['kubeconfig'] == '/etc/kube/prod.yml' and module.params['namespace'] is None
    monkeypatch.setenv('K8S_AUTH_KUBECONFIG', '/etc/kube/k8s-auth.yml')
    with patch_module_args({}):
        module = basic.AnsibleModule(argument_spec=kubernetes_argument_spec())
    assert module.params['kubeconfig'] == '/etc/kube/k8s-auth.yml'
    assert kubernetes_argument_spec()['api_key']['no_log'] is True


def test_missing_library_names_it_and_where_it_belongs(monkeypatch):
    monkeypatch.setattr(_kubernetes, 'HAS_KUBERNETES', False)
    with pytest.raises(Failed) as info:
        KubernetesBackend(FakeModule())
    msg = info.value.args[0]['msg']
    assert 'kubernetes' in msg and 'on the host that runs the module (the target)' in msg


def test_no_configuration_at_all_is_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('KUBERNETES_SERVICE_HOST', raising=False)
    with pytest.raises(BackendError, match='no Kubernetes API server configured: give kubeconfig'):
        KubernetesBackend(FakeModule())


def test_in_cluster_configuration_is_used_when_the_service_account_exists(monkeypatch, tmp_path):
    (tmp_path / 'token').write_text('in-cluster-token')
    (tmp_path / 'namespace').write_text('insights\n')
    (tmp_path / 'ca.crt').write_text('-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n')
    monkeypatch.setattr(_kubernetes, 'SERVICE_ACCOUNT_DIR', str(tmp_path))
    monkeypatch.setattr(_kubernetes.kubernetes.config.incluster_config, 'SERVICE_TOKEN_FILENAME',
                        str(tmp_path / 'token'))
    monkeypatch.setattr(_kubernetes.kubernetes.config.incluster_config, 'SERVICE_CERT_FILENAME',
                        str(tmp_path / 'ca.crt'))
    monkeypatch.setenv('KUBERNETES_SERVICE_HOST', '127.0.0.1')
    monkeypatch.setenv('KUBERNETES_SERVICE_PORT', '1')
    cfg, source, namespace = _kubernetes.build_configuration(FakeModule(namespace=None).params)
    assert source == 'in-cluster service account' and namespace == 'insights'
    assert cfg.host == 'https://127.0.0.1:1'
    assert cfg.get_api_key_with_prefix('BearerToken', alias='authorization') == 'bearer in-cluster-token'


# ---------------------------------------------------------------- the fake's patch semantics
def test_fake_strategic_merge_patch_merges_containers_by_name_and_null_deletes():
    target = dict(spec=dict(containers=[dict(name='app', image='a:1'), dict(name='side', image='s:1')]),
                  metadata=dict(annotations=dict(x='1', y='2')))
    patched = merge_patch(target, dict(spec=dict(containers=[dict(name='app', image='a:2')]),
                                       metadata=dict(annotations=dict(x=None))), strategic=True)
    assert [c['image'] for c in patched['spec']['containers']] == ['a:2', 's:1']
    assert patched['metadata']['annotations'] == dict(y='2')
    plain = merge_patch(target, dict(spec=dict(containers=[dict(name='app', image='a:2')])))
    assert len(plain['spec']['containers']) == 1


def test_fake_json_patch_replace_and_failed_test():
    doc = dict(spec=dict(template=dict(a=1)))
    assert json_patch(doc, [dict(op='replace', path='/spec/template', value=dict(b=2))]) == dict(
        spec=dict(template=dict(b=2)))
    with pytest.raises(Exception, match='testing value'):
        json_patch(doc, [dict(op='test', path='/spec/template', value=dict(z=0))])


# ---------------------------------------------------------------- the backend against the FAKE API server
@pytest.fixture
def fake_k8s(tmp_path):
    server = FakeKubeServer(ready_delay=0.2, terminate_delay=0.2).start()
    server.kubeconfig_path = server.kubeconfig(str(tmp_path / 'kubeconfig'))
    yield server
    server.stop()


@pytest.fixture
def backend(fake_k8s):
    fake_k8s.cluster.create_deployment('default', deployment_manifest(
        'web', replicas=2, image='web:1', log_lines=['INFO web started', 'ERROR upstream timeout password=hunter2']))
    return KubernetesBackend(FakeModule(kubeconfig=fake_k8s.kubeconfig_path))


def settle(backend, name='web', timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = backend.service(name)
        if view['rollout_complete']:
            return view
        time.sleep(0.1)
    raise AssertionError('rollout did not complete: %s' % backend.service(name))


def set_image(fake_k8s, image, name='web'):
    fake_k8s.cluster.patch_deployment('default', name, 'application/strategic-merge-patch+json',
                                      dict(spec=dict(template=dict(spec=dict(containers=[dict(name='app',
                                                                                              image=image)])))))


def test_service_and_services_report_the_deployment(backend):
    view = settle(backend)
    assert view['platform'] == 'kubernetes' and view['namespace'] == 'default'
    assert (view['desired_replicas'], view['running_replicas'], view['ready_replicas']) == (2, 2, 2)
    assert view['image'] == 'web:1' and view['revision'] == 1
    assert set(i['state'] for i in view['instances']) == {'running'}
    assert [s['name'] for s in backend.services()] == ['web']


def test_unknown_deployment_names_the_namespace_and_what_exists(backend):
    with pytest.raises(BackendError) as info:
        backend.service('nope')
    assert str(info.value) == 'deployment nope not found in namespace default (deployments there: web)'


def test_scale_patches_the_scale_subresource(backend, fake_k8s):
    settle(backend)
    backend.scale('web', 4)
    assert ('PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale') in fake_k8s.cluster.mutations
    view = settle(backend)
    assert view['ready_replicas'] == 4 and view['revision'] == 1
    with pytest.raises(BackendError, match='must not be negative'):
        backend.scale('web', -1)


def test_restart_rolls_the_deployment_with_the_restarted_at_annotation(backend, fake_k8s):
    before = set(i['id'] for i in settle(backend)['instances'])
    assert backend.restart('web') == []
    template = fake_k8s.cluster.get_deployment('default', 'web')['spec']['template']
    assert _kubernetes.RESTARTED_AT_ANNOTATION in template['metadata']['annotations']
    view = settle(backend)
    assert view['revision'] == 2 and not before & set(i['id'] for i in view['instances'])


def test_restart_chosen_pods_deletes_only_them(backend):
    pods = [i['id'] for i in settle(backend)['instances']]
    assert backend.restart('web', [pods[0]]) == [pods[0]]
    view = settle(backend)
    ids = set(i['id'] for i in view['instances'] if i['state'] != 'terminating')
    assert pods[0] not in ids and pods[1] in ids and view['revision'] == 1
    with pytest.raises(BackendError, match='pods web-x do not belong to deployment web'):
        backend.restart('web', ['web-x'])


def test_pause_records_the_replicas_and_unpause_restores_them(backend, fake_k8s):
    settle(backend)
    backend.scale('web', 3)
    backend.pause('web')
    assert backend.is_paused('web')
    dep = fake_k8s.cluster.get_deployment('default', 'web')
    assert dep['spec']['replicas'] == 0 and dep['metadata']['annotations'][_kubernetes.PAUSED_ANNOTATION] == '3'
    view = settle(backend)
    assert view['paused'] and view['paused_replicas'] == 3 and view['desired_replicas'] == 0
    backend.pause('web')    # a second pause keeps the recorded count
    assert fake_k8s.cluster.get_deployment('default', 'web')['metadata']['annotations'][
        _kubernetes.PAUSED_ANNOTATION] == '3'
    backend.unpause('web')
    assert not backend.is_paused('web')
    assert settle(backend)['ready_replicas'] == 3
    mutations = len(fake_k8s.cluster.mutations)
    backend.unpause('web')
    assert len(fake_k8s.cluster.mutations) == mutations


def test_unpause_with_a_garbled_annotation_fails_closed(backend, fake_k8s):
    fake_k8s.cluster.patch_deployment('default', 'web', 'application/merge-patch+json',
                                      dict(metadata=dict(annotations={_kubernetes.PAUSED_ANNOTATION: 'many'})))
    with pytest.raises(BackendError, match="holds 'many', not a replica count"):
        backend.unpause('web')


def test_history_and_rollback_to_previous_and_given_revision(backend, fake_k8s):
    settle(backend)
    set_image(fake_k8s, 'web:2')
    settle(backend)
    set_image(fake_k8s, 'web:3')
    settle(backend)
    assert [(e['revision'], e['image'], e['current']) for e in backend.history('web')] == [
        (1, 'web:1', False), (2, 'web:2', False), (3, 'web:3', True)]
    plan = backend.rollback_target('web')
    assert plan['from'] == dict(revision=3, image='web:3') and plan['to']['revision'] == 2
    mutations = len(fake_k8s.cluster.mutations)
    result = backend.rollback('web')
    assert len(fake_k8s.cluster.mutations) == mutations + 1
    assert result['to']['image'] == 'web:2' and result['from']['image'] == 'web:3'
    view = settle(backend)
    assert view['image'] == 'web:2' and view['revision'] == 4
    assert set(i['image'] for i in view['instances']) == {'web:2'}
    # The pod-template-hash label did not leak into the deployment's template.
    labels = fake_k8s.cluster.get_deployment('default', 'web')['spec']['template']['metadata']['labels']
    assert labels == {'app': 'web'}
    assert [(e['revision'], e['previous_revisions']) for e in backend.history('web')] == [(1, []), (3, []), (4, [2])]
    # Asking again for revision 2 finds the ReplicaSet that now runs it as revision 4: nothing to do.
    mutations = len(fake_k8s.cluster.mutations)
    again = backend.rollback('web', revision=2)
    assert again['changed'] is False and again['to']['revision'] == 4 and again['from']['revision'] == 4
    assert len(fake_k8s.cluster.mutations) == mutations
    assert backend.rollback('web', revision=1)['changed'] is True
    assert settle(backend)['image'] == 'web:1'


def test_rollback_without_history_is_a_clear_message(backend, fake_k8s):
    settle(backend)
    mutations = len(fake_k8s.cluster.mutations)
    with pytest.raises(BackendError) as info:
        backend.rollback('web')
    assert str(info.value) == 'deployment web has no previous revision in namespace default (revisions kept: 1)'
    assert len(fake_k8s.cluster.mutations) == mutations


def test_logs_filtered_by_pattern_and_redacted(backend, fake_k8s):
    settle(backend)
    found = backend.logs('web', pattern='ERROR')
    assert len(found) == 2
    assert all(entry['line'] == 'ERROR upstream timeout password=********' for entry in found)
    assert [entry['line'] for entry in backend.logs('web', lines=1)] == ['ERROR upstream timeout password=********'] * 2
    assert backend.logs('web', lines=0) == []
    time.sleep(1.2)
    pod_name = found[0]['instance']
    fake_k8s.cluster.add_log('default', pod_name, 'ERROR fresh failure')
    assert backend.logs('web', since=1, pattern='ERROR') == [dict(instance=pod_name, line='ERROR fresh failure')]


def test_logs_of_a_crashing_pod_include_the_previous_container(fake_k8s):
    fake_k8s.cluster.create_deployment('default', deployment_manifest(
        'crashy', replicas=1, log_lines=['FATAL missing DATABASE_URL'], crash=True))
    backend = KubernetesBackend(FakeModule(kubeconfig=fake_k8s.kubeconfig_path))
    time.sleep(0.5)
    view = backend.service('crashy')
    assert view['instances'][0]['state'] == 'restarting' and view['instances'][0]['exit_code'] == 1
    assert view['ready_replicas'] == 0 and not view['rollout_complete']
    lines = backend.logs('crashy', pattern='FATAL')
    assert any(entry['instance'].endswith('(previous)') for entry in lines)


def test_stats_are_empty_with_a_note(backend):
    assert backend.stats('web') == {}
    assert _kubernetes.STATS_NOTE in backend.notes


def test_unreachable_api_server_names_it(fake_k8s):
    fake_k8s.stop()
    with pytest.raises(BackendError) as info:
        KubernetesBackend(FakeModule(kubeconfig=fake_k8s.kubeconfig_path))
    assert 'cannot reach the Kubernetes API server at %s' % fake_k8s.url in str(info.value)
    assert 'Connection refused' in str(info.value)


def test_wrong_token_and_forbidden_are_clear(fake_k8s, tmp_path):
    fake_k8s.cluster.create_deployment('default', deployment_manifest('web', replicas=1))
    bad = fake_k8s.kubeconfig(str(tmp_path / 'bad'), token='wrong')
    with pytest.raises(BackendError, match=r'rejected the credentials .*\(401 Unauthorized\)'):
        KubernetesBackend(FakeModule(kubeconfig=bad)).service('web')
    good = KubernetesBackend(FakeModule(host=fake_k8s.url, api_key='fake-token'))
    fake_k8s.cluster.denied.add(('patch', 'deployments'))
    with pytest.raises(BackendError, match=r'forbidden \(403\) while restarting \(deployment web in namespace '
                                           r'default\).*cannot patch'):
        good.restart('web')


def test_kubeconfig_errors(fake_k8s, tmp_path):
    with pytest.raises(BackendError, match='kubeconfig /nonexistent/kubeconfig does not exist'):
        KubernetesBackend(FakeModule(kubeconfig='/nonexistent/kubeconfig'))
    with pytest.raises(BackendError, match='cannot use kubeconfig .* \\(context staging\\)'):
        KubernetesBackend(FakeModule(kubeconfig=fake_k8s.kubeconfig_path, context='staging'))


def test_namespace_comes_from_the_option_else_the_context_else_default(fake_k8s, tmp_path):
    fake_k8s.cluster.create_deployment('insights', deployment_manifest('app', replicas=1))
    with_ns = fake_k8s.kubeconfig(str(tmp_path / 'with-ns'), namespace='insights')
    assert KubernetesBackend(FakeModule(kubeconfig=with_ns, namespace=None)).namespace == 'insights'
    assert [s['name'] for s in KubernetesBackend(FakeModule(kubeconfig=with_ns, namespace=None)).services()] == ['app']
    assert KubernetesBackend(FakeModule(kubeconfig=with_ns, namespace='prod')).namespace == 'prod'
    config = json.loads((tmp_path / 'with-ns').read_text())
    del config['contexts'][0]['context']['namespace']
    (tmp_path / 'without-ns').write_text(json.dumps(config))
    assert KubernetesBackend(FakeModule(kubeconfig=str(tmp_path / 'without-ns'), namespace=None)).namespace == 'default'
    assert KubernetesBackend(FakeModule(host=fake_k8s.url, api_key='fake-token', namespace=None)).namespace == 'default'
