#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: bull_queue
short_description: Remediate a Bull or BullMQ queue in Redis - recover stalled jobs, clean old jobs, pause, resume
version_added: 0.1.0
description:
  - "O(action=recover_stalled): active jobs whose lock key is gone (no worker holds them) go back to the waiting
    list, as Bull's and BullMQ's own stalled-job check does: the job's stalled counter (C(stalledCounter) for Bull,
    C(stc) for BullMQ) goes up by one, and a job stalled more than O(max_stalled_count) times goes to the failed
    set with C(failedReason) C(job stalled more than allowable limit) instead. Each job moves in one atomic
    script that first checks that it is still active and still unlocked, so a job a worker picked up meanwhile
    is left alone."
  - "O(action=clean): removes the jobs of the failed or completed set (O(job_state)) that finished more than
    O(older_than) ago: the job hash, its log list and its entry in the set. Every job is written first to an export
    file (JSON: the job hashes, logs and scores) in O(export_dir), mode 0600 in a 0700 directory, whose path is
    in RV(export_file); nothing is removed when the export cannot be written."
  - "O(action=pause) and O(action=resume): pause or resume the queue for every worker (global pause) as Bull's and
    BullMQ's C(queue.pause())/C(queue.resume()) do: the wait list is renamed to the paused list (and back), the
    paused flag set (Bull: C(meta-paused); BullMQ: field C(paused) of C(meta)) and the event published."
  - Guardrails inside the module; the queue must exist, and more than O(max_jobs) jobs to move or remove is
    refused, listing how many match.
  - Check mode returns the exact plan in RV(actions) and changes nothing (no key, no export file).
  - Idempotent; a second run finds nothing to do.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.redis
attributes:
  check_mode:
    support: full
    description: Returns the jobs it would move or remove in RV(actions) and RV(jobs); changes nothing.
  diff_mode:
    support: full
    description: The queue's counts and paused flag before and after.
  idempotent:
    support: full
    description: Recovered, removed, paused or resumed, a second run finds nothing to do.
options:
  queue:
    description: The queue's name (as given to C(new Queue(name))), for example V(pdf-processing).
    type: str
    required: true
  prefix:
    description: The key prefix of the queue (Bull's and BullMQ's C(prefix) option).
    type: str
    default: bull
  layout:
    description: The key layout; V(auto) detects it.
    type: str
    default: auto
    choices: [auto, bull, bullmq]
  action:
    description: What to do.
    type: str
    required: true
    choices: [recover_stalled, clean, pause, resume]
  job_state:
    description: With O(action=clean), which jobs to remove.
    type: str
    choices: [failed, completed]
  older_than:
    description:
      - With O(action=clean), only jobs that finished at least this long ago (required). Seconds or a duration such
        as V(7d), V(12h).
    type: raw
  max_jobs:
    description: Refuse, changing nothing, when more than this many jobs would be moved or removed.
    type: int
    default: 100
  max_stalled_count:
    description:
      - With O(action=recover_stalled), a job stalled more than this many times goes to the failed set instead of
        back to waiting (Bull's and BullMQ's C(maxStalledCount), default 1).
    type: int
    default: 1
  max_active_checked:
    description: With O(action=recover_stalled), look among at most this many active jobs.
    type: int
    default: 1000
  export_dir:
    description:
      - With O(action=clean), the directory (on the host that runs the module) of the export files; created with
        mode 0700 when missing.
    type: path
    default: ~/.ansible/incident-response/bull-exports
notes:
  - Writes with Lua scripts (C(EVAL)), one per job or per pause/resume, each atomic on the server.
  - For BullMQ, a recovered job with a priority goes back to the prioritized set, and the queue's C(marker) is set
    so that idle workers notice it.
seealso:
  - module: incident.response.bull_queue_info
'''

EXAMPLES = r'''
- name: Which stalled jobs would go back to waiting? (run with --check)
  incident.response.bull_queue:
    url: redis://127.0.0.1:6379/0
    queue: pdf-processing
    action: recover_stalled
  check_mode: true

- name: Remove failed jobs older than a week, at most 500, keeping an export first
  incident.response.bull_queue:
    queue: pdf-processing
    action: clean
    job_state: failed
    older_than: 7d
    max_jobs: 500
  register: cleaned

- name: Where the removed jobs were kept
  ansible.builtin.debug:
    var: cleaned.export_file

- name: Pause the queue for every worker
  incident.response.bull_queue:
    queue: pdf-processing
    action: pause
'''

RETURN = r'''
changed:
  description: Whether anything was (or, in check mode, would be) changed.
  returned: always
  type: bool
summary:
  description: One line saying what was done or would be done.
  returned: always
  type: str
actions:
  description: One entry per job moved or removed, or per pause/resume; C(action), C(target), C(detail), C(done).
  returned: always
  type: list
  elements: dict
jobs:
  description: Ids of the jobs the action concerns (planned in check mode).
  returned: always
  type: list
  elements: str
export_file:
  description: With O(action=clean), the JSON file the removed jobs were written to first; null when nothing was
    removed or in check mode.
  returned: always
  type: str
layout:
  description: C(bull) or C(bullmq).
  returned: always
  type: str
target:
  description: Where the module connected; never the password.
  returned: always
  type: str
counts:
  description: The queue's counts after the run (C(wait), C(paused), C(active), C(failed), C(completed),
    C(prioritized), C(is_paused)).
  returned: always
  type: dict
diff:
  description: The counts before and after (in check mode, after is the unchanged state).
  returned: with --diff
  type: dict
'''

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import (
    new_module,
    DurationError, format_duration, make_action, parse_duration, plural)
from ansible_collections.incident.response.plugins.module_utils._redis import (
    BullQueue, RedisError, connect, detect_layout, find_stalled, is_paused, redis_common_argument_spec,
    waiting_list)

STALLED_REASON = 'job stalled more than allowable limit'

# KEYS: active, destination list, job hash, lock, failed, marker, prioritized, priority counter
# ARGV: job id, max stalled count, counter field, now (ms), layout, paused (1/0)
RECOVER_SCRIPT = r'''
if redis.call('EXISTS', KEYS[4]) == 1 then return 'locked' end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 'gone' end
local count = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
if count > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[3], 'failedReason', ARGV[7], 'finishedOn', ARGV[4])
  return 'failed'
end
local priority = tonumber(redis.call('HGET', KEYS[3], 'priority') or '0') or 0
if ARGV[5] == 'bullmq' and priority > 0 then
  local pc = redis.call('INCR', KEYS[8]) % 4294967296
  redis.call('ZADD', KEYS[7], priority * 4294967296 + pc, ARGV[1])
else
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
if ARGV[5] == 'bullmq' and ARGV[6] == '0' then redis.call('ZADD', KEYS[6], 0, '0') end
return 'waiting'
'''

# KEYS: set, job hash, logs; ARGV: job id, cutoff (ms)
CLEAN_SCRIPT = r'''
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
'''

# KEYS: source list, destination list, flag key (meta-paused or meta), events, marker, prioritized
# ARGV: 'paused' or 'resumed', layout
PAUSE_SCRIPT = r'''
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 'both' end
  redis.call('RENAME', KEYS[1], KEYS[2])
end
if ARGV[2] == 'bullmq' then
  if ARGV[1] == 'paused' then
    redis.call('HSET', KEYS[3], 'paused', 1)
    redis.call('DEL', KEYS[5])
  else
    redis.call('HDEL', KEYS[3], 'paused')
    if redis.call('LLEN', KEYS[2]) > 0 or redis.call('ZCARD', KEYS[6]) > 0 then redis.call('ZADD', KEYS[5], 0, '0') end
  end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'event', ARGV[1])
else
  if ARGV[1] == 'paused' then redis.call('SET', KEYS[3], 1) else redis.call('DEL', KEYS[3]) end
  redis.call('PUBLISH', KEYS[4], ARGV[1])
end
return 'ok'
'''


def queue_counts(client, queue):
    wait, paused_len, active, failed, completed, prioritized = client.pipeline([
        ('LLEN', queue.key('wait')), ('LLEN', queue.key('paused')), ('LLEN', queue.key('active')),
        ('ZCARD', queue.key('failed')), ('ZCARD', queue.key('completed')), ('ZCARD', queue.key('prioritized'))])
    return dict(wait=wait, paused=paused_len, active=active, failed=failed, completed=completed,
                prioritized=prioritized, is_paused=is_paused(client, queue))


def export_jobs(client, queue, p, state, jobs, db):
    """Write the jobs (hash, logs, score) to a new 0600 file in a 0700 directory; returns its path."""
    replies = client.pipeline([('HGETALL', queue.job_key(j)) for j, _s in jobs] +
                              [('LRANGE', queue.job_key(j) + ':logs', 0, -1) for j, _s in jobs])
    hashes, logs = replies[:len(jobs)], replies[len(jobs):]
    document = dict(prefix=queue.prefix, queue=queue.name, layout=queue.layout, db=db, state=state,
                    exported_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                    jobs=[dict(id=j, score=s, hash=h, logs=lg) for (j, s), h, lg in zip(jobs, hashes, logs)])
    directory = p['export_dir']
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    os.chmod(directory, 0o700)
    name = '%s-%s-%s-%s-%d.json' % (queue.prefix, queue.name, state, time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()),
                                    os.getpid())
    path = os.path.join(directory, name.replace('/', '_'))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as handle:
        json.dump(document, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def scored(reply):
    """[(member, score as int ms)] from a WITHSCORES reply, flat (RESP2) or paired (RESP3)."""
    if reply and isinstance(reply[0], (list, tuple)):
        return [(member, int(float(score))) for member, score in reply]
    return [(reply[i], int(float(reply[i + 1]))) for i in range(0, len(reply or []), 2)]


def plan_recover(client, queue, p):
    stalled, _checked = find_stalled(client, queue, p['max_active_checked'])
    field = 'stc' if queue.layout == 'bullmq' else 'stalledCounter'
    counters = client.pipeline([('HGET', queue.job_key(j), field) for j in stalled])
    plan = []
    for job_id, counter in zip(stalled, counters):
        try:
            counter = int(counter or 0)
        except ValueError:
            counter = 0
        plan.append(dict(id=job_id, stalled_count=counter + 1,
                         to='failed' if counter + 1 > p['max_stalled_count'] else 'waiting'))
    return plan, field


def main():
    argument_spec = redis_common_argument_spec()
    argument_spec.update(
        queue=dict(type='str', required=True),
        prefix=dict(type='str', default='bull'),
        layout=dict(type='str', default='auto', choices=['auto', 'bull', 'bullmq']),
        action=dict(type='str', required=True, choices=['recover_stalled', 'clean', 'pause', 'resume']),
        job_state=dict(type='str', choices=['failed', 'completed']),
        older_than=dict(type='raw'),
        max_jobs=dict(type='int', default=100),
        max_stalled_count=dict(type='int', default=1),
        max_active_checked=dict(type='int', default=1000),
        export_dir=dict(type='path', default='~/.ansible/incident-response/bull-exports'),
    )
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True,
                        required_if=[('action', 'clean', ('job_state', 'older_than'))])
    p = module.params
    try:
        older_than = parse_duration(p['older_than'], 'older_than')
    except DurationError as exc:
        module.fail_json(msg=str(exc))
    for name in ('max_jobs', 'max_active_checked'):
        if p[name] < 1:
            module.fail_json(msg='%s must be at least 1, got %s' % (name, p[name]))
    if p['max_stalled_count'] < 0:
        module.fail_json(msg='max_stalled_count must not be negative, got %s' % p['max_stalled_count'])
    if not p['queue'] or any(c in p['queue'] for c in '*?[]'):
        module.fail_json(msg='queue: %r is not a queue name (no empty name, no glob characters)' % p['queue'])
    if not p['prefix'] or any(c in p['prefix'] for c in '*?[]'):
        module.fail_json(msg='prefix must be a plain key prefix such as bull, got %r' % p['prefix'])

    client = connect(module)
    target = client.target
    result = dict(changed=False, actions=[], jobs=[], export_file=None, target=target)

    def fail(msg, **extra):
        client.close()
        result.update(extra)
        module.fail_json(msg=msg, **result)

    try:
        layout = detect_layout(client, p['prefix'], p['queue'], p['layout'])
        if layout is None:
            fail('queue %s has no keys under prefix %s on Redis at %s: check queue, prefix and db'
                 % (p['queue'], p['prefix'], target))
        queue = BullQueue(p['prefix'], p['queue'], layout)
        result['layout'] = layout
        before = queue_counts(client, queue)
        now_ms = client.server_time_ms()
        what = 'queue %s:%s' % (p['prefix'], p['queue'])

        if p['action'] == 'recover_stalled':
            plan, field = plan_recover(client, queue, p)
            if len(plan) > p['max_jobs']:
                fail('refusing to recover %d stalled jobs of %s: more than max_jobs=%d; raise max_jobs. Job ids: %s'
                     % (len(plan), what, p['max_jobs'], ', '.join(j['id'] for j in plan[:50])))
            destination = waiting_list(queue, before['is_paused'])
            for job in plan:
                entry = make_action('move stalled job to %s' % job['to'], '%s job %s' % (what, job['id']),
                                    dict(stalled_count=job['stalled_count'],
                                         destination=queue.key('failed') if job['to'] == 'failed' else destination))
                if not module.check_mode:
                    answer = client.script(RECOVER_SCRIPT, [
                        queue.key('active'), destination, queue.job_key(job['id']), queue.lock_key(job['id']),
                        queue.key('failed'), queue.key('marker'), queue.key('prioritized'), queue.key('pc')],
                        [job['id'], p['max_stalled_count'], field, now_ms, layout,
                         '1' if before['is_paused'] else '0', STALLED_REASON])
                    entry['done'] = answer in ('waiting', 'failed')
                    if not entry['done']:
                        entry['error'] = 'left alone: the job is %s' % (
                            'locked again by a worker' if answer == 'locked' else 'no longer active')
                result['actions'].append(entry)
                result['jobs'].append(job['id'])
            moved = [a for a in result['actions'] if a['done'] or module.check_mode]
            result['changed'] = bool(moved)
            verb = 'would move' if module.check_mode else 'moved'
            to_failed = len([j for j in plan if j['to'] == 'failed'])
            result['summary'] = ('%s %s of %s back to waiting' % (verb, plural(len(plan) - to_failed, 'stalled job'), what)
                                 + (', %d to failed (stalled more than %d times)' % (to_failed, p['max_stalled_count'])
                                    if to_failed else '')) if plan else 'no stalled job in %s; nothing to do' % what

        elif p['action'] == 'clean':
            state_key = queue.key(p['job_state'])
            cutoff = now_ms - int(older_than * 1000)
            matching = client.call('ZCOUNT', state_key, '-inf', cutoff)
            if matching > p['max_jobs']:
                fail('refusing to remove %d %s jobs of %s older than %s: more than max_jobs=%d; raise max_jobs'
                     % (matching, p['job_state'], what, format_duration(older_than), p['max_jobs']))
            jobs = scored(client.call('ZRANGEBYSCORE', state_key, '-inf', cutoff, 'WITHSCORES')) if matching else []
            if jobs and not module.check_mode:
                try:
                    result['export_file'] = export_jobs(client, queue, p, p['job_state'], jobs,
                                                        client.settings['db'])
                except (OSError, IOError) as exc:
                    fail('could not write the export of %d %s jobs of %s to %s, so nothing was removed: %s'
                         % (len(jobs), p['job_state'], what, p['export_dir'], to_native(exc)))
            for job_id, score in jobs:
                entry = make_action('remove %s job' % p['job_state'], '%s job %s' % (what, job_id),
                                    dict(finished_on=score, age=format_duration((now_ms - score) / 1000.0),
                                         export_file=result['export_file']))
                if not module.check_mode:
                    entry['done'] = client.script(CLEAN_SCRIPT, [state_key, queue.job_key(job_id),
                                                                 queue.job_key(job_id) + ':logs'],
                                                  [job_id, cutoff]) == 1
                    if not entry['done']:
                        entry['error'] = 'left alone: the job is no longer in the %s set' % p['job_state']
                result['actions'].append(entry)
                result['jobs'].append(job_id)
            result['changed'] = bool([a for a in result['actions'] if a['done'] or module.check_mode])
            verb = 'would remove' if module.check_mode else 'removed'
            result['summary'] = ('%s %s of %s older than %s%s'
                                 % (verb, plural(len(jobs), p['job_state'] + ' job'), what, format_duration(older_than),
                                    '; kept first in %s' % result['export_file'] if result['export_file'] else '')
                                 ) if jobs else \
                'no %s job of %s older than %s; nothing to remove' % (p['job_state'], what, format_duration(older_than))

        else:
            pause = p['action'] == 'pause'
            if before['is_paused'] == pause:
                result['summary'] = '%s is already %s; nothing to do' % (what, 'paused' if pause else 'running (not paused)')
            else:
                src, dst = (queue.key('wait'), queue.key('paused')) if pause else (queue.key('paused'), queue.key('wait'))
                if layout == 'bullmq':
                    flag, events = queue.key('meta'), queue.key('events')
                else:
                    flag, events = queue.key('meta-paused'), queue.key('paused' if pause else 'resumed')
                entry = make_action(p['action'], what, dict(moves_jobs=before['wait'] if pause else before['paused'],
                                                            source=src, destination=dst))
                if not module.check_mode:
                    answer = client.script(PAUSE_SCRIPT, [src, dst, flag, events, queue.key('marker'),
                                                          queue.key('prioritized')],
                                           ['paused' if pause else 'resumed', layout])
                    if answer == 'both':
                        fail('refusing to %s %s: both %s and %s hold jobs; merge them by hand first'
                             % (p['action'], what, src, dst))
                    entry['done'] = True
                result['actions'].append(entry)
                result['changed'] = True
                verb = 'would %s' % p['action'] if module.check_mode else ('paused' if pause else 'resumed')
                result['summary'] = '%s %s (%s)' % (verb, what, plural(entry['detail']['moves_jobs'], 'waiting job'))

        after = before if module.check_mode else queue_counts(client, queue)
        result['counts'] = after
        if module._diff:
            result['diff'] = dict(before=before, after=after)
    except RedisError as exc:
        fail(to_native(exc))
    client.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
