# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Docker Compose backend of the service modules (private to the collection).

Reads go through the Docker engine API (docker SDK); containers are found by the labels
``com.docker.compose.project`` and ``com.docker.compose.service``, never by name (v1 and v2
name them differently). Changes of scale go through the Compose CLI, ``docker compose`` (v2)
when the plugin is installed, else ``docker-compose`` (v1), the way an operator would type
them; a failed command carries ``cmd``, ``rc``, ``stdout`` and ``stderr``. Restarts and
pauses of single containers go through the engine API.

The shape follows community.docker (a client built from ``docker_host``/``timeout`` with a
``DOCKER_HOST`` fallback, a CLI runner that reports cmd/rc/stdout/stderr) but is written for
this collection's backend interface (see ``_services.py``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import shutil
import subprocess
import threading
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import BackendError, parse_time, redact
from ansible_collections.incident.response.plugins.module_utils._services import ServiceBackend, compile_pattern

DOCKER_IMPORT_ERROR = None
try:
    import docker
    import docker.errors
    import requests.exceptions
    HAS_DOCKER = True
except ImportError:
    DOCKER_IMPORT_ERROR = traceback.format_exc()
    HAS_DOCKER = False

LABEL_PROJECT = 'com.docker.compose.project'
LABEL_SERVICE = 'com.docker.compose.service'
LABEL_ONEOFF = 'com.docker.compose.oneoff'
LABEL_NUMBER = 'com.docker.compose.container-number'
LABEL_CONFIG_FILES = 'com.docker.compose.project.config_files'
LABEL_WORKING_DIR = 'com.docker.compose.project.working_dir'

HISTORY_DIR = '.incident-response'

_STATES = ('running', 'exited', 'paused', 'restarting', 'created')

# The engine events after which the waiter reads a service again at once (rather than after wait_sleep).
_WAKE_EVENTS = ('create', 'start', 'restart', 'die', 'stop', 'kill', 'oom', 'destroy', 'pause', 'unpause',
                'health_status')


def compose_argument_spec():
    """The options of the Compose backend (documented in doc_fragments/compose.py)."""
    return dict(
        project=dict(type='str'),
        project_dir=dict(type='path'),
        files=dict(type='list', elements='path'),
        docker_host=dict(type='str', fallback=(env_fallback, ['DOCKER_HOST']), default='unix:///var/run/docker.sock'),
        timeout=dict(type='int', default=60),
        history_file=dict(type='path'),
    )


def instance_view(attrs, now=None):
    """One container's inspect data -> an entry of ``instances`` (the interface's shape)."""
    state = attrs.get('State') or {}
    status = state.get('Status') or 'unknown'
    if status == 'dead' or status == 'removing':
        status = 'exited' if status == 'dead' else 'terminating'
    if status not in _STATES + ('terminating',):
        status = 'unknown'
    health = ((state.get('Health') or {}).get('Status')) or 'none'
    started = parse_time(state.get('StartedAt'))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    uptime = None
    if started and status in ('running', 'paused'):
        uptime = max(int((now - started).total_seconds()), 0)
    labels = (attrs.get('Config') or {}).get('Labels') or {}
    return dict(
        id=attrs.get('Id', '')[:12],
        name=(attrs.get('Name') or '').lstrip('/'),
        number=int(labels.get(LABEL_NUMBER) or 0),
        state=status,
        health=health if status in ('running', 'paused', 'restarting') else 'none',
        restart_count=attrs.get('RestartCount', 0),
        exit_code=state.get('ExitCode') if status not in ('running', 'paused') else None,
        oom_killed=bool(state.get('OOMKilled')),
        started_at=state.get('StartedAt') if started else None,
        uptime_seconds=uptime,
        image=(attrs.get('Config') or {}).get('Image'),
        image_id=attrs.get('Image'),
    )


def is_ready(instance):
    return instance['state'] == 'running' and instance['health'] in ('healthy', 'none')


def cpu_percent(stats):
    """CPU use from one ``docker stats`` sample (same formula as the docker CLI)."""
    cpu = stats.get('cpu_stats') or {}
    pre = stats.get('precpu_stats') or {}
    cpu_delta = (cpu.get('cpu_usage') or {}).get('total_usage', 0) - (pre.get('cpu_usage') or {}).get('total_usage', 0)
    system_delta = cpu.get('system_cpu_usage', 0) - pre.get('system_cpu_usage', 0)
    cpus = cpu.get('online_cpus') or len((cpu.get('cpu_usage') or {}).get('percpu_usage') or []) or 1
    if cpu_delta > 0 and system_delta > 0:
        return round(cpu_delta / float(system_delta) * cpus * 100.0, 2)
    return 0.0


def memory_usage(stats):
    mem = stats.get('memory_stats') or {}
    usage = mem.get('usage', 0) or 0
    detail = mem.get('stats') or {}
    # cgroup v2 reports inactive_file, v1 total_inactive_file: the CLI subtracts the page cache.
    usage -= detail.get('inactive_file', detail.get('total_inactive_file', 0)) or 0
    limit = mem.get('limit') or 0
    return max(usage, 0), limit, (round(usage * 100.0 / limit, 2) if limit else None)


def host_label(host):
    """``docker_host`` as messages show it: a password in it (``tcp://user:pw@host``) masked."""
    def mask(match):
        user, sep, _password = match.group(2).partition(':')
        return match.group(1) + (user + ':********' if sep else user) + '@'
    return re.sub(r'^([A-Za-z][A-Za-z0-9+.-]*://)([^@/]*)@', mask, host or '')


def find_compose_command():
    """['docker', 'compose'] when the v2 plugin answers, else ['docker-compose'], else None."""
    if shutil.which('docker'):
        try:
            proc = subprocess.run(['docker', 'compose', 'version'], capture_output=True, text=True,
                                  timeout=30, check=False)
            if proc.returncode == 0:
                return ['docker', 'compose']
        except (OSError, subprocess.SubprocessError):
            pass
    if shutil.which('docker-compose'):
        return ['docker-compose']
    return None


def history_problem(data):
    """What is wrong with the content of a deploy history file (None when it is one this backend wrote)."""
    if not isinstance(data, dict):
        return 'not a JSON object'
    services = data.get('services', {})
    if not isinstance(services, dict):
        return '"services" is not an object'
    for name, entries in services.items():
        if not isinstance(entries, list):
            return 'the entries of service %s are not a list' % name
        for entry in entries:
            if not isinstance(entry, dict):
                return 'an entry of service %s is not an object' % name
            revision = entry.get('revision')
            if not isinstance(revision, int) or isinstance(revision, bool) or not isinstance(entry.get('image'), str):
                return 'an entry of service %s has no integer revision and image' % name
    return None


def write_json(path, data, what):
    """Write ``data`` to ``path`` at once (a temporary file renamed); BackendError when it cannot."""
    tmp = path + '.tmp'
    try:
        directory = os.path.dirname(path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        with open(tmp, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.rename(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise BackendError('cannot write %s %s: %s' % (what, path, to_native(exc)))


class ComposeBackend(ServiceBackend):
    """The backend interface (see _services.py) on the containers of one Compose project."""

    platform = 'compose'
    argument_spec = staticmethod(compose_argument_spec)
    history_hint = ' (record each deploy with state=recorded; see the module documentation)'

    def __init__(self, module):
        super(ComposeBackend, self).__init__(module)
        if not HAS_DOCKER:
            module.fail_json(msg=missing_required_lib('docker (the Docker SDK for Python, on the managed node)'),
                             exception=DOCKER_IMPORT_ERROR)
        params = module.params
        self.project = params.get('project')
        if not self.project:
            raise BackendError('project is required with platform=compose (the compose project name, '
                               'e.g. taskscheduler)')
        self.docker_host = params.get('docker_host') or 'unix:///var/run/docker.sock'
        self.docker_host_label = host_label(self.docker_host)
        self.timeout = params.get('timeout') or 60
        self.project_dir = params.get('project_dir')
        self.files = params.get('files') or []
        self._history_file = params.get('history_file')
        self._compose_cmd = None
        self._config_services = None
        # The containers of the last read of each service (service()), with the time of that read: scale()
        # acts on the read the plan was made from rather than listing and inspecting them all again, and the
        # waiter's wake-up (wait_for_change) asks for the engine's events since then.
        self._last_read = {}
        try:
            # As many pooled connections as the scale path has threads (16), so that none is opened twice.
            self.client = docker.DockerClient(base_url=self.docker_host, timeout=self.timeout, max_pool_size=16)
            self.client.ping()
        except (ValueError, TypeError) as exc:
            # urllib's parsing of the URL: tcp://h:notaport, a port out of range, a broken IPv6 address.
            raise BackendError('docker_host %r is not an address of a Docker daemon (unix:///PATH, tcp://HOST:PORT, '
                               'ssh://USER@HOST): %s' % (self.docker_host_label, self._short(exc)))
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise BackendError('cannot reach the Docker daemon at %s: %s' % (self.docker_host_label, self._short(exc)))
        containers = self._containers(sparse=True)
        self._labels_dir_files(containers)
        if not containers and not self.files and not self.project_dir:
            raise BackendError('compose project %s not found on %s: no container carries the label %s=%s '
                               '(give files or project_dir to manage a project with no containers)'
                               % (self.project, self.docker_host_label, LABEL_PROJECT, self.project))

    # ---------------------------------------------------------------- helpers
    def _short(self, exc):
        text = to_native(exc)
        host = getattr(self, 'docker_host', None)
        if host:
            text = text.replace(host, self.docker_host_label)
        match = re.search(r"\('Connection aborted.', (.*)\)$", text) or re.search(r'(\[Errno -?\d+\][^"\')]*)', text)
        if match:
            text = match.group(1)
        return redact(' '.join(text.split()))[:300]

    def _api(self, what, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except docker.errors.NotFound as exc:
            raise BackendError('%s: not found on %s (%s)' % (what, self.docker_host_label, self._short(exc)))
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise BackendError('%s failed on %s: %s' % (what, self.docker_host_label, self._short(exc)))

    def _labels_dir_files(self, containers):
        """Fill project_dir/files from the labels compose put on the containers when not given.

        Containers of one project can carry different file lists (a service recreated with an
        override file that is gone since): the most common list whose files all exist wins.
        """
        if self.files and self.project_dir:
            return
        dirs, file_sets = {}, {}
        for container in containers:
            labels = container['Labels'] or {}
            if labels.get(LABEL_WORKING_DIR):
                dirs[labels[LABEL_WORKING_DIR]] = dirs.get(labels[LABEL_WORKING_DIR], 0) + 1
            files = tuple(f for f in (labels.get(LABEL_CONFIG_FILES) or '').split(',') if f)
            if files and all(os.path.exists(path) for path in files):
                file_sets[files] = file_sets.get(files, 0) + 1
        if not self.project_dir and dirs:
            self.project_dir = max(dirs, key=dirs.get)
        if not self.files and file_sets:
            self.files = list(max(file_sets, key=file_sets.get))

    def _containers(self, service=None, sparse=False):
        """The containers of the project (or of one service), one-off runs left out. ``sparse``: the entries of the
        engine's list (``Id``, ``Labels``, ``State``...), without inspecting each container."""
        filters = dict(label=['%s=%s' % (LABEL_PROJECT, self.project)])
        if service:
            filters['label'].append('%s=%s' % (LABEL_SERVICE, service))
        what = 'listing the containers of compose project %s' % self.project
        # One list call, then the inspections in parallel (the SDK's list() inspects one container after the
        # other: 20 round trips for 20 workers, on every read of the service).
        found = self._api(what, self.client.api.containers, all=True, filters=filters)
        found = [entry for entry in found if (entry.get('Labels') or {}).get(LABEL_ONEOFF, 'False') != 'True']
        if sparse:
            for entry in found:
                entry['Labels'] = entry.get('Labels') or {}
            return found
        inspected = {}
        errors = []

        def inspect(entry):
            try:
                inspected[entry['Id']] = self.client.api.inspect_container(entry['Id'])
            except docker.errors.NotFound:
                pass  # removed between the list and the inspection: not a container of the service any more
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                errors.append(exc)

        if len(found) > 1:
            threads = [threading.Thread(target=inspect, args=(entry,)) for entry in found]
            for index in range(0, len(threads), 16):
                for thread in threads[index:index + 16]:
                    thread.start()
                for thread in threads[index:index + 16]:
                    thread.join(self.timeout)
        else:
            for entry in found:
                inspect(entry)
        if errors:
            raise BackendError('%s failed on %s: %s' % (what, self.docker_host_label, self._short(errors[0])))
        return [self.client.containers.prepare_model(inspected[entry['Id']]) for entry in found
                if entry['Id'] in inspected]

    def compose_cmd(self):
        if self._compose_cmd is None:
            self._compose_cmd = find_compose_command()
            if self._compose_cmd is None:
                raise BackendError('neither "docker compose" (v2 plugin) nor "docker-compose" (v1) is installed '
                                   'on the managed node')
        return self._compose_cmd

    def compose_base(self):
        cmd = list(self.compose_cmd()) + ['--project-name', self.project]
        if self.project_dir:
            cmd += ['--project-directory', self.project_dir]
        for path in self.files:
            cmd += ['--file', path]
        return cmd

    def run_compose(self, args, what):
        """Run the compose CLI; BackendError with cmd, rc, stdout, stderr when it fails."""
        cmd = self.compose_base() + list(args)
        env = dict(os.environ, DOCKER_HOST=self.docker_host)
        cwd = self.project_dir if self.project_dir and os.path.isdir(self.project_dir) else None
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False,
                                  timeout=max(self.timeout * 5, 300))
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackendError('%s: cannot run %s: %s' % (what, ' '.join(cmd), to_native(exc)), cmd=cmd)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout or '').splitlines() if line.strip()]
            raise BackendError('%s failed (rc=%s): %s' % (what, proc.returncode, lines[-1] if lines else 'no output'),
                               cmd=cmd, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
        return dict(cmd=cmd, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)

    def service_names(self):
        """Services of the project: those of the compose file(s) when known, plus those with containers."""
        names = set(c['Labels'].get(LABEL_SERVICE) for c in self._containers(sparse=True))
        if self._config_services is None:
            self._config_services = []
            if self.files and all(os.path.exists(path) for path in self.files):
                out = self.run_compose(['config', '--services'], 'reading the services of compose project %s'
                                       % self.project)
                self._config_services = [line.strip() for line in out['stdout'].splitlines() if line.strip()]
        names.update(self._config_services)
        names.discard(None)
        return sorted(names)

    def _require(self, name):
        containers = self._containers(name)
        if not containers and name not in self.service_names():
            raise BackendError('service %s not found in compose project %s (services: %s)'
                               % (name, self.project, ', '.join(self.service_names()) or 'none'))
        return containers

    # ---------------------------------------------------------------- interface
    def service(self, name):
        read_at = time.time()
        containers = self._require(name)
        self._last_read[name] = (read_at, containers)
        now = datetime.datetime.now(datetime.timezone.utc)
        instances = sorted((instance_view(c.attrs, now) for c in containers), key=lambda i: (i['number'], i['name']))
        image = instances[0]['image'] if instances else None
        history = self.history(name)
        revision = None
        for entry in history:
            if image and entry['image'] == image and (
                    not entry.get('image_id') or not instances or entry['image_id'] == instances[0]['image_id']):
                revision = entry['revision']
        return dict(
            name=name,
            platform=self.platform,
            project=self.project,
            desired_replicas=len(instances),
            running_replicas=len([i for i in instances if i['state'] == 'running']),
            ready_replicas=len([i for i in instances if is_ready(i)]),
            paused_replicas=len([i for i in instances if i['state'] == 'paused']),
            image=image,
            revision=revision,
            instances=instances,
        )

    def scale(self, name, replicas):
        if replicas < 0:
            raise BackendError('replicas must not be negative, got %s' % replicas)
        # The read the plan was made from (a moment ago, in this run), else a new one.
        containers = self._last_read.pop(name, (None, None))[1]
        if containers is None:
            containers = self._require(name)
        if self._scale_through_engine(name, containers, replicas):
            return
        self.run_compose(['up', '--detach', '--no-deps', '--no-recreate', '--scale', '%s=%d' % (name, replicas), name],
                         'scaling service %s of compose project %s to %d' % (name, self.project, replicas))

    def wait_for_change(self, name, seconds):
        """The waiter's pause between two reads of ``name``: at most ``seconds``, over as soon as the engine
        reports an event of one of its containers since the last read (started, died, health status changed,
        ...), so that a wait ends when the service is ready rather than at the next ``wait_sleep``. The events
        are read in a thread that is left behind at the deadline: the pause never takes longer than
        ``seconds``, whatever the engine does; when events cannot be read it is a plain sleep."""
        since = self._last_read.get(name, (time.time(), None))[0]
        woken = threading.Event()
        streams = []
        filters = dict(type=['container'], event=list(_WAKE_EVENTS),
                       label=['%s=%s' % (LABEL_PROJECT, self.project), '%s=%s' % (LABEL_SERVICE, name)])

        def listen():
            try:
                stream = self.client.api.events(since=round(since, 3), until=round(time.time() + seconds, 3),
                                                filters=filters, decode=True)
                streams.append(stream)
                for _event in stream:
                    break
                else:
                    return  # the engine ended the stream at ``until``: nothing happened
                woken.set()
            except Exception:  # pylint: disable=broad-except
                pass  # no events (an old engine, a proxy that buffers): the pause is a plain sleep

        thread = threading.Thread(target=listen)
        thread.daemon = True
        thread.start()
        woken.wait(seconds)
        for stream in streams:
            try:
                stream.close()
            except Exception:  # pylint: disable=broad-except
                pass

    # ---------------------------------------------------------------- scale through the engine API
    def _scale_through_engine(self, name, containers, replicas):
        """Scale the way ``compose up --scale --no-recreate`` does, through the engine API and in parallel:
        new containers are created from the configuration of the running ones (the same image, command,
        environment, mounts, network, labels and config hash that compose gave them), numbered after the
        highest; scaling down stops and removes the highest numbers, all at once. False (the CLI does it)
        when ``files`` are given, the instances do not share one configuration, none runs, or the network
        setup is more than one network (compose would then be the safer author)."""
        if self.module.params.get('files'):
            # The operator named the compose files: their configuration is the one to scale to (the CLI).
            return False
        live = [c for c in containers if c.status not in ('removing', 'dead')]
        if len(live) != len(containers) or not live:
            return False
        if replicas < len(live):
            by_number = sorted(live, key=lambda c: int(c.labels.get(LABEL_NUMBER) or 0))
            self._parallel('scaling service %s of compose project %s down to %d' % (name, self.project, replicas),
                           self._stop_and_remove, by_number[replicas:])
            return True
        if replicas == len(live):
            return True
        template = self._template(live)
        if template is None:
            return False
        numbers = [int(c.labels.get(LABEL_NUMBER) or 0) for c in live]
        base = re.sub(r'([_-])%d$' % numbers[live.index(template)], r'\1', template.name)
        if base == template.name:
            return False
        new_numbers = range(max(numbers) + 1, max(numbers) + 1 + replicas - len(live))
        self._parallel('scaling service %s of compose project %s up to %d' % (name, self.project, replicas),
                       lambda number: self._create_and_start(template, base, number), list(new_numbers))
        return True

    @staticmethod
    def _template(live):
        """The running container to copy, when every instance has the same compose config hash and image."""
        hashes = set(c.labels.get('com.docker.compose.config-hash') for c in live)
        images = set((c.attrs.get('Config') or {}).get('Image') for c in live)
        if len(hashes) != 1 or None in hashes or len(images) != 1:
            return None
        running = [c for c in live if c.status == 'running']
        if not running:
            return None
        template = running[0]
        networks = (template.attrs.get('NetworkSettings') or {}).get('Networks') or {}
        mode = (template.attrs.get('HostConfig') or {}).get('NetworkMode') or ''
        if len(networks) > 1 or mode.startswith('container:'):
            return None
        return template

    def _create_and_start(self, template, base, number):
        attrs = template.attrs
        config = dict(attrs.get('Config') or {})
        host_config = dict(attrs.get('HostConfig') or {})
        labels = dict(config.get('Labels') or {})
        labels[LABEL_NUMBER] = str(number)
        mode = host_config.get('NetworkMode') or 'default'
        networking = None
        networks = (attrs.get('NetworkSettings') or {}).get('Networks') or {}
        if mode not in ('host', 'none') and networks:
            net_name, endpoint = list(networks.items())[0]
            aliases = [a for a in (endpoint or {}).get('Aliases') or [] if a not in (template.id[:12], template.name)]
            networking = {'EndpointsConfig': {net_name: {'Aliases': aliases or None,
                                                         'Links': (endpoint or {}).get('Links')}}}
        body = dict((key, config.get(key)) for key in (
            'User', 'Tty', 'OpenStdin', 'StdinOnce', 'AttachStdin', 'AttachStdout', 'AttachStderr', 'Env', 'Cmd',
            'Image', 'Volumes', 'WorkingDir', 'Entrypoint', 'StopSignal', 'StopTimeout', 'Healthcheck',
            'ExposedPorts', 'Shell', 'Domainname') if config.get(key) is not None)
        if mode not in ('host',) and config.get('Hostname') and not template.id.startswith(config['Hostname']):
            body['Hostname'] = config['Hostname']
        body.update(Labels=labels, HostConfig=host_config)
        if networking:
            body['NetworkingConfig'] = networking
        api = self.client.api
        name = '%s%d' % (base, number)
        # The engine's own create endpoint, with the template's configuration as it is (the SDK's create
        # helpers would rebuild it from keyword arguments and lose what they do not know).
        created = api._result(api._post_json(api._url('/containers/create'), data=body, params={'name': name}),
                              True)
        try:
            api.start(created['Id'])
        except Exception:
            try:
                api.remove_container(created['Id'], force=True)
            except Exception:  # pylint: disable=broad-except
                pass
            raise

    def _stop_and_remove(self, container):
        timeout = (container.attrs.get('Config') or {}).get('StopTimeout')
        api = self.client.api
        api.stop(container.id, timeout=10 if timeout is None else timeout)
        api.remove_container(container.id)

    def _parallel(self, what, func, items):
        """``func(item)`` for every item in threads (at most 16 at once); BackendError naming the first error."""
        errors = []
        lock = threading.Lock()
        pending = list(items)

        def worker():
            while True:
                with lock:
                    if not pending:
                        return
                    item = pending.pop(0)
                try:
                    func(item)
                except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                    with lock:
                        errors.append(self._short(exc))

        threads = [threading.Thread(target=worker) for _index in range(min(len(pending), 16))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(self.timeout * 5, 300))
        if errors:
            raise BackendError('%s failed on %s: %s (%d of %d failed)' % (
                what, self.docker_host_label, errors[0], len(errors), len(items)))

    def restart(self, name, instance_ids=None):
        containers = self._require(name)
        chosen = [c for c in containers if instance_ids is None or c.id[:12] in [i[:12] for i in instance_ids]]
        restarted = []
        for container in chosen:
            self._api('restarting container %s of service %s' % (container.name, name),
                      container.restart, timeout=10)
            restarted.append(container.id[:12])
        return restarted

    def start(self, name, instance_ids):
        """Start exited or created containers (a restart of something stopped)."""
        for container in self._require(name):
            if container.id[:12] in [i[:12] for i in instance_ids]:
                self._api('starting container %s of service %s' % (container.name, name), container.start)

    def pause(self, name):
        for container in self._require(name):
            self._api('container %s of service %s' % (container.name, name), container.reload)
            if container.status == 'running':
                self._api('pausing container %s of service %s' % (container.name, name), container.pause)

    def unpause(self, name):
        for container in self._require(name):
            self._api('container %s of service %s' % (container.name, name), container.reload)
            if container.status == 'paused':
                self._api('unpausing container %s of service %s' % (container.name, name), container.unpause)

    def pause_state(self, service):
        live = [i for i in service['instances'] if i['state'] in ('running', 'paused')]
        return dict(paused=bool(live) and all(i['state'] == 'paused' for i in live),
                    partly=bool(service.get('paused_replicas')))

    # ---------------------------------------------------------------- deploy history
    def history_path(self):
        if self._history_file:
            return self._history_file
        if not self.project_dir:
            raise BackendError('compose project %s: no project_dir known, so no deploy history; give project_dir '
                               'or history_file' % self.project)
        return os.path.join(self.project_dir, HISTORY_DIR, '%s-deploy-history.json' % self.project)

    def _read_history(self):
        try:
            path = self.history_path()
        except BackendError:
            return {}
        if not os.path.exists(path):
            return {}
        try:
            with open(path) as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise BackendError('cannot read the deploy history %s: %s' % (path, to_native(exc)))
        problem = history_problem(data)
        if problem:
            raise BackendError('the deploy history %s is not one this collection wrote (%s): fix it or move it away; '
                               'nothing changed' % (path, problem))
        return data.get('services', {})

    def history(self, name):
        return list(self._read_history().get(name, []))

    def record_deploy(self, name, image, image_id=None):
        """Append ``image`` to the deploy history of ``name`` unless it is already the last entry."""
        data = self._read_history()
        entries = data.setdefault(name, [])
        if entries and entries[-1]['image'] == image and entries[-1].get('image_id') == image_id:
            return None
        entry = dict(revision=(entries[-1]['revision'] + 1) if entries else 1, image=image, image_id=image_id,
                     deployed_at=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'))
        entries.append(entry)
        path = self.history_path()
        write_json(path, dict(project=self.project, services=data), 'the deploy history')
        return entry

    def override_path(self):
        return os.path.join(os.path.dirname(self.history_path()), '%s-rollback.override.yml' % self.project)

    def check_rollback(self, name):
        """A rollback recreates the service from the project's compose files plus an override that pins the
        image: without those files it would come back from the image alone (no environment, ports, volumes)."""
        missing = [path for path in self.files if not os.path.exists(path)]
        if not self.files or missing:
            raise BackendError(
                'service %s: the compose files of project %s are not known (%s): a rollback would recreate the '
                'service from the image alone, without its environment, ports and volumes; give files (the '
                "project's compose files): nothing changed" % (
                    name, self.project, 'missing: %s' % ', '.join(missing) if missing else
                    "no files given and the containers' labels name none that exist"))

    def rollback(self, name, revision=None):
        """Redeploy the image of the previous (or the given) recorded revision through an override file."""
        current = self.service(name)
        history = self.history(name)
        if len(history) < (1 if revision else 2):
            raise BackendError('service %s of compose project %s has no earlier deploy to roll back to: the deploy '
                               'history %s holds %d entries' % (name, self.project, self._history_label(), len(history)))
        if revision is None:
            current_rev = current['revision'] or history[-1]['revision']
            older = [e for e in history if e['revision'] < current_rev]
            if not older:
                raise BackendError('service %s of compose project %s runs revision %s, the oldest recorded'
                                   % (name, self.project, current_rev))
            target = older[-1]
        else:
            matches = [e for e in history if e['revision'] == revision]
            if not matches:
                raise BackendError('service %s of compose project %s has no revision %s (recorded: %s)' % (
                    name, self.project, revision, ', '.join(str(e['revision']) for e in history)))
            target = matches[0]
        self.check_rollback(name)
        self.deploy_image(name, target['image'])
        return {'from': dict(revision=current['revision'], image=current['image']),
                'to': dict(revision=target['revision'], image=target['image'])}

    def _history_label(self):
        try:
            return self.history_path()
        except BackendError:
            return '(none)'

    def deploy_image(self, name, image):
        """Recreate ``name`` with ``image`` (an override file next to the history pins it)."""
        path = self.override_path()
        overrides = {}
        if os.path.exists(path):
            try:
                with open(path) as handle:
                    overrides = json.load(handle).get('services', {})
            except (OSError, ValueError, AttributeError):
                overrides = {}
            if not isinstance(overrides, dict):
                overrides = {}
        overrides[name] = dict(image=image)
        # JSON is YAML: compose reads it as an override file.
        write_json(path, dict(version='2.4', services=overrides), 'the rollback override')
        files = list(self.files)
        if path not in files:
            self.files = files + [path]
        replicas = len(self._containers(name)) or 1
        self.run_compose(['up', '--detach', '--no-deps', '--scale', '%s=%d' % (name, replicas), name],
                         'redeploying service %s of compose project %s with image %s' % (name, self.project, image))
        self.files = files

    # ---------------------------------------------------------------- logs and stats
    def logs(self, name, since=None, pattern=None, lines=200):
        regex = compile_pattern(pattern)
        found = []
        kwargs = dict(stdout=True, stderr=True, tail=lines)
        if since is not None:
            kwargs['since'] = int(time.time() - since)
        for container in self._require(name):
            raw = self._api('reading the logs of container %s' % container.name, container.logs, **kwargs)
            for line in to_native(raw, errors='replace').splitlines():
                if regex is None or regex.search(line):
                    found.append(dict(instance=container.id[:12], line=redact(line)))
        return found

    def stats(self, name):
        """One stats snapshot per running container, taken in parallel."""
        result = {}
        errors = {}

        def sample(container):
            try:
                data = container.stats(stream=False)
                mem, limit, pct = memory_usage(data)
                result[container.id[:12]] = dict(cpu_pct=cpu_percent(data), mem_bytes=mem, mem_limit=limit, mem_pct=pct)
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                errors[container.id[:12]] = self._short(exc)

        threads = []
        for container in self._require(name):
            if container.status != 'running':
                continue
            thread = threading.Thread(target=sample, args=(container,))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(self.timeout)
        for cid, error in errors.items():
            result[cid] = dict(cpu_pct=None, mem_bytes=None, mem_limit=None, mem_pct=None, error=error)
        return result
