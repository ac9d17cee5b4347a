"""The driver of the service remediation modules and the backend interface, in-process on a FAKE backend.

FakeBackend is a stand-in for a platform (no engine, no cluster): it implements ServiceBackend on dicts and
records what it was asked to do, so that these tests see exactly which changes a module made.
"""
import copy

import pytest

from module_harness import Exited, Failed, run

from ansible_collections.incident.response.plugins.module_utils import _compose, _services
from ansible_collections.incident.response.plugins.module_utils._common import BackendError
from ansible_collections.incident.response.plugins.module_utils._compose import ComposeBackend
from ansible_collections.incident.response.plugins.module_utils._kubernetes import KubernetesBackend
from ansible_collections.incident.response.plugins.module_utils._services import ServiceBackend
from ansible_collections.incident.response.plugins.modules import (
    deployment_rollback,
    service_info,
    service_pause,
    service_restart,
    service_scale,
)


def instance(name, cid, state='running', health='none', uptime=3600):
    return dict(id=cid, name=name, state=state, health=health, restart_count=0, exit_code=None, oom_killed=False,
                started_at='2026-12-01T00:00:00Z', uptime_seconds=uptime, image='img:2', image_id='sha256:2')


class FakeBackend(ServiceBackend):
    """A stand-in platform: services are dicts, changes are recorded in ``calls``."""

    platform = 'fake'
    instances = []
    calls = []
    fail_on = None

    @staticmethod
    def argument_spec():
        return _compose.compose_argument_spec()

    def __init__(self, module):
        super(FakeBackend, self).__init__(module)
        self.replicas = len(self.instances)

    def _maybe_fail(self, what):
        FakeBackend.calls.append(what)
        if FakeBackend.fail_on == what[0]:
            raise BackendError('%s failed on the fake' % what[0], rc=1)

    def service_names(self):
        return ['web']

    def service(self, name):
        if name != 'web':
            raise BackendError('service %s not found (services: web)' % name)
        instances = copy.deepcopy(self.instances[:self.replicas] if self.replicas <= len(self.instances) else
                                  self.instances + [instance('web-%d' % n, 'f%011d' % n)
                                                    for n in range(len(self.instances), self.replicas)])
        return dict(name=name, platform=self.platform, desired_replicas=len(instances),
                    running_replicas=len([i for i in instances if i['state'] == 'running']),
                    ready_replicas=len([i for i in instances if i['state'] == 'running']), paused_replicas=0,
                    image='img:2', revision=None, instances=instances)

    def pause_state(self, service):
        return dict(paused=False, partly=False)

    def history(self, name):
        return []

    def logs(self, name, since=None, pattern=None, lines=200):
        return []

    def stats(self, name):
        return {}

    def scale(self, name, replicas):
        self._maybe_fail(('scale', name, replicas))
        self.replicas = replicas

    def restart(self, name, instance_ids=None):
        self._maybe_fail(('restart', name, instance_ids))
        for entry in self.instances:
            if instance_ids is None or entry['id'] in instance_ids:
                entry['started_at'] = '2026-12-01T01:00:00Z'
        return list(instance_ids or [])

    def pause(self, name):
        self._maybe_fail(('pause', name))

    def unpause(self, name):
        self._maybe_fail(('unpause', name))

    def rollback(self, name, revision=None):
        self._maybe_fail(('rollback', name, revision))


@pytest.fixture
def fake(monkeypatch):
    FakeBackend.instances = [instance('web-1', 'abc111111111'), instance('web-10', 'abc222222222'),
                             instance('web-2', 'def333333333')]
    FakeBackend.calls = []
    FakeBackend.fail_on = None
    monkeypatch.setattr(_services, 'backend_classes', lambda: (FakeBackend,))
    return FakeBackend


def args(**extra):
    return dict(dict(platform='fake', project='p', service='web', wait_timeout=5), **extra)


# ---------------------------------------------------------------- the interface
def test_both_backends_implement_the_whole_interface():
    for cls in (ComposeBackend, KubernetesBackend):
        assert issubclass(cls, ServiceBackend) and not cls.__abstractmethods__, cls
        assert cls.platform and cls.argument_spec()
    assert [cls.platform for cls in _services.backend_classes()] == ['compose', 'kubernetes']


def test_a_backend_that_misses_a_method_cannot_be_built():
    class Half(ServiceBackend):
        platform = 'half'

        @staticmethod
        def argument_spec():
            return {}

    with pytest.raises(TypeError, match='abstract'):
        Half(None)  # pylint: disable=abstract-class-instantiated


def test_a_new_platform_is_one_class(fake):
    """The platform option, its choices and the dispatch come from the registered classes alone."""
    spec = _services.service_argument_spec()
    assert spec['platform']['choices'] == ['fake'] and spec['platform']['default'] == 'fake'
    kind, result = run(service_scale, args(replicas=4))
    assert kind is Exited and result['changed'] is True, result
    assert fake.calls == [('scale', 'web', 4)]


def test_recording_a_deploy_where_the_platform_keeps_revisions_is_refused_before_connecting(monkeypatch):
    def refuse(self, module):
        raise AssertionError('connected before refusing')
    monkeypatch.setattr(KubernetesBackend, '__init__', refuse)
    kind, result = run(deployment_rollback, dict(platform='kubernetes', service='web', state='recorded'))
    assert kind is Failed and result['msg'] == KubernetesBackend.record_refusal


# ---------------------------------------------------------------- the driver
def test_check_mode_plans_and_changes_nothing_and_diff_only_with_diff(fake):
    kind, result = run(service_scale, dict(args(replicas=4), _ansible_check_mode=True))
    assert kind is Exited and result['changed'] is True and fake.calls == []
    assert result['actions'][0]['done'] is False and 'diff' not in result
    assert result['summary'] == 'web would be scaled from 3 to 4 replicas'
    kind, result = run(service_scale, dict(args(replicas=4), _ansible_check_mode=True, _ansible_diff=True))
    assert result['diff'] == dict(before=dict(replicas=3, running=3), after=dict(replicas=4, running=4))


def test_apply_waits_and_reports(fake):
    kind, result = run(service_scale, args(replicas=4))
    assert kind is Exited and result['changed'] is True and result['actions'][0]['done'] is True
    assert result['service']['ready_replicas'] == 4 and result['summary'].startswith(
        'web scaled from 3 to 4 replicas (4/4 running, 4 ready) in ')


def test_nothing_to_do_is_not_a_change(fake):
    kind, result = run(service_scale, args(replicas=3))
    assert kind is Exited and result['changed'] is False and result['actions'] == [] and fake.calls == []


def test_a_backend_error_while_acting_is_one_message_with_nothing_done(fake):
    fake.fail_on = 'scale'
    kind, result = run(service_scale, args(replicas=4))
    assert kind is Failed and result['msg'] == 'scale failed on the fake' and result['rc'] == 1
    assert result['changed'] is False and result['actions'][0]['done'] is False


def test_a_refusal_names_the_guardrail_and_changes_nothing(fake):
    kind, result = run(service_scale, args(replicas=4, current_replicas=2))
    assert kind is Failed and result['msg'].startswith('precondition failed: service web has 3 replicas')
    assert fake.calls == []


def test_not_ready_after_the_wait_fails_with_the_outcome(fake, monkeypatch):
    monkeypatch.setattr(FakeBackend, 'scale', lambda self, name, replicas: FakeBackend.calls.append('scale'))
    kind, result = run(service_scale, args(replicas=4, wait_timeout=0))
    assert kind is Failed and result['changed'] is True
    assert result['msg'] == 'service web was scaled to 4 but is not ready after 0s: 3/3 running, 3 ready'


# ---------------------------------------------------------------- service_restart: which instances (issue 9)
@pytest.mark.parametrize('wanted, message', [
    ([''], 'instances: an empty name matches every instance'),
    (['  '], 'instances: an empty name matches every instance'),
    (['abc'], "instances: 'abc' matches 2 instances of service web (web-1, web-10)"),
    (['web-1', 'a'], "instances: 'a' matches 2 instances of service web (web-1, web-10)"),
])
def test_restart_refuses_empty_names_and_ambiguous_prefixes(fake, wanted, message):
    kind, result = run(service_restart, args(instances=wanted))
    assert kind is Failed, result
    assert result['msg'].startswith(message) and 'nothing restarted' in result['msg']
    assert fake.calls == []


@pytest.mark.parametrize('wanted, chosen', [
    (['web-1'], ['abc111111111']),                 # an exact name, although web-10 starts with it
    (['abc111111111'], ['abc111111111']),          # an exact id
    (['abc2'], ['abc222222222']),                  # an id prefix that matches exactly one
    (['abc111111111' + '0' * 52], ['abc111111111']),   # a full 64-character id
    (['web-2', 'def3'], ['def333333333']),         # two names for one instance: restarted once
])
def test_restart_exact_names_and_unique_prefixes(fake, wanted, chosen):
    kind, result = run(service_restart, args(instances=wanted))
    assert kind is Exited, result
    assert result['restarted'] == chosen and fake.calls == [('restart', 'web', chosen)]


def test_restart_of_a_pod_by_name_is_that_pod_only(fake):
    """Kubernetes: an instance's id is its pod name, so a name was also a prefix of web-10 (both deleted)."""
    fake.instances = [instance('web-1', 'web-1'), instance('web-10', 'web-10'), instance('web-2', 'web-2')]
    kind, result = run(service_restart, args(instances=['web-1']))
    assert kind is Exited, result
    assert result['restarted'] == ['web-1'] and fake.calls == [('restart', 'web', ['web-1'])]
    kind, result = run(service_restart, args(instances=['web-']))
    assert kind is Failed and "'web-' matches 3 instances" in result['msg'] and len(fake.calls) == 1


def test_restart_unknown_instance_is_refused(fake):
    kind, result = run(service_restart, args(instances=['nope']))
    assert kind is Failed and result['msg'].startswith('service web has no instance nope (instances: web-1, web-10')
    assert fake.calls == []


def test_pause_through_the_driver(fake, monkeypatch):
    monkeypatch.setattr(FakeBackend, 'pause_state', lambda self, service: dict(paused=False, partly=False))
    kind, result = run(service_pause, dict(args(), _ansible_check_mode=True))
    assert kind is Exited and result['changed'] is True and result['summary'] == 'web would be paused'
    assert fake.calls == []


def test_a_rollback_the_platform_refuses_is_refused_in_check_mode_too(fake, monkeypatch):
    def check_rollback(self, name):
        raise BackendError('service web: the compose files of project p are not known')
    history = [dict(revision=1, image='img:1'), dict(revision=2, image='img:2')]
    monkeypatch.setattr(FakeBackend, 'history', lambda self, name: history)
    monkeypatch.setattr(FakeBackend, 'check_rollback', check_rollback)
    for check in (True, False):
        kind, result = run(deployment_rollback, dict(args(), _ansible_check_mode=check))
        assert kind is Failed and 'compose files of project p are not known' in result['msg']
    assert fake.calls == []


# ---------------------------------------------------------------- the result shape (issue 7)
ROLLBACK_HISTORY = [dict(revision=1, image='img:1'), dict(revision=2, image='img:2')]


@pytest.mark.parametrize('module, extra, check, diff', [
    (service_info, dict(), True, False),
    (service_scale, dict(replicas=4), True, False),
    (service_scale, dict(replicas=4), True, True),
    (service_scale, dict(replicas=4), False, False),
    (service_scale, dict(replicas=4), False, True),
    (service_scale, dict(replicas=3), False, True),
    (service_pause, dict(), True, True),
    (service_pause, dict(wait=False), False, False),
    (service_pause, dict(state='unpaused'), False, True),
    (service_restart, dict(only=['exited']), True, True),
    (service_restart, dict(instances=['web-2']), True, False),
    (service_restart, dict(instances=['web-2']), False, True),
    (deployment_rollback, dict(), True, True),
    (deployment_rollback, dict(wait=False), False, False),
    (deployment_rollback, dict(current_image='img:9'), False, True),
])
def test_result_shape_of_the_service_modules(fake, monkeypatch, module, extra, check, diff):
    """The service modules' part of test_result_shape.py, on the FAKE backend (no engine needed)."""
    from test_result_shape import assert_diagnosis, assert_remediation  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(FakeBackend, 'history', lambda self, name: list(ROLLBACK_HISTORY))
    monkeypatch.setattr(FakeBackend, 'pause_state', lambda self, service: dict(
        paused=bool(fake.calls) and fake.calls[-1][0] == 'pause', partly=False))
    if module is service_info:
        extra = dict(extra, services=['web'])
    else:
        extra = dict(extra, service='web', wait_timeout=5)
    kind, result = run(module, dict(platform='fake', project='p', _ansible_check_mode=check, _ansible_diff=diff,
                                    **extra))
    assert kind is Exited, result.get('msg')
    if module is service_info:
        assert_diagnosis(result)
    else:
        assert_remediation(result, check, diff)
