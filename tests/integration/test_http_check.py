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
    assert result['status'] == 'ok' and result['severity'] is None and result['reasons'] == []
    for endpoint in result['endpoints']:
        assert endpoint['status_codes'] == [200] * 4 and endpoint['ok_count'] == 4
        assert endpoint['body_match'] is True
        assert 0 < endpoint['p95'] < 5 and len(endpoint['latencies']) == 4


def test_500_is_down(ansible, lab_env, api_status):
    api_status('health', '500 Internal Server Error')
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=2))
    assert rc == 0, out
    assert result['status'] == 'down' and result['severity'] == 'SEV1' and result['priority'] == 'P0'
    assert result['endpoints'][0]['status_codes'] == [500, 500]


def test_one_endpoint_of_two_down_is_sev2(ansible, lab_env, api_status):
    api_status('ready', '503 Service Unavailable')
    base = lab_env['LAB_API_URL']
    rc, result, out = ansible.module('http_check', dict(urls=[base + '/health', base + '/health/ready'], count=1))
    assert rc == 0, out
    assert result['status'] == 'down' and result['severity'] == 'SEV2'
    assert [e['status'] for e in result['endpoints']] == ['ok', 'down']


def test_slow_answers_are_degraded_by_p95(ansible, lab_env, api_status):
    # A real delay of 1 s in the handler, judged against thresholds scaled down from the runbook's 10 s / 30 s.
    api_status('health.delay', '1')
    url = lab_env['LAB_API_URL'] + '/health'
    rc, result, out = ansible.module('http_check', dict(url=url, count=2, p95_warning=0.5, p95_critical=5))
    assert rc == 0, out
    assert result['status'] == 'degraded' and result['severity'] == 'SEV3', result
    assert result['p95'] >= 1.0
    rc, result, out = ansible.module('http_check', dict(url=url, count=1, p95_warning=0.2, p95_critical=0.5))
    assert result['status'] == 'degraded' and result['severity'] == 'SEV2', result
    rc, result, out = ansible.module('http_check', dict(url=url, count=1, request_timeout=0.3))
    assert result['status'] == 'down' and 'timed out' in result['endpoints'][0]['errors'][0], result


def test_body_mismatch_and_refused(ansible, lab_env):
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=1,
                                                        body_pattern='no-such-text'))
    assert rc == 0 and result['status'] == 'down' and result['endpoints'][0]['body_match'] is False, out
    rc, result, out = ansible.module('http_check', dict(url='http://127.0.0.1:1/health', count=1))
    assert rc == 0 and result['status'] == 'down', out
    assert 'Connection refused' in result['endpoints'][0]['errors'][0]


def test_bad_input(ansible):
    rc, result, out = ansible.module('http_check', dict(url='ftp://127.0.0.1/x'))
    assert_clean_failure(rc, result, out, "'ftp://127.0.0.1/x' is not an http:// or https:// URL")
    rc, result, out = ansible.module('http_check', dict(url='http://127.0.0.1:58080/health', count=0))
    assert_clean_failure(rc, result, out, 'count must be at least 1')
    rc, result, out = ansible.module('http_check', dict(url='http://127.0.0.1:58080/health', body_pattern='(x'))
    assert_clean_failure(rc, result, out, 'body_pattern')
