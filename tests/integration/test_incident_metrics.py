"""incident_metrics_info (issue 8, section 6): the monthly report over records whose times are in the past."""
import pytest

from conftest import assert_clean_failure
from incident_helpers import ago, files_store, make_incident, tree_digest

pytestmark = pytest.mark.integration

POOL = dict(name='ConnectionPoolExhausted', labels=dict(service='db1'))


@pytest.fixture
def month(tmp_path):
    """Six incidents of the last 30 days, one of 40 days ago (outside), written through the store API."""
    path = tmp_path / 'incidents'
    store = files_store(path)
    minute = 60
    made = [
        # SEV1 task scheduler: detected 2m after start, acked 3m later, resolved after 50m (target 30m: missed)
        make_incident(store, started=ago(days=2), system='task_scheduler', severity='SEV1', detected=2 * minute,
                      acknowledged=5 * minute, mitigated=20 * minute, resolved=50 * minute,
                      alert=dict(POOL, fingerprint='fp-a'), root_cause='Connection pool exhausted.'),
        make_incident(store, started=ago(days=5), system='task_scheduler', severity='SEV2', detected=4 * minute,
                      acknowledged=10 * minute, mitigated=30 * minute, resolved=60 * minute,
                      alert=dict(POOL, fingerprint='fp-a'), root_cause='connection  pool exhausted'),
        make_incident(store, started=ago(days=9), system='task_scheduler', severity='SEV2', detected=6 * minute,
                      acknowledged=12 * minute, mitigated=40 * minute, resolved=90 * minute,
                      alert=dict(POOL, fingerprint='fp-b'), root_cause='Connection pool exhausted'),
        make_incident(store, started=ago(days=12), system='pg_tviews', severity='SEV3', detected=8 * minute,
                      acknowledged=20 * minute, mitigated=60 * minute, resolved=120 * minute,
                      alert=dict(name='TViewRefreshErrors', fingerprint='fp-t'), root_cause='bad migration'),
        make_incident(store, started=ago(days=20), system='insights', severity='SEV2', detected=10 * minute,
                      acknowledged=15 * minute, mitigated=None, resolved=None, status='mitigating'),
        make_incident(store, started=ago(days=25), system='pg_tviews', severity='SEV4', detected=30 * minute,
                      acknowledged=40 * minute, mitigated=100 * minute, resolved=200 * minute),
        make_incident(store, started=ago(days=40), system='pg_tviews', severity='SEV1', detected=1 * minute,
                      acknowledged=2 * minute, mitigated=3 * minute, resolved=4 * minute,
                      alert=dict(POOL, fingerprint='fp-a'), root_cause='Connection pool exhausted'),
    ]
    return path, made


def test_monthly_report(ansible, month):
    path, made = month
    before = tree_digest(path)
    rc, result, out = ansible.module('incident_metrics_info', dict(store_path=str(path)))
    assert rc == 0 and result['changed'] is False, out
    assert result['count'] == 6 and result['open_count'] == 1
    assert result['by_severity'] == dict(SEV1=1, SEV2=3, SEV3=1, SEV4=1)
    assert result['by_system'] == dict(task_scheduler=3, pg_tviews=2, insights=1)
    assert result['by_system_severity']['task_scheduler'] == dict(SEV1=1, SEV2=2, SEV3=0, SEV4=0)
    # detect: 2, 4, 6, 8, 10, 30 minutes -> mean 10m, p90 (nearest rank, 6 values -> 6th) 30m
    assert result['mttd']['count'] == 6 and result['mttd']['mean_seconds'] == 600.0
    assert result['mttd']['p90_seconds'] == 1800.0 and result['mttd']['p90'] == '30m'
    # acknowledge: 3, 6, 6, 12, 5, 10 minutes -> mean 7m
    assert result['mtta']['mean_seconds'] == 420.0 and result['mtta']['p90_seconds'] == 720.0
    # resolve: 50, 60, 90, 120, 200 minutes (the open one is left out) -> mean 104m, p90 200m
    assert result['mttr']['count'] == 5 and result['mttr']['mean_seconds'] == 104 * 60.0
    assert result['mttr']['p90_seconds'] == 200 * 60.0
    assert result['mttr']['mean'] == '1h44m'
    recurring = result['recurring_alerts']
    assert [(a['name'], a['count'], a['fingerprints']) for a in recurring] == \
        [('ConnectionPoolExhausted', 3, {'fp-a': 2, 'fp-b': 1})]
    assert result['top_causes'][0]['count'] == 3 and result['top_causes'][0]['cause'] == 'Connection pool exhausted'
    assert result['top_causes'][1] == dict(cause='bad migration', count=1, incidents=[made[3]['id']])
    assert result['root_cause_unknown'] == 2
    # SEV1 of the task scheduler: resolution target 30 minutes, resolved after 50
    assert [(m['id'], m['target_minutes']) for m in result['resolution_targets_missed']] == [(made[0]['id'], 30)]
    assert result['status'] == 'warning'
    assert any('alert ConnectionPoolExhausted recurred: 3 incidents' in r for r in result['reasons'])
    assert result['previous']['count'] == 1  # the incident of 40 days ago
    assert '| task_scheduler | 1 | 2 | 0 | 0 | 3 |' in result['report']
    assert '- **MTTR** (mean time to resolve): mean 1h44m, p90 3h20m over 5 incidents' in result['report']
    assert tree_digest(path) == before  # read only

    rc, again, out = ansible.module('incident_metrics_info', dict(store_path=str(path)), check=True)
    assert rc == 0 and again['changed'] is False and again['count'] == 6, out


def test_period_and_filters(ansible, month):
    path, made = month
    until = ago(days=3).strftime('%Y-%m-%dT%H:%M:%SZ')
    rc, result, out = ansible.module('incident_metrics_info', dict(store_path=str(path), since='7d', until=until))
    assert rc == 0, out
    assert [row['id'] for row in result['incidents']] == [made[2]['id'], made[1]['id']]  # by detection time
    assert result['recurring_alerts'][0]['count'] == 2
    rc, result, out = ansible.module('incident_metrics_info', dict(store_path=str(path), since='60d',
                                                                   systems=['pg_tviews'], severities=['SEV 1']))
    assert rc == 0 and [row['id'] for row in result['incidents']] == [made[6]['id']], out
    assert result['status'] == 'ok'


def test_an_empty_period_is_ok(ansible, tmp_path):
    rc, result, out = ansible.module('incident_metrics_info', dict(store_path=str(tmp_path / 'none')))
    assert rc == 0 and result['status'] == 'ok' and result['count'] == 0, out
    assert result['reasons'][0].startswith('no incident detected from ')
    assert result['mttr'] == dict(count=0, mean_seconds=None, p90_seconds=None, mean=None, p90=None)


@pytest.mark.parametrize('args, fragment', [
    (dict(since='yesterday-ish'), 'since'),
    (dict(since='2026-11-02T00:00:00Z', until='2026-11-01T00:00:00Z'), 'must be before until'),
    (dict(severities=['SEV9']), 'unknown severity'),
    (dict(recurring_min=1), 'recurring_min must be at least 2'),
])
def test_bad_input(ansible, tmp_path, args, fragment):
    rc, result, out = ansible.module('incident_metrics_info', dict(args, store_path=str(tmp_path)))
    assert_clean_failure(rc, result, out, fragment)


def test_an_unreadable_store_is_unknown(ansible, tmp_path):
    path = tmp_path / 'incidents'
    store = files_store(path)
    make_incident(store, started=ago(days=1))
    (path / 'INC-2026-01-01-001.json').write_text('{not json')
    rc, result, out = ansible.module('incident_metrics_info', dict(store_path=str(path), since='400d'))
    assert rc == 0 and result['status'] == 'unknown', out
    assert 'not a valid incident record' in result['reasons'][0]
