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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    WAIT_ARGUMENT_SPEC,
    BackendError,
    make_action,
    validate_wait_args,
)
from ansible_collections.incident.response.plugins.module_utils._services import (
    DifferenceTracker,
    all_ready,
    backend_or_fail,
    fail_backend,
    instance_summary,
    service_argument_spec,
    wait_for_service,
)


def main():
    argument_spec = service_argument_spec()
    argument_spec.update(WAIT_ARGUMENT_SPEC)
    argument_spec.update(
        service=dict(type='str', required=True),
        replicas=dict(type='int', required=True),
        max_replicas=dict(type='int', default=20),
        current_replicas=dict(type='int'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    validate_wait_args(module)
    name, replicas = p['service'], p['replicas']
    if replicas < 0:
        module.fail_json(msg='replicas must not be negative, got %d: nothing changed' % replicas)
    if p['max_replicas'] < 0:
        module.fail_json(msg='max_replicas must not be negative, got %d' % p['max_replicas'])
    if replicas > p['max_replicas']:
        module.fail_json(msg='replicas %d is above max_replicas %d for service %s: nothing changed'
                         % (replicas, p['max_replicas'], name))

    backend = backend_or_fail(module)
    try:
        before = backend.service(name)
    except BackendError as exc:
        fail_backend(module, exc)

    tracker = DifferenceTracker()
    tracker.add('replicas', before['desired_replicas'], replicas)
    tracker.add('running', before['running_replicas'], replicas)
    changed = tracker.has_changes
    if changed and p['current_replicas'] is not None and before['desired_replicas'] != p['current_replicas']:
        module.fail_json(msg='precondition failed: service %s has %d replicas, current_replicas says %d: nothing '
                             'changed' % (name, before['desired_replicas'], p['current_replicas']),
                         service=before)
    actions = []
    if changed:
        actions.append(make_action('scale', name, dict(platform=backend.platform, **{
            'from': before['desired_replicas'], 'to': replicas, 'running': before['running_replicas']})))
    diff = dict(before=dict(replicas=before['desired_replicas'], running=before['running_replicas']),
                after=dict(replicas=replicas, running=replicas))
    if module.check_mode or not changed:
        summary = ('%s would be scaled from %d to %d replicas' % (name, before['desired_replicas'], replicas)
                   if changed else '%s already has %d replicas (%s)' % (name, replicas, instance_summary(before)))
        module.exit_json(changed=changed, actions=actions, diff=diff, summary=summary, service=before, waited=0)

    try:
        backend.scale(name, replicas)
        actions[0]['done'] = True
        after, waited, satisfied = None, 0, True
        if p['wait']:
            satisfied, waited, after = wait_for_service(module, backend, name, all_ready(replicas))
        if after is None:
            after = backend.service(name)
    except BackendError as exc:
        fail_backend(module, exc, changed=bool(actions and actions[0]['done']), actions=actions)
    summary = '%s scaled from %d to %d replicas (%s)' % (
        name, before['desired_replicas'], replicas, instance_summary(after))
    if not satisfied:
        module.fail_json(msg='service %s was scaled to %d but is not ready after %ss: %s'
                         % (name, replicas, p['wait_timeout'], instance_summary(after)),
                         changed=True, actions=actions, diff=diff, summary=summary, service=after, waited=waited)
    if p['wait']:
        summary += ' in %ss' % waited
    module.exit_json(changed=True, actions=actions, diff=diff, summary=summary, service=after, waited=waited)


if __name__ == '__main__':
    main()
