#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: alert_route_info
short_description: Resolve Alertmanager alerts to the incident playbook, mode and extra vars of the alert map
version_added: 0.1.0
description:
  - Reads an Alertmanager webhook payload (version 4), a list of alerts, or one alert, and looks each alert up in
    O(alert_map) by its C(alertname) label.
  - "Each firing alert gets a route: the playbook, the mode (V(act) remediates, V(check) runs the playbook in check
    mode: the plan is shown and a person approves), the extra vars taken from its labels, and C(incident_alert)
    (name, labels, annotations, fingerprint, startsAt, status) for the incident record."
  - An alert the map does not know gets O(default_route) (the read-only triage).
  - "Nothing on a guess: a payload that is not one of these shapes, or an alert without the labels its entry
    needs, fails with one message naming the alert; no route is returned."
  - Resolved alerts get no playbook; they are returned in RV(resolved) (the incident record closes on them).
  - Reads only; runs no playbook itself (see C(playbooks/alert_dispatch.yml)).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.attributes.info_module
options:
  payload:
    description:
      - The webhook payload (a mapping with C(alerts)), a list of alerts, or one alert (a mapping with C(labels)).
        A JSON string is accepted too.
    type: raw
    required: true
  alert_map:
    description:
      - Alert name to entry. An entry has C(playbook) (a file name in the collection's C(playbooks/), or a fully
        qualified collection playbook name), C(mode) (V(act) or V(check)), C(labels) (extra var name to the label
        it is taken from; the alert must carry it), C(optional_labels) (the same, when present), C(vars)
        (static extra vars), C(system) (the incident record's system) and C(description).
    type: dict
    required: true
  default_route:
    description:
      - The entry for an alert the map does not know.
    type: dict
    default: {playbook: alert_triage.yml, mode: act}
  incident_id:
    description: Passed through to every route's extra vars as C(incident_id) (the incident record's id).
    type: str
'''

EXAMPLES = r'''
- name: Which playbook for this alert?
  incident.response.alert_route_info:
    payload: "{{ lookup('ansible.builtin.file', 'alert.json') | from_json }}"
    alert_map: "{{ alert_dispatch_map }}"
    incident_id: INC-20261201-0001
  register: alert_routes
'''

RETURN = r'''
routes:
  description: One entry per firing alert, in payload order, duplicates (same fingerprint and startsAt) dropped.
  returned: success
  type: list
  elements: dict
  sample:
    - name: NoActiveWorkers
      known: true
      playbook: no_active_workers.yml
      mode: act
      system: task_scheduler
      extra_vars:
        incident_id: INC-1
        incident_alert: {name: NoActiveWorkers, fingerprint: 3a5c0e1f2b4d6a78, startsAt: '2026-12-01T21:00:00Z',
                         labels: {alertname: NoActiveWorkers}, annotations: {}, status: firing}
resolved:
  description: The resolved alerts of the payload (C(incident_alert) shape); no playbook runs for them.
  returned: success
  type: list
  elements: dict
duplicates:
  description: How many alerts of the payload repeated one already routed (same fingerprint and startsAt).
  returned: success
  type: int
status:
  description: C(ok) (every firing alert has a known route), C(warning) (some get the triage), C(ok) when none fires.
  returned: success
  type: str
reasons:
  description: Short sentences behind RV(status).
  returned: success
  type: list
  elements: str
'''

import json
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import new_module
from ansible.module_utils.six import string_types

MODES = ('act', 'check')
_PLAYBOOK = re.compile(r'^(?:[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+|[A-Za-z0-9_.-]+\.ya?ml)$')
_VAR = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')


class RouteError(ValueError):
    pass


def fingerprint(labels):
    """Alertmanager's fingerprint of a label set (FNV-1a 64 over sorted names and values, 0xff separated)."""
    value = 14695981039346656037
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in bytearray(str(part).encode('utf-8')) + bytearray(b'\xff'):
                value ^= byte
                value = (value * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return '%016x' % value


def alerts_of(payload):
    if isinstance(payload, string_types):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise RouteError('payload is not JSON: %s' % exc)
    if isinstance(payload, dict) and 'alerts' in payload:
        alerts = payload['alerts']
        if not isinstance(alerts, list):
            raise RouteError('payload.alerts must be a list of alerts, got %s' % type(alerts).__name__)
        version = payload.get('version')
        if version is not None and str(version) != '4':
            raise RouteError('payload version %r is not the Alertmanager webhook version 4' % version)
    elif isinstance(payload, dict) and 'labels' in payload:
        alerts = [payload]
    elif isinstance(payload, list):
        alerts = payload
    else:
        raise RouteError('payload is neither an Alertmanager webhook (a mapping with alerts), a list of alerts, '
                         'nor one alert (a mapping with labels)')
    if not alerts:
        raise RouteError('payload has no alerts')
    return alerts


def incident_alert(alert, index):
    if not isinstance(alert, dict):
        raise RouteError('alerts[%d] is not a mapping' % index)
    labels = alert.get('labels')
    if not isinstance(labels, dict) or not labels:
        raise RouteError('alerts[%d] has no labels' % index)
    if any(not isinstance(v, string_types) for v in labels.values()):
        raise RouteError('alerts[%d]: label values must be strings' % index)
    name = labels.get('alertname')
    if not name:
        raise RouteError('alerts[%d] has no alertname label' % index)
    annotations = alert.get('annotations') or {}
    if not isinstance(annotations, dict):
        raise RouteError('alerts[%d] (%s): annotations must be a mapping' % (index, name))
    status = alert.get('status') or 'firing'
    if isinstance(status, dict):  # an alert of GET /api/v2/alerts: status.state
        status = 'firing'
    if status not in ('firing', 'resolved'):
        raise RouteError('alerts[%d] (%s): status %r is neither firing nor resolved' % (index, name, status))
    return dict(name=name, labels=labels, annotations=annotations,
                fingerprint=alert.get('fingerprint') or fingerprint(labels), startsAt=alert.get('startsAt'),
                endsAt=alert.get('endsAt'), status=status, generatorURL=alert.get('generatorURL'))


def check_entry(name, entry):
    if not isinstance(entry, dict):
        raise RouteError('alert_map.%s must be a mapping with playbook and mode' % name)
    playbook = entry.get('playbook')
    if not isinstance(playbook, string_types) or not _PLAYBOOK.match(playbook):
        raise RouteError('alert_map.%s: playbook %r is neither a file name (x.yml) nor a collection playbook '
                         '(namespace.collection.name)' % (name, playbook))
    if entry.get('mode') not in MODES:
        raise RouteError('alert_map.%s: mode must be act or check, got %r' % (name, entry.get('mode')))
    for key in ('labels', 'optional_labels', 'vars'):
        value = entry.get(key) or {}
        if not isinstance(value, dict):
            raise RouteError('alert_map.%s.%s must be a mapping' % (name, key))
        for var in value:
            if not _VAR.match(str(var)) or var in ('incident_id', 'incident_alert'):
                raise RouteError('alert_map.%s.%s: %r is not a usable extra var name' % (name, key, var))
    if not isinstance(entry.get('system') or '', string_types):
        raise RouteError('alert_map.%s: system must be a string' % name)
    unknown = set(entry) - set(['playbook', 'mode', 'labels', 'optional_labels', 'vars', 'description', 'system'])
    if unknown:
        raise RouteError('alert_map.%s: unknown keys %s' % (name, ', '.join(sorted(unknown))))


def route(alert, alert_map, default_route, incident_id):
    known = alert['name'] in alert_map
    entry = alert_map[alert['name']] if known else default_route
    extra = dict(entry.get('vars') or {})
    missing = []
    for var, label in (entry.get('labels') or {}).items():
        if alert['labels'].get(label) in (None, ''):
            missing.append(label)
        else:
            extra[var] = alert['labels'][label]
    if missing:
        names = (alert['name'], alert['fingerprint'], ', '.join(sorted(missing)), entry['playbook'])
        raise RouteError('alert %s (fingerprint %s) lacks the label(s) %s that %s needs: no playbook started; fix '
                         'the alerting rule or the map' % names)
    for var, label in (entry.get('optional_labels') or {}).items():
        if alert['labels'].get(label) not in (None, ''):
            extra[var] = alert['labels'][label]
    if incident_id:
        extra['incident_id'] = incident_id
    keys = ('name', 'labels', 'annotations', 'fingerprint', 'startsAt', 'status')
    extra['incident_alert'] = dict((k, alert[k]) for k in keys)
    return dict(name=alert['name'], known=known, playbook=entry['playbook'], mode=entry['mode'],
                system=entry.get('system') or None, extra_vars=extra)


def main():
    module = new_module(AnsibleModule, argument_spec=dict(
        payload=dict(type='raw', required=True),
        alert_map=dict(type='dict', required=True),
        default_route=dict(type='dict', default=dict(playbook='alert_triage.yml', mode='act')),
        incident_id=dict(type='str'),
    ), supports_check_mode=True)
    p = module.params
    try:
        for name, entry in sorted(p['alert_map'].items()):
            check_entry(name, entry)
        check_entry('(default_route)', p['default_route'])
        alerts = [incident_alert(a, i) for i, a in enumerate(alerts_of(p['payload']))]
        routes, resolved, seen, duplicates = [], [], set(), 0
        for alert in alerts:
            key = (alert['fingerprint'], alert['startsAt'], alert['status'])
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if alert['status'] == 'resolved':
                resolved.append(alert)
            else:
                routes.append(route(alert, p['alert_map'], p['default_route'], p['incident_id']))
    except RouteError as exc:
        module.fail_json(msg=str(exc))
    unknown = [r['name'] for r in routes if not r['known']]
    reasons = ['%s -> %s (%s)' % (r['name'], r['playbook'], r['mode']) for r in routes]
    if unknown:
        reasons.append('not in the map, triage only: %s' % ', '.join(unknown))
    if not routes:
        reasons.append('no firing alert: %d resolved' % len(resolved))
    module.exit_json(changed=False, routes=routes, resolved=resolved, duplicates=duplicates,
                     status='warning' if unknown else 'ok', reasons=reasons)


if __name__ == '__main__':
    main()
