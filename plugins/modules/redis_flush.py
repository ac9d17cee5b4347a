#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: redis_flush
short_description: Delete Redis keys by pattern (the runbook's FLUSHDB, scoped and gated), keeping a restorable copy first
version_added: 0.1.0
description:
  - The schedule generator runbook's "Redis out of memory" fix (C(redis-cli FLUSHDB)), made safe for 3 a.m. - it
    deletes only the keys of the database that match O(patterns) (found with C(SCAN MATCH), never C(KEYS)), and
    only with O(approve=true).
  - Queue and session keys are protected - a key under one of O(protected_prefixes) (C(bull:) and C(sess:) by
    default) is kept unless the pattern that matched it names that prefix itself (V(sess:*) deletes sessions,
    V(*) does not).
  - Before deleting anything, every key it will delete is written to an export file (JSON - the key, its type, its
    TTL in ms from C(PTTL) and its serialized value from C(DUMP), base64) in O(export_dir), mode 0600 in a 0700
    directory; its path is in RV(export_file). C(RESTORE key ttl value) puts a key back (see the notes). Nothing is
    deleted when the export cannot be written.
  - Each batch is deleted by one atomic script that deletes a key only when its value is still the one exported
    (C(DUMP) compared), so a key rewritten meanwhile is left alone and listed in RV(changed_meanwhile).
  - Guardrails inside the module - more than O(max_keys) matching keys is refused, changing nothing; a pattern
    made only of C(*) (every key) is refused unless O(allow_all_keys=true); a scan that does not finish within
    O(scan_timeout) or O(max_keys_scanned) is refused.
  - Reports the server's memory (C(INFO memory)) before and after.
  - Check mode counts and lists what would be deleted and changes nothing (no key, no export file).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.redis
attributes:
  check_mode:
    support: full
    description: Counts and lists the keys it would delete in RV(matched) and RV(keys); deletes nothing, writes no file.
  diff_mode:
    support: full
    description: The number of matching keys per pattern before and after.
  idempotent:
    support: full
    description: Once the keys are deleted, a second run finds none and reports no change.
options:
  patterns:
    description:
      - C(SCAN MATCH) patterns of the keys to delete, for example V(cache:*). Required; an empty pattern is refused.
    type: list
    elements: str
    required: true
  protected_prefixes:
    description:
      - Key prefixes kept unless a pattern starting with the prefix matched the key (queue and session keys).
    type: list
    elements: str
    default: ['bull:', 'sess:']
  allow_all_keys:
    description: Accept a pattern made only of C(*) (every key of the database, protected prefixes still kept).
    type: bool
    default: false
  approve:
    description:
      - Delete for real. Without it a run that would delete keys fails, naming how many, and changes nothing;
        check mode does not need it.
    type: bool
    default: false
  max_keys:
    description: Refuse, changing nothing, when more than this many keys would be deleted.
    type: int
    default: 10000
  max_keys_scanned:
    description: Refuse when the scan of a pattern has not finished after about this many keys examined.
    type: int
    default: 1000000
  scan_timeout:
    description: Refuse when the scans have not finished within this long (seconds, or a duration such as V(30s)).
    type: raw
    default: 30
  batch_size:
    description: Keys exported and deleted per round trip.
    type: int
    default: 100
  max_listed:
    description: At most this many key names in RV(keys).
    type: int
    default: 100
  export_dir:
    description:
      - The directory (on the host that runs the module) of the export files; created with mode 0700 when missing.
    type: path
    default: ~/.ansible/incident-response/redis-exports
notes:
  - "To restore an export - for each entry of C(keys) - C(RESTORE <key> <pttl or 0> <dump> REPLACE), with C(key_b64)
    and C(dump_b64) base64-decoded (redis-py - C(r.restore(key, max(pttl, 0), dump, replace=True)))."
  - Deletes with C(UNLINK) inside a Lua script (C(EVAL)); memory is freed in the background for large values, so
    the C(after) of RV(memory) can lag slightly behind.
  - The export is on the host that runs the module; it holds the values of the deleted keys, so keep it as private
    as the Redis data.
seealso:
  - module: incident.response.redis_info
'''

EXAMPLES = r'''
- name: How many cache keys would go? (run with --check)
  incident.response.redis_flush:
    url: redis://127.0.0.1:6379/0
    patterns: ['cache:*']
  check_mode: true

- name: Redis out of memory - delete the cache keys, kept first in an export
  incident.response.redis_flush:
    patterns: ['cache:*', 'render:*']
    max_keys: 50000
    approve: true
  register: flushed

- name: Where the deleted keys were kept, and the memory freed
  ansible.builtin.debug:
    msg: "{{ flushed.export_file }}: {{ flushed.memory.before.used_memory_human }} -> {{ flushed.memory.after.used_memory_human }}"
'''

RETURN = r'''
changed:
  description: Whether keys were (or, in check mode, would be) deleted.
  returned: always
  type: bool
summary:
  description: One line saying what was done or would be done.
  returned: always
  type: str
actions:
  description: One entry per pattern with keys to delete; C(action), C(target), C(detail) (C(keys)), C(done).
  returned: always
  type: list
  elements: dict
matched:
  description: How many keys match the patterns and are not protected (would be, or were, deleted).
  returned: always
  type: int
deleted:
  description: How many keys were deleted (0 in check mode).
  returned: always
  type: int
keys:
  description: The first O(max_listed) of those keys (names decoded as UTF-8, invalid bytes replaced).
  returned: always
  type: list
  elements: str
by_pattern:
  description: Per pattern, C(matched) (to delete) and C(protected) (kept because under a protected prefix).
  returned: always
  type: dict
protected:
  description: How many matching keys were kept because they are under a protected prefix.
  returned: always
  type: int
changed_meanwhile:
  description: Keys left alone because their value changed (or they vanished) between the export and the delete.
  returned: always
  type: list
  elements: str
export_file:
  description: The JSON file the keys were written to first; null in check mode or when nothing was deleted.
  returned: always
  type: str
memory:
  description: C(before) and C(after), each with C(used_memory), C(used_memory_human), C(maxmemory) (after is before in check mode).
  returned: always
  type: dict
freed_bytes:
  description: C(used_memory) before minus after (0 in check mode).
  returned: always
  type: int
target:
  description: Where the module connected; never the password.
  returned: always
  type: str
diff:
  description: The counts per pattern before and after.
  returned: with --diff
  type: dict
'''

import base64
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native, to_text

from ansible_collections.incident.response.plugins.module_utils._common import (
    duration_param, make_action, new_module, plural, remediation_result)
from ansible_collections.incident.response.plugins.module_utils._redis import (
    RedisError, connect, redis_common_argument_spec)

# KEYS: the keys of a batch; ARGV: their exported DUMP payloads, in order.
# A key is deleted only while its value is still the exported one.
DELETE_SCRIPT = r'''
local deleted = 0
local left = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('DUMP', key)
  if value == ARGV[i] then
    redis.call('UNLINK', key)
    deleted = deleted + 1
  else
    table.insert(left, key)
  end
end
return {deleted, left}
'''

MEMORY_FIELDS = ('used_memory', 'used_memory_human', 'maxmemory')


def memory(client):
    info = client.call('INFO', 'memory')
    return dict((name, to_text(info.get(name)) if name.endswith('human') else info.get(name)) for name in MEMORY_FIELDS)


def name_of(key):
    return to_text(key, errors='replace')


def protected_by(key, pattern, prefixes):
    """The protected prefix the key is under, unless the pattern names that prefix itself (then None)."""
    for prefix in prefixes:
        raw = prefix.encode('utf-8')
        if key.startswith(raw) and not pattern.startswith(prefix):
            return prefix
    return None


def scan(client, pattern, max_scanned, deadline, batch=1000):
    """Every key matching ``pattern`` (SCAN MATCH, bounded); returns (keys, complete, examined)."""
    cursor, keys, examined = 0, [], 0
    while True:
        cursor, found = client.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', batch)
        examined += batch
        keys.extend(found)
        if int(cursor) == 0:
            return keys, True, examined
        if examined >= max_scanned or time.monotonic() >= deadline:
            return keys, False, examined


def export(client, keys, p, target, db):
    """DUMP, PTTL and TYPE of every key into a new 0600 JSON file in a 0700 directory; returns (path, dumps)."""
    entries, dumps = [], {}
    for start in range(0, len(keys), p['batch_size']):
        chunk = keys[start:start + p['batch_size']]
        commands = []
        for key in chunk:
            commands.extend([('DUMP', key), ('PTTL', key), ('TYPE', key)])
        replies = client.pipeline(commands)
        for index, key in enumerate(chunk):
            value, pttl, kind = replies[3 * index:3 * index + 3]
            if value is None:
                continue  # gone meanwhile: nothing to keep, nothing to delete
            dumps[key] = value
            entries.append(dict(key=name_of(key), key_b64=to_text(base64.b64encode(key)), type=name_of(kind),
                                pttl=int(pttl), dump_b64=to_text(base64.b64encode(value))))
    document = dict(target=target, db=db, patterns=p['patterns'], format='redis DUMP payloads, base64',
                    restore='RESTORE <key> <max(pttl, 0)> <dump> REPLACE, key and dump base64-decoded',
                    exported_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), keys=entries)
    directory = p['export_dir']
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    os.chmod(directory, 0o700)
    name = 'redis-db%s-%s-%d.json' % (db, time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()), os.getpid())
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as handle:
        json.dump(document, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    return path, dumps


def validate(module, p):
    for name in ('max_keys', 'max_keys_scanned', 'batch_size'):
        if p[name] < 1:
            module.fail_json(msg='%s must be at least 1, got %s' % (name, p[name]))
    if p['max_listed'] < 0:
        module.fail_json(msg='max_listed must not be negative, got %s' % p['max_listed'])
    if not p['patterns']:
        module.fail_json(msg='patterns must name at least one key pattern, such as cache:*')
    for pattern in p['patterns']:
        if not pattern or not pattern.strip():
            module.fail_json(msg='patterns: an empty pattern is not a key pattern')
        if set(pattern) <= set('*') and not p['allow_all_keys']:
            module.fail_json(msg='patterns: %r matches every key of the database; name the keys to delete (such as '
                                 'cache:*), or set allow_all_keys=true to empty the database (protected prefixes '
                                 'are still kept)' % pattern)
    for prefix in p['protected_prefixes']:
        if not prefix:
            module.fail_json(msg='protected_prefixes: an empty prefix would protect nothing; remove it')


def main():
    argument_spec = redis_common_argument_spec()
    argument_spec.update(
        patterns=dict(type='list', elements='str', required=True),
        protected_prefixes=dict(type='list', elements='str', default=['bull:', 'sess:']),
        allow_all_keys=dict(type='bool', default=False),
        approve=dict(type='bool', default=False),
        max_keys=dict(type='int', default=10000, no_log=False),
        max_keys_scanned=dict(type='int', default=1000000, no_log=False),
        scan_timeout=dict(type='raw', default=30),
        batch_size=dict(type='int', default=100),
        max_listed=dict(type='int', default=100),
        export_dir=dict(type='path', default='~/.ansible/incident-response/redis-exports'),
    )
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    scan_timeout = duration_param(module, 'scan_timeout', minimum=1, maximum=3600, allow_empty=False)
    validate(module, p)

    client = connect(module, decode_responses=False)
    target = client.target
    db = client.settings['db']
    result = dict(matched=0, deleted=0, keys=[], by_pattern={}, protected=0, changed_meanwhile=[], export_file=None,
                  memory={}, freed_bytes=0, target=target)

    def fail(msg):
        client.close()
        module.fail_json(msg=msg, **dict(result, changed=False, actions=[]))

    try:
        before_memory = memory(client)
        result['memory'] = dict(before=before_memory, after=before_memory)
        deadline = time.monotonic() + scan_timeout
        chosen, order = {}, []
        for pattern in p['patterns']:
            found, complete, examined = scan(client, pattern, p['max_keys_scanned'], deadline)
            if not complete:
                fail('refusing to delete: the scan of %r on Redis at %s did not finish within scan_timeout=%ss or '
                     'max_keys_scanned=%d (%d keys examined, %d matching so far); nothing was deleted'
                     % (pattern, target, scan_timeout, p['max_keys_scanned'], examined, len(found)))
            entry = dict(matched=0, protected=0)
            for key in found:
                if protected_by(key, pattern, p['protected_prefixes']):
                    entry['protected'] += 1
                    continue
                if key not in chosen:
                    chosen[key] = pattern
                    order.append(key)
                    entry['matched'] += 1
            result['by_pattern'][pattern] = entry
        result['protected'] = sum(e['protected'] for e in result['by_pattern'].values())
        result['matched'] = len(order)
        result['keys'] = [name_of(k) for k in order[:p['max_listed']]]
        what = '%s on Redis at %s' % (plural(len(order), 'key'), target)
        if len(order) > p['max_keys']:
            fail('refusing to delete %s matching %s: more than max_keys=%d; raise max_keys or narrow the patterns'
                 % (what, ', '.join(p['patterns']), p['max_keys']))
        kept = (', %d protected kept' % result['protected']) if result['protected'] else ''
        diff_before = dict((pat, e['matched']) for pat, e in result['by_pattern'].items())
        if not order:
            result['summary'] = 'no key matches %s on Redis at %s%s; nothing to delete' % (
                ', '.join(p['patterns']), target, kept)
            client.close()
            module.exit_json(**remediation_result(False, [], result.pop('summary'), diff=dict(
                before=diff_before, after=diff_before), check_mode=module.check_mode, want_diff=module._diff, **result))
        if not module.check_mode and not p['approve']:
            fail('refusing to delete %s (patterns %s) without approve=true; run with --check to list them'
                 % (what, ', '.join(p['patterns'])))

        actions = []
        for pattern, entry in result['by_pattern'].items():
            if entry['matched']:
                actions.append(make_action('delete keys', 'db %s pattern %s' % (db, pattern),
                                           dict(keys=entry['matched'])))
        if module.check_mode:
            summary = 'would delete %s (%s)%s; a copy would be exported first' % (
                what, ', '.join('%s: %d' % (pat, e['matched']) for pat, e in result['by_pattern'].items()), kept)
            client.close()
            module.exit_json(**remediation_result(True, actions, summary, diff=dict(before=diff_before, after=diff_before),
                                                  check_mode=True, want_diff=module._diff, **result))

        try:
            path, dumps = export(client, order, p, target, db)
        except (OSError, IOError) as exc:
            fail('could not write the export of %s to %s, so nothing was deleted: %s'
                 % (what, p['export_dir'], to_native(exc)))
        result['export_file'] = path
        deleted_by = dict((pat, 0) for pat in result['by_pattern'])
        exported = [k for k in order if k in dumps]
        left = [k for k in order if k not in dumps]
        for start in range(0, len(exported), p['batch_size']):
            chunk = exported[start:start + p['batch_size']]
            count, untouched = client.script(DELETE_SCRIPT, chunk, [dumps[k] for k in chunk])
            untouched = set(untouched or [])
            left.extend(untouched)
            for key in chunk:
                if key not in untouched:
                    deleted_by[chosen[key]] += 1
            result['deleted'] += int(count)
        result['changed_meanwhile'] = [name_of(k) for k in left[:p['max_listed']]]
        for entry in actions:
            pattern = entry['target'].split(' pattern ', 1)[1]
            entry['detail']['deleted'] = deleted_by[pattern]
            entry['done'] = deleted_by[pattern] > 0
        after_memory = memory(client)
        result['memory'] = dict(before=before_memory, after=after_memory)
        result['freed_bytes'] = int(before_memory['used_memory'] or 0) - int(after_memory['used_memory'] or 0)
        summary = 'deleted %s of %d matching on Redis at %s, kept first in %s; memory %s -> %s%s%s' % (
            plural(result['deleted'], 'key'), len(order), target, path, before_memory['used_memory_human'],
            after_memory['used_memory_human'], kept,
            ('; %d left alone (changed or gone meanwhile)' % len(left)) if left else '')
        diff_after = dict((pat, e['matched'] - deleted_by[pat]) for pat, e in result['by_pattern'].items())
        client.close()
        module.exit_json(**remediation_result(result['deleted'] > 0, [a for a in actions if a['done']], summary,
                                              diff=dict(before=diff_before, after=diff_after), check_mode=False,
                                              want_diff=module._diff, **result))
    except RedisError as exc:
        fail(to_native(exc))


if __name__ == '__main__':
    main()
