"""Secrets never reach the output (issue 9): the roles' dependency checks and the matched log lines they print.

Real services: a private redis-server of this test (loopback, requirepass) for service_down's Redis check, the
lab's Compose project for the log lines. The lab's own passwords (lab.env) are grepped for as well.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis

REDIS_SECRET = 'svc-down-redis-pw-41b7'


def _free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture(scope='module')
def private_redis():
    """A real redis-server of the test's own on loopback, with a password."""
    server = shutil.which('redis-server')
    if not server:
        pytest.fail('redis-server not found (bindep: redis-server)')
    tmp = tempfile.mkdtemp(prefix='ir-redis-sec-')
    port = _free_port()
    proc = subprocess.Popen([server, '--port', str(port), '--bind', '127.0.0.1', '--requirepass', REDIS_SECRET,
                             '--save', '', '--appendonly', 'no', '--dir', tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host='127.0.0.1', port=port, password=REDIS_SECRET, socket_timeout=2)
    deadline = time.time() + 30
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail('the private redis-server did not start')
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(tmp, ignore_errors=True)


def lab_passwords(lab_env):
    """The lab's passwords (lab.env and the environment the tests run with)."""
    return sorted(set(value for key, value in lab_env.items()
                      if ('PASSWORD' in key or key.endswith('_PW')) and value and len(value) >= 4))


def test_service_down_redis_check_keeps_the_password_out_of_argv_and_output(ansible, lab_env, private_redis):
    url = 'redis://:%s@127.0.0.1:%d/0' % (REDIS_SECRET, private_redis)
    extra = dict(service_down_service='scheduler', service_down_redis_url=url, service_down_check_postgres=False)
    run = ansible.playbook('playbooks/service_down.yml', extra, check=True, env=dict(ANSIBLE_VERBOSITY='3'))
    assert run.rc == 0, run
    # the check ran and found Redis answering (with the password), and said so
    assert "''redis'': ''answers PONG''" in run.output, run
    assert REDIS_SECRET not in run.output
    assert 'redis-cli' not in run.output
    for secret in lab_passwords(lab_env):
        assert secret not in run.output


def test_service_down_redis_check_reports_a_wrong_password_without_it(ansible, private_redis):
    url = 'redis://:wrong-%s@127.0.0.1:%d/0' % (REDIS_SECRET, private_redis)
    extra = dict(service_down_service='scheduler', service_down_redis_url=url, service_down_check_postgres=False)
    run = ansible.playbook('playbooks/service_down.yml', extra, check=True, env=dict(ANSIBLE_VERBOSITY='3'))
    assert run.rc == 0, run
    assert 'DOWN: ' in run.output and "''redis'': ''answers PONG''" not in run.output, run
    assert REDIS_SECRET not in run.output


LOG_SECRETS = dict(json='json-pw-1a2b', bearer='bearer-tok-3c4d', named='named-pw-5e6f', keyed='pgp-key-7a8b',
                   url='url-pw-9c0d')


@pytest.fixture
def leaky_service(engine):
    """A real container of a Compose project of this test (labels as compose sets them) whose log lines carry
    secrets in the shapes redact() used to miss."""
    project = 'irsecrets%d' % os.getpid()
    lines = [
        'ERROR login failed {"user": "app", "password": "%(json)s"}',
        'ERROR upstream said 401 to Authorization: Bearer %(bearer)s',
        "ERROR SELECT connect(password => '%(named)s') failed",
        "ERROR SELECT pgp_sym_decrypt(secret_col, '%(keyed)s') failed",
        'ERROR cannot reach redis://:%(url)s@127.0.0.1:6379/0',
    ]
    script = '; '.join("echo '%s'" % (line % LOG_SECRETS).replace("'", "'\"'\"'") for line in lines) + '; sleep 600'
    container = engine.client.containers.run(
        'incident-lab/busybox:latest', ['/bin/sh', '-c', script], detach=True, network_mode='none',
        name='%s_leaky_1' % project,
        labels={'com.docker.compose.project': project, 'com.docker.compose.service': 'leaky',
                'com.docker.compose.container-number': '1', 'com.docker.compose.oneoff': 'False'})
    deadline = time.time() + 30
    while b'redis://' not in container.logs() and time.time() < deadline:
        time.sleep(0.2)
    yield project
    container.remove(force=True)


def test_matched_log_lines_printed_at_default_verbosity_are_redacted(ansible, leaky_service):
    extra = dict(service_down_service='leaky', service_down_project=leaky_service, service_down_log_pattern='ERROR',
                 service_down_check_postgres=False, service_down_redis_url='')
    run = ansible.playbook('playbooks/service_down.yml', extra, check=True)
    assert run.rc == 0, run
    assert 'login failed' in run.output and 'Authorization: Bearer ********' in run.output, run
    for secret in LOG_SECRETS.values():
        assert secret not in run.output, secret
    rc, result, out = ansible.module('service_info', dict(project=leaky_service, services=['leaky'],
                                                          log_pattern='ERROR'))
    assert rc == 0, out
    assert len(result['services'][0]['log_lines']) == 5, out
    for secret in LOG_SECRETS.values():
        assert secret not in out, secret
