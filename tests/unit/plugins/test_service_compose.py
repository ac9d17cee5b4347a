"""Pure logic of the Compose backend: container views, stats arithmetic, deploy history."""
import datetime
import json

import pytest

from ansible_collections.incident.response.plugins.module_utils import _compose
from ansible_collections.incident.response.plugins.module_utils._common import BackendError
from ansible_collections.incident.response.plugins.module_utils._services import DifferenceTracker, all_ready

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def attrs(status='running', health=None, started='2026-01-02T03:00:05.123456789Z', exit_code=0, oom=False,
          restarts=0):
    state = dict(Status=status, StartedAt=started, ExitCode=exit_code, OOMKilled=oom)
    if health:
        state['Health'] = dict(Status=health)
    return dict(Id='abcdef0123456789', Name='/proj_worker_3', State=state, RestartCount=restarts,
                Image='sha256:1', Config=dict(Image='img:1', Labels={_compose.LABEL_NUMBER: '3'}))


def test_parse_time_handles_nanoseconds_offsets_and_zero():
    assert _compose.parse_time('2026-01-02T03:00:05.123456789Z') == datetime.datetime(
        2026, 1, 2, 3, 0, 5, 123456, tzinfo=datetime.timezone.utc)
    assert _compose.parse_time('2026-01-02T04:00:05+01:00') == datetime.datetime(
        2026, 1, 2, 3, 0, 5, tzinfo=datetime.timezone.utc)
    assert _compose.parse_time('0001-01-01T00:00:00Z') is None
    assert _compose.parse_time('') is None and _compose.parse_time('garbage') is None


def test_instance_view_running_healthy():
    view = _compose.instance_view(attrs(health='healthy'), NOW)
    assert view['id'] == 'abcdef012345' and view['name'] == 'proj_worker_3' and view['number'] == 3
    assert view['state'] == 'running' and view['health'] == 'healthy'
    assert view['uptime_seconds'] == 239 and view['exit_code'] is None and view['image'] == 'img:1'
    assert _compose.is_ready(view)


def test_instance_view_exited_and_oom():
    view = _compose.instance_view(attrs(status='exited', health='unhealthy', exit_code=137, oom=True, restarts=4), NOW)
    assert view['state'] == 'exited' and view['exit_code'] == 137 and view['oom_killed'] is True
    assert view['health'] == 'none' and view['uptime_seconds'] is None and view['restart_count'] == 4
    assert not _compose.is_ready(view)
    assert _compose.instance_view(attrs(status='dead'), NOW)['state'] == 'exited'
    assert _compose.instance_view(attrs(status='weird'), NOW)['state'] == 'unknown'
    unhealthy = _compose.instance_view(attrs(health='unhealthy'), NOW)
    assert unhealthy['health'] == 'unhealthy' and not _compose.is_ready(unhealthy)


def test_cpu_and_memory_from_one_sample():
    sample = dict(
        cpu_stats=dict(cpu_usage=dict(total_usage=300), system_cpu_usage=2000, online_cpus=2),
        precpu_stats=dict(cpu_usage=dict(total_usage=100), system_cpu_usage=1000),
        memory_stats=dict(usage=1000, limit=4000, stats=dict(inactive_file=200)),
    )
    assert _compose.cpu_percent(sample) == 40.0
    assert _compose.memory_usage(sample) == (800, 4000, 20.0)
    assert _compose.cpu_percent(dict(cpu_stats={}, precpu_stats={})) == 0.0
    assert _compose.memory_usage(dict(memory_stats={})) == (0, 0, None)


def bare_backend(tmp_path, project='proj'):
    backend = _compose.ComposeBackend.__new__(_compose.ComposeBackend)
    backend.project = project
    backend.project_dir = str(tmp_path)
    backend._history_file = None
    return backend


def test_deploy_history_records_each_new_image_once(tmp_path):
    backend = bare_backend(tmp_path)
    assert backend.history('api') == []
    first = backend.record_deploy('api', 'img:1', 'sha256:1')
    assert first['revision'] == 1
    assert backend.record_deploy('api', 'img:1', 'sha256:1') is None
    assert backend.record_deploy('api', 'img:2', 'sha256:2')['revision'] == 2
    path = tmp_path / '.incident-response' / 'proj-deploy-history.json'
    data = json.loads(path.read_text())
    assert [e['image'] for e in data['services']['api']] == ['img:1', 'img:2']
    assert [e['revision'] for e in backend.history('api')] == [1, 2]


def test_rollback_without_history_is_one_clear_message(tmp_path, monkeypatch):
    backend = bare_backend(tmp_path)
    monkeypatch.setattr(backend, 'service', lambda name: dict(revision=None, image='img:1'), raising=False)
    backend.record_deploy('api', 'img:1')
    with pytest.raises(BackendError) as info:
        backend.rollback('api')
    assert 'service api of compose project proj has no earlier deploy to roll back to' in str(info.value)


def test_history_without_project_dir_says_what_it_needs(tmp_path):
    backend = bare_backend(tmp_path)
    backend.project_dir = None
    with pytest.raises(BackendError) as info:
        backend.history_path()
    assert 'give project_dir or history_file' in str(info.value)


def test_difference_tracker():
    tracker = DifferenceTracker()
    tracker.add('replicas', 2, 4)
    tracker.add('image', 'a', 'a')
    assert tracker.has_changes
    assert tracker.diff == dict(before=dict(replicas=2), after=dict(replicas=4))
    same = DifferenceTracker()
    same.add('replicas', 2, 2)
    assert not same.has_changes


def test_all_ready_predicate():
    assert all_ready(2)(dict(desired_replicas=2, running_replicas=2, ready_replicas=2))
    assert not all_ready(2)(dict(desired_replicas=2, running_replicas=2, ready_replicas=1))
    assert not all_ready(2)(dict(desired_replicas=3, running_replicas=2, ready_replicas=2))


# ---------------------------------------------------------------- issue 9 findings
class FakeModule(object):
    def __init__(self, **params):
        self.params = dict((key, None) for key in _compose.compose_argument_spec())
        self.params.update(project='proj', timeout=5)
        self.params.update(params)

    def fail_json(self, **kwargs):
        raise AssertionError('fail_json(%r)' % kwargs)


@pytest.mark.parametrize('host, message', [
    ('tcp://h:notaport', "docker_host 'tcp://h:notaport' is not an address of a Docker daemon"),
    ('tcp://h:99999999', "docker_host 'tcp://h:99999999' is not an address of a Docker daemon"),
    ('http://[::1', "docker_host 'http://[::1' is not an address of a Docker daemon"),
])
def test_a_malformed_docker_host_is_one_message(host, message):
    with pytest.raises(BackendError) as info:
        _compose.ComposeBackend(FakeModule(docker_host=host))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize('host', ['tcp://ops:hunter2@127.0.0.1:1', 'tcp://:hunter2@127.0.0.1:1',
                                  'ssh://ops:hunter2@127.0.0.1:1', 'tcp://ops:hunter2@h:notaport'])
def test_a_docker_host_with_credentials_is_redacted_in_messages(host):
    with pytest.raises(BackendError) as info:
        _compose.ComposeBackend(FakeModule(docker_host=host))
    assert 'hunter2' not in str(info.value) and 'hunter2' not in repr(info.value.details)
    assert '********' in str(info.value)


def test_rollback_with_unknown_compose_files_is_refused(tmp_path, monkeypatch):
    """Issue 9: an override with only image: recreated the service without its env, ports and volumes."""
    backend = bare_backend(tmp_path)
    backend.files = []
    backend.record_deploy('api', 'img:1', 'sha256:1')
    backend.record_deploy('api', 'img:2', 'sha256:2')
    monkeypatch.setattr(backend, 'service', lambda name: dict(revision=2, image='img:2'), raising=False)
    monkeypatch.setattr(backend, 'run_compose', lambda *a, **k: pytest.fail('compose ran: %r' % (a,)), raising=False)
    with pytest.raises(BackendError) as info:
        backend.rollback('api')
    assert 'the compose files of project proj are not known' in str(info.value)
    assert not (tmp_path / '.incident-response' / 'proj-rollback.override.yml').exists()
    # Files that are gone since are unknown too.
    backend.files = [str(tmp_path / 'gone.yml')]
    with pytest.raises(BackendError, match='gone.yml'):
        backend.rollback('api')


@pytest.mark.parametrize('content', ['{not json', '[]', '{"services": []}', '{"services": {"api": "x"}}',
                                     '{"services": {"api": [{"image": "a"}]}}',
                                     '{"services": {"api": [{"revision": "1", "image": "a"}]}}',
                                     '{"services": {"api": [7]}}'])
def test_a_malformed_deploy_history_is_one_message(tmp_path, content):
    backend = bare_backend(tmp_path)
    path = tmp_path / '.incident-response' / 'proj-deploy-history.json'
    path.parent.mkdir()
    path.write_text(content)
    for call in (lambda: backend.history('api'), lambda: backend.record_deploy('api', 'img:1')):
        with pytest.raises(BackendError) as info:
            call()
        assert str(path) in str(info.value)


def test_an_unwritable_deploy_history_is_one_message(tmp_path):
    backend = bare_backend(tmp_path)
    backend._history_file = str(tmp_path / 'no' / 'such' / 'dir' / 'history.json')
    (tmp_path / 'no').write_text('a file where a directory should be')
    with pytest.raises(BackendError) as info:
        backend.record_deploy('api', 'img:1')
    assert 'cannot write the deploy history %s' % backend._history_file in str(info.value)


class GoneContainer(object):
    """A container removed between the listing and the pause (docker rm by someone else)."""
    name = 'proj_api_1'
    id = 'abcdef0123456789'
    status = 'running'

    def reload(self):
        import docker.errors  # pylint: disable=import-outside-toplevel
        raise docker.errors.NotFound('No such container: abcdef012345')


@pytest.mark.parametrize('method', ['pause', 'unpause'])
def test_a_container_gone_during_pause_is_one_message(tmp_path, monkeypatch, method):
    backend = bare_backend(tmp_path)
    backend.docker_host = backend.docker_host_label = 'unix:///var/run/docker.sock'
    monkeypatch.setattr(backend, '_require', lambda name: [GoneContainer()], raising=False)
    with pytest.raises(BackendError) as info:
        getattr(backend, method)('api')
    assert 'container proj_api_1 of service api: not found' in str(info.value)
