#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: incident_info
short_description: Read one incident with its timeline, or list incidents with filters
version_added: 0.2.0
description:
  - With O(incident_id), returns that incident's record and its events (the timeline), in order.
  - Without it, lists the incidents that pass every filter given, newest id last.
  - RV(status) follows the diagnosis shape of the collection, C(critical) while a C(SEV1) or C(SEV2) incident is
    open, C(warning) while a C(SEV3), C(SEV4) or unclassified incident is open, C(ok) otherwise.
  - Reads only. Fails with one message when the store cannot be read or the incident does not exist.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
  - incident.response.attributes.info_module
options:
  incident_id:
    description: One incident to read. The filters do not apply then.
    type: str
    aliases: [id]
  events:
    description: Return the events of the incident (with O(incident_id)) or of each listed incident.
    type: bool
    default: true
  status:
    description: Only incidents with one of these statuses.
    type: list
    elements: str
    choices: [investigating, identified, mitigating, monitoring, resolved, closed]
  open:
    description: V(true) only open incidents (not resolved or closed), V(false) only resolved or closed ones.
    type: bool
  severity:
    description: Only incidents of these severities (any alias, for example C(SEV-1) or C(P0)).
    type: list
    elements: str
  system:
    description: Only incidents of these systems.
    type: list
    elements: str
  fingerprint:
    description: Only incidents opened by the alert with this fingerprint.
    type: str
  since:
    description: Only incidents detected at or after this time (ISO 8601).
    type: str
  until:
    description: Only incidents detected before this time (ISO 8601).
    type: str
  limit:
    description: At most this many incidents, the newest ones (0 for all).
    type: int
    default: 0
'''

EXAMPLES = r'''
- name: The incident of this run, with its timeline
  incident.response.incident_info:
    incident_id: "{{ incident_id }}"
  register: incident

- name: Open SEV1 incidents of the task scheduler
  incident.response.incident_info:
    open: true
    severity: [SEV1]
    system: [task_scheduler]
    events: false
  register: open_incidents
'''

RETURN = r'''
status:
  description: C(critical), C(warning) or C(ok) (see the description).
  returned: success
  type: str
  sample: critical
reasons:
  description: One sentence per open incident.
  returned: success
  type: list
  elements: str
  sample: ["INC-2026-12-01-001 SEV1 investigating since 2026-12-01T20:01:02.123Z: API down"]
incident:
  description: The record of O(incident_id).
  returned: with O(incident_id)
  type: dict
  sample: {id: INC-2026-12-01-001, status: investigating, severity: SEV1, priority: P0}
events:
  description: The events of O(incident_id), in order.
  returned: with O(incident_id) and O(events=true)
  type: list
  elements: dict
  sample: [{seq: 1, type: opened, time: '2026-12-01T20:01:02.123Z'}]
incidents:
  description: The records listed (each with its C(events) when O(events=true)).
  returned: without O(incident_id)
  type: list
  elements: dict
  sample: [{id: INC-2026-12-01-001, status: resolved}]
count:
  description: How many incidents were returned.
  returned: success
  type: int
  sample: 1
store:
  description: The store read (never its password).
  returned: success
  type: str
  sample: files store /var/tmp/incident-response/incidents
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import new_module, worst_status
from ansible_collections.incident.response.plugins.module_utils import _incident as inc


def record_status(record):
    if record.get('status') not in inc.OPEN_STATUSES:
        return 'ok', None
    level = 'critical' if record.get('severity') in ('SEV1', 'SEV2') else 'warning'
    reason = '%s %s %s since %s: %s' % (record.get('id'), record.get('severity') or 'unclassified',
                                        record.get('status'), (record.get('times') or {}).get('detected'),
                                        record.get('title'))
    return level, reason


def main():
    argument_spec = dict(
        incident_id=dict(type='str', aliases=['id']),
        events=dict(type='bool', default=True),
        status=dict(type='list', elements='str', choices=list(inc.STATUSES)),
        open=dict(type='bool'),
        severity=dict(type='list', elements='str'),
        system=dict(type='list', elements='str'),
        fingerprint=dict(type='str'),
        since=dict(type='str'),
        until=dict(type='str'),
        limit=dict(type='int', default=0),
    )
    argument_spec.update(inc.store_argument_spec())
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    store = None
    result = dict(changed=False)
    try:
        if p['limit'] < 0:
            raise inc.IncidentError('limit must not be negative, got %s' % p['limit'])
        store = inc.get_store(p, secrets=module.no_log_values)
        result['store'] = store.describe()
        if p.get('incident_id'):
            inc.validate_incident_id(p['incident_id'])
            record = store.get(p['incident_id'])
            if record is None:
                raise inc.IncidentError('incident %s does not exist in %s' % (p['incident_id'], store.describe()))
            result['incident'] = record
            if p['events']:
                result['events'] = store.events(record['id'])
            records = [record]
        else:
            filters = dict(status=p.get('status'), system=p.get('system'), fingerprint=p.get('fingerprint'),
                           open=p.get('open'), since=inc.normalize_time(p.get('since'), 'since'),
                           until=inc.normalize_time(p.get('until'), 'until'))
            if p.get('severity'):
                filters['severity'] = [inc.normalize_severity(s) for s in p['severity']]
            records = store.list(filters)
            if p['limit']:
                records = records[-p['limit']:]
            if p['events']:
                for record in records:
                    record['events'] = store.events(record['id'])
            result['incidents'] = records
    except inc.IncidentError as exc:
        module.fail_json(msg=str(exc))
    finally:
        if store is not None:
            store.close()
    levels, reasons = [], []
    for record in records:
        level, reason = record_status(record)
        levels.append(level)
        if reason:
            reasons.append(reason)
    result.update(status=worst_status(levels), reasons=reasons, count=len(records))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
