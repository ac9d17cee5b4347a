#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: alertmanager_alert_info
short_description: The alerts Alertmanager holds (active, silenced, inhibited), filtered by labels or receiver
version_added: 0.1.0
description:
  - Reads C(GET /api/v2/alerts) and returns each alert with its name, labels, annotations, fingerprint,
    C(startsAt), state, and the silences or inhibitions that hide it.
  - So that a playbook can verify that the alert that brought it here has cleared, and look for related alerts.
  - "RV(status): V(critical) when at least one alert selected is active (firing, neither silenced nor inhibited),
    V(warning) when alerts are firing but all are silenced or inhibited, V(ok) when none is, V(unknown) with the
    reason when Alertmanager cannot be read (unreachable, refused): not a failure."
  - Reads only.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.alertmanager
  - incident.response.attributes.info_module
options:
  labels:
    description:
      - "Select alerts whose labels equal these, for example C({alertname: NoActiveWorkers, service: worker})."
    type: dict
  filters:
    description:
      - More matchers in Alertmanager's filter syntax, for example C(severity=~"critical|page") or C(env!="dev").
    type: list
    elements: str
  receiver:
    description: Only alerts routed to receivers whose name matches this regular expression.
    type: str
  fingerprint:
    description: Only the alert with this fingerprint.
    type: str
  active:
    description: Include active alerts (firing, neither silenced nor inhibited).
    type: bool
    default: true
  silenced:
    description: Include silenced alerts.
    type: bool
    default: true
  inhibited:
    description: Include inhibited alerts.
    type: bool
    default: true
'''

EXAMPLES = r'''
- name: Has the alert that brought us here cleared?
  incident.response.alertmanager_alert_info:
    url: http://127.0.0.1:9093
    labels:
      alertname: NoActiveWorkers
  register: still_firing
  failed_when: still_firing.status == 'critical'

- name: Related issues (runbook step) - everything firing at page severity
  incident.response.alertmanager_alert_info:
    filters:
      - severity=~"critical|page"
    silenced: false
    inhibited: false
  register: related
'''

RETURN = r'''
status:
  description: C(ok), C(warning), C(critical) or C(unknown) (see the description).
  returned: always
  type: str
  sample: critical
reasons:
  description: Short sentences behind RV(status).
  returned: always
  type: list
  elements: str
  sample: ['1 alert active: NoActiveWorkers (fingerprint 3a5c0e1f2b4d6a78)']
alerts:
  description: The alerts selected, oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The C(alertname) label.
      type: str
    fingerprint:
      description: Alertmanager's fingerprint of the label set (the join key of the incident record).
      type: str
    labels:
      description: All labels.
      type: dict
    annotations:
      description: All annotations (summary, description, runbook_url, ...).
      type: dict
    startsAt:
      description: When the alert started firing.
      type: str
    endsAt:
      description: When Alertmanager considers it resolved unless it is sent again.
      type: str
    updatedAt:
      description: Last update.
      type: str
    state:
      description: C(active), C(suppressed) or C(unprocessed).
      type: str
    silencedBy:
      description: Ids of the silences hiding it.
      type: list
      elements: str
    inhibitedBy:
      description: Fingerprints of the alerts inhibiting it.
      type: list
      elements: str
    receivers:
      description: Names of the receivers it is routed to.
      type: list
      elements: str
    generatorURL:
      description: Where the alert comes from.
      type: str
  sample: []
counts:
  description: How many alerts selected are C(active), C(silenced), C(inhibited), and the C(total).
  returned: success
  type: dict
  sample: {active: 1, silenced: 0, inhibited: 0, total: 1}
'''

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import new_module

from ansible_collections.incident.response.plugins.module_utils._alertmanager import (
    ALERTMANAGER_ARGUMENT_SPEC, ALERTMANAGER_MUTUALLY_EXCLUSIVE, ALERTMANAGER_REQUIRED_TOGETHER,
    AlertmanagerClient, AlertmanagerError)

_LABEL_NAME = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')


def label_filter(name, value):
    escaped = str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    return '%s="%s"' % (name, escaped)


def shape(alert):
    status = alert.get('status') or {}
    labels = alert.get('labels') or {}
    return dict(name=labels.get('alertname'), fingerprint=alert.get('fingerprint'), labels=labels,
                annotations=alert.get('annotations') or {}, startsAt=alert.get('startsAt'),
                endsAt=alert.get('endsAt'), updatedAt=alert.get('updatedAt'), state=status.get('state'),
                silencedBy=status.get('silencedBy') or [], inhibitedBy=status.get('inhibitedBy') or [],
                receivers=[r.get('name') for r in alert.get('receivers') or [] if isinstance(r, dict)],
                generatorURL=alert.get('generatorURL'))


def describe(alerts, limit=5):
    text = ', '.join('%s (fingerprint %s)' % (a['name'] or '(no alertname)', a['fingerprint']) for a in alerts[:limit])
    if len(alerts) > limit:
        text += ' and %d more' % (len(alerts) - limit)
    return text


def main():
    argument_spec = dict(
        labels=dict(type='dict'),
        filters=dict(type='list', elements='str'),
        receiver=dict(type='str'),
        fingerprint=dict(type='str'),
        active=dict(type='bool', default=True),
        silenced=dict(type='bool', default=True),
        inhibited=dict(type='bool', default=True),
    )
    argument_spec.update(ALERTMANAGER_ARGUMENT_SPEC)
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True,
                        mutually_exclusive=ALERTMANAGER_MUTUALLY_EXCLUSIVE,
                        required_together=ALERTMANAGER_REQUIRED_TOGETHER)
    p = module.params

    filters = []
    for name, value in sorted((p['labels'] or {}).items()):
        if not _LABEL_NAME.match(str(name)):
            module.fail_json(msg='labels: %r is not a label name (letters, digits, underscores)' % name)
        if isinstance(value, (dict, list)) or value is None:
            module.fail_json(msg='labels.%s: expected a string value, got %r' % (name, value))
        filters.append(label_filter(name, value))
    filters.extend(p['filters'] or [])
    if p['receiver']:
        try:
            re.compile(p['receiver'])
        except re.error as exc:
            module.fail_json(msg='receiver: %r is not a valid regular expression (%s)' % (p['receiver'], exc))

    try:
        client = AlertmanagerClient(p)
        raw = client.alerts(filters=filters, receiver=p['receiver'], active=p['active'], silenced=p['silenced'],
                            inhibited=p['inhibited'])
    except AlertmanagerError as exc:
        if getattr(exc, 'details', {}).get('status_code') == 400:
            module.fail_json(msg='%s (check labels, filters and receiver)' % exc)
        module.exit_json(changed=False, status='unknown', reasons=[str(exc)], alerts=[], counts={})

    alerts = [shape(a) for a in raw if isinstance(a, dict)]
    if p['fingerprint']:
        alerts = [a for a in alerts if a['fingerprint'] == p['fingerprint']]
    alerts.sort(key=lambda a: (a['startsAt'] or '', a['fingerprint'] or ''))
    active = [a for a in alerts if a['state'] == 'active' or (a['state'] == 'unprocessed')]
    silenced = [a for a in alerts if a['silencedBy']]
    inhibited = [a for a in alerts if a['inhibitedBy']]
    counts = dict(active=len(active), silenced=len(silenced), inhibited=len(inhibited), total=len(alerts))
    reasons = []
    if active:
        status = 'critical'
        reasons.append('%d alert(s) active: %s' % (len(active), describe(active)))
    elif alerts:
        status = 'warning'
        reasons.append('%d alert(s) firing but hidden (silenced %d, inhibited %d): %s'
                       % (len(alerts), len(silenced), len(inhibited), describe(alerts)))
    else:
        status = 'ok'
        reasons.append('no alert firing matches %s' % (', '.join(filters) or 'anything'))
    module.exit_json(changed=False, status=status, reasons=reasons, alerts=alerts, counts=counts)


if __name__ == '__main__':
    main()
