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
    scales to 0; unpause restores the recorded count and removes the annotation. A Deployment is paused when it
    carries the annotation B(and) runs 0 replicas; one whose replicas came back since (an autoscaler,
    C(kubectl scale)) is paused again, and the count that runs then is recorded.
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

from ansible_collections.incident.response.plugins.module_utils._common import make_action
from ansible_collections.incident.response.plugins.module_utils._services import (
    Plan,
    ServiceRemediation,
    instance_summary,
)


class Pause(ServiceRemediation):
    options = dict(
        service=dict(type='str', required=True),
        state=dict(type='str', default='paused', choices=['paused', 'unpaused']),
    )

    @property
    def verb(self):
        return 'pause' if self.params['state'] == 'paused' else 'unpause'

    def plan(self, backend, name):
        want_paused = self.params['state'] == 'paused'
        before = backend.service(name)
        state = backend.pause_state(before)
        changed = (want_paused and not state['paused']) or (not want_paused and state['partly'])
        actions = [make_action(self.verb, name, dict(platform=backend.platform))] if changed else []
        diff = dict(before=dict(paused=state['paused']), after=dict(paused=want_paused))
        summary = ('%s would be %sd' % (name, self.verb)) if changed else '%s is already %s' % (name, self.params['state'])
        if want_paused:
            # Paused for real, and nothing of it runs any more (on Kubernetes: the pods are gone as well).
            def ready(service):
                return backend.pause_state(service)['paused'] and service['running_replicas'] == 0
        else:
            def ready(service):
                return (service['desired_replicas'] > 0 and not backend.pause_state(service)['partly']
                        and service['ready_replicas'] == service['desired_replicas'])
        return Plan(before, actions, diff, summary, ready=ready)

    def act(self, backend, name, plan):
        if self.params['state'] == 'paused':
            backend.pause(name)
        else:
            backend.unpause(name)

    def done_summary(self, plan, after):
        return '%s %sd (%s)' % (self.params['service'], self.verb, instance_summary(after))

    def not_ready(self, plan):
        return 'service %s was %sd but is not %s' % (
            self.params['service'], self.verb, 'paused' if self.params['state'] == 'paused' else 'ready')


def main():
    Pause().run()


if __name__ == '__main__':
    main()
