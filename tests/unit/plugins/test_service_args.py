"""The service modules' argument handling: bad input ends in one clear message before any connection."""
import pytest

from module_harness import Failed, run

from ansible_collections.incident.response.plugins.module_utils import _compose
from ansible_collections.incident.response.plugins.module_utils._common import BackendError
from ansible_collections.incident.response.plugins.modules import (
    service_info,
    service_pause,
    service_restart,
    service_scale,
)


@pytest.fixture
def no_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the module tried to reach the Docker daemon before validating its arguments')
    monkeypatch.setattr(_compose.ComposeBackend, '__init__', refuse)


@pytest.mark.parametrize('module, args, message', [
    (service_scale, dict(project='p', service='w', replicas=-1), 'replicas must not be negative'),
    (service_scale, dict(project='p', service='w', replicas=21), 'replicas 21 is above max_replicas 20'),
    (service_scale, dict(project='p', service='w', replicas=3, max_replicas=2), 'above max_replicas 2'),
    (service_scale, dict(project='p', service='w', replicas=1, max_replicas=-1), 'max_replicas must not be negative'),
    (service_scale, dict(project='p', service='w', replicas=1, wait_timeout=-1), 'wait_timeout must not be negative'),
    (service_scale, dict(project='p', service='w'), 'missing required arguments: replicas'),
    (service_scale, dict(project='p', service='w', replicas=1, platform='swarm'), 'value of platform must be one of'),
    (service_restart, dict(project='p', service='w', min_uptime='-1m'), 'min_uptime: must not be negative'),
    (service_restart, dict(project='p', service='w', only=['tired']), 'value of only must be one or more of'),
    (service_pause, dict(project='p', service='w', state='frozen'), 'value of state must be one of'),
    (service_info, dict(project='p', log_pattern='(x'), 'log_pattern'),
    (service_info, dict(project='p', log_since='soon'), "log_since: 'soon' is not a duration"),
    (service_info, dict(project='p', log_lines=-2), 'log_lines must not be negative'),
    # Issue 9 (fuzzing): log_since of inf overflowed on Kubernetes; catastrophic log patterns ran unbounded.
    (service_info, dict(platform='kubernetes', log_since='inf'), 'log_since'),
    (service_info, dict(project='p', log_since=1e400), 'log_since'),
    (service_info, dict(project='p', log_pattern='(a+)+$'), 'nests a repeat inside a repeat'),
    (service_restart, dict(project='p', service='w', min_uptime='nan'), 'min_uptime'),
])
def test_bad_input_fails_before_connecting(no_connection, module, args, message):
    kind, result = run(module, args)
    assert kind is Failed
    assert message in result['msg']


def test_backend_error_becomes_one_message_with_details(monkeypatch):
    def unreachable(self, module):
        raise BackendError('cannot reach the Docker daemon at tcp://127.0.0.1:1: [Errno 111] Connection refused')
    monkeypatch.setattr(_compose.ComposeBackend, '__init__', unreachable)
    kind, result = run(service_scale, dict(project='p', service='w', replicas=1))
    assert kind is Failed and result['msg'].startswith('cannot reach the Docker daemon at tcp://127.0.0.1:1')


def test_compose_cli_failure_carries_cmd_rc_stdout_stderr(monkeypatch):
    class Backend(_compose.ComposeBackend):
        def __init__(self, module):  # pylint: disable=super-init-not-called
            pass

        def service(self, name):
            return dict(name=name, desired_replicas=1, running_replicas=1, ready_replicas=1, instances=[])

        def scale(self, name, replicas):
            raise BackendError('scaling service w failed (rc=1): boom', cmd=['docker-compose', 'up'], rc=1,
                               stdout='', stderr='boom')
    monkeypatch.setattr(_compose, 'ComposeBackend', Backend)
    kind, result = run(service_scale, dict(project='p', service='w', replicas=2))
    assert kind is Failed
    assert result['cmd'] == ['docker-compose', 'up'] and result['rc'] == 1 and result['stderr'] == 'boom'
    assert result['actions'][0]['done'] is False
