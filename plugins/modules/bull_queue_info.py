#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: bull_queue_info
short_description: Diagnose Bull and BullMQ queues in Redis - counts, oldest waiting job, stalled jobs
version_added: 0.1.0
description:
  - Reads the keys that Bull (3 and 4) and BullMQ write in Redis, C(<prefix>:<queue>:wait), C(:active), C(:paused),
    C(:delayed), C(:failed), C(:completed), C(:prioritized) (BullMQ), C(:meta) / C(:meta-paused), the job hashes
    C(<prefix>:<queue>:<id>) and the lock keys C(<prefix>:<queue>:<id>:lock), and returns per queue its counts,
    the age of the oldest waiting job and the stalled jobs (active jobs whose lock key is gone, so that no worker holds them).
  - The key layout is detected per queue (BullMQ writes C(:meta) with a C(version), C(:prioritized), C(:marker),
    C(:events) as a stream) or given with O(layout).
  - "RV(status) follows the schedule generator runbook's HighQueueDepth: more than O(waiting_critical) (500)
    waiting jobs is critical and SEV3, from O(waiting_warning) (100) a warning, fewer is normal."
  - Read only; it sends only read commands and never runs a script (Bull's own C(getCounts) Lua script writes).
  - An unreachable Redis is RV(status=unknown) with the reason, not a failure; so is a named queue that has no keys.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.redis
  - incident.response.attributes.info_module
options:
  queues:
    description:
      - Names of the queues (as given to C(new Queue(name))), for example V(pdf-processing).
      - Empty to find the queues under O(prefix) with C(SCAN) (bounded by O(max_keys_scanned)).
    type: list
    elements: str
    default: []
  prefix:
    description: The key prefix of the queues (Bull's and BullMQ's C(prefix) option).
    type: str
    default: bull
  layout:
    description: The key layout; V(auto) detects it per queue.
    type: str
    default: auto
    choices: [auto, bull, bullmq]
  waiting_warning:
    description: At least this many waiting jobs in a queue is a warning (the runbook's normal is fewer than 100).
    type: int
    default: 100
  waiting_critical:
    description: More than this many waiting jobs is critical, severity SEV3 (the runbook's HighQueueDepth, 500).
    type: int
    default: 500
  stalled_warning:
    description: At least this many stalled jobs in a queue is a warning; V(0) disables it.
    type: int
    default: 1
  oldest_waiting_warning:
    description:
      - A queue whose oldest waiting job has waited at least this long is a warning. Seconds or a duration such
        as V(15m); unset disables it.
    type: raw
  max_active_checked:
    description: Look for stalled jobs among at most this many active jobs per queue.
    type: int
    default: 1000
  max_keys_scanned:
    description: When O(queues) is empty, stop looking for queues after about this many keys were examined.
    type: int
    default: 100000
  scan_timeout:
    description: When O(queues) is empty, stop looking for queues after this long. Seconds or a duration.
    type: raw
    default: 10
notes:
  - Waiting counts the wait list, the paused list (while the queue is paused) and, for BullMQ, the prioritized set.
  - The oldest waiting job is found at the ends of the waiting lists and the lowest of the prioritized set; with
    LIFO jobs in a long list it may be missed.
seealso:
  - module: incident.response.bull_queue
  - module: incident.response.redis_info
'''

EXAMPLES = r'''
- name: Queue depth of the PDF queue (the runbook's LLEN bull:pdf-processing:wait)
  incident.response.bull_queue_info:
    url: redis://127.0.0.1:6379/0
    queues: [pdf-processing]
  register: pdf_queue

- name: Show it
  ansible.builtin.debug:
    msg: "{{ pdf_queue.queues[0].counts.waiting }} waiting, {{ pdf_queue.queues[0].stalled_count }} stalled:
      {{ pdf_queue.status }} {{ pdf_queue.reasons }}"
'''

RETURN = r'''
status:
  description: The worst status of the queues (C(ok), C(warning), C(critical)); C(unknown) when Redis could not
    be reached, no queue was found, or a named queue has no keys and no other queue is worse than C(ok).
  returned: always
  type: str
reasons:
  description: One short sentence per threshold crossed, naming the queue.
  returned: always
  type: list
  elements: str
severity:
  description: C(SEV3) when a queue has more than O(waiting_critical) waiting jobs, otherwise null.
  returned: always
  type: str
priority:
  description: C(P3) with RV(severity=SEV3) (the runbook's mapping), otherwise null.
  returned: always
  type: str
reachable:
  description: Whether Redis answered.
  returned: always
  type: bool
target:
  description: Where the module connected; never the password.
  returned: always
  type: str
discovery_complete:
  description: When O(queues) was empty, whether the SCAN for queues went through every key.
  returned: when O(queues) is empty
  type: bool
queues:
  description: One entry per queue.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The queue's name.
      type: str
    exists:
      description: Whether any key of the queue exists.
      type: bool
    layout:
      description: C(bull) or C(bullmq).
      type: str
    is_paused:
      description: Whether the queue is paused.
      type: bool
    counts:
      description: C(waiting) (wait + paused + prioritized), C(wait), C(prioritized), C(active), C(delayed),
        C(failed), C(completed), C(paused) (the paused list).
      type: dict
    oldest_waiting_job:
      description: C(id), C(timestamp) (ms) and C(age_seconds) of the oldest waiting job found, or null.
      type: dict
    stalled_jobs:
      description: Ids of active jobs whose lock key is gone.
      type: list
      elements: str
    stalled_count:
      description: How many of them.
      type: int
    active_checked:
      description: How many active jobs were checked for a lock (at most O(max_active_checked)).
      type: int
    status:
      description: This queue's status.
      type: str
    reasons:
      description: This queue's reasons.
      type: list
      elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    new_module,
    DurationError, StatusBuilder, format_duration, parse_duration, worst_status)
from ansible_collections.incident.response.plugins.module_utils._redis import (
    BullQueue, RedisError, connect, detect_layout, discover_queues, find_stalled, redis_common_argument_spec)


def oldest_waiting(client, queue, now_ms):
    candidates = []
    for name in ('wait', 'paused'):
        key = queue.key(name)
        candidates.extend(i for i in client.pipeline([('LINDEX', key, 0), ('LINDEX', key, -1)]) if i)
    if queue.layout == 'bullmq':
        candidates.extend(client.call('ZRANGE', queue.key('prioritized'), 0, 0) or [])
    if not candidates:
        return None
    stamps = client.pipeline([('HGET', queue.job_key(i), 'timestamp') for i in candidates])
    best = None
    for job_id, stamp in zip(candidates, stamps):
        try:
            stamp = int(float(stamp))
        except (TypeError, ValueError):
            continue
        if best is None or stamp < best['timestamp']:
            best = dict(id=job_id, timestamp=stamp, age_seconds=max(round((now_ms - stamp) / 1000.0, 1), 0))
    return best


def queue_report(client, name, p, oldest_warning, now_ms):
    layout = detect_layout(client, p['prefix'], name, p['layout'])
    if layout is None:
        return dict(name=name, exists=False, layout=None, is_paused=False, counts={}, oldest_waiting_job=None,
                    stalled_jobs=[], stalled_count=0, active_checked=0, status='unknown',
                    reasons=['queue %s has no keys under prefix %s in this database' % (name, p['prefix'])])
    queue = BullQueue(p['prefix'], name, layout)
    paused_check = ('HEXISTS', queue.key('meta'), 'paused') if layout == 'bullmq' else ('EXISTS', queue.key('meta-paused'))
    wait, paused_len, active, delayed, failed, completed, prioritized, paused_flag = client.pipeline([
        ('LLEN', queue.key('wait')), ('LLEN', queue.key('paused')), ('LLEN', queue.key('active')),
        ('ZCARD', queue.key('delayed')), ('ZCARD', queue.key('failed')), ('ZCARD', queue.key('completed')),
        ('ZCARD', queue.key('prioritized')), paused_check])
    if layout != 'bullmq':
        prioritized = 0
    counts = dict(waiting=wait + paused_len + prioritized, wait=wait, prioritized=prioritized, active=active,
                  delayed=delayed, failed=failed, completed=completed, paused=paused_len)
    stalled, checked = find_stalled(client, queue, p['max_active_checked'])
    oldest = oldest_waiting(client, queue, now_ms)
    builder = StatusBuilder()
    waiting = counts['waiting']
    if p['waiting_critical'] is not None and waiting > p['waiting_critical']:
        builder.add('critical', 'queue %s has %d waiting jobs (more than %d: HighQueueDepth, SEV3)'
                    % (name, waiting, p['waiting_critical']))
    elif p['waiting_warning'] is not None and waiting >= p['waiting_warning']:
        builder.add('warning', 'queue %s has %d waiting jobs (normal is fewer than %d)'
                    % (name, waiting, p['waiting_warning']))
    if p['stalled_warning'] and len(stalled) >= p['stalled_warning']:
        builder.add('warning', 'queue %s has %d stalled jobs (active without a lock: %s)'
                    % (name, len(stalled), ', '.join(stalled[:10]) + (', ...' if len(stalled) > 10 else '')))
    if oldest_warning is not None and oldest and oldest['age_seconds'] >= oldest_warning:
        builder.add('warning', 'the oldest waiting job of queue %s (%s) has waited %s (warning at %s)'
                    % (name, oldest['id'], format_duration(oldest['age_seconds']), format_duration(oldest_warning)))
    return dict(name=name, exists=True, layout=layout, is_paused=bool(paused_flag), counts=counts,
                oldest_waiting_job=oldest, stalled_jobs=stalled, stalled_count=len(stalled), active_checked=checked,
                status=builder.status, reasons=builder.reasons,
                sev3=p['waiting_critical'] is not None and waiting > p['waiting_critical'])


def main():
    argument_spec = redis_common_argument_spec()
    argument_spec.update(
        queues=dict(type='list', elements='str', default=[]),
        prefix=dict(type='str', default='bull'),
        layout=dict(type='str', default='auto', choices=['auto', 'bull', 'bullmq']),
        waiting_warning=dict(type='int', default=100),
        waiting_critical=dict(type='int', default=500),
        stalled_warning=dict(type='int', default=1),
        oldest_waiting_warning=dict(type='raw'),
        max_active_checked=dict(type='int', default=1000),
        max_keys_scanned=dict(type='int', default=100000, no_log=False),
        scan_timeout=dict(type='raw', default=10),
    )
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:
        oldest_warning = parse_duration(p['oldest_waiting_warning'], 'oldest_waiting_warning')
        scan_timeout = parse_duration(p['scan_timeout'], 'scan_timeout')
    except DurationError as exc:
        module.fail_json(msg=str(exc))
    for name in ('waiting_warning', 'waiting_critical', 'stalled_warning'):
        if p[name] is not None and p[name] < 0:
            module.fail_json(msg='%s must not be negative, got %s' % (name, p[name]))
    for name in ('max_active_checked', 'max_keys_scanned'):
        if p[name] < 1:
            module.fail_json(msg='%s must be at least 1, got %s' % (name, p[name]))
    if not scan_timeout:
        module.fail_json(msg='scan_timeout must be more than 0 seconds')
    if not p['prefix'] or any(c in p['prefix'] for c in '*?[]'):
        module.fail_json(msg='prefix must be a plain key prefix such as bull, got %r' % p['prefix'])
    for name in p['queues']:
        if not name or any(c in name for c in '*?[]'):
            module.fail_json(msg='queues: %r is not a queue name (no empty names, no glob characters)' % name)

    client = connect(module, read_only=True)
    result = dict(changed=False, target=client.target, reachable=False, queues=[], severity=None, priority=None)
    try:
        client.call('PING')
        result['reachable'] = True
        names = p['queues']
        if not names:
            names, result['discovery_complete'] = discover_queues(client, p['prefix'], p['max_keys_scanned'],
                                                                  time.monotonic() + scan_timeout)
        now_ms = client.server_time_ms()
        reports = [queue_report(client, name, p, oldest_warning, now_ms) for name in names]
        reasons = []
        for report in reports:
            reasons.extend(report['reasons'])
            if report.pop('sev3', False):
                result.update(severity='SEV3', priority='P3')
        statuses = [r['status'] for r in reports]
        status = worst_status(statuses)
        if status == 'ok' and 'unknown' in statuses:
            status = 'unknown'
        if not reports:
            status = 'unknown'
            reasons.append('no queue found under prefix %s in this database' % p['prefix'])
        result.update(queues=reports, status=status, reasons=reasons)
    except RedisError as exc:
        result.update(status='unknown', reasons=[str(exc)])
    finally:
        client.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
