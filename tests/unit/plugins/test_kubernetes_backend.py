"""The Kubernetes client and backend: configuration, and every interface method against the FAKE API server.

The pure views of the objects are tested in test_k8s_views.py.

The FAKE server (tests/fake_k8s/server.py) is not Kubernetes: it answers the endpoints the backend calls
with real object shapes and a toy controller. Integration tests run the modules against it (and
against a real cluster with make test-k8s).
"""
import json
import os
import sys
import time

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.incident.response.plugins.module_utils import _k8s_client, _k8s_views, _kubernetes
from ansible_collections.incident.response.plugins.module_utils._common import BackendError
from ansible_collections.incident.response.plugins.module_utils._k8s_client import kubernetes_argument_spec
from ansible_collections.incident.response.plugins.module_utils._kubernetes import KubernetesBackend

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
from fake_k8s.server import FakeKubeServer, deployment_manifest, json_patch, merge_patch  # noqa: E402 pylint: disable=wrong-import-position


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
    monkeypatch.setattr(_k8s_client, 'HAS_KUBERNETES', False)
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
    monkeypatch.setattr(_k8s_client, 'SERVICE_ACCOUNT_DIR', str(tmp_path))
    _k8s_client.load_kubernetes()
    monkeypatch.setattr(_k8s_client.kubernetes.config.incluster_config, 'SERVICE_TOKEN_FILENAME',
                        str(tmp_path / 'token'))
    monkeypatch.setattr(_k8s_client.kubernetes.config.incluster_config, 'SERVICE_CERT_FILENAME',
                        str(tmp_path / 'ca.crt'))
    monkeypatch.setenv('KUBERNETES_SERVICE_HOST', '127.0.0.1')
    monkeypatch.setenv('KUBERNETES_SERVICE_PORT', '1')
    cfg, source, namespace = _k8s_client.build_configuration(FakeModule(namespace=None).params)
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
    assert _k8s_views.RESTARTED_AT_ANNOTATION in template['metadata']['annotations']
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
    assert dep['spec']['replicas'] == 0 and dep['metadata']['annotations'][_k8s_views.PAUSED_ANNOTATION] == '3'
    view = settle(backend)
    assert view['paused'] and view['paused_replicas'] == 3 and view['desired_replicas'] == 0
    backend.pause('web')    # a second pause keeps the recorded count
    assert fake_k8s.cluster.get_deployment('default', 'web')['metadata']['annotations'][
        _k8s_views.PAUSED_ANNOTATION] == '3'
    backend.unpause('web')
    assert not backend.is_paused('web')
    assert settle(backend)['ready_replicas'] == 3
    mutations = len(fake_k8s.cluster.mutations)
    backend.unpause('web')
    assert len(fake_k8s.cluster.mutations) == mutations


def test_unpause_with_a_garbled_annotation_fails_closed(backend, fake_k8s):
    fake_k8s.cluster.patch_deployment('default', 'web', 'application/merge-patch+json',
                                      dict(metadata=dict(annotations={_k8s_views.PAUSED_ANNOTATION: 'many'})))
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


def test_pause_checks_the_real_replica_count_not_only_the_annotation(backend, fake_k8s):
    """Issue 9: something restored the replicas of a paused deployment; its annotation is still there.

    It is not paused (pods run): pause_state says so, and a pause scales it to 0 again, recording the count
    that ran; unpause then restores that count.
    """
    settle(backend)
    backend.pause('web')
    settle(backend)
    # Someone (an autoscaler, an operator with kubectl scale) brings the pods back; the annotation stays.
    fake_k8s.cluster.patch_deployment('default', 'web', 'application/merge-patch+json', dict(spec=dict(replicas=3)))
    view = settle(backend)
    assert view['desired_replicas'] == 3 and view['paused']
    assert backend.pause_state(view) == dict(paused=False, partly=True)
    assert not backend.is_paused('web')
    backend.pause('web')
    dep = fake_k8s.cluster.get_deployment('default', 'web')
    assert dep['spec']['replicas'] == 0 and dep['metadata']['annotations'][_k8s_views.PAUSED_ANNOTATION] == '3'
    assert backend.pause_state(settle(backend)) == dict(paused=True, partly=True)
    backend.unpause('web')
    assert settle(backend)['ready_replicas'] == 3


def test_service_pause_module_repauses_a_deployment_whose_replicas_came_back(backend, fake_k8s):
    from module_harness import Exited, run  # pylint: disable=import-outside-toplevel
    from ansible_collections.incident.response.plugins.modules import service_pause  # pylint: disable=import-outside-toplevel
    settle(backend)
    args = dict(platform='kubernetes', kubeconfig=fake_k8s.kubeconfig_path, namespace='default', service='web',
                wait_timeout=20)
    kind, result = run(service_pause, args)
    assert kind is Exited and result['changed'] is True
    fake_k8s.cluster.patch_deployment('default', 'web', 'application/merge-patch+json', dict(spec=dict(replicas=2)))
    settle(backend)
    kind, result = run(service_pause, args)
    assert kind is Exited, result
    assert result['changed'] is True and result['actions'][0]['action'] == 'pause', result
    assert result['service']['running_replicas'] == 0
    assert fake_k8s.cluster.get_deployment('default', 'web')['spec']['replicas'] == 0
    kind, result = run(service_pause, args)
    assert kind is Exited and result['changed'] is False
