"""http_check against the lab's real api (busybox nc + api-handler.sh), faults made through lab_dir/api."""
import os

import pytest

from conftest import assert_clean_failure


@pytest.fixture
def api_status(lab_env):
    """Write lab_dir/api/status/<name> files (status line, delay); removed after the test."""
    written = []

    def write(name, content):
        path = os.path.join(lab_env['LAB_DIR'], 'api', 'status', name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(content + '\n')
        written.append(path)
    yield write
    for path in written:
        if os.path.exists(path):
            os.remove(path)


def test_healthy_api_is_ok(ansible, lab_env):
    base = lab_env['LAB_API_URL']
    rc, result, out = ansible.module('http_check', dict(urls=[base + '/health', base + '/health/ready'], count=4,
                                                        body_pattern='"status"'))
    assert rc == 0, out
    assert result['status'] == 'ok' and result['health'] == 'ok' and result['severity'] is None and result['reasons'] == []
    assert result['changed'] is False
    for endpoint in result['endpoints']:
        assert endpoint['status_codes'] == [200] * 4 and endpoint['ok_count'] == 4
        assert endpoint['body_match'] is True
        assert 0 < endpoint['p95'] < 5 and len(endpoint['latencies']) == 4


def test_500_is_down_and_critical(ansible, lab_env, api_status):
    api_status('health', '500 Internal Server Error')
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=2))
    assert rc == 0, out
    assert result['status'] == 'critical' and result['health'] == 'down'
    assert result['severity'] == 'SEV1' and result['priority'] == 'P0'
    assert result['endpoints'][0]['status_codes'] == [500, 500]


def test_one_endpoint_of_two_down_is_sev2(ansible, lab_env, api_status):
    api_status('ready', '503 Service Unavailable')
    base = lab_env['LAB_API_URL']
    rc, result, out = ansible.module('http_check', dict(urls=[base + '/health', base + '/health/ready'], count=1))
    assert rc == 0, out
    assert result['status'] == 'critical' and result['health'] == 'down' and result['severity'] == 'SEV2'
    assert [e['health'] for e in result['endpoints']] == ['ok', 'down']
    assert [e['status'] for e in result['endpoints']] == ['ok', 'critical']


def test_slow_answers_are_degraded_by_p95_warning_or_critical(ansible, lab_env, api_status):
    # A real delay of 1 s in the handler, judged against thresholds scaled down from the runbook's 10 s / 30 s.
    api_status('health.delay', '1')
    url = lab_env['LAB_API_URL'] + '/health'
    rc, result, out = ansible.module('http_check', dict(url=url, count=2, p95_warning=0.5, p95_critical=5))
    assert rc == 0, out
    assert result['status'] == 'warning' and result['health'] == 'degraded' and result['severity'] == 'SEV3', result
    assert result['p95'] >= 1.0
    rc, result, out = ansible.module('http_check', dict(url=url, count=1, p95_warning=0.2, p95_critical=0.5))
    assert result['status'] == 'critical' and result['health'] == 'degraded' and result['severity'] == 'SEV2', result
    rc, result, out = ansible.module('http_check', dict(url=url, count=1, request_timeout=0.3))
    assert result['health'] == 'down' and result['status'] == 'critical' and 'timed out' in result['endpoints'][0]['errors'][0], result


def test_body_mismatch_and_refused(ansible, lab_env):
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=1,
                                                        body_pattern='no-such-text'))
    assert rc == 0 and result['health'] == 'down' and result['endpoints'][0]['body_match'] is False, out
    rc, result, out = ansible.module('http_check', dict(url='http://127.0.0.1:1/health', count=1))
    assert rc == 0 and result['status'] == 'critical' and result['health'] == 'down', out
    assert 'Connection refused' in result['endpoints'][0]['errors'][0]


def test_bad_input(ansible):
    rc, result, out = ansible.module('http_check', dict(url='ftp://127.0.0.1/x'))
    assert_clean_failure(rc, result, out, "'ftp://127.0.0.1/x' is not an http:// or https:// URL")
    rc, result, out = ansible.module('http_check', dict(url='http://127.0.0.1:58080/health', count=0))
    assert_clean_failure(rc, result, out, 'count must be at least 1')
    rc, result, out = ansible.module('http_check', dict(url='http://127.0.0.1:58080/health', body_pattern='(x'))
    assert_clean_failure(rc, result, out, 'body_pattern')


# ---------------------------------------------------------------- secrets (issue 9)
URL_PASSWORD = 'url-pw-9c1f'
HEADER_TOKEN = 'bearer-tok-5e2a'
OPTION_PASSWORD = 'opt-pw-77d0'


def test_credentials_never_reach_the_output_even_at_vvv(ansible, lab_env, tmp_path):
    """A password in the URL, an Authorization header and url_password: none of them in invocation.module_args,
    the result or anything ansible-playbook -vvv prints, on success and on a failure in the argument checks."""
    base = lab_env['LAB_API_URL']
    host = base.split('://', 1)[1]
    playbook = tmp_path / 'http_secrets.yml'
    playbook.write_text('''
- name: http_check with credentials
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Credentials in the URL and a header
      incident.response.http_check:
        urls: ["http://ops:%(url_pw)s@%(host)s/health"]
        headers: {Authorization: "Bearer %(token)s"}
        count: 1
      register: in_url
    - name: Credentials as options
      incident.response.http_check:
        url: "%(base)s/health"
        url_username: ops
        url_password: "%(opt_pw)s"
        count: 1
      register: as_options
    - name: A failure of the argument checks still hides them
      incident.response.http_check:
        urls: ["http://ops:%(url_pw)s@%(host)s/health"]
        url_password: "%(opt_pw)s"
        count: not-a-number
      register: bad
      ignore_errors: true
    - name: Show the results
      ansible.builtin.debug:
        var: item
      loop: ["{{ in_url }}", "{{ as_options }}", "{{ bad }}"]
''' % dict(url_pw=URL_PASSWORD, host=host, token=HEADER_TOKEN, base=base, opt_pw=OPTION_PASSWORD))
    run = ansible.playbook(str(playbook), env=dict(ANSIBLE_VERBOSITY='3'))
    assert run.recap.get('failed') == 0 and run.recap.get('ok', 0) >= 4, run
    assert 'module_args' in run.output and 'ops:********@' in run.output, run
    for secret in (URL_PASSWORD, HEADER_TOKEN, OPTION_PASSWORD):
        assert secret not in run.output, secret
    # the failed task said what was wrong, with the URL's password masked
    assert 'count' in run.output and 'ignored=1' in run.output, run
