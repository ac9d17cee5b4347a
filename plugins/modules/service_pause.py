#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: service_pause
short_description: Pause or unpause a service (the lockdown of an API), on Compose or Kubernetes
version_added: 0.1.0
description:
  - Compose freezes the service's running containers (C(docker pause)) and thaws them (C(docker unpause)); their
    state is kept.
  - Kubernetes records the replica count in the Deployment annotation C(incident.response/paused-replicas) and
    scales to 0; unpause restores the recorded count and removes the annotation.
  - With O(wait=true) and O(state=unpaused), waits until every instance is running and ready.
  - Check mode reports what would change and changes nothing. Idempotent.
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
    description: Reports the change; pauses nothing.
  diff_mode:
    support: full
    description: Paused or not, before and after.
  idempotent:
    support: full
    description: A paused service stays paused; an unpaused one is left alone.
options:
  service:
    description: The service (Compose) or Deployment (Kubernetes).
    type: str
    required: true
  state:
    description: V(paused) or V(unpaused).
    type: str
    default: paused
    choices: [paused, unpaused]
'''

EXAMPLES = r'''
- name: Lock the API down
  incident.response.service_pause:
    project: taskscheduler
    service: api

- name: Bring it back
  incident.response.service_pause:
    project: taskscheduler
    service: api
    state: unpaused
'''

RETURN = r'''
changed:
  description: Whether the service was (or would be) paused or unpaused.
  returned: always
  type: bool
actions:
  description: One C(pause) or C(unpause) entry.
  returned: success
  type: list
  elements: dict
diff:
  description: C(paused) before and after.
  returned: success
  type: dict
  sample: {"before": {"paused": false}, "after": {"paused": true}}
summary:
  description: One line.
  returned: success
  type: str
service:
  description: The service afterwards.
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
        state=dict(type='str', default='paused', choices=['paused', 'unpaused']),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    validate_wait_args(module)
    name, want_paused = p['service'], p['state'] == 'paused'
    backend = backend_or_fail(module)
    try:
        before = backend.service(name)
        paused = backend.is_paused(name)
        partly = bool(before.get('paused_replicas')) if backend.platform == 'compose' else paused
    except BackendError as exc:
        fail_backend(module, exc)

    changed = (want_paused and not paused) or (not want_paused and partly)
    verb = 'pause' if want_paused else 'unpause'
    actions = [make_action(verb, name, dict(platform=backend.platform))] if changed else []
    diff = dict(before=dict(paused=paused), after=dict(paused=want_paused))
    if module.check_mode or not changed:
        summary = ('%s would be %sd' % (name, verb)) if changed else '%s is already %s' % (name, p['state'])
        module.exit_json(changed=changed, actions=actions, diff=diff, summary=summary, service=before, waited=0)

    try:
        if want_paused:
            backend.pause(name)
        else:
            backend.unpause(name)
        actions[0]['done'] = True
        satisfied, waited = True, 0
        if p['wait']:
            if want_paused:
                # Kubernetes: paused means scaled to zero, so wait until the pods are gone as well.
                satisfied, waited, after = wait_for_service(
                    module, backend, name,
                    lambda s: backend.is_paused(name) and (backend.platform != 'kubernetes' or s['running_replicas'] == 0))
            else:
                satisfied, waited, after = wait_for_service(
                    module, backend, name, lambda s: s['desired_replicas'] > 0 and not s.get('paused_replicas')
                    and s['ready_replicas'] == s['desired_replicas'] and not backend.is_paused(name))
        after = backend.service(name)
    except BackendError as exc:
        fail_backend(module, exc, changed=True, actions=actions)
    summary = '%s %sd (%s)' % (name, verb, instance_summary(after))
    if not satisfied:
        module.fail_json(msg='service %s was %sd but is not %s after %ss: %s' % (
            name, verb, 'paused' if want_paused else 'ready', p['wait_timeout'], instance_summary(after)),
            changed=True, actions=actions, diff=diff, summary=summary, service=after, waited=waited)
    module.exit_json(changed=True, actions=actions, diff=diff, summary=summary, service=after, waited=waited)


if __name__ == '__main__':
    main()
