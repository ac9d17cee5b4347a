"""The EDA rulebook for real: our OWN Alertmanager (loopback port, own config: the lab's is never reconfigured)
delivers to a real ansible-rulebook 1.3.2 process, which runs playbooks/alert_dispatch.yml.

ansible-rulebook lives in build/eda-venv (requirements-eda.txt; it pins versions that the shared test venv must not
take): the test is skipped when it is not installed there, with the command to install it.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import BIN, ROOT, stop_process_group

RULEBOOK_BIN = os.path.join(ROOT, 'build', 'eda-venv', 'bin', 'ansible-rulebook')
ALERTMANAGER_BIN = shutil.which('prometheus-alertmanager') or shutil.which('alertmanager')
AM_PORT = 59193
HOOK_PORT = 59150
TOKEN = 'eda-test-token-' + uuid.uuid4().hex[:8]

AM_CONFIG = """
route:
  receiver: rulebook
  group_by: [alertname, irtest]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: rulebook
    webhook_configs:
      - url: http://127.0.0.1:%d/alerts
        send_resolved: true
        http_config:
          authorization:
            credentials: %s
""" % (HOOK_PORT, TOKEN)


def poll(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail('timed out after %ss waiting for %s' % (timeout, what))
    return None


def post(url, body, token=None):
    headers = {'Content-Type': 'application/json'}
    if token:
        headers['Authorization'] = 'Bearer %s' % token
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method='POST')
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


@pytest.fixture(scope='module')
def eda(ansible_env):
    if not os.path.exists(RULEBOOK_BIN):
        pytest.skip('ansible-rulebook not installed: python3.11 -m venv build/eda-venv && '
                    'build/eda-venv/bin/pip install -r requirements-eda.txt')
    if not ALERTMANAGER_BIN:
        pytest.skip('no alertmanager binary (Debian package prometheus-alertmanager)')
    work = tempfile.mkdtemp(prefix='ir-eda-')
    with open(os.path.join(work, 'am.yml'), 'w') as handle:
        handle.write(AM_CONFIG)
    env = dict(ansible_env, ALERT_WEBHOOK_PORT=str(HOOK_PORT), ALERT_WEBHOOK_TOKEN=TOKEN,
               PATH=BIN + os.pathsep + ansible_env['PATH'])
    log = open(os.path.join(work, 'rulebook.log'), 'w')
    rulebook = subprocess.Popen([RULEBOOK_BIN, '-r', os.path.join(ROOT, 'extensions/eda/rulebooks/alertmanager.yml'),
                                 '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
                                 '-E', 'ALERT_WEBHOOK_PORT,ALERT_WEBHOOK_TOKEN', '--print-events', '-v'],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # its own process group: stopped with its playbooks
    am_log = open(os.path.join(work, 'am.log'), 'w')
    manager = subprocess.Popen([ALERTMANAGER_BIN, '--config.file', os.path.join(work, 'am.yml'),
                                '--storage.path', os.path.join(work, 'data'),
                                '--web.listen-address', '127.0.0.1:%d' % AM_PORT, '--cluster.listen-address='],
                               stdout=am_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output():
        with open(log.name) as handle:
            return handle.read()

    def listening():
        try:
            post('http://127.0.0.1:%d/alerts' % HOOK_PORT, dict(ping=True), TOKEN)
            return True
        except Exception:  # pylint: disable=broad-except
            return False
    try:
        poll(listening, 120, 'the rulebook webhook on port %d (%s)' % (HOOK_PORT, log.name))
        poll(lambda: subprocess.run(['curl', '-sf', 'http://127.0.0.1:%d/-/ready' % AM_PORT],
                                    capture_output=True, check=False).returncode == 0, 60, 'our Alertmanager')
        yield dict(output=output, am='http://127.0.0.1:%d' % AM_PORT, hook='http://127.0.0.1:%d/alerts' % HOOK_PORT)
    finally:
        stop_process_group(rulebook)
        manager.terminate()
        try:
            manager.wait(timeout=30)
        except subprocess.TimeoutExpired:
            manager.kill()
        log.close()
        am_log.close()
        shutil.rmtree(work, ignore_errors=True)


def test_not_an_alert_starts_nothing_and_token_required(eda):
    assert 'ignored: not an Alertmanager webhook' in poll(lambda: eda['output']() if 'ignored: not an' in
                                                          eda['output']() else '', 60, 'the ping to be ignored')
    with pytest.raises(urllib.error.HTTPError) as err:
        post(eda['hook'], dict(version='4', alerts=[]), token='wrong')
    assert err.value.code == 401


def test_alertmanager_delivers_rulebook_dispatches_once(eda):
    tag = 'ir-' + uuid.uuid4().hex[:12]
    alert = dict(labels=dict(alertname='SomethingNobodyMapped', irtest=tag, severity='warning'),
                 annotations=dict(summary='eda test'))
    post(eda['am'] + '/api/v2/alerts', [alert])
    marker = 'SomethingNobodyMapped -> alert_triage.yml (act)'
    poll(lambda: marker + ': localhost' in eda['output'](), 240, 'the triage run started by the rulebook')
    out = eda['output']()
    assert 'alert: SomethingNobodyMapped' in out
    assert out.count(marker + ': localhost') == 1
    # the same payload delivered twice (Alertmanager retries a delivery it thinks failed): one run
    payload = dict(version='4', status='firing', receiver='rulebook', groupKey='x', alerts=[dict(
        status='firing', labels=dict(alertname='DuplicatedAlert', irtest=tag), annotations={},
        startsAt='2026-12-01T21:00:00.123456789Z', endsAt='0001-01-01T00:00:00Z', fingerprint='d0b1e0d0b1e0d0b1')])
    post(eda['hook'], payload, TOKEN)
    post(eda['hook'], payload, TOKEN)
    # then a sentinel alert: the rulebook runs its actions in order (sequential strategy), so once the sentinel's
    # run is done, a second run for the duplicate would have shown already
    sentinel = dict(payload, alerts=[dict(payload['alerts'][0], fingerprint='5e471e15e471e15e',
                                          labels=dict(alertname='SentinelAlert', irtest=tag))])
    post(eda['hook'], sentinel, TOKEN)
    poll(lambda: 'SentinelAlert -> alert_triage.yml (act): localhost' in eda['output'](), 240, 'the sentinel run')
    out = eda['output']()
    assert out.count('DuplicatedAlert -> alert_triage.yml (act): localhost') == 1, out[-5000:]
    assert out.count(marker + ': localhost') == 1, out[-5000:]
