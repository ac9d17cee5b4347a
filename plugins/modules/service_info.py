#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: service_info
short_description: Status, health, recent errors and resource use of the services of a Compose project or Kubernetes namespace
version_added: 0.1.0
description:
  - For each service (Compose service or Kubernetes Deployment) returns the desired, running and ready replicas,
    each container's or pod's state, health, restart count, exit code, OOM kill, uptime and image.
  - Recent log lines matching O(log_pattern) since O(log_since), and CPU and memory use from one stats snapshot.
  - Reads only; changes nothing.
  - Diagnoses in RV(status) and RV(reasons) (C(critical) when a service has no ready instance, C(warning) when
    fewer are ready than desired, an instance is unhealthy, paused or was OOM killed, or error lines were logged).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.services
  - incident.response.compose
  - incident.response.kubernetes
  - incident.response.attributes.info_module
options:
  services:
    description: The services to report on; all services of the project or namespace when not given.
    type: list
    elements: str
  log_pattern:
    description: A Python regular expression; log lines matching it are returned. An empty string disables logs.
    type: str
    default: ERROR|FATAL|CRITICAL
  log_since:
    description: How far back to read logs. Seconds or a duration such as V(15m), V(1h).
    type: raw
    default: 15m
  log_lines:
    description: At most this many of the last log lines of each container are read.
    type: int
    default: 200
  stats:
    description: Take one CPU and memory snapshot of each running container (about one second, in parallel).
    type: bool
    default: true
'''

EXAMPLES = r'''
- name: Status of the task scheduler's services
  incident.response.service_info:
    project: taskscheduler
  register: services

- name: The api only, its errors of the last 30 minutes, no stats
  incident.response.service_info:
    project: taskscheduler
    services: [api]
    log_since: 30m
    stats: false
'''

RETURN = r'''
status:
  description: C(ok), C(warning) or C(critical).
  returned: success
  type: str
  sample: warning
reasons:
  description: One sentence per finding.
  returned: success
  type: list
  elements: str
  sample: ["service worker: 0 of 2 instances ready"]
platform:
  description: The platform asked.
  returned: success
  type: str
  sample: compose
services:
  description: One entry per service.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Service (or Deployment) name.
      type: str
    desired_replicas:
      description: Replicas wanted (Compose, the number of containers of the service).
      type: int
    running_replicas:
      description: Instances running.
      type: int
    ready_replicas:
      description: Instances running and healthy (or without a healthcheck).
      type: int
    image:
      description: Image of the service.
      type: str
    revision:
      description: Current revision (Kubernetes) or index in the recorded deploy history (Compose), or null.
      type: int
    instances:
      description: Containers or pods with C(id), C(name), C(state), C(health), C(restart_count), C(exit_code),
        C(oom_killed), C(started_at), C(uptime_seconds), C(image), and C(stats) (C(cpu_pct), C(mem_bytes),
        C(mem_limit), C(mem_pct)) when O(stats=true).
      type: list
      elements: dict
    log_lines:
      description: Log lines matching O(log_pattern), each with C(instance) and C(line).
      type: list
      elements: dict
  sample:
    - name: worker
      desired_replicas: 2
      running_replicas: 2
      ready_replicas: 2
      image: incident-lab/busybox:latest
      revision: null
      instances:
        - id: abb5cfa48816
          name: taskscheduler_worker_1
          state: running
          health: none
          restart_count: 0
          exit_code: null
          oom_killed: false
          uptime_seconds: 190
      log_lines: []
notes:
  description:
    - What the platform could not tell, in words (for example that Kubernetes gives no CPU and memory figures
      without a metrics API).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    BackendError,
    StatusBuilder,
    diagnosis_result,
    duration_param,
    new_module,
    plural,
    regex_param,
)
from ansible_collections.incident.response.plugins.module_utils._services import (
    backend_or_fail,
    fail_backend,
    service_argument_spec,
)


def diagnose(builder, service):
    name = service['name']
    desired, ready = service['desired_replicas'], service['ready_replicas']
    if desired == 0:
        builder.add('critical', 'service %s: no instance (scaled to 0 or removed)' % name)
    elif ready == 0:
        builder.add('critical', 'service %s: 0 of %d instances ready' % (name, desired))
    elif ready < desired:
        builder.add('warning', 'service %s: %d of %d instances ready' % (name, ready, desired))
    for instance in service['instances']:
        if instance['health'] == 'unhealthy':
            builder.add('warning', 'service %s: %s is unhealthy' % (name, instance['name']))
        if instance['state'] == 'paused':
            builder.add('warning', 'service %s: %s is paused' % (name, instance['name']))
        if instance['state'] == 'exited':
            builder.add('warning', 'service %s: %s exited with code %s' % (name, instance['name'], instance['exit_code']))
        if instance['oom_killed']:
            builder.add('warning', 'service %s: %s was OOM killed' % (name, instance['name']))
    if service.get('log_lines'):
        builder.add('warning', 'service %s: %s matching the log pattern' % (
            name, plural(len(service['log_lines']), 'log line')))


def main():
    argument_spec = service_argument_spec()
    argument_spec.update(
        services=dict(type='list', elements='str'),
        log_pattern=dict(type='str', default='ERROR|FATAL|CRITICAL'),
        log_since=dict(type='raw', default='15m'),
        log_lines=dict(type='int', default=200),
        stats=dict(type='bool', default=True),
    )
    module = new_module(AnsibleModule, argument_spec, supports_check_mode=True)
    p = module.params
    since = duration_param(module, 'log_since')
    # An empty log_pattern disables the logs (documented); a pattern is bounded in input and time.
    pattern = regex_param(module, 'log_pattern') if p['log_pattern'] else None
    if p['log_lines'] < 0:
        module.fail_json(msg='log_lines must not be negative, got %s' % p['log_lines'])

    backend = backend_or_fail(module)
    try:
        services = backend.services(p['services'])
        for service in services:
            if pattern is not None and p['log_lines']:
                service['log_lines'] = backend.logs(service['name'], since=since, pattern=pattern,
                                                    lines=p['log_lines'])
            else:
                service['log_lines'] = []
            if p['stats']:
                snapshot = backend.stats(service['name'])
                for instance in service['instances']:
                    instance['stats'] = snapshot.get(instance['id'])
    except BackendError as exc:
        fail_backend(module, exc)

    builder = StatusBuilder()
    for service in services:
        diagnose(builder, service)
    module.exit_json(**diagnosis_result(builder.status, builder.reasons, platform=p['platform'], services=services,
                                        notes=list(backend.notes)))


if __name__ == '__main__':
    main()
