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
    description: Restart only these containers (id, id prefix of at least 12 characters, or name). Compose only.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    WAIT_ARGUMENT_SPEC,
    BackendError,
    DurationError,
    make_action,
    parse_duration,
    plural,
    validate_wait_args,
)
from ansible_collections.incident.response.plugins.module_utils._services import (
    backend_or_fail,
    fail_backend,
    instance_summary,
    service_argument_spec,
    wait_for_service,
)

STOPPED = ('exited', 'created', 'dead')


def choose(instances, wanted_ids, only, min_uptime):
    chosen = []
    for instance in instances:
        if wanted_ids is not None and not any(
                instance['id'].startswith(w[:12]) or instance['name'] == w for w in wanted_ids):
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


def main():
    argument_spec = service_argument_spec()
    argument_spec.update(WAIT_ARGUMENT_SPEC)
    argument_spec.update(
        service=dict(type='str', required=True),
        instances=dict(type='list', elements='str'),
        only=dict(type='list', elements='str', choices=['unhealthy', 'exited']),
        min_uptime=dict(type='raw'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    validate_wait_args(module)
    try:
        min_uptime = parse_duration(p['min_uptime'], 'min_uptime')
    except DurationError as exc:
        module.fail_json(msg=str(exc))
    name = p['service']
    backend = backend_or_fail(module)
    try:
        before = backend.service(name)
    except BackendError as exc:
        fail_backend(module, exc)

    if p['instances'] is not None:
        unknown = [w for w in p['instances']
                   if not any(i['id'].startswith(w[:12]) or i['name'] == w for i in before['instances'])]
        if unknown:
            module.fail_json(msg='service %s has no instance %s (instances: %s)' % (
                name, ', '.join(unknown), ', '.join(i['name'] for i in before['instances']) or 'none'))

    rolling = backend.platform == 'kubernetes' and p['instances'] is None and not p['only'] and min_uptime is None
    chosen = choose(before['instances'], p['instances'], p['only'], min_uptime)
    if rolling:
        actions = [make_action('rollout_restart', name, dict(platform=backend.platform))]
    else:
        actions = [make_action('restart', i['name'], dict(service=name, id=i['id'], state=i['state'],
                                                          health=i['health'])) for i in chosen]
    changed = bool(actions)
    ids = [i['id'] for i in chosen]
    diff = dict(before=dict((i['name'], view(i)) for i in chosen), after={})
    if module.check_mode or not changed:
        summary = ('%s: would restart %s' % (name, ', '.join(i['name'] for i in chosen) if not rolling
                                             else 'the deployment') if changed
                   else '%s: no instance to restart (%s)' % (name, instance_summary(before)))
        module.exit_json(changed=changed, actions=actions, restarted=ids, diff=diff, summary=summary,
                         service=before, waited=0)

    try:
        restarted = backend.restart(name, None if rolling else ids)
        for action in actions:
            action['done'] = True
        started = dict((i['id'], i['started_at']) for i in chosen)

        def ready(service):
            if service['ready_replicas'] != service['desired_replicas'] or \
                    service['running_replicas'] != service['desired_replicas']:
                return False
            now = dict((i['id'], i['started_at']) for i in service['instances'])
            return all(now.get(cid) != old for cid, old in started.items())

        satisfied, waited, after = True, 0, None
        if p['wait']:
            satisfied, waited, after = wait_for_service(module, backend, name, ready)
        if after is None:
            after = backend.service(name)
    except BackendError as exc:
        fail_backend(module, exc, changed=any(a['done'] for a in actions), actions=actions)
    diff['after'] = dict((i['name'], view(i)) for i in after['instances'] if i['id'] in ids)
    count = len(chosen) if not rolling else after['desired_replicas']
    summary = '%s: restarted %s (%s)' % (name, plural(count, 'instance'), instance_summary(after))
    if not satisfied:
        module.fail_json(msg='service %s was restarted but is not ready after %ss: %s'
                         % (name, p['wait_timeout'], instance_summary(after)), changed=True, actions=actions,
                         restarted=restarted or ids, diff=diff, summary=summary, service=after, waited=waited)
    if p['wait']:
        summary += ' in %ss' % waited
    module.exit_json(changed=True, actions=actions, restarted=restarted or ids, diff=diff, summary=summary,
                     service=after, waited=waited)


if __name__ == '__main__':
    main()
