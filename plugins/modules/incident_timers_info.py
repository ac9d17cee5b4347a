#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: incident_timers_info
short_description: When the next status update of an incident is due and when to escalate, from its severity
version_added: 0.2.0
description:
  - For one incident (O(incident_id)) or every open one, computes from the severity, the runbook (C(system))
    and the record's times what is due now - status update number N, an escalation request - and when the next
    ones fall due. Reads only.
  - "Status updates: every C(update_minutes) of the severity table (SEV1 15, SEV2 30, the schedule generator's
    SEV3 120 minutes...). Update number N is due N intervals after C(times.detected) while the incident is open and
    fewer than N were sent (C(updates_sent)); a run that comes late gets the current number, never a burst."
  - "Escalation: the rules of the severity table per runbook, for example the schedule generator's SEV-2 not
    resolved within 30 minutes -> engineering lead, the task scheduler's P0 down more than 15 minutes (from
    C(times.started)) -> all hands, the pg_tviews checklist's time thresholds. The highest level due above
    C(escalation_level) is returned. Escalation stops once the incident is monitoring, resolved or closed."
  - "RV(status): V(ok) nothing due, V(warning) a status update due, V(critical) an escalation due; RV(reasons)
    says what."
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
  - incident.response.attributes.info_module
options:
  incident_id:
    description: One incident; without it, every open incident of the store.
    type: str
  now:
    description:
      - The time to compute for (ISO 8601), default the current time. For drills; the scheduled playbook leaves
        it unset.
    type: str
seealso:
  - module: incident.response.incident_notify
'''

EXAMPLES = r'''
- name: What is due for the incident of this run
  incident.response.incident_timers_info:
    incident_id: "{{ incident_id }}"
  register: timers

- name: Every open incident
  incident.response.incident_timers_info:
  register: all_timers
'''

RETURN = r'''
status:
  description: C(ok), C(warning) (a status update due) or C(critical) (an escalation due), the worst incident.
  returned: always
  type: str
  sample: warning
reasons:
  description: What is due, one sentence each, prefixed with the incident id.
  returned: always
  type: list
  elements: str
incidents:
  description: One entry per incident.
  returned: always
  type: list
  elements: dict
  contains:
    incident_id:
      description: The incident.
      type: str
    severity:
      description: C(SEV1)..C(SEV4).
      type: str
    system:
      description: The runbook whose rules apply (null for the canonical ones).
      type: str
    status:
      description: The incident's status.
      type: str
    update_interval_minutes:
      description: Minutes between status updates (null - none for this severity).
      type: int
    updates_sent:
      description: The number of the last status update sent.
      type: int
    update_due:
      description: Whether a status update is due now.
      type: bool
    next_update_number:
      description: The number of the update due now, or of the next one.
      type: int
    next_update_due:
      description: When that update is (was) due.
      type: str
    escalation_level:
      description: The level already requested.
      type: int
    escalation_due:
      description: The escalation due now (level, target, reasons, at), or null.
      type: dict
    next_escalation:
      description: The next escalation rule that applies but is not yet due (level, target, reason, at), or null.
      type: dict
    escalations:
      description: Every escalation rule of the severity with its time and whether it applies, is due, was sent.
      type: list
      elements: dict
    resolution_due:
      description: When the resolution target passes.
      type: str
    due:
      description: "What to send now: C(kind) (update or escalation), C(template), C(update_number),
        C(escalation_level), C(target), C(reason), C(key)."
      type: list
      elements: dict
due:
  description: Every item due now, across incidents, each with its C(incident_id).
  returned: always
  type: list
  elements: dict
now:
  description: The time computed for.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import new_module, worst_status
from ansible_collections.incident.response.plugins.module_utils import _incident
from ansible_collections.incident.response.plugins.module_utils import _incident_timers as timers_mod


def main():
    spec = _incident.store_argument_spec()
    spec.update(incident_id=dict(type='str'), now=dict(type='str'))
    module = new_module(AnsibleModule, argument_spec=spec, supports_check_mode=True)
    params = module.params
    secrets = [params['store_dsn']] if params.get('store_dsn') else []
    try:
        now = timers_mod.parse_time(params['now'], 'now') or timers_mod.utcnow()
        store = _incident.get_store(params, secrets=secrets)
        try:
            if params['incident_id']:
                incident_id = _incident.validate_incident_id(params['incident_id'])
                record = store.get(incident_id)
                if record is None:
                    module.fail_json(msg='incident %s does not exist in %s' % (incident_id, store.describe()))
                records = [record]
            else:
                records = list(store.list(dict(status=list(timers_mod.OPEN_STATUSES))))
        finally:
            store.close()
        incidents, due, reasons, statuses = [], [], [], []
        for record in sorted(records, key=lambda r: r.get('id') or ''):
            if record.get('severity') not in timers_mod.SEVERITIES:
                reasons.append('%s: no severity recorded, no timer applies' % record.get('id'))
                statuses.append('warning')
                continue
            result = timers_mod.timers(record, now)
            incidents.append(result)
            statuses.append(timers_mod.diagnosis_status(result))
            for item in result['due']:
                due.append(dict(item, incident_id=record.get('id')))
            reasons.extend('%s: %s' % (record.get('id'), reason) for reason in result['reasons']
                           if result['due'])
    except (_incident.IncidentError, timers_mod.TimerError) as exc:
        module.fail_json(msg=_incident.redact_value(str(exc), secrets))
    module.exit_json(changed=False, status=worst_status(statuses), reasons=reasons, incidents=incidents, due=due,
                     now=timers_mod.iso(now))


if __name__ == '__main__':
    main()
