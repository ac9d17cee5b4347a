"""The metrics of incident_metrics_info (plugins/module_utils/_incident_metrics.py)."""
import datetime

from ansible_collections.incident.response.plugins.module_utils import _incident, _incident_metrics as metrics

T0 = datetime.datetime(2026, 11, 3, 10, 0, tzinfo=datetime.timezone.utc)


def record(number, minutes, **fields):
    times = dict(started=None, detected=None, acknowledged=None, mitigated=None, resolved=None)
    for key, value in minutes.items():
        times[key] = _incident.iso(T0 + datetime.timedelta(minutes=value)) if value is not None else None
    base = dict(id='INC-2026-11-03-%03d' % number, severity='SEV3', system='insights', status='resolved',
                times=times)
    base.update(fields)
    return base


def test_started_unknown_measures_from_detection():
    result = metrics.compute([record(1, dict(detected=0, resolved=45))], _incident.parse_time)
    assert result['mttd']['count'] == 0  # no start: time to detect unknown, not zero
    assert result['mttr']['mean_seconds'] == 2700.0


def test_percentile_nearest_rank():
    assert metrics.percentile([], 0.9) is None
    assert metrics.percentile([5], 0.9) == 5
    assert metrics.percentile(list(range(1, 11)), 0.9) == 9
    assert metrics.percentile(list(range(1, 12)), 0.9) == 10


def test_causes_are_normalized_and_ranked():
    records = [record(1, dict(started=0, detected=1), root_cause='Disk full.'),
               record(2, dict(started=0, detected=1), root_cause='disk   FULL'),
               record(3, dict(started=0, detected=1), root_cause='a deploy')]
    result = metrics.compute(records, _incident.parse_time, top=1)
    assert result['top_causes'] == [dict(cause='Disk full', count=2, incidents=['INC-2026-11-03-001',
                                                                                'INC-2026-11-03-002'])]


def test_targets_from_the_severity_table():
    slow = record(1, dict(started=0, detected=1, resolved=200), severity='SEV2', system='task_scheduler')
    result = metrics.compute([slow], _incident.parse_time, policy=_incident.severity_policy)
    assert result['resolution_targets_missed'][0]['target_minutes'] == 120
    status, reasons = metrics.judge(result, 'in November')
    assert status == 'warning' and 'resolved after their resolution target' in reasons[1]


def test_report_escapes_table_cells():
    text = metrics.render_report(metrics.compute([record(1, dict(started=0), system='a|b<c>')],
                                                 _incident.parse_time), 'x', 'y')
    assert '| a\\|b&lt;c&gt; |' in text
