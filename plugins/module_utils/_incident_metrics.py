# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Incident metrics over a period: the runbooks' monthly report (issue 8, section 6).

Private to the collection: the API may change without notice.

``compute(records, since, until)`` takes the records of the period (``store.list(dict(since=, until=))``: an
incident belongs to the period of its ``times.detected``) and returns counts by severity and system, the mean and
p90 of the times to detect, acknowledge, mitigate and resolve, the recurring alerts and the top causes.

Definitions (docs/incident-review.md):
  time to detect      detected - started
  time to acknowledge acknowledged - detected
  time to mitigate    mitigated - started (detected when started is unknown)
  time to resolve     resolved - started (detected when started is unknown)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.incident.response.plugins.module_utils._common import format_duration, redact

SEVERITIES = ('SEV1', 'SEV2', 'SEV3', 'SEV4')
MEASURES = (
    ('mttd', 'time to detect', 'started', 'detected'),
    ('mtta', 'time to acknowledge', 'detected', 'acknowledged'),
    ('mttm', 'time to mitigate', 'started', 'mitigated'),
    ('mttr', 'time to resolve', 'started', 'resolved'),
)


def percentile(values, share):
    """Nearest-rank percentile (the one http_check uses for p95); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(int(math.ceil(share * len(ordered))) - 1, 0)]


def summarize(values):
    values = [v for v in values if v is not None]
    mean = (sum(values) / len(values)) if values else None
    p90 = percentile(values, 0.9)
    return dict(count=len(values), mean_seconds=round(mean, 3) if mean is not None else None,
                p90_seconds=round(p90, 3) if p90 is not None else None,
                mean=format_duration(mean), p90=format_duration(p90))


def normalize_cause(text):
    """'Connection pool exhausted.' and 'connection  pool exhausted' are one cause."""
    text = ' '.join(redact(str(text)).split()).strip().rstrip('.').strip()
    return text[:200]


def _seconds(times, frm, to, parse):
    start = parse(times.get(frm))
    if start is None and frm == 'started' and to != 'detected':
        start = parse(times.get('detected'))
    end = parse(times.get(to))
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def compute(records, parse, policy=None, recurring_min=2, top=5):
    """The metrics of ``records`` (the period's incidents).

    ``parse``: a time parser (``_incident.parse_time``); ``policy(severity, system)``: the severity policy
    (``_incident.severity_policy``) for the resolution targets, or None.
    """
    by_severity = dict((sev, 0) for sev in SEVERITIES)
    by_system, by_system_severity, by_status = {}, {}, {}
    samples = dict((key, []) for key, _label, _frm, _to in MEASURES)
    alerts, causes, rows, missed = {}, {}, [], []
    unknown_cause = 0
    for record in sorted(records, key=lambda r: (str((r.get('times') or {}).get('detected')), str(r.get('id')))):
        times = record.get('times') or {}
        severity = record.get('severity') if record.get('severity') in SEVERITIES else 'unknown'
        system = record.get('system') or 'unknown'
        by_severity[severity] = by_severity.get(severity, 0) + 1
        by_system[system] = by_system.get(system, 0) + 1
        by_system_severity.setdefault(system, dict((sev, 0) for sev in SEVERITIES))
        by_system_severity[system][severity] = by_system_severity[system].get(severity, 0) + 1
        status = record.get('status') or 'unknown'
        by_status[status] = by_status.get(status, 0) + 1
        row = dict(id=record.get('id'), title=record.get('title'), system=system, severity=severity, status=status,
                   detected=times.get('detected'), root_cause=record.get('root_cause'))
        for key, _label, frm, to in MEASURES:
            value = _seconds(times, frm, to, parse)
            samples[key].append(value)
            row[key.replace('mt', 't', 1) + '_seconds'] = value
        if policy is not None and severity in SEVERITIES:
            target = policy(severity, system if system != 'unknown' else None).get('resolution_minutes')
            ttr = row['ttr_seconds']
            if target and ttr is not None and ttr > target * 60:
                missed.append(dict(id=record.get('id'), severity=severity, system=system, ttr_seconds=ttr,
                                   target_minutes=target))
        alert = record.get('alert') if isinstance(record.get('alert'), dict) else None
        if alert and (alert.get('name') or alert.get('fingerprint')):
            name = alert.get('name') or '(unnamed alert)'
            entry = alerts.setdefault(name, dict(name=name, count=0, fingerprints={}, incidents=[]))
            entry['count'] += 1
            fingerprint = alert.get('fingerprint') or '-'
            entry['fingerprints'][fingerprint] = entry['fingerprints'].get(fingerprint, 0) + 1
            entry['incidents'].append(record.get('id'))
        if record.get('root_cause'):
            cause = normalize_cause(record['root_cause'])
            entry = causes.setdefault(cause.casefold(), dict(cause=cause, count=0, incidents=[]))
            entry['count'] += 1
            entry['incidents'].append(record.get('id'))
        else:
            unknown_cause += 1
        rows.append(row)
    recurring = sorted((a for a in alerts.values() if a['count'] >= recurring_min),
                       key=lambda a: (-a['count'], a['name']))
    top_causes = sorted(causes.values(), key=lambda c: (-c['count'], c['cause']))[:max(top, 0)]
    result = dict(count=len(rows), by_severity=by_severity, by_system=by_system,
                  by_system_severity=by_system_severity, by_status=by_status, recurring_alerts=recurring,
                  top_causes=top_causes, root_cause_unknown=unknown_cause, resolution_targets_missed=missed,
                  incidents=rows)
    for key, _label, _frm, _to in MEASURES:
        result[key] = summarize(samples[key])
    result['open_count'] = len([r for r in rows if r['status'] not in ('resolved', 'closed')])
    return result


def judge(metrics, period_text):
    """status and reasons of the report."""
    reasons, status = [], 'ok'
    if not metrics['count']:
        return 'ok', ['no incident detected %s' % period_text]
    reasons.append('%d incidents detected %s (%s)' % (
        metrics['count'], period_text,
        ', '.join('%s %d' % (sev, n) for sev, n in sorted(metrics['by_severity'].items()) if n)))
    if metrics['resolution_targets_missed']:
        status = 'warning'
        reasons.append('%d incidents were resolved after their resolution target: %s' % (
            len(metrics['resolution_targets_missed']),
            ', '.join('%s (%s, %s > %dm)' % (m['id'], m['severity'], format_duration(m['ttr_seconds']),
                                             m['target_minutes']) for m in metrics['resolution_targets_missed'][:5])))
    for alert in metrics['recurring_alerts'][:5]:
        status = 'warning'
        reasons.append('alert %s recurred: %d incidents (%s)' % (alert['name'], alert['count'],
                                                                 ', '.join(alert['incidents'][:5])))
    if metrics['open_count']:
        reasons.append('%d incidents are still open' % metrics['open_count'])
    return status, reasons


def _cell(value):
    return ' '.join(redact(str(value if value is not None else '-')).split()).replace('|', '\\|') \
        .replace('<', '&lt;').replace('>', '&gt;')


def render_report(metrics, since, until, previous=None):
    """The monthly report in Markdown (pg_tviews checklist 'Monthly Reporting', task scheduler 'Monthly Review')."""
    out = ['# Incident report %s to %s (UTC)' % (since, until), '']
    out.append('## Summary')
    out.append('')
    out.append('- **Incidents**: %d (%d still open)' % (metrics['count'], metrics['open_count']))
    if previous is not None:
        delta = metrics['count'] - previous['count']
        out.append('- **Trend**: %+d against the previous period of the same length (%d incidents; MTTR %s)'
                   % (delta, previous['count'], previous['mttr']['mean'] or '-'))
    for key, label, _frm, _to in MEASURES:
        value = metrics[key]
        out.append('- **%s** (mean %s): mean %s, p90 %s over %d incidents' % (
            key.upper(), label, value['mean'] or '-', value['p90'] or '-', value['count']))
    out.append('')
    out.append('## Incidents by severity and system')
    out.append('')
    out.append('| System | %s | Total |' % ' | '.join(SEVERITIES))
    out.append('|---|%s---|' % ('---|' * len(SEVERITIES)))
    for system in sorted(metrics['by_system_severity']):
        counts = metrics['by_system_severity'][system]
        out.append('| %s | %s | %d |' % (_cell(system), ' | '.join(str(counts.get(s, 0)) for s in SEVERITIES),
                                         metrics['by_system'][system]))
    out.append('| **Total** | %s | %d |' % (' | '.join(str(metrics['by_severity'].get(s, 0)) for s in SEVERITIES),
                                            metrics['count']))
    out.append('')
    out.append('## Recurring alerts')
    out.append('')
    if metrics['recurring_alerts']:
        out.append('| Alert | Incidents | Fingerprints |')
        out.append('|---|---|---|')
        for alert in metrics['recurring_alerts']:
            out.append('| %s | %d (%s) | %s |' % (_cell(alert['name']), alert['count'], _cell(', '.join(
                alert['incidents'])), _cell(', '.join('%s x%d' % kv for kv in sorted(alert['fingerprints'].items())))))
    else:
        out.append('None.')
    out.append('')
    out.append('## Top causes')
    out.append('')
    if metrics['top_causes']:
        for cause in metrics['top_causes']:
            out.append('1. %s: %d (%s)' % (_cell(cause['cause']), cause['count'], _cell(', '.join(cause['incidents']))))
    else:
        out.append('None recorded.')
    if metrics['root_cause_unknown']:
        out.append('')
        out.append('%d incidents have no root cause recorded yet.' % metrics['root_cause_unknown'])
    out.append('')
    out.append('## Incidents')
    out.append('')
    out.append('| Incident | Severity | System | Status | Detected | TTD | TTA | TTR |')
    out.append('|---|---|---|---|---|---|---|---|')
    for row in metrics['incidents']:
        out.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
            _cell(row['id']), _cell(row['severity']), _cell(row['system']), _cell(row['status']),
            _cell(row['detected']), format_duration(row['ttd_seconds']) or '-',
            format_duration(row['tta_seconds']) or '-', format_duration(row['ttr_seconds']) or '-'))
    out.append('')
    return '\n'.join(out)
