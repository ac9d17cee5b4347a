#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: service_restart
short_description: Restart a service's containers (all, chosen, or only the unhealthy or exited ones) or roll a Deployment
version_added: 0.1.0
description:
  - Compose restarts the chosen containers of the service through the Docker engine (the runbooks'
    C(docker-compose restart SERVICE)); Kubernetes rolls the Deployment (restart annotation, the equivalent of
    C(kubectl rollout restart)).
  - O(only) restricts the restart to instances that are C(unhealthy), C(exited) (also dead or created), or both;
    O(instances) to chosen container ids or names; O(min_uptime) to instances that have run at least that long
    (so that a second run right after a restart finds nothing to do).
  - With O(wait=true), waits until every instance of the service is running and ready (healthy where a
    healthcheck exists) and each restarted one has a new start time.
  - Check mode lists the instances it would restart and restarts nothing.
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
    description: Lists the instances it would restart; restarts nothing.
  diff_mode:
    support: full
    description: State and start time of the instances restarted, before and after.
  idempotent:
    support: partial
    description: A restart of everything is a change every time; with O(only) or O(min_uptime) a second run finds
      nothing to do.
options:
  service:
    description: The service (Compose) or Deployment (Kubernetes).
    type: str
    required: true
  instances:
    description:
      - Restart only these instances (Compose containers; Kubernetes pods, which are deleted so that their
        ReplicaSet replaces them).
      - Each entry is an exact name or id, or a prefix of an id that matches exactly one instance. An empty entry,
        a prefix that matches several instances, or an unknown one is refused and nothing is restarted.
    type: list
    elements: str
  only:
    description: Restart only the instances in one of these conditions.
    type: list
    elements: str
    choices: [unhealthy, exited]
  min_uptime:
    description: Restart only instances running for at least this long (seconds or a duration such as V(5m)).
      Stopped instances are always eligible.
    type: raw
'''

EXAMPLES = r'''
- name: Restart the API (docker-compose restart api) and wait until it is healthy
  incident.response.service_restart:
    project: taskscheduler
    service: api
    wait_timeout: 60

- name: Restart only the workers that exited or are unhealthy
  incident.response.service_restart:
    project: taskscheduler
    service: worker
    only: [unhealthy, exited]

- name: Roll the Deployment
  incident.response.service_restart:
    platform: kubernetes
    namespace: scheduler
    service: api
'''

RETURN = r'''
changed:
  description: Whether something was (or, in check mode, would be) restarted.
  returned: always
  type: bool
actions:
  description: One C(restart) entry per instance (Compose) or one for the Deployment (Kubernetes).
  returned: success
  type: list
  elements: dict
restarted:
  description: Ids of the instances restarted (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
diff:
  description: State, health and start time of the chosen instances before and after.
  returned: success
  type: dict
summary:
  description: One line.
  returned: success
  type: str
  sample: "api: restarted 1 instance (1/1 running, 1 ready) in 6.2s"
service:
  description: The service after the restart.
  returned: success
  type: dict
waited:
  description: Seconds spent waiting.
  returned: success
  type: float
'''

from ansible_collections.incident.response.plugins.module_utils._common import (
    duration_param,
    make_action,
    plural,
)
from ansible_collections.incident.response.plugins.module_utils._services import (
    Plan,
    Refused,
    ServiceRemediation,
    instance_summary,
)

STOPPED = ('exited', 'created', 'dead')


def resolve(service, wanted):
    """The ids of the instances ``wanted`` names, or Refused.

    Each entry is an exact name or id (or a full 64-character container id), else a prefix of an id that
    matches exactly one instance. An empty entry (it would match every instance) and a prefix matching
    several are refused: on Kubernetes a restart of chosen instances deletes their pods.
    """
    name, instances = service['name'], service['instances']
    listing = ', '.join(i['name'] for i in instances) or 'none'
    ids, unknown = [], []
    for entry in wanted:
        text = (entry or '').strip()
        if not text:
            raise Refused('instances: an empty name matches every instance; give exact names or ids (instances of '
                          'service %s: %s): nothing restarted' % (name, listing))
        found = [i for i in instances
                 if text in (i['name'], i['id']) or (len(text) == 64 and text.startswith(i['id']))]
        if not found:
            found = [i for i in instances if i['id'].startswith(text)]
        if len(found) > 1:
            raise Refused('instances: %r matches %d instances of service %s (%s): give exact names or a longer id '
                          'prefix: nothing restarted' % (text, len(found), name,
                                                         ', '.join(i['name'] for i in found)))
        if not found:
            unknown.append(text)
        elif found[0]['id'] not in ids:
            ids.append(found[0]['id'])
    if unknown:
        raise Refused('service %s has no instance %s (instances: %s): nothing restarted' % (
            name, ', '.join(unknown), listing))
    return ids


def choose(instances, wanted_ids, only, min_uptime):
    chosen = []
    for instance in instances:
        if wanted_ids is not None and instance['id'] not in wanted_ids:
            continue
        if only:
            hit = ('unhealthy' in only and instance['health'] == 'unhealthy') or \
                  ('exited' in only and instance['state'] in STOPPED)
            if not hit:
                continue
        if min_uptime is not None and instance['state'] not in STOPPED:
            if instance['uptime_seconds'] is None or instance['uptime_seconds'] < min_uptime:
                continue
        if instance['state'] == 'paused':
            continue
        chosen.append(instance)
    return chosen


def view(instance):
    return dict(state=instance['state'], health=instance['health'], started_at=instance['started_at'])


class Restart(ServiceRemediation):
    options = dict(
        service=dict(type='str', required=True),
        instances=dict(type='list', elements='str'),
        only=dict(type='list', elements='str', choices=['unhealthy', 'exited']),
        min_uptime=dict(type='raw'),
    )
    min_uptime = None

    def validate(self):
        self.min_uptime = duration_param(self.module, 'min_uptime')

    def plan(self, backend, name):
        p = self.params
        before = backend.service(name)
        wanted = resolve(before, p['instances']) if p['instances'] is not None else None
        rolling = backend.rollout_restart and wanted is None and not p['only'] and self.min_uptime is None
        chosen = choose(before['instances'], wanted, p['only'], self.min_uptime)
        if rolling:
            actions = [make_action('rollout_restart', name, dict(platform=backend.platform))]
        else:
            actions = [make_action('restart', i['name'], dict(service=name, id=i['id'], state=i['state'],
                                                              health=i['health'])) for i in chosen]
        ids = [i['id'] for i in chosen]
        diff = dict(before=dict((i['name'], view(i)) for i in chosen), after={})
        if not actions:
            summary = '%s: no instance to restart (%s)' % (name, instance_summary(before))
        else:
            summary = '%s: would restart %s' % (name, 'the deployment' if rolling
                                                else ', '.join(i['name'] for i in chosen))
        started = dict((i['id'], i['started_at']) for i in chosen)

        def ready(service):
            if service['ready_replicas'] != service['desired_replicas'] or \
                    service['running_replicas'] != service['desired_replicas']:
                return False
            now = dict((i['id'], i['started_at']) for i in service['instances'])
            return all(now.get(cid) != old for cid, old in started.items())

        plan = Plan(before, actions, diff, summary, ready=ready, restarted=ids)
        plan.rolling, plan.chosen = rolling, ids
        return plan

    def act(self, backend, name, plan):
        restarted = backend.restart(name, None if plan.rolling else plan.chosen)
        plan.result['restarted'] = restarted or plan.chosen

    def finish(self, backend, name, plan, after):
        plan.diff['after'] = dict((i['name'], view(i)) for i in after['instances'] if i['id'] in plan.chosen)

    def done_summary(self, plan, after):
        count = after['desired_replicas'] if plan.rolling else len(plan.chosen)
        return '%s: restarted %s (%s)' % (self.params['service'], plural(count, 'instance'), instance_summary(after))

    def not_ready(self, plan):
        return 'service %s was restarted but is not ready' % self.params['service']


def main():
    Restart().run()


if __name__ == '__main__':
    main()
