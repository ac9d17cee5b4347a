"""Hypothesis over the argument handling of the service modules (issue 9), in-process through the harness.

Every input ends in a result (exit_json) or one ``msg`` (fail_json), never a Python traceback. Three targets:

- the FAKE backend of test_service_driver.py (a stand-in platform), so that what passes validation goes through
  the driver's whole flow (plan, act, wait) in check mode and for real;
- the Compose backend with a Docker daemon address where nothing listens, or a hostile ``docker_host``: every
  input fails its validation or the connection, with one message;
- the Kubernetes backend against the FAKE API server of tests/fake_k8s (a stand-in for a cluster), in check mode,
  with a deployment to find.

The strategies are those of test_fuzz_args.py (HYPOTHESIS_EXAMPLES examples per module, default 100).
"""
import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from module_harness import run
from test_fuzz_args import ANY_TEXT, CHEAP_FUZZ, FUZZ, HOSTILE_TEXT, assert_one_message_or_result, options
from test_service_driver import fake  # noqa: F401 pylint: disable=unused-import

from ansible_collections.incident.response.plugins.modules import (
    deployment_rollback,
    service_info,
    service_pause,
    service_restart,
    service_scale,
)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
from fake_k8s.server import FakeKubeServer, deployment_manifest  # noqa: E402 pylint: disable=wrong-import-position

WAIT = ['wait', 'wait_timeout', 'wait_sleep']
SPECS = dict(
    service_info=(service_info, ['services', 'log_pattern', 'log_since', 'log_lines', 'stats']),
    service_scale=(service_scale, ['service', 'replicas', 'max_replicas', 'current_replicas'] + WAIT),
    service_pause=(service_pause, ['service', 'state'] + WAIT),
    service_restart=(service_restart, ['service', 'instances', 'only', 'min_uptime'] + WAIT),
    deployment_rollback=(deployment_rollback, ['service', 'state', 'revision', 'current_image'] + WAIT),
)
# The service the backends know, most of the time, so that examples get past "service not found".
SERVICE = st.one_of(st.just('web'), ANY_TEXT)
# Short waits: a wait_timeout of an hour would make an example last an hour when the FAKE backend is not ready.
STEERING = dict(service=SERVICE, wait_timeout=st.integers(min_value=-2, max_value=1),
                wait_sleep=st.integers(min_value=-1, max_value=2))


def steering(name):
    keys = SPECS[name][1]
    return dict((key, value) for key, value in STEERING.items() if key in keys)


@pytest.mark.parametrize('name', sorted(SPECS))
def test_fake_backend_every_input_ends_in_a_result_or_one_message(fake, name):  # noqa: F811 pylint: disable=redefined-outer-name
    module, names = SPECS[name]

    @FUZZ
    @given(options(module, names, **steering(name)), st.booleans())
    def check(args, check_mode):
        fake.instances = fake.instances[:3]
        args = dict(args, platform='fake', project='p', _ansible_check_mode=check_mode)
        assert_one_message_or_result(*run(module, args))
    check()


@pytest.mark.parametrize('name', sorted(SPECS))
def test_compose_unreachable_or_hostile_docker_host_ends_in_one_message(name):
    module, names = SPECS[name]
    hosts = st.one_of(st.just('tcp://127.0.0.1:1'), HOSTILE_TEXT, ANY_TEXT,
                      st.sampled_from(['tcp://u:pw@127.0.0.1:1', 'unix:///nonexistent.sock', 'ssh://', 'tcp://:0',
                                       'tcp://[::1', 'tcp://h:99999999', 'npipe:////./pipe/x', 'http://\x00']))

    @CHEAP_FUZZ
    @given(options(module, names + ['project', 'project_dir', 'files', 'timeout', 'history_file'],
                   docker_host=hosts, timeout=st.integers(min_value=-1, max_value=2), **steering(name)))
    def check(args):
        args = dict(args, platform='compose', _ansible_check_mode=True)
        assert_one_message_or_result(*run(module, args))
    check()


@pytest.fixture(scope='module')
def fake_k8s(tmp_path_factory):
    server = FakeKubeServer(ready_delay=0.05, terminate_delay=0.05).start()
    server.kubeconfig_path = server.kubeconfig(str(tmp_path_factory.mktemp('kube') / 'kubeconfig'))
    server.cluster.create_deployment('default', deployment_manifest('web', replicas=2, image='web:1',
                                                                    log_lines=['ERROR x password=hunter2']))
    yield server
    server.stop()


@pytest.mark.parametrize('name', sorted(SPECS))
def test_kubernetes_fake_api_server_check_mode_every_input_ends_in_a_result_or_one_message(fake_k8s, name):  # pylint: disable=redefined-outer-name
    module, names = SPECS[name]
    before = fake_k8s.cluster.mutations[:]

    @FUZZ
    @given(options(module, names + ['namespace', 'context'], namespace=st.one_of(st.just('default'), ANY_TEXT),
                   **steering(name)))
    def check(args):
        args = dict(args, platform='kubernetes', kubeconfig=fake_k8s.kubeconfig_path, _ansible_check_mode=True)
        kind, result = run(module, args)
        assert_one_message_or_result(kind, result)
        assert 'hunter2' not in repr(result)
    check()
    assert fake_k8s.cluster.mutations == before, 'check mode wrote to the FAKE API server'
