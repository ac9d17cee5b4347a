#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: redis_info
short_description: Diagnose a Redis server - PING latency, memory, evictions, clients, keyspace, persistence, role
version_added: 0.1.0
description:
  - Reads a Redis server's health with C(PING) and C(INFO) and returns the facts an on-call engineer looks at
    first, with RV(status) and RV(reasons) from thresholds.
  - Counts keys by pattern with C(SCAN) (never C(KEYS), which blocks a busy Redis), bounded by
    O(max_keys_scanned) and O(scan_timeout); a count cut short says so in RV(key_counts).
  - Read only; it sends only read commands and never runs a script.
  - An unreachable Redis, or one that refuses the credentials, is RV(status=unknown) with the reason, not a failure.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.redis
  - incident.response.attributes.info_module
options:
  patterns:
    description:
      - Key patterns (Redis glob syntax, as for C(SCAN MATCH)) to count in O(db), for example V(sess:*).
    type: list
    elements: str
    default: []
  max_keys_scanned:
    description: Stop counting a pattern after about this many keys were examined (the sum of C(SCAN)'s C(COUNT)).
    type: int
    default: 100000
  scan_timeout:
    description: Stop counting a pattern after this many seconds. Seconds or a duration such as V(10s).
    type: raw
    default: 10
  latency_warning_ms:
    description: PING round trips of at least this many milliseconds are a warning.
    type: float
    default: 100
  latency_critical_ms:
    description: PING round trips of at least this many milliseconds are critical.
    type: float
    default: 1000
  memory_warning_percent:
    description: Memory used of at least this percentage of C(maxmemory) is a warning (only when C(maxmemory) is set).
    type: float
    default: 80
  memory_critical_percent:
    description: Memory used of at least this percentage of C(maxmemory) is critical.
    type: float
    default: 90
  fragmentation_warning_ratio:
    description: A C(mem_fragmentation_ratio) of at least this is a warning (only above 100 MiB used).
    type: float
    default: 1.5
  clients_warning_percent:
    description: Connected clients of at least this percentage of C(maxclients) are a warning.
    type: float
    default: 80
  clients_critical_percent:
    description: Connected clients of at least this percentage of C(maxclients) are critical.
    type: float
    default: 95
  evicted_keys_warning:
    description: At least this many evicted keys since the server started are a warning; V(null) disables it.
    type: int
'''

EXAMPLES = r'''
- name: How is Redis, and how many sessions does it hold?
  incident.response.redis_info:
    url: redis://127.0.0.1:6379/0
    patterns: ['sess:*']
  register: redis_health

- name: Stop when Redis is not healthy
  ansible.builtin.assert:
    that: redis_health.status in ['ok', 'warning']
    fail_msg: "Redis: {{ redis_health.reasons | join('; ') }}"
'''

RETURN = r'''
status:
  description: C(ok), C(warning), C(critical), or C(unknown) when Redis could not be reached.
  returned: always
  type: str
reasons:
  description: One short sentence per threshold crossed (or why the status is unknown).
  returned: always
  type: list
  elements: str
reachable:
  description: Whether PING was answered.
  returned: always
  type: bool
target:
  description: Where the module connected (host and port or socket, db, user); never the password.
  returned: always
  type: str
ping_ms:
  description: Round trip of PING in milliseconds.
  returned: when reachable
  type: float
server:
  description: C(redis_version), C(uptime_seconds), C(mode).
  returned: when reachable
  type: dict
memory:
  description: C(used_memory), C(used_memory_human), C(used_memory_peak), C(maxmemory), C(maxmemory_policy),
    C(used_percent) (null without maxmemory), C(fragmentation_ratio).
  returned: when reachable
  type: dict
stats:
  description: C(evicted_keys), C(expired_keys), C(rejected_connections), C(keyspace_hits), C(keyspace_misses).
  returned: when reachable
  type: dict
clients:
  description: C(connected_clients), C(blocked_clients), C(maxclients), C(used_percent).
  returned: when reachable
  type: dict
keyspace:
  description: Per database (C(db0), ...) its C(keys), C(expires) and C(avg_ttl).
  returned: when reachable
  type: dict
persistence:
  description: C(rdb_last_save_time) (epoch), C(rdb_last_save_age_seconds), C(rdb_changes_since_last_save),
    C(rdb_last_bgsave_status), C(aof_enabled), C(aof_last_write_status), C(loading).
  returned: when reachable
  type: dict
replication:
  description: C(role), C(connected_slaves), and on a replica C(master_host), C(master_port), C(master_link_status).
  returned: when reachable
  type: dict
key_counts:
  description: Per pattern C(count), C(complete) (false when cut short; the count is then a lower bound) and
    C(examined).
  returned: when reachable
  type: dict
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    new_module,
    DurationError, StatusBuilder, parse_duration)
from ansible_collections.incident.response.plugins.module_utils._redis import (
    RedisError, connect, redis_common_argument_spec)


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def summarize(info, now):
    used = _int(info.get('used_memory'))
    maxmemory = _int(info.get('maxmemory'))
    clients = _int(info.get('connected_clients'))
    maxclients = _int(info.get('maxclients'))
    last_save = _int(info.get('rdb_last_save_time'), None)
    facts = dict(
        server=dict(redis_version=str(info.get('redis_version', '')), uptime_seconds=_int(info.get('uptime_in_seconds')),
                    mode=info.get('redis_mode')),
        memory=dict(used_memory=used, used_memory_human=info.get('used_memory_human'),
                    used_memory_peak=_int(info.get('used_memory_peak')), maxmemory=maxmemory,
                    maxmemory_policy=info.get('maxmemory_policy'),
                    used_percent=round(100.0 * used / maxmemory, 1) if maxmemory else None,
                    fragmentation_ratio=_float(info.get('mem_fragmentation_ratio'))),
        stats=dict((k, _int(info.get(k))) for k in ('evicted_keys', 'expired_keys', 'rejected_connections',
                                                    'keyspace_hits', 'keyspace_misses')),
        clients=dict(connected_clients=clients, blocked_clients=_int(info.get('blocked_clients')), maxclients=maxclients,
                     used_percent=round(100.0 * clients / maxclients, 1) if maxclients else None),
        keyspace=dict((k, dict(keys=_int(v.get('keys')), expires=_int(v.get('expires')), avg_ttl=_int(v.get('avg_ttl'))))
                      for k, v in info.items() if k.startswith('db') and isinstance(v, dict)),
        persistence=dict(rdb_last_save_time=last_save,
                         rdb_last_save_age_seconds=max(int(now - last_save), 0) if last_save else None,
                         rdb_changes_since_last_save=_int(info.get('rdb_changes_since_last_save')),
                         rdb_last_bgsave_status=info.get('rdb_last_bgsave_status'),
                         aof_enabled=bool(_int(info.get('aof_enabled'))),
                         aof_last_write_status=info.get('aof_last_write_status'),
                         loading=bool(_int(info.get('loading')))),
        replication=dict(role=info.get('role'), connected_slaves=_int(info.get('connected_slaves'))),
    )
    if info.get('role') == 'slave':
        facts['replication'].update(master_host=info.get('master_host'), master_port=_int(info.get('master_port')),
                                    master_link_status=info.get('master_link_status'))
    return facts


def assess(facts, ping_ms, p):
    builder = StatusBuilder()
    builder.check(ping_ms, p['latency_warning_ms'], p['latency_critical_ms'],
                  'PING took %(value)s ms (%(level)s at %(threshold)s ms)')
    mem = facts['memory']
    if mem['used_percent'] is not None:
        builder.check(mem['used_percent'], p['memory_warning_percent'], p['memory_critical_percent'],
                      'memory used is %%(value)s%%%% of maxmemory %s (%%(level)s at %%(threshold)s%%%%)'
                      % mem['maxmemory'])
    if mem['fragmentation_ratio'] and mem['used_memory'] > 100 * 1024 * 1024 and \
            mem['fragmentation_ratio'] >= p['fragmentation_warning_ratio']:
        builder.add('warning', 'memory fragmentation ratio is %s (warning at %s)'
                    % (mem['fragmentation_ratio'], p['fragmentation_warning_ratio']))
    if p['evicted_keys_warning'] is not None and facts['stats']['evicted_keys'] >= p['evicted_keys_warning']:
        builder.add('warning', '%d keys were evicted since the server started (warning at %d; policy %s)'
                    % (facts['stats']['evicted_keys'], p['evicted_keys_warning'], mem['maxmemory_policy']))
    clients = facts['clients']
    if clients['used_percent'] is not None:
        builder.check(clients['used_percent'], p['clients_warning_percent'], p['clients_critical_percent'],
                      '%d connected clients are %%(value)s%%%% of maxclients %d (%%(level)s at %%(threshold)s%%%%)'
                      % (clients['connected_clients'], clients['maxclients']))
    pers = facts['persistence']
    if pers['rdb_last_bgsave_status'] not in (None, 'ok'):
        builder.add('warning', 'the last RDB save failed (rdb_last_bgsave_status %s)' % pers['rdb_last_bgsave_status'])
    if pers['aof_enabled'] and pers['aof_last_write_status'] not in (None, 'ok'):
        builder.add('critical', 'the last AOF write failed (aof_last_write_status %s)' % pers['aof_last_write_status'])
    if pers['loading']:
        builder.add('warning', 'Redis is loading its data set')
    repl = facts['replication']
    if repl['role'] == 'slave' and repl.get('master_link_status') != 'up':
        builder.add('critical', 'replica of %s:%s with master link %s'
                    % (repl.get('master_host'), repl.get('master_port'), repl.get('master_link_status')))
    return builder


def main():
    argument_spec = redis_common_argument_spec()
    argument_spec.update(
        patterns=dict(type='list', elements='str', default=[]),
        max_keys_scanned=dict(type='int', default=100000, no_log=False),
        scan_timeout=dict(type='raw', default=10),
        latency_warning_ms=dict(type='float', default=100),
        latency_critical_ms=dict(type='float', default=1000),
        memory_warning_percent=dict(type='float', default=80),
        memory_critical_percent=dict(type='float', default=90),
        fragmentation_warning_ratio=dict(type='float', default=1.5),
        clients_warning_percent=dict(type='float', default=80),
        clients_critical_percent=dict(type='float', default=95),
        evicted_keys_warning=dict(type='int', no_log=False),
    )
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if p['max_keys_scanned'] < 1:
        module.fail_json(msg='max_keys_scanned must be at least 1, got %s' % p['max_keys_scanned'])
    try:
        scan_timeout = parse_duration(p['scan_timeout'], 'scan_timeout')
    except DurationError as exc:
        module.fail_json(msg=str(exc))
    if not scan_timeout:
        module.fail_json(msg='scan_timeout must be more than 0 seconds')
    for pattern in p['patterns']:
        if not pattern:
            module.fail_json(msg='patterns: an empty pattern matches nothing; use * to count every key')

    client = connect(module, read_only=True)
    result = dict(changed=False, target=client.target, reachable=False)
    try:
        result['ping_ms'] = client.ping_ms()
        result['reachable'] = True
        info = client.call('INFO', 'everything')
        facts = summarize(info, time.time())
        result.update(facts)
        builder = assess(facts, result['ping_ms'], p)
        key_counts = {}
        for pattern in p['patterns']:
            count, complete, examined, _sample = client.scan_count(pattern, p['max_keys_scanned'],
                                                                   time.monotonic() + scan_timeout)
            key_counts[pattern] = dict(count=count, complete=complete, examined=examined)
        result['key_counts'] = key_counts
        result['status'] = builder.status
        result['reasons'] = builder.reasons
    except RedisError as exc:
        result.update(status='unknown', reasons=[str(exc)])
    finally:
        client.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
