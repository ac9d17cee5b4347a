#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: service_scale
short_description: Scale a Compose service or a Kubernetes Deployment to N replicas, within a cap
version_added: 0.1.0
description:
  - Compose runs C(up --detach --no-deps --no-recreate --scale SERVICE=N SERVICE) (the runbooks'
    C(docker-compose up -d --scale worker=N)); Kubernetes patches the Deployment's scale subresource.
  - "Guardrails inside the module: O(replicas) above O(max_replicas) or negative fails and changes nothing;
    with O(current_replicas) the module changes nothing unless the service has that many replicas now (the count
    the operator saw)."
  - With O(wait=true), waits until O(replicas) instances run and are ready (healthy where a healthcheck exists),
    with the shared waiter.
  - Check mode reports the change in RV(actions) and RV(diff) and changes nothing. Idempotent.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.services
  - incident.response.compose
  - incident.response.kubernetes
  - incident.response.wait
attributes:
  check_mode:
    support: full
    description: Reports the scale it would set; scales nothing.
  diff_mode:
    support: full
    description: Replicas before and after.
  idempotent:
    support: full
    description: A service already at O(replicas) with all instances running is left alone.
options:
  service:
    description: The service (Compose) or Deployment (Kubernetes) to scale.
    type: str
    required: true
  replicas:
    description: The number of replicas wanted.
    type: int
    required: true
  max_replicas:
    description: The cap. A larger O(replicas) fails closed, naming both numbers.
    type: int
    default: 20
  current_replicas:
    description:
      - Precondition, the number of replicas the operator expects now. When the service has another number and a
        change is needed, the module fails and changes nothing.
    type: int
'''

EXAMPLES = r'''
- name: Scale the workers to 4 (the NoActiveWorkers runbook), no more than 10
  incident.response.service_scale:
    project: taskscheduler
    service: worker
    replicas: 4
    max_replicas: 10
    current_replicas: 2
    wait_timeout: 60

- name: Scale a Deployment
  incident.response.service_scale:
    platform: kubernetes
    namespace: scheduler
    service: worker
    replicas: 4
'''

RETURN = r'''
changed:
  description: Whether the scale changed (or would, in check mode).
  returned: always
  type: bool
actions:
  description: What was done (or, in check mode, would be done).
  returned: success
  type: list
  elements: dict
  sample: [{"action": "scale", "target": "worker", "detail": {"from": 2, "to": 4}, "done": true}]
diff:
  description: Replicas before and after.
  returned: success
  type: dict
  sample: {"before": {"replicas": 2}, "after": {"replicas": 4}}
summary:
  description: One line.
  returned: success
  type: str
  sample: "worker scaled from 2 to 4 replicas (4/4 running, 4 ready) in 3.1s"
service:
  description: The service after the change (the shape of M(incident.response.service_info)'s services).
  returned: success
  type: dict
waited:
  description: Seconds spent waiting.
  returned: success
  type: float
'''

from ansible_collections.incident.response.plugins.module_utils._common import make_action
from ansible_collections.incident.response.plugins.module_utils._services import (
    DifferenceTracker,
    Plan,
    Refused,
    ServiceRemediation,
    all_ready,
    instance_summary,
)


class Scale(ServiceRemediation):
    options = dict(
        service=dict(type='str', required=True),
        replicas=dict(type='int', required=True),
        max_replicas=dict(type='int', default=20),
        current_replicas=dict(type='int'),
    )

    def validate(self):
        p = self.params
        if p['replicas'] < 0:
            raise Refused('replicas must not be negative, got %d: nothing changed' % p['replicas'])
        if p['max_replicas'] < 0:
            raise Refused('max_replicas must not be negative, got %d' % p['max_replicas'])
        if p['replicas'] > p['max_replicas']:
            raise Refused('replicas %d is above max_replicas %d for service %s: nothing changed'
                          % (p['replicas'], p['max_replicas'], p['service']))

    def plan(self, backend, name):
        p = self.params
        replicas = p['replicas']
        before = backend.service(name)
        tracker = DifferenceTracker()
        tracker.add('replicas', before['desired_replicas'], replicas)
        tracker.add('running', before['running_replicas'], replicas)
        changed = tracker.has_changes
        if changed and p['current_replicas'] is not None and before['desired_replicas'] != p['current_replicas']:
            raise Refused('precondition failed: service %s has %d replicas, current_replicas says %d: nothing '
                          'changed' % (name, before['desired_replicas'], p['current_replicas']), service=before)
        actions = []
        if changed:
            actions.append(make_action('scale', name, dict(platform=backend.platform, **{
                'from': before['desired_replicas'], 'to': replicas, 'running': before['running_replicas']})))
        diff = dict(before=dict(replicas=before['desired_replicas'], running=before['running_replicas']),
                    after=dict(replicas=replicas, running=replicas))
        summary = ('%s would be scaled from %d to %d replicas' % (name, before['desired_replicas'], replicas)
                   if changed else '%s already has %d replicas (%s)' % (name, replicas, instance_summary(before)))
        return Plan(before, actions, diff, summary, ready=all_ready(replicas))

    def act(self, backend, name, plan):
        backend.scale(name, self.params['replicas'])

    def done_summary(self, plan, after):
        return '%s scaled from %d to %d replicas (%s)' % (
            self.params['service'], plan.before['desired_replicas'], self.params['replicas'], instance_summary(after))

    def not_ready(self, plan):
        return 'service %s was scaled to %d but is not ready' % (self.params['service'], self.params['replicas'])


def main():
    Scale().run()


if __name__ == '__main__':
    main()
