"""What makes service_scale on Compose fast (issue 9), without an engine: no Kubernetes client imported for
platform=compose, scale() acting on the plan's read, and the waiter woken by the engine's events."""
import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.incident.response.plugins.module_utils import _compose
from ansible_collections.incident.response.plugins.module_utils._common import wait_until


def test_a_compose_run_never_imports_the_kubernetes_client():
    """The argument spec of the service modules (both backends' options) is built without importing the
    kubernetes package: it costs more CPU than the rest of a Compose run's imports."""
    code = ('import sys\n'
            'from ansible_collections.incident.response.plugins.module_utils import _services\n'
            'spec = _services.service_argument_spec()\n'
            'assert "kubeconfig" in spec and "docker_host" in spec, sorted(spec)\n'
            'assert _services.backend_class("compose").platform == "compose"\n'
            'print(sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes.")))\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=False,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]', out.stdout


def test_the_kubernetes_client_is_imported_on_first_use():
    pytest.importorskip('kubernetes')
    from ansible_collections.incident.response.plugins.module_utils import _k8s_client  # pylint: disable=import-outside-toplevel
    assert _k8s_client.load_kubernetes() is True
    import kubernetes.client.rest  # pylint: disable=import-outside-toplevel
    # The client's own exception class, so that `except ApiException` catches the client's errors.
    assert _k8s_client.ApiException is kubernetes.client.rest.ApiException
    assert _k8s_client.kubernetes.config is not None


def test_wait_until_pauses_with_the_given_pause_never_longer_than_sleep():
    pauses = []
    calls = []

    def predicate():
        calls.append(1)
        return len(calls) >= 3

    ok, _elapsed, _value = wait_until(predicate, timeout=30, sleep=5, pause=pauses.append)
    assert ok is True and len(pauses) == 2
    assert all(0 < seconds <= 5 for seconds in pauses)


class FakeStream(object):
    def __init__(self, events, delay, block=False):
        self.events, self.delay, self.block = events, delay, block
        self.closed = threading.Event()

    def __iter__(self):
        time.sleep(self.delay)
        if self.block:
            self.closed.wait(30)
        yield from self.events

    def close(self):
        self.closed.set()


class FakeApi(object):
    def __init__(self, stream=None, error=None):
        self.stream, self.error, self.calls = stream, error, []

    def events(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return self.stream


class FakeClient(object):
    def __init__(self, api):
        self.api = api


def backend_with(api):
    backend = _compose.ComposeBackend.__new__(_compose.ComposeBackend)
    backend.project = 'proj'
    backend.client = FakeClient(api)
    backend._last_read = {'worker': (time.time() - 1, [])}
    return backend


def test_the_pause_ends_at_the_first_event_of_the_service():
    api = FakeApi(FakeStream([{'status': 'health_status: healthy'}], delay=0.2))
    start = time.monotonic()
    backend_with(api).wait_for_change('worker', 10)
    assert time.monotonic() - start < 5
    call = api.calls[0]
    assert 'com.docker.compose.project=proj' in call['filters']['label']
    assert 'com.docker.compose.service=worker' in call['filters']['label']
    assert 'health_status' in call['filters']['event'] and 'start' in call['filters']['event']
    # Events since the last read: a change between that read and the pause is not missed.
    assert call['since'] < time.time() - 0.5 and call['until'] > call['since']


def test_the_pause_is_never_longer_than_asked_whatever_the_engine_does():
    api = FakeApi(FakeStream([], delay=0, block=True))
    start = time.monotonic()
    backend_with(api).wait_for_change('worker', 0.5)
    assert 0.45 <= time.monotonic() - start < 5
    assert api.stream.closed.is_set()


def test_without_events_the_pause_is_a_plain_sleep():
    api = FakeApi(error=OSError('events are not available'))
    start = time.monotonic()
    backend_with(api).wait_for_change('worker', 0.5)
    assert 0.45 <= time.monotonic() - start < 5


def test_scale_acts_on_the_read_the_plan_was_made_from(monkeypatch):
    backend = backend_with(FakeApi())
    backend.module = type('M', (), {'params': {}})()
    read = ['the containers the plan saw']
    backend._last_read['worker'] = (time.time(), read)
    seen = []
    monkeypatch.setattr(backend, '_require', lambda name: pytest.fail('read again'), raising=False)
    monkeypatch.setattr(backend, '_scale_through_engine',
                        lambda name, containers, replicas: seen.append(containers) or True, raising=False)
    backend.scale('worker', 4)
    assert seen == [read]
    # Used once: a second scale in the same run reads the service again.
    monkeypatch.setattr(backend, '_require', lambda name: ['read again'], raising=False)
    backend.scale('worker', 5)
    assert seen[-1] == ['read again']
