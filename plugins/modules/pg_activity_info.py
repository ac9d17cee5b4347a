#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_activity_info
short_description: Assess PostgreSQL connections, lock waits and long transactions
version_added: 0.1.0
description:
  - Reads C(pg_stat_activity) once and reports what an on-call engineer checks first when connections run out
    or queries pile up; connections by state, sessions waiting on locks and who blocks them, C(max_connections)
    and utilisation, the oldest transactions and queries, breakdowns by database, user and application.
  - Returns a O(ignore:status) of C(ok), C(warning) or C(critical) with the reasons, from thresholds that default to
    check_postgres's (backends at 90% and 95% of C(max_connections)).
  - Sessions waiting on locks are those with C(wait_event_type = 'Lock'); the C(state = 'waiting') of older
    runbooks matches no row on any supported PostgreSQL version.
  - Read only. An unreachable server is a failure with a message naming it (or, with O(unreachable=unknown), a
    O(ignore:status) of C(unknown) with the reason); use the returned O(ignore:status) to decide, not the task
    result.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
  - incident.response.postgres_targets.activity
  - incident.response.attributes.info_module
options:
  connections_warning_pct:
    description: Utilisation of C(max_connections), in percent, at which the status becomes C(warning).
    type: float
    default: 90
  connections_critical_pct:
    description: Utilisation of C(max_connections), in percent, at which the status becomes C(critical).
    type: float
    default: 95
  lock_waiters_warning:
    description: Number of sessions waiting on locks at which the status becomes C(warning).
    type: int
    default: 5
  lock_waiters_critical_pct:
    description:
      - Sessions waiting on locks, as a percentage of C(max_connections), at which the status becomes C(critical)
        (the pg_tviews emergency runbook's 80%).
    type: float
    default: 80
  idle_in_transaction_age:
    description:
      - Sessions idle in transaction for at least this long are listed in RV(long_idle_in_transaction)
        and make the status C(warning).
      - Seconds, or a duration such as V(30m) or V(1h30m). The runbooks use 30 minutes.
    type: raw
    default: 30m
  long_query_age:
    description:
      - Active queries running for at least this long are listed in RV(long_running_queries) and make the status
        C(warning). Seconds or a duration such as V(5m).
    type: raw
    default: 5m
  databases:
    description:
      - Only count sessions connected to these databases (for example the application's database, as in the
        runbooks' C(WHERE datname = ...)). Utilisation is always of the whole server.
    type: list
    elements: str
  top:
    description: How many sessions to list in RV(oldest_transactions) and RV(oldest_queries).
    type: int
    default: 10
  query_excerpt_length:
    description: Query texts are cut to this many characters (and passwords in them masked).
    type: int
    default: 200
  unreachable:
    description:
      - What a server that cannot be reached (refused, timed out, authentication failed) is.
      - V(fail) fails the task with a message naming the server.
      - V(unknown) reports RV(status=unknown), RV(reasons) and RV(msg) naming the server, and succeeds (as
        C(community.postgresql.postgresql_ping) reports rather than fails); the other return values are absent.
    type: str
    default: fail
    choices: [fail, unknown]
  log_lines:
    description:
      - Also return the PostgreSQL server log lines of the last O(log_window) in RV(server_log) (redacted), read
        through C(pg_current_logfile()) and C(pg_read_file()) where the role may (superuser or
        C(pg_read_server_files), C(logging_collector) on), else from O(log_path) on the host that runs the module.
    type: bool
    default: false
  log_window:
    description: The window of O(log_lines), seconds or a duration such as V(15m).
    type: raw
    default: 15m
  log_path:
    description: The server log on the host (a file, or a directory whose newest file is read), for O(log_lines).
    type: path
  log_max_bytes:
    description: O(log_lines) reads at most this many bytes of the end of the log (1 KiB to 64 MiB).
    type: int
    default: 1048576
  log_max_lines:
    description: O(log_lines) returns at most this many lines, the newest.
    type: int
    default: 200
seealso:
  - module: incident.response.pg_backends
notes:
  - Only client backends are counted in the breakdowns; background processes count toward utilisation as
    PostgreSQL counts them.
  - Without C(pg_read_all_stats) (part of C(pg_monitor)), other roles' query texts read C(<insufficient privilege>).
'''

EXAMPLES = r'''
- name: Assess connections on the application's database
  incident.response.pg_activity_info:
    login_host: db.example.com
    login_user: monitoring
    login_password: "{{ vault_pg_monitoring_password }}"
    databases: [schedgen]
  register: activity

- name: Stop when the server is not under pressure
  ansible.builtin.meta: end_play
  when: activity.status == 'ok'

- name: Tighter thresholds, from PGHOST/PGUSER/PGPASSWORD in the environment
  incident.response.pg_activity_info:
    connections_warning_pct: 80
    idle_in_transaction_age: 10m

- name: Assess three databases in one run (one result per target in activity_all.targets)
  incident.response.pg_activity_info:
    login_host: db.example.com
    login_user: monitoring
    login_password: "{{ vault_pg_monitoring_password }}"
    targets:
      - name: orders
        login_db: orders
        databases: [orders]
      - name: billing
        login_db: billing
        databases: [billing]
      - name: reports
        login_host: reports-db.example.com
        databases: [reports]
  register: activity_all

- name: Name the targets that could not be assessed
  ansible.builtin.debug:
    msg: "{{ activity_all.failed_targets }}"
  when: activity_all.failed_targets | length > 0
'''

RETURN = r'''
server_log:
  description:
    - With O(log_lines), the server log lines of the window (C(lines), newest last, passwords masked), C(source),
      C(count) (lines in the window), C(truncated) and C(error) (why nothing could be read; null when read).
  returned: when O(log_lines=true) (with O(targets), in each entry of RV(targets))
  type: dict
status:
  description:
    - C(ok), C(warning) or C(critical), the worst of the thresholds crossed.
    - C(unknown) when the server could not be reached and O(unreachable=unknown).
    - With O(targets), the worst status of the targets (a target that failed counts as C(unknown)).
  returned: always
  type: str
  sample: critical
reasons:
  description:
    - One sentence per threshold crossed (or why the server could not be reached).
    - With O(targets), those of every target, each starting with the target's name.
  returned: always
  type: list
  elements: str
  sample: ["3 sessions idle in transaction for at least 30m"]
msg:
  description: Why the server could not be reached.
  returned: when RV(status) is C(unknown)
  type: str
  sample: "Unable to connect to PostgreSQL at 127.0.0.1:5432 as monitoring (database postgres): Connection refused"
changed:
  description: Always false (reads only).
  returned: always
  type: bool
  sample: false
server_version:
  description: Server version, major.minor.
  returned: when the server answered (with O(targets), in each entry of RV(targets))
  type: str
  sample: "15.8"
connections:
  description: Connection counts and capacity.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: dict
  contains:
    total:
      description: All backends, background processes included.
      type: int
    client_backends:
      description: Client sessions (in O(databases) when given).
      type: int
    max_connections:
      description: The server's C(max_connections).
      type: int
    superuser_reserved_connections:
      description: Slots kept for superusers.
      type: int
    reserved_connections:
      description: Slots kept for C(pg_use_reserved_connections) (PostgreSQL 16 and newer, else 0).
      type: int
    available:
      description: Slots left for ordinary roles.
      type: int
    utilisation_pct:
      description: Client backends of the whole server as a percentage of C(max_connections).
      type: float
    by_state:
      description: Client sessions per state.
      type: dict
      sample: {"active": 1, "idle": 4, "idle in transaction": 5, "idle in transaction (aborted)": 0}
  sample: {"total": 15, "client_backends": 10, "max_connections": 100, "utilisation_pct": 10.0}
lock_waiters:
  description: Sessions waiting on a lock (C(wait_event_type = 'Lock')), in the shape of RV(oldest_transactions).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
blocking_chains:
  description: One entry per blocking session, with the sessions it blocks (C(pg_blocking_pids)).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
  sample: [{"blocker": {"pid": 4711, "state": "idle in transaction"}, "blocked_pids": [4720, 4721]}]
oldest_transactions:
  description: The O(top) oldest open transactions.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
  sample: [{"pid": 4711, "datname": "scheduler", "usename": "app", "application_name": "api",
            "client_addr": "127.0.0.1", "backend_type": "client backend", "state": "idle in transaction",
            "wait_event_type": "Client", "wait_event": "ClientRead", "state_age_seconds": 1830.2,
            "xact_age_seconds": 1831.0, "query_age_seconds": 1830.3, "blocked_by": [], "query_id": null,
            "query": "INSERT INTO audit_log ..."}]
oldest_queries:
  description: The O(top) longest-running active queries.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
long_idle_in_transaction:
  description: Sessions idle in transaction for at least O(idle_in_transaction_age).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
long_running_queries:
  description: Active queries running for at least O(long_query_age).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
by_database:
  description: Client sessions per database.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: dict
  sample: {"scheduler": 8, "postgres": 2}
by_user:
  description: Client sessions per role.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: dict
by_application:
  description: Client sessions per application_name (empty names as C("")).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: dict
thresholds:
  description: The thresholds applied, ages in seconds (the same for every target with O(targets)).
  returned: always
  type: dict
executed_queries:
  description: The statements run.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: str
targets:
  description:
    - With O(targets), one entry per target, keyed by its O(targets[].name) - the full result a run on that
      target alone returns (RV(status), RV(reasons), RV(connections) and the rest), or C(failed=true) and
      C(msg) for a target that could not be assessed, and C(warnings) when the run warned about it.
  returned: when O(targets) is given
  type: dict
  sample: {"db1": {"status": "warning", "reasons": ["1 session idle in transaction for at least 30m"],
                   "connections": {"client_backends": 3}, "changed": false},
           "db2": {"failed": true, "msg": "Unable to connect to PostgreSQL at db2:5432 as ops (database app): ..."}}
failed_targets:
  description: With O(targets), the names of the targets that failed (see their C(msg) in RV(targets)).
  returned: when O(targets) is given
  type: list
  elements: str
  sample: ["db2"]
summary:
  description: With O(targets), one line saying how many targets were assessed and which failed.
  returned: when O(targets) is given
  type: str
  sample: "assessed 19 targets; 1 target failed: db2"
'''

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils import _evidence
from ansible_collections.incident.response.plugins.module_utils._common import (
    StatusBuilder,
    diagnosis_result,
    duration_param,
    format_duration,
    new_module,
    plural,
    redact,
    worst_status,
)
from ansible_collections.incident.response.plugins.module_utils._pg_targets import (
    connection_overrides,
    failed_targets,
    run_targets,
    targets_argument_spec,
    validate_targets,
)
from ansible_collections.incident.response.plugins.module_utils._postgres import (
    CLIENT_STATES,
    IDLE_IN_TRANSACTION_STATES,
    PgClient,
    is_client_backend,
    hidden_sessions_warning,
    postgres_common_argument_spec,
    session_view,
)


def count_by(rows, key):
    counts = {}
    for row in rows:
        name = row.get(key) or ''
        counts[name] = counts.get(name, 0) + 1
    return counts


def assess(rows, limits, thresholds, databases=None, top=10, excerpt_length=200):
    """Pure assessment of pg_stat_activity rows (see PgClient.activity) against thresholds."""
    clients_all = [r for r in rows if is_client_backend(r) and not r.get('is_self')]
    clients = [r for r in clients_all if not databases or r['datname'] in databases]
    by_state = dict((state, 0) for state in CLIENT_STATES[:4])
    for row in clients:
        by_state[row['state'] or 'unknown'] = by_state.get(row['state'] or 'unknown', 0) + 1

    max_conn = limits['max_connections']
    # Our own session is not part of the incident; count everyone else like check_postgres does.
    used = len([r for r in rows if not r.get('is_self') and r['backend_type'] == 'client backend'])
    utilisation = round(100.0 * used / max_conn, 1) if max_conn else 0.0
    available = max_conn - limits['superuser_reserved_connections'] - limits['reserved_connections'] - used

    def view(row):
        return session_view(row, excerpt_length)

    lock_waiters = [r for r in clients if r['wait_event_type'] == 'Lock']
    blockers = {}
    for row in clients:
        for blocker in row.get('blocked_by') or []:
            blockers.setdefault(blocker, []).append(row['pid'])
    by_pid = dict((r['pid'], r) for r in rows)
    blocking_chains = []
    for blocker_pid in sorted(blockers):
        blocker = by_pid.get(blocker_pid)
        blocking_chains.append(dict(
            blocker=view(blocker) if blocker else dict(pid=blocker_pid),
            blocked_pids=sorted(blockers[blocker_pid]),
        ))

    in_xact = sorted([r for r in clients if r['xact_age'] is not None], key=lambda r: -r['xact_age'])
    active = sorted([r for r in clients if r['state'] == 'active' and r['query_age'] is not None],
                    key=lambda r: -r['query_age'])
    idle_age = thresholds['idle_in_transaction_age']
    query_age = thresholds['long_query_age']
    long_idle = [r for r in clients if r['state'] in IDLE_IN_TRANSACTION_STATES
                 and r['state_age'] is not None and r['state_age'] >= idle_age]
    long_queries = [r for r in active if r['query_age'] >= query_age]

    status = StatusBuilder()
    status.check(utilisation, thresholds['connections_warning_pct'], thresholds['connections_critical_pct'],
                 'connections at %%(value)s%%%% of max_connections %d (%%(level)s at %%(threshold)s%%%%)' % max_conn)
    lock_critical = max_conn * thresholds['lock_waiters_critical_pct'] / 100.0
    status.check(len(lock_waiters), thresholds['lock_waiters_warning'], lock_critical,
                 '%(value)s sessions waiting on locks (%(level)s at %(threshold)s)')
    if long_idle:
        status.add('warning', '%s idle in transaction for at least %s'
                   % (plural(len(long_idle), 'session'), format_duration(idle_age)))
    if long_queries:
        status.add('warning', '%s running for at least %s'
                   % (plural(len(long_queries), 'query', 'queries'), format_duration(query_age)))

    return dict(
        status=status.status,
        reasons=status.reasons,
        connections=dict(
            total=len([r for r in rows if not r.get('is_self')]),
            client_backends=len(clients),
            max_connections=max_conn,
            superuser_reserved_connections=limits['superuser_reserved_connections'],
            reserved_connections=limits['reserved_connections'],
            available=available,
            utilisation_pct=utilisation,
            by_state=by_state,
        ),
        lock_waiters=[view(r) for r in lock_waiters],
        blocking_chains=blocking_chains,
        oldest_transactions=[view(r) for r in in_xact[:top]],
        oldest_queries=[view(r) for r in active[:top]],
        long_idle_in_transaction=[view(r) for r in long_idle],
        long_running_queries=[view(r) for r in long_queries],
        by_database=count_by(clients, 'datname'),
        by_user=count_by(clients, 'usename'),
        by_application=count_by(clients, 'application_name'),
    )


def activity_argument_spec():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        connections_warning_pct=dict(type='float', default=90),
        connections_critical_pct=dict(type='float', default=95),
        lock_waiters_warning=dict(type='int', default=5),
        lock_waiters_critical_pct=dict(type='float', default=80),
        idle_in_transaction_age=dict(type='raw', default='30m'),
        long_query_age=dict(type='raw', default='5m'),
        databases=dict(type='list', elements='str'),
        top=dict(type='int', default=10),
        query_excerpt_length=dict(type='int', default=200),
        unreachable=dict(type='str', default='fail', choices=['fail', 'unknown']),
        log_lines=dict(type='bool', default=False),
        log_window=dict(type='raw', default='15m'),
        log_path=dict(type='path'),
        log_max_bytes=dict(type='int', default=1048576),
        log_max_lines=dict(type='int', default=200),
    )
    argument_spec.update(targets_argument_spec(databases=dict(type='list', elements='str')))
    return argument_spec


def validate(module):
    """The thresholds and the log window from the module's options, or fail the module with one message."""
    p = module.params
    thresholds = dict(
        connections_warning_pct=p['connections_warning_pct'],
        connections_critical_pct=p['connections_critical_pct'],
        lock_waiters_warning=p['lock_waiters_warning'],
        lock_waiters_critical_pct=p['lock_waiters_critical_pct'],
        idle_in_transaction_age=duration_param(module, 'idle_in_transaction_age', required=True),
        long_query_age=duration_param(module, 'long_query_age', required=True),
    )
    for name in ('connections_warning_pct', 'connections_critical_pct', 'lock_waiters_critical_pct'):
        if not 0 <= p[name] <= 100:
            module.fail_json(msg='%s must be between 0 and 100, got %s' % (name, p[name]))
    if p['connections_warning_pct'] > p['connections_critical_pct']:
        module.fail_json(msg='connections_warning_pct (%s) must not exceed connections_critical_pct (%s)'
                         % (p['connections_warning_pct'], p['connections_critical_pct']))
    for name in ('lock_waiters_warning', 'top', 'query_excerpt_length'):
        if p[name] < 0:
            module.fail_json(msg='%s must not be negative, got %s' % (name, p[name]))

    log_window = None
    if p['log_lines']:
        log_window = duration_param(module, 'log_window', minimum=1, maximum=366 * 86400, required=True)
        if not 1024 <= p['log_max_bytes'] <= 64 * 1024 * 1024:
            module.fail_json(msg='log_max_bytes must be between 1024 and 67108864, got %s' % p['log_max_bytes'])
        if not 1 <= p['log_max_lines'] <= 100000:
            module.fail_json(msg='log_max_lines must be between 1 and 100000, got %s' % p['log_max_lines'])
    return thresholds, log_window


def run_one(module, thresholds, log_window):
    """The assessment of one server (the module's options, or one target's): the result a run returns."""
    p = module.params
    client = PgClient(module)
    try:
        limits = client.connection_limits()
        rows = client.activity()
        server_log = None
        if p['log_lines']:
            until = _evidence.utc_now()
            found = _evidence.pg_server_log(client, until - datetime.timedelta(seconds=log_window), until,
                                            p['log_max_bytes'], p['log_path'])
            server_log = dict(source=found['source'], count=len(found['lines']), truncated=found['truncated'],
                              error=found['error'],
                              lines=[redact(line) for line in found['lines'][-p['log_max_lines']:]])
    finally:
        client.close()
    hidden = hidden_sessions_warning(rows, p['login_user'])
    if hidden:
        module.warn(hidden)

    result = assess(rows, limits, thresholds, databases=p['databases'], top=p['top'],
                    excerpt_length=p['query_excerpt_length'])
    facts = dict((key, value) for key, value in result.items() if key not in ('status', 'reasons'))
    if server_log is not None:
        facts['server_log'] = server_log
    return diagnosis_result(result['status'], result['reasons'], server_version=client.version_string,
                            thresholds=thresholds, executed_queries=client.queries, **facts)


def run_targets_result(module, targets, thresholds, log_window):
    """Every target assessed in one run: ``targets`` (one full result each), status the worst of them."""
    def overrides(target):
        return dict(connection_overrides(target), databases=target.get('databases'))
    results = run_targets(module, targets, lambda target_module: run_one(target_module, thresholds, log_window),
                          overrides)
    failed = failed_targets(results)
    statuses = ['unknown' if result.get('failed') else result.get('status') for result in results.values()]
    reasons = []
    for name, result in results.items():
        if result.get('failed'):
            reasons.append('%s: %s' % (name, result.get('msg')))
        else:
            reasons.extend('%s: %s' % (name, reason) for reason in result.get('reasons') or [])
    summary = 'assessed %s' % plural(len(results) - len(failed), 'target')
    if failed:
        summary += '; %s failed: %s' % (plural(len(failed), 'target'), ', '.join(failed))
    return diagnosis_result(worst_status(statuses), reasons, targets=results, failed_targets=failed,
                            summary=summary, thresholds=thresholds)


def main():
    module = new_module(AnsibleModule, argument_spec=activity_argument_spec(), supports_check_mode=True)
    thresholds, log_window = validate(module)
    targets = validate_targets(module)
    if targets is not None:
        module.exit_json(**run_targets_result(module, targets, thresholds, log_window))
    module.exit_json(**run_one(module, thresholds, log_window))


if __name__ == '__main__':
    main()
