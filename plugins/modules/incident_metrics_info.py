#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: incident_metrics_info
short_description: The runbooks' monthly incident report (counts by severity and system, MTTD, MTTA, MTTR, recurring alerts, top causes)
version_added: 0.2.0
description:
  - Reads the incidents of the incident store detected in a period (O(since) to O(until), the last 30 days by
    default) and returns what the runbooks' monthly reporting asks for (pg_tviews checklist I(Metrics and
    Reporting), task scheduler I(Monthly Incident Review)) - incidents by severity and by system, the mean and p90
    of the time to detect (MTTD), acknowledge (MTTA), mitigate (MTTM) and resolve (MTTR), the recurring alerts
    (the same alert name opening several incidents, with their fingerprints), the top root causes, the trend
    against the previous period of the same length, and the report as Markdown (RV(report)).
  - "Times: detect = detected - started, acknowledge = acknowledged - detected, mitigate = mitigated - started,
    resolve = resolved - started (detected when started is unknown). Incidents without a time are left out of
    that measure, not counted as zero."
  - "RV(status): V(warning) when an alert recurred or an incident was resolved after the resolution target of its
    severity (the one severity table); V(ok) otherwise; V(unknown) when the store cannot be read (the reason says
    why)."
  - Reads only.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
  - incident.response.attributes.info_module
options:
  since:
    description:
      - Start of the period (included), an ISO 8601 time such as V(2026-11-01T00:00:00Z), or a duration before
        O(until) such as V(30d), V(2w), V(12h).
      - Defaults to 30 days before O(until).
    type: str
  until:
    description:
      - End of the period (excluded), an ISO 8601 time, V(now), or a duration before now such as V(1d).
    type: str
    default: now
  systems:
    description: Only the incidents of these systems (C(pg_tviews), C(task_scheduler), ...).
    type: list
    elements: str
  severities:
    description: Only the incidents of these severities (any alias of the one mapping, such as V(SEV-1) or V(P0)).
    type: list
    elements: str
  recurring_min:
    description: An alert is recurring when it opened at least this many incidents in the period.
    type: int
    default: 2
  top:
    description: How many causes RV(top_causes) lists.
    type: int
    default: 5
'''

EXAMPLES = r'''
- name: The monthly report of the last 30 days
  incident.response.incident_metrics_info:
  register: report

- name: November, pg_tviews only
  incident.response.incident_metrics_info:
    since: '2026-11-01T00:00:00Z'
    until: '2026-12-01T00:00:00Z'
    systems: [pg_tviews]
  register: november

- name: Write the report for the team meeting
  ansible.builtin.copy:
    content: "{{ report.report }}"
    dest: /srv/reports/incidents-{{ '%Y-%m' | strftime }}.md
    mode: '0600'
'''

RETURN = r'''
status:
  description: V(ok), V(warning) or V(unknown).
  returned: always
  type: str
reasons:
  description: Short sentences (the period's count, targets missed, recurring alerts, open incidents).
  returned: always
  type: list
  elements: str
period:
  description: C(since) and C(until) of the period, ISO 8601 UTC.
  returned: success
  type: dict
count:
  description: Incidents detected in the period.
  returned: success
  type: int
open_count:
  description: Those of them not resolved or closed.
  returned: success
  type: int
by_severity:
  description: Incidents by severity (C(SEV1)..C(SEV4), and C(unknown) when one has none).
  returned: success
  type: dict
  sample: {SEV1: 1, SEV2: 3, SEV3: 0, SEV4: 2}
by_system:
  description: Incidents by system.
  returned: success
  type: dict
by_system_severity:
  description: Incidents by system, then by severity.
  returned: success
  type: dict
by_status:
  description: Incidents by status.
  returned: success
  type: dict
mttd:
  description: Time to detect, with C(count), C(mean_seconds), C(p90_seconds), and C(mean), C(p90) as text (V(5m30s)).
  returned: success
  type: dict
mtta:
  description: Time to acknowledge, as RV(mttd).
  returned: success
  type: dict
mttm:
  description: Time to mitigate, as RV(mttd).
  returned: success
  type: dict
mttr:
  description: Time to resolve, as RV(mttd).
  returned: success
  type: dict
recurring_alerts:
  description: Alerts that opened at least O(recurring_min) incidents, with C(name), C(count), C(fingerprints)
    (fingerprint to count) and C(incidents) (ids).
  returned: success
  type: list
  elements: dict
top_causes:
  description: The most frequent root causes (C(cause), C(count), C(incidents)), the same text in other case or
    spacing counted as one.
  returned: success
  type: list
  elements: dict
root_cause_unknown:
  description: Incidents without a root cause yet.
  returned: success
  type: int
resolution_targets_missed:
  description: Incidents resolved after the resolution target of their severity and system (C(id), C(severity),
    C(system), C(ttr_seconds), C(target_minutes)).
  returned: success
  type: list
  elements: dict
previous:
  description: C(count) and C(mttr) of the previous period of the same length (the trend).
  returned: success
  type: dict
incidents:
  description: One row per incident (C(id), C(title), C(system), C(severity), C(status), C(detected),
    C(root_cause), C(ttd_seconds), C(tta_seconds), C(ttm_seconds), C(ttr_seconds)).
  returned: success
  type: list
  elements: dict
report:
  description: The report in Markdown.
  returned: success
  type: str
'''

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import DurationError, new_module, parse_duration
from ansible_collections.incident.response.plugins.module_utils._incident import (
    IncidentError, get_store, iso, normalize_severity, parse_time, severity_policy, store_argument_spec, utc_now)
from ansible_collections.incident.response.plugins.module_utils._incident_metrics import (
    compute, judge, render_report)


def moment(value, name, before):
    """An ISO time, 'now', or a duration before ``before``."""
    if value is None or str(value).strip().lower() in ('', 'now'):
        return before
    text = str(value).strip()
    if text[:1].isdigit() and ('-' in text[1:] or 'T' in text):
        return parse_time(text, name)
    try:
        seconds = parse_duration(text, name)
    except DurationError:
        return parse_time(text, name)
    return before - datetime.timedelta(seconds=seconds)


def main():
    argument_spec = dict(
        since=dict(type='str'),
        until=dict(type='str', default='now'),
        systems=dict(type='list', elements='str'),
        severities=dict(type='list', elements='str'),
        recurring_min=dict(type='int', default=2),
        top=dict(type='int', default=5),
    )
    argument_spec.update(store_argument_spec())
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if p['recurring_min'] < 2:
        module.fail_json(msg='recurring_min must be at least 2, got %s' % p['recurring_min'])
    if p['top'] < 0:
        module.fail_json(msg='top must not be negative, got %s' % p['top'])
    try:
        until = moment(p['until'], 'until', utc_now())
        since = moment(p['since'] or '30d', 'since', until)
        severities = [normalize_severity(s) for s in p['severities']] if p['severities'] else None
    except (IncidentError, DurationError) as exc:
        module.fail_json(msg=to_native(exc))
    if since >= until:
        module.fail_json(msg='since (%s) must be before until (%s)' % (iso(since), iso(until)))
    span = until - since
    filters = dict(since=iso(since), until=iso(until), system=p['systems'] or None, severity=severities)
    previous_filters = dict(filters, since=iso(since - span), until=iso(since))
    period = dict(since=iso(since), until=iso(until))
    try:
        store = get_store(p, secrets=module.no_log_values)
        try:
            records = store.list(filters)
            previous_records = store.list(previous_filters)
        finally:
            store.close()
    except IncidentError as exc:
        module.exit_json(changed=False, status='unknown', reasons=['the incident store cannot be read: %s'
                                                                   % to_native(exc)], period=period)

    metrics = compute(records, parse_time, policy=severity_policy, recurring_min=p['recurring_min'], top=p['top'])
    previous = compute(previous_records, parse_time, recurring_min=p['recurring_min'], top=0)
    status, reasons = judge(metrics, 'from %s to %s' % (period['since'], period['until']))
    metrics['previous'] = dict(count=previous['count'], mttr=previous['mttr'], since=iso(since - span),
                               until=iso(since))
    module.exit_json(changed=False, status=status, reasons=reasons, period=period,
                     report=render_report(metrics, period['since'], period['until'], previous), **metrics)


if __name__ == '__main__':
    main()
