"""http_check: p95, the judgement against the runbook's thresholds, argument handling."""
import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.incident.response.plugins.modules import http_check

P = dict(p95_warning=10, p95_critical=30)


def endpoint(ok, count, p95, codes=None, errors=None):
    return dict(url='http://x/health', ok_count=ok, count=count, p95=p95, status_codes=codes or [200] * count,
                errors=errors or [])


def test_p95_nearest_rank():
    assert http_check.p95([]) is None
    assert http_check.p95([0.5]) == 0.5
    assert http_check.p95([float(x) for x in range(1, 21)]) == 19.0
    assert http_check.p95([float(x) for x in range(1, 101)]) == 95.0
    assert http_check.p95([3.0, 1.0, 2.0]) == 3.0


@pytest.mark.parametrize('health, severity, status', [
    ('ok', None, 'ok'), ('degraded', 'SEV3', 'warning'), ('degraded', 'SEV2', 'critical'), ('down', 'SEV2', 'critical'),
    ('down', 'SEV1', 'critical'),
])
def test_health_maps_to_the_diagnosis_status(health, severity, status):
    assert http_check.status_of(health, severity) == status


@pytest.mark.parametrize('ep, status, severity', [
    (endpoint(3, 3, 0.2), 'ok', None),
    (endpoint(3, 3, 10.5), 'degraded', 'SEV3'),
    (endpoint(3, 3, 10.0), 'ok', None),
    (endpoint(3, 3, 31.0), 'degraded', 'SEV2'),
    (endpoint(2, 3, 0.2), 'degraded', 'SEV3'),
    (endpoint(2, 3, 31.0), 'degraded', 'SEV2'),
    (endpoint(0, 3, 0.2, codes=[500] * 3), 'down', 'SEV2'),
    (endpoint(0, 3, None, codes=[None] * 3, errors=['refused']), 'down', 'SEV2'),
])
def test_judge_against_the_schedule_generator_thresholds(ep, status, severity):
    got_status, got_severity, reasons = http_check.judge(ep, P)
    assert (got_status, got_severity) == (status, severity)
    assert bool(reasons) == (status != 'ok')


class Failed(Exception):
    pass


@pytest.fixture(autouse=True)
def no_exit(monkeypatch):
    def fail_json(self, **kwargs):
        raise Failed(kwargs)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)


@pytest.mark.parametrize('args, message', [
    (dict(urls=['ftp://x/y']), 'is not an http:// or https:// URL'),
    (dict(urls=['http://x/'], count=0), 'count must be at least 1'),
    (dict(urls=['http://x/'], request_timeout=0), 'request_timeout must be positive'),
    (dict(urls=['http://x/'], p95_warning=20, p95_critical=10), 'p95_critical not below it'),
    (dict(urls=['http://x/'], body_pattern='(x'), 'body_pattern'),
    (dict(urls=[]), 'urls: give at least one URL'),
    # issue 9, found by fuzzing: non-finite and huge values, catastrophic patterns, bad headers
    (dict(urls=['http://x/'], interval=float('nan')), 'interval not negative'),
    (dict(urls=['http://x/'], interval=1e20), 'interval'),
    (dict(urls=['http://x/'], request_timeout=float('inf')), 'request_timeout'),
    (dict(urls=['http://x/'], p95_warning=float('nan')), 'p95_warning'),
    (dict(urls=['http://x/'], p95_critical=float('inf')), 'p95_critical'),
    (dict(urls=['http://x/'], body_pattern='(a+)+$'), 'nests a repeat inside a repeat'),
    (dict(urls=['http://x/'], headers={'X-A': 'one\r\nX-B: two'}), 'headers'),
    (dict(urls=['http://x/'], headers={'X-A': ['list']}), 'headers'),
])
def test_bad_input(monkeypatch, args, message):
    def no_probe(*a, **k):
        raise AssertionError('probed')
    monkeypatch.setattr(http_check, 'probe', no_probe)
    with patch_module_args(args):
        with pytest.raises(Failed) as info:
            http_check.main()
    assert message in info.value.args[0]['msg']
