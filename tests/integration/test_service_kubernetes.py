"""The service modules with platform=kubernetes, against the FAKE Kubernetes API server or a real cluster.

No Kubernetes API server can run on the test machines: by default these tests start the FAKE API server of
tests/fake_k8s/server.py (it is not Kubernetes; docs/kubernetes.md says what it implements). With
INCIDENT_K8S_TARGET=real (``make test-k8s`` with KUBECONFIG set) the same tests run against the real
cluster of KUBECONFIG, in a throwaway namespace deleted at the end.

Check mode is proven by comparing the cluster's objects before and after (deployments' spec, annotations
and generation, ReplicaSets, pods) and, on the FAKE server, by the count of write requests it received.
"""
import calendar
import json
import os
import socket
import sys
import time
import uuid

import pytest

from conftest import Ansible, BIN, ROOT, assert_clean_failure

sys.path.insert(0, os.path.join(ROOT, 'tests'))
from fake_k8s.target import K8sTarget, use_real_cluster  # noqa: E402 pylint: disable=wrong-import-position

REAL = use_real_cluster()
WAIT = 180 if REAL else 20
# Pods younger than UPTIME are left alone: after the restart, two module runs (each 1-3 s to start on a busy
# 2-core machine) must still find the new pods young, so the margin is many module start-ups wide.
UPTIME = 30 if REAL else 24


@pytest.fixture(scope='module')
def k8s():
    target = K8sTarget()
    print('Kubernetes tests against %s' % target.label)
    # Created first, so that its pods are old enough for the min_uptime test when it runs.
    target.create('jobs', replicas=2, wait=False)
    yield target
    target.close()


@pytest.fixture(scope='module')
def k8s_ansible():
    """Ansible runs like the ``ansible`` fixture, without needing the lab (make test-k8s runs without it)."""
    env = dict(os.environ)
    for key in ('K8S_AUTH_KUBECONFIG', 'KUBECONFIG', 'K8S_AUTH_CONTEXT', 'K8S_AUTH_HOST', 'K8S_AUTH_API_KEY'):
        env.pop(key, None)
    env.update(ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_DEPRECATION_WARNINGS='0', PATH=BIN + os.pathsep + env.get('PATH', ''))
    return Ansible(env)


def unchanged(k8s, run):
    """Run ``run()``; assert the cluster's objects did not change (and the FAKE server got no write)."""
    before, writes = k8s.fingerprint(), k8s.mutations()
    outcome = run()
    assert k8s.fingerprint() == before
    assert k8s.mutations() == writes
    return outcome


# ---------------------------------------------------------------- service_info
def test_service_info_reports_replicas_revision_pods_and_error_lines(k8s, k8s_ansible):
    k8s.create('api', replicas=2, log_lines=['INFO api listening on :8080', 'ERROR database timeout after 30s'])
    k8s.set_image('api', 'busybox:1.37')

    def run():
        return k8s_ansible.module('service_info', k8s.args(services=['api'], log_since='1h'), check=True)
    rc, result, out = unchanged(k8s, run)
    assert rc == 0, out
    service = result['services'][0]
    assert result['platform'] == 'kubernetes' and result['changed'] is False
    assert (service['desired_replicas'], service['ready_replicas'], service['updated_replicas']) == (2, 2, 2)
    assert service['revision'] == 2 and service['image'] == 'busybox:1.37' and service['rollout_complete']
    assert sorted(i['name'] for i in service['instances']) == k8s.pod_names('api')
    assert all(i['state'] == 'running' and i['health'] == 'healthy' for i in service['instances'])
    assert [entry['line'] for entry in service['log_lines']] == ['ERROR database timeout after 30s'] * 2
    assert result['status'] == 'warning'
    assert 'service api: 2 log lines matching the log pattern' in result['reasons']


def test_service_info_of_a_crashing_deployment_is_critical(k8s, k8s_ansible):
    k8s.create('broken', replicas=1, log_lines=['FATAL missing DATABASE_URL'], crash=True, wait=False)
    deadline = time.time() + WAIT
    while time.time() < deadline:
        pods = k8s.pods('broken')
        statuses = pods[0].get('status', {}).get('containerStatuses') or [] if pods else []
        if statuses and statuses[0].get('restartCount'):
            break
        time.sleep(0.5)
    rc, result, out = k8s_ansible.module('service_info', k8s.args(services=['broken'], stats=False))
    assert rc == 0, out
    assert result['status'] == 'critical'
    assert 'service broken: 0 of 1 instances ready' in result['reasons']
    instance = result['services'][0]['instances'][0]
    assert instance['health'] == 'unhealthy' and instance['restart_count'] >= 1
    assert any('FATAL missing DATABASE_URL' in entry['line'] for entry in result['services'][0]['log_lines'])
    k8s.delete('broken')


def test_service_info_takes_the_kubeconfig_from_the_environment(k8s, k8s_ansible):
    k8s.create('envcfg', replicas=1)
    args = k8s.args(services=['envcfg'])
    del args['kubeconfig']
    rc, result, out = k8s_ansible.module('service_info', args, env=dict(K8S_AUTH_KUBECONFIG=k8s.kubeconfig))
    assert rc == 0, out
    assert result['services'][0]['ready_replicas'] == 1
    k8s.delete('envcfg')


# ---------------------------------------------------------------- service_scale
def test_service_scale_four_steps(k8s, k8s_ansible):
    k8s.create('worker', replicas=2)
    args = k8s.args(service='worker', replicas=4, current_replicas=2, wait_timeout=WAIT)
    # 1. check: the change is reported, nothing is written.
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('service_scale', args, check=True))
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['done'] is False
    assert result['actions'][0]['detail']['from'] == 2 and result['actions'][0]['detail']['to'] == 4
    old_pods = set(k8s.pod_names('worker'))
    # 2. apply: four ready pods, the two old ones kept, the same revision (scaling is no rollout).
    rc, result, out = k8s_ansible.module('service_scale', args)
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['done'] is True
    assert result['service']['ready_replicas'] == 4
    assert k8s.deployment('worker')['spec']['replicas'] == 4
    assert old_pods < set(k8s.pod_names('worker')) and len(k8s.pod_names('worker')) == 4
    assert k8s.deployment('worker')['metadata']['annotations']['deployment.kubernetes.io/revision'] == '1'
    if not REAL:
        assert ('PATCH', '/apis/apps/v1/namespaces/%s/deployments/worker/scale' % k8s.namespace) in \
            k8s.fake.cluster.mutations
    # 3. idempotent check and 4. idempotent apply: nothing to do, nothing written.
    for check in (True, False):
        rc, result, out = unchanged(k8s, lambda check=check: k8s_ansible.module('service_scale', args, check=check))
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []


def test_service_scale_guards_fail_closed(k8s, k8s_ansible):
    k8s.create('capped', replicas=1)

    def run(**extra):
        return k8s_ansible.module('service_scale', k8s.args(**dict(dict(service='capped', wait_timeout=WAIT), **extra)))
    rc, result, out = unchanged(k8s, lambda: run(replicas=30))
    assert_clean_failure(rc, result, out, 'replicas 30 is above max_replicas 20 for service capped: nothing changed')
    rc, result, out = unchanged(k8s, lambda: run(replicas=6, max_replicas=5))
    assert_clean_failure(rc, result, out, 'replicas 6 is above max_replicas 5')
    rc, result, out = unchanged(k8s, lambda: run(replicas=-1))
    assert_clean_failure(rc, result, out, 'replicas must not be negative')
    rc, result, out = unchanged(k8s, lambda: run(replicas=3, current_replicas=2))
    assert_clean_failure(rc, result, out, 'precondition failed: service capped has 1 replicas, current_replicas says 2')


# ---------------------------------------------------------------- service_restart
def test_service_restart_rollout_restart(k8s, k8s_ansible):
    k8s.create('web', replicas=2)
    args = k8s.args(service='web', wait_timeout=WAIT)
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('service_restart', args, check=True))
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['action'] == 'rollout_restart'
    old_pods = set(k8s.pod_names('web'))
    rc, result, out = k8s_ansible.module('service_restart', args)
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['done'] is True
    dep = k8s.deployment('web')
    assert 'kubectl.kubernetes.io/restartedAt' in dep['spec']['template']['metadata']['annotations']
    assert dep['metadata']['annotations']['deployment.kubernetes.io/revision'] == '2'
    assert result['service']['ready_replicas'] == 2 and result['service']['revision'] == 2
    k8s.settle('web')
    assert not old_pods & set(k8s.pod_names('web')) and len(k8s.pod_names('web')) == 2


def test_service_restart_four_steps_on_old_pods(k8s, k8s_ansible):
    """min_uptime picks the pods to restart (deleted, so their ReplicaSet replaces them): the second run finds none."""
    k8s.settle('jobs')
    started = min(calendar.timegm(time.strptime(p['status']['startTime'], '%Y-%m-%dT%H:%M:%SZ'))
                  for p in k8s.pods('jobs'))
    time.sleep(max(UPTIME + 1.5 - (time.time() - started), 0))
    args = k8s.args(service='jobs', min_uptime='%ds' % UPTIME, wait_timeout=WAIT)
    old_pods = k8s.pod_names('jobs')
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('service_restart', args, check=True))
    assert rc == 0, out
    assert result['changed'] is True and sorted(a['target'] for a in result['actions']) == old_pods
    rc, result, out = k8s_ansible.module('service_restart', args)
    assert rc == 0, out
    assert result['changed'] is True and sorted(result['restarted']) == old_pods
    k8s.settle('jobs')
    assert not set(old_pods) & set(k8s.pod_names('jobs')) and len(k8s.pod_names('jobs')) == 2
    assert k8s.deployment('jobs')['metadata']['annotations']['deployment.kubernetes.io/revision'] == '1'
    for check in (True, False):
        rc, result, out = unchanged(k8s, lambda check=check: k8s_ansible.module('service_restart', args, check=check))
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []


# ---------------------------------------------------------------- service_pause
def test_service_pause_and_unpause_four_steps_each(k8s, k8s_ansible):
    k8s.create('frontend', replicas=3)
    pause = k8s.args(service='frontend', state='paused', wait_timeout=WAIT)
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('service_pause', pause, check=True))
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['action'] == 'pause'
    rc, result, out = k8s_ansible.module('service_pause', pause)
    assert rc == 0, out
    dep = k8s.deployment('frontend')
    assert dep['spec']['replicas'] == 0
    assert dep['metadata']['annotations']['incident.response/paused-replicas'] == '3'
    k8s.settle('frontend')
    assert k8s.pod_names('frontend') == []
    for check in (True, False):
        rc, result, out = unchanged(k8s, lambda check=check: k8s_ansible.module('service_pause', pause, check=check))
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []

    unpause = dict(pause, state='unpaused')
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('service_pause', unpause, check=True))
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['action'] == 'unpause'
    rc, result, out = k8s_ansible.module('service_pause', unpause)
    assert rc == 0, out
    dep = k8s.deployment('frontend')
    assert dep['spec']['replicas'] == 3
    assert 'incident.response/paused-replicas' not in dep['metadata']['annotations']
    assert result['service']['ready_replicas'] == 3
    for check in (True, False):
        rc, result, out = unchanged(k8s, lambda check=check: k8s_ansible.module('service_pause', unpause, check=check))
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []


# ---------------------------------------------------------------- deployment_rollback
def rollout_state(k8s, name):
    dep = k8s.deployment(name)
    return (dep['spec']['template']['spec']['containers'][0]['image'],
            dep['metadata']['annotations']['deployment.kubernetes.io/revision'])


def test_deployment_rollback_four_steps(k8s, k8s_ansible):
    """kubectl rollout undo: the previous ReplicaSet's template comes back; current_image makes it idempotent."""
    k8s.create('insights-app', replicas=2, image='busybox:1.36')
    k8s.set_image('insights-app', 'busybox:1.37')
    args = k8s.args(service='insights-app', current_image='busybox:1.37', wait_timeout=WAIT)
    # 1. check: the plan (revision 2 -> 1), nothing written.
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('deployment_rollback', args, check=True))
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['done'] is False
    detail = result['actions'][0]['detail']
    assert (detail['from'], detail['to']) == (dict(revision=2, image='busybox:1.37'),
                                              dict(revision=1, image='busybox:1.36'))
    assert [(e['revision'], e['image']) for e in result['history']] == [(1, 'busybox:1.36'), (2, 'busybox:1.37')]
    # 2. apply: the deployment runs the old template again, as revision 3 (the controller renumbers it).
    rc, result, out = k8s_ansible.module('deployment_rollback', args)
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['done'] is True
    assert result['service']['ready_replicas'] == 2 and result['service']['image'] == 'busybox:1.36'
    k8s.settle('insights-app')
    assert k8s.images('insights-app') == ['busybox:1.36']
    assert rollout_state(k8s, 'insights-app') == ('busybox:1.36', '3')
    dep = k8s.deployment('insights-app')
    assert 'pod-template-hash' not in dep['spec']['template']['metadata']['labels']
    assert [r['metadata']['annotations']['deployment.kubernetes.io/revision']
            for r in k8s.replicasets('insights-app')] == ['2', '3']
    # 3. idempotent check and 4. idempotent apply: the suspect image no longer runs, nothing to do.
    for check in (True, False):
        rc, result, out = unchanged(
            k8s, lambda check=check: k8s_ansible.module('deployment_rollback', args, check=check))
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []


def test_deployment_rollback_to_a_given_revision(k8s, k8s_ansible):
    k8s.create('reports', replicas=1, image='busybox:1.35')
    k8s.set_image('reports', 'busybox:1.36')
    k8s.set_image('reports', 'busybox:1.37')
    args = k8s.args(service='reports', revision=1, wait_timeout=WAIT)
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('deployment_rollback', args, check=True))
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['detail']['to'] == dict(revision=1, image='busybox:1.35')
    rc, result, out = k8s_ansible.module('deployment_rollback', args)
    assert rc == 0, out
    assert result['changed'] is True
    k8s.settle('reports')
    assert rollout_state(k8s, 'reports') == ('busybox:1.35', '4')
    assert k8s.images('reports') == ['busybox:1.35']
    # Revision 1 now runs as revision 4 (the controller renumbers it): asking again is nothing to do.
    for check in (True, False):
        rc, result, out = unchanged(
            k8s, lambda check=check: k8s_ansible.module('deployment_rollback', args, check=check))
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []


def test_deployment_rollback_without_history_is_a_clear_message(k8s, k8s_ansible):
    k8s.create('fresh', replicas=1)
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('deployment_rollback', k8s.args(service='fresh')))
    assert_clean_failure(rc, result, out, 'fresh in namespace %s has no earlier revision to roll back to: 1 recorded'
                         % k8s.namespace)
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('deployment_rollback',
                                                                k8s.args(service='fresh', revision=7)))
    assert_clean_failure(rc, result, out, 'fresh has no revision 7 (recorded: 1)')


# ---------------------------------------------------------------- bad input and unreachable servers
@pytest.mark.parametrize('module, extra', [
    ('service_info', dict(services=['nope'])),
    ('service_scale', dict(service='nope', replicas=2)),
    ('service_restart', dict(service='nope')),
    ('service_pause', dict(service='nope')),
    ('deployment_rollback', dict(service='nope')),
])
def test_unknown_deployment_is_one_clear_message(k8s, k8s_ansible, module, extra):
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module(module, k8s.args(**extra)))
    assert_clean_failure(rc, result, out, 'deployment nope not found in namespace %s' % k8s.namespace)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_unreachable_api_server_names_it(k8s_ansible, tmp_path):
    url = 'http://127.0.0.1:%d' % free_port()
    kubeconfig = tmp_path / 'kubeconfig'
    kubeconfig.write_text(json.dumps({
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'gone',
        'clusters': [{'name': 'gone', 'cluster': {'server': url}}],
        'users': [{'name': 'u', 'user': {'token': 'secret-token-value'}}],
        'contexts': [{'name': 'gone', 'context': {'cluster': 'gone', 'user': 'u'}}]}))
    args = dict(platform='kubernetes', kubeconfig=str(kubeconfig), service='web', replicas=2)
    rc, result, out = k8s_ansible.module('service_scale', args)
    assert_clean_failure(rc, result, out, 'cannot reach the Kubernetes API server at %s' % url, 'Connection refused')
    assert 'secret-token-value' not in out


def test_missing_kubeconfig_and_wrong_context(k8s, k8s_ansible):
    rc, result, out = k8s_ansible.module('service_info', dict(platform='kubernetes', kubeconfig='/nonexistent/kube'))
    assert_clean_failure(rc, result, out, 'kubeconfig /nonexistent/kube does not exist')
    rc, result, out = k8s_ansible.module('service_info', k8s.args(context='no-such-context'))
    assert_clean_failure(rc, result, out, 'cannot use kubeconfig', '(context no-such-context)')


@pytest.mark.skipif(REAL, reason='the FAKE server decides who is allowed; a real cluster has its own RBAC')
def test_rejected_token_and_forbidden_patch(k8s, k8s_ansible, tmp_path):
    k8s.create('locked', replicas=1)
    bad = k8s.fake.kubeconfig(str(tmp_path / 'bad'), namespace=k8s.namespace, token='stolen')
    rc, result, out = k8s_ansible.module('service_scale', dict(k8s.args(service='locked', replicas=2),
                                                               kubeconfig=bad))
    assert_clean_failure(rc, result, out, 'rejected the credentials', '401 Unauthorized')
    k8s.fake.cluster.denied.add(('patch', 'deployments'))
    try:
        rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('service_restart', k8s.args(service='locked')))
    finally:
        k8s.fake.cluster.denied.clear()
    assert_clean_failure(rc, result, out, 'forbidden (403) while restarting (deployment locked in namespace',
                         'cannot patch resource "deployments"')


def test_module_defaults_group_sets_the_connection_once(k8s, k8s_ansible, tmp_path):
    k8s.create('grouped', replicas=1)
    playbook = tmp_path / 'group.yml'
    playbook.write_text(json.dumps([{
        'hosts': 'localhost', 'gather_facts': False,
        'module_defaults': {'group/incident.response.kubernetes': {
            'platform': 'kubernetes', 'kubeconfig': k8s.kubeconfig, 'namespace': k8s.namespace}},
        'tasks': [
            {'name': 'scale', 'incident.response.service_scale': {'service': 'grouped', 'replicas': 2,
                                                                  'wait_timeout': WAIT}},
            {'name': 'info', 'incident.response.service_info': {'services': ['grouped']}, 'register': 'info'},
            {'ansible.builtin.assert': {'that': ['info.services[0].ready_replicas == 2']}},
        ]}]))
    run = k8s_ansible.playbook(str(playbook))
    assert run.rc == 0, run
    assert run.recap.get('changed') == 1 and run.recap.get('failed') == 0, run


# ---------------------------------------------------------------- playbooks/rollback.yml
def test_rollback_playbook_on_kubernetes(k8s, k8s_ansible):
    """The insights runbook's kubectl rollout undo as a playbook: --check changes nothing, then roll back, then idempotent.

    The kubeconfig comes from K8S_AUTH_KUBECONFIG and the namespace from its context, as with kubectl.
    """
    if k8s.context_kubeconfig is None:
        pytest.skip('KUBECONFIG lists several files: the playbook test needs one to set the namespace of its context')
    k8s.create('insights-api', replicas=2, image='busybox:1.36', log_lines=['INFO insights up'])
    k8s.set_image('insights-api', 'busybox:1.37')
    extra = dict(service_down_platform='kubernetes', service_down_service='insights-api',
                 service_down_rollback_image='busybox:1.37', service_down_check_postgres=False,
                 service_down_redis_url='', service_down_wait_timeout=WAIT,
                 # one incident for the four runs: a second real run joins it (changed=0) instead of opening one
                 incident_id='INC-K8S-ROLLBACK-%s' % uuid.uuid4().hex[:8])
    env = dict(K8S_AUTH_KUBECONFIG=k8s.context_kubeconfig)
    run = unchanged(k8s, lambda: k8s_ansible.playbook('playbooks/rollback.yml', extra, check=True, env=env))
    assert run.rc == 0 and run.recap.get('failed') == 0, run
    assert 'DRY RUN (--check): nothing was changed' in run.output, run
    assert 'insights-api would be rolled back from revision 2 (busybox:1.37) to revision 1 (busybox:1.36)' in run.output
    run = k8s_ansible.playbook('playbooks/rollback.yml', extra, env=env)
    assert run.rc == 0 and run.recap.get('failed') == 0, run
    assert 'insights-api rolled back from revision 2 (busybox:1.37) to revision 1 (busybox:1.36)' in run.output, run
    k8s.settle('insights-api')
    assert k8s.images('insights-api') == ['busybox:1.36']
    assert rollout_state(k8s, 'insights-api') == ('busybox:1.36', '3')
    run = unchanged(k8s, lambda: k8s_ansible.playbook('playbooks/rollback.yml', extra, env=env))
    assert run.rc == 0 and run.changed == 0, run


# ---------------------------------------------------------------- playbooks/scale_workers.yml
def test_scale_workers_playbook_on_kubernetes(k8s, k8s_ansible):
    """Scaling a worker Deployment as the runbooks scale workers: --check changes nothing, scale, idempotent."""
    if k8s.context_kubeconfig is None:
        pytest.skip('KUBECONFIG lists several files: the playbook test needs one to set the namespace of its context')
    k8s.create('queue-worker', replicas=2)
    extra = dict(workers_down_platform='kubernetes', workers_down_service='queue-worker', workers_down_replicas=4,
                 workers_down_max_replicas=6, workers_down_check_database=False, workers_down_wait_timeout=WAIT,
                 incident_id='INC-K8S-SCALE-%s' % uuid.uuid4().hex[:8])
    env = dict(K8S_AUTH_KUBECONFIG=k8s.context_kubeconfig)
    run = unchanged(k8s, lambda: k8s_ansible.playbook('playbooks/scale_workers.yml', extra, check=True, env=env))
    assert run.rc == 0 and run.recap.get('failed') == 0, run
    assert 'DRY RUN (--check): nothing was changed' in run.output, run
    assert 'queue-worker would be scaled from 2 to 4 replicas' in run.output, run
    assert len(k8s.pod_names('queue-worker')) == 2

    run = k8s_ansible.playbook('playbooks/scale_workers.yml', extra, env=env)
    assert run.rc == 0 and run.changed >= 1, run
    assert 'queue-worker scaled from 2 to 4 replicas' in run.output, run
    k8s.settle('queue-worker')
    assert k8s.deployment('queue-worker')['spec']['replicas'] == 4
    assert len(k8s.pod_names('queue-worker')) == 4

    for check in (True, False):
        def again(check=check):
            return k8s_ansible.playbook('playbooks/scale_workers.yml', extra, check=check, env=env)
        run = unchanged(k8s, again)
        assert run.rc == 0 and run.changed == 0, run

    over_cap = dict(extra, workers_down_replicas=8)
    run = unchanged(k8s, lambda: k8s_ansible.playbook('playbooks/scale_workers.yml', over_cap, env=env))
    assert run.rc != 0 and 'above max_replicas 6' in run.output, run


def test_scale_workers_playbook_takes_the_namespace_from_workers_down_namespace(k8s, k8s_ansible):
    """Issue 9: workers_down_project was documented as the namespace but passed as project, which Kubernetes ignores.

    The kubeconfig here has no namespace in its context (so the default would be ``default``): the Deployment
    is found only through workers_down_namespace.
    """
    k8s.create('ns-worker', replicas=1)
    extra = dict(workers_down_platform='kubernetes', workers_down_namespace=k8s.namespace,
                 workers_down_service='ns-worker', workers_down_replicas=2, workers_down_max_replicas=4,
                 workers_down_check_database=False, workers_down_wait_timeout=WAIT)
    env = dict(K8S_AUTH_KUBECONFIG=k8s.kubeconfig)
    run = unchanged(k8s, lambda: k8s_ansible.playbook('playbooks/scale_workers.yml', extra, check=True, env=env))
    assert run.rc == 0 and 'ns-worker would be scaled from 1 to 2 replicas' in run.output, run
    run = k8s_ansible.playbook('playbooks/scale_workers.yml', extra, env=env)
    assert run.rc == 0 and 'ns-worker scaled from 1 to 2 replicas' in run.output, run
    assert k8s.deployment('ns-worker')['spec']['replicas'] == 2


# ---------------------------------------------------------------- review findings (issue 9)
def test_service_pause_reads_the_real_replica_count_not_the_annotation(k8s, k8s_ansible):
    """Something (kubectl scale, an autoscaler) restored the replicas of a paused deployment; the annotation is
    still there. That is no pause: service_pause pauses again (the count that runs now is recorded)."""
    k8s.create('restored', replicas=2)
    pause = k8s.args(service='restored', state='paused', wait_timeout=WAIT)
    rc, result, out = k8s_ansible.module('service_pause', pause)
    assert rc == 0 and result['changed'] is True, out
    k8s.apps.patch_namespaced_deployment_scale('restored', k8s.namespace, {'spec': {'replicas': 2}},
                                               _content_type='application/merge-patch+json')
    k8s.settle('restored')
    dep = k8s.deployment('restored')
    assert dep['spec']['replicas'] == 2 and 'incident.response/paused-replicas' in dep['metadata']['annotations']
    rc, result, out = unchanged(k8s, lambda: k8s_ansible.module('service_pause', pause, check=True))
    assert rc == 0 and result['changed'] is True, out
    rc, result, out = k8s_ansible.module('service_pause', pause)
    assert rc == 0 and result['changed'] is True, out
    assert k8s.deployment('restored')['spec']['replicas'] == 0
    for check in (True, False):
        rc, result, out = unchanged(k8s, lambda check=check: k8s_ansible.module('service_pause', pause, check=check))
        assert rc == 0 and result['changed'] is False, out


@pytest.mark.parametrize('instances, fragment', [
    ([''], 'instances: an empty name matches every instance'),
    (['restart-me'], "instances: 'restart-me' matches 2 instances of service restart-me"),
])
def test_service_restart_refuses_empty_and_ambiguous_pod_names(k8s, k8s_ansible, instances, fragment):
    """An empty name matched every pod (startswith('')): all pods deleted at once. Refused, nothing deleted."""
    if not k8s.pod_names('restart-me'):
        k8s.create('restart-me', replicas=2)
    args = k8s.args(service='restart-me', instances=instances, wait_timeout=WAIT)
    for check in (True, False):
        rc, result, out = unchanged(k8s, lambda check=check: k8s_ansible.module('service_restart', args, check=check))
        assert_clean_failure(rc, result, out, fragment, 'nothing restarted')
