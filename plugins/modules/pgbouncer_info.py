#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pgbouncer_info
short_description: Assess PgBouncer's pools - clients waiting, the longest wait, servers in use
version_added: 0.1.0
description:
  - Reads PgBouncer's admin console once (C(SHOW POOLS), C(SHOW DATABASES), C(SHOW STATS), C(SHOW CLIENTS),
    C(SHOW SERVERS)) and summarises each pool (database and user) - clients active and waiting, the longest
    wait, servers active, idle and used, pool size and mode, utilisation - and each database (paused, disabled).
  - Returns a RV(status) of C(ok), C(warning) or C(critical) with the reasons, from thresholds on the longest
    client wait and on pool utilisation; a paused or disabled database is a C(warning).
  - This is where an exhausted application pool shows first (clients waiting in PgBouncer) while PostgreSQL's
    own C(max_connections) may be far from full; see M(incident.response.pg_activity_info) for the server side.
  - Read only. A PgBouncer that cannot be reached is a failure with a message naming it (or, with
    O(unreachable=unknown), a RV(status) of C(unknown) with the reason).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.pgbouncer
attributes:
  check_mode:
    support: full
    description: Read only; runs the same SHOW commands in check mode.
  diff_mode:
    support: none
    description: Read only; nothing to diff.
  idempotent:
    support: full
    description: Changes nothing.
options:
  databases:
    description:
      - Only report these PgBouncer databases (names of its C([databases]) section). A name PgBouncer does not
        know fails the module with the names it knows.
    type: list
    elements: str
  max_wait_warning:
    description:
      - A pool whose oldest waiting client has waited at least this long makes the status C(warning).
        A duration (V(1s), V(500ms)) or seconds.
    type: raw
    default: 1s
  max_wait_critical:
    description: The same, for C(critical).
    type: raw
    default: 5s
  utilisation_warning_pct:
    description: Active servers of a pool, in percent of its pool size, at which the status becomes C(warning).
    type: float
    default: 80
  utilisation_critical_pct:
    description:
      - The same, for C(critical); reached only when clients also wait (a pool that is full with no one
        waiting is a C(warning)).
    type: float
    default: 100
  unreachable:
    description:
      - What a PgBouncer that cannot be reached (refused, timed out, authentication failed) is.
      - V(fail) fails the task with a message naming the console.
      - V(unknown) reports RV(status=unknown), RV(reasons) and RV(msg), and succeeds; the other return values are
        absent.
    type: str
    default: fail
    choices: [fail, unknown]
seealso:
  - module: incident.response.pgbouncer_pool
  - module: incident.response.pg_activity_info
'''

EXAMPLES = r'''
- name: Assess the application's pool
  incident.response.pgbouncer_info:
    host: pgbouncer.example.com
    port: 6432
    user: pgbouncer_admin
    password: "{{ vault_pgbouncer_admin_password }}"
    databases: [schedgen]
  register: pool

- name: Say which side is exhausted
  ansible.builtin.debug:
    msg: "{{ pool.totals.cl_waiting }} clients waiting in PgBouncer, the longest {{ pool.totals.maxwait_seconds }}s"

- name: From PGBOUNCER_HOST/PORT/USER/PASSWORD, unknown rather than failed when PgBouncer is down
  incident.response.pgbouncer_info:
    unreachable: unknown
'''

RETURN = r'''
status:
  description:
    - C(ok), C(warning) or C(critical), the worst of the thresholds crossed.
    - C(unknown) when PgBouncer could not be reached and O(unreachable=unknown).
  returned: always
  type: str
  sample: critical
reasons:
  description: One sentence per threshold crossed (or why PgBouncer could not be reached).
  returned: always
  type: list
  elements: str
  sample: ["pool scheduler/app: 3 clients waiting, the longest for 12.4s (critical at 5s)"]
msg:
  description: Why PgBouncer could not be reached.
  returned: when RV(status) is C(unknown)
  type: str
changed:
  description: Always false (reads only).
  returned: always
  type: bool
version:
  description: PgBouncer's version (C(SHOW VERSION)).
  returned: when PgBouncer answered
  type: str
  sample: PgBouncer 1.18.0
pools:
  description: One entry per pool (database and user), C(SHOW POOLS) with the database's pool size.
  returned: when PgBouncer answered
  type: list
  elements: dict
  sample: [{"database": "scheduler", "user": "app", "cl_active": 3, "cl_waiting": 3, "maxwait_seconds": 12.4,
            "sv_active": 3, "sv_idle": 0, "sv_used": 0, "pool_size": 3, "pool_mode": "transaction",
            "utilisation_pct": 100.0, "paused": false, "disabled": false, "exhausted": true}]
databases:
  description: C(SHOW DATABASES) per database (the admin console's own left out).
  returned: when PgBouncer answered
  type: dict
  sample: {"scheduler": {"name": "scheduler", "host": "127.0.0.1", "port": 5432, "database": "scheduler",
                         "pool_size": 3, "pool_mode": null, "paused": false, "disabled": false,
                         "current_connections": 3, "max_connections": 0, "reserve_pool": 0}}
stats:
  description: C(SHOW STATS) per database (totals and averages, times in microseconds).
  returned: when PgBouncer answered
  type: dict
clients:
  description: C(SHOW CLIENTS) summarised per database - total, by state, by user, by application name.
  returned: when PgBouncer answered
  type: dict
  sample: {"scheduler": {"total": 7, "by_state": {"active": 4, "waiting": 3}, "by_user": {"app": 6, "monitoring": 1},
                         "by_application": {"gameday_pool_exhaust": 6, "postgres_exporter": 1}, "close_needed": 0}}
servers:
  description: C(SHOW SERVERS) summarised per database, as RV(clients); C(close_needed) counts servers marked for
    closing (after C(RECONNECT)).
  returned: when PgBouncer answered
  type: dict
totals:
  description: Across the pools reported - clients waiting, the longest wait, the exhausted pools
    (clients waiting and every server of the pool active).
  returned: when PgBouncer answered
  type: dict
  sample: {"cl_waiting": 3, "cl_active": 4, "sv_active": 4, "maxwait_seconds": 12.4,
           "exhausted_pools": ["scheduler/app"]}
thresholds:
  description: The thresholds applied, waits in seconds.
  returned: when PgBouncer answered
  type: dict
executed_queries:
  description: The admin commands run.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    MAX_DURATION,
    StatusBuilder,
    diagnosis_result,
    duration_param,
    format_duration,
    new_module,
    plural,
)
from ansible_collections.incident.response.plugins.module_utils._pgbouncer import (
    PgBouncerAdmin,
    connection_summary,
    database_views,
    pgbouncer_argument_spec,
    pool_views,
    stats_views,
)


def _seconds(value):
    return format_duration(value) if value >= 1 else '%gms' % round(value * 1000, 1)


def assess(pools, databases, thresholds):
    """Pure assessment of the pool views (pool_views()) and database views against thresholds."""
    status = StatusBuilder()
    for pool in pools:
        name = '%s/%s' % (pool['database'], pool['user'])
        if pool['cl_waiting']:
            wait = pool['maxwait_seconds']
            if wait >= thresholds['max_wait_critical']:
                level, limit = 'critical', thresholds['max_wait_critical']
            elif wait >= thresholds['max_wait_warning']:
                level, limit = 'warning', thresholds['max_wait_warning']
            else:
                level = limit = None
            if level:
                status.add(level, 'pool %s: %s waiting, the longest for %ss (%s at %s)'
                           % (name, plural(pool['cl_waiting'], 'client'), round(wait, 1), level, _seconds(limit)))
        util = pool['utilisation_pct']
        if pool['pool_size']:
            critical = util >= thresholds['utilisation_critical_pct'] and pool['cl_waiting'] > 0
            if critical or util >= thresholds['utilisation_warning_pct']:
                level = 'critical' if critical else 'warning'
                limit = thresholds['utilisation_%s_pct' % level]
                status.add(level, 'pool %s: %d of %d servers active (%s%%, %s at %s%%)'
                           % (name, pool['sv_active'], pool['pool_size'], util, level, limit))
    for name in sorted(databases):
        db = databases[name]
        if db['paused']:
            status.add('warning', 'database %s is paused (PAUSE): its clients wait until RESUME' % name)
        if db['disabled']:
            status.add('warning', 'database %s is disabled (DISABLE): new clients are refused' % name)
    totals = dict(
        cl_waiting=sum(p['cl_waiting'] for p in pools),
        cl_active=sum(p['cl_active'] for p in pools),
        sv_active=sum(p['sv_active'] for p in pools),
        maxwait_seconds=max([p['maxwait_seconds'] for p in pools] or [0]),
        exhausted_pools=['%s/%s' % (p['database'], p['user']) for p in pools if p['exhausted']],
    )
    return status.status, status.reasons, totals


def main():
    argument_spec = pgbouncer_argument_spec()
    argument_spec.update(
        databases=dict(type='list', elements='str'),
        max_wait_warning=dict(type='raw', default='1s'),
        max_wait_critical=dict(type='raw', default='5s'),
        utilisation_warning_pct=dict(type='float', default=80),
        utilisation_critical_pct=dict(type='float', default=100),
        unreachable=dict(type='str', default='fail', choices=['fail', 'unknown']),
    )
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    thresholds = dict(
        max_wait_warning=duration_param(module, 'max_wait_warning', required=True, maximum=MAX_DURATION),
        max_wait_critical=duration_param(module, 'max_wait_critical', required=True, maximum=MAX_DURATION),
        utilisation_warning_pct=p['utilisation_warning_pct'],
        utilisation_critical_pct=p['utilisation_critical_pct'],
    )
    if thresholds['max_wait_warning'] > thresholds['max_wait_critical']:
        module.fail_json(msg='max_wait_warning (%s) must not exceed max_wait_critical (%s)'
                         % (p['max_wait_warning'], p['max_wait_critical']))
    for name in ('utilisation_warning_pct', 'utilisation_critical_pct'):
        if not 0 <= p[name] <= 1000:
            module.fail_json(msg='%s must be between 0 and 1000, got %s' % (name, p[name]))
    if p['utilisation_warning_pct'] > p['utilisation_critical_pct']:
        module.fail_json(msg='utilisation_warning_pct (%s) must not exceed utilisation_critical_pct (%s)'
                         % (p['utilisation_warning_pct'], p['utilisation_critical_pct']))
    wanted = p['databases']
    if wanted is not None and any(not name for name in wanted):
        module.fail_json(msg='databases must not contain an empty name')

    admin = PgBouncerAdmin(module)
    version = admin.version()
    databases = database_views(admin.show('DATABASES'))
    if wanted:
        unknown = sorted(set(wanted) - set(databases))
        if unknown:
            admin.fail('PgBouncer at %s does not know the database%s %s (it serves: %s)'
                       % (admin.target, 's' if len(unknown) > 1 else '', ', '.join(unknown),
                          ', '.join(sorted(databases)) or 'none'))
        databases = dict((name, view) for name, view in databases.items() if name in wanted)
    pools = [pool for pool in pool_views(admin.show('POOLS'), databases) if pool['database'] in databases]
    stats = dict((k, v) for k, v in stats_views(admin.show('STATS')).items() if k in databases)
    clients = dict((k, v) for k, v in connection_summary(admin.show('CLIENTS')).items() if k in databases)
    servers = dict((k, v) for k, v in connection_summary(admin.show('SERVERS')).items() if k in databases)
    admin.close()

    status, reasons, totals = assess(pools, databases, thresholds)
    module.exit_json(**diagnosis_result(status, reasons, version=version, pools=pools, databases=databases,
                                        stats=stats, clients=clients, servers=servers, totals=totals,
                                        thresholds=thresholds, executed_queries=admin.queries))


if __name__ == '__main__':
    main()
