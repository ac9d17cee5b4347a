#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_backends
short_description: Cancel or terminate the PostgreSQL backends that match filters, within guardrails
version_added: 0.1.0
description:
  - Selects client backends of C(pg_stat_activity) with filters (state, minimum ages, database, user,
    application, query pattern, wait event type, pids; every filter given must match) and cancels their
    current query (C(pg_cancel_backend)) or terminates them (C(pg_terminate_backend)).
  - "Guardrails inside the module: it never touches its own session or non-client backends (autovacuum,
    walsender, background and parallel workers); never members of O(protected_roles), roles with the
    REPLICATION attribute (O(protect_replication)) or O(protected_applications); needs at least one filter;
    and refuses, listing them, when more than O(max_backends) backends match."
  - Check mode returns the exact list it would signal and signals nothing.
  - With O(wait=true), waits until the signalled backends no longer match the filters (terminated backends are
    gone, cancelled queries have stopped) and reports those that still do in RV(remaining).
  - Idempotent; a second run finds nothing left to do.
  - Cancelling a session that is idle in transaction does not end its transaction; terminate it instead
    (the pg_tviews checklist's C(pg_cancel_backend) on C(idle in transaction) sessions does nothing).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
  - incident.response.postgres_targets.backends
  - incident.response.wait
attributes:
  check_mode:
    support: full
    description: Returns the backends it would signal in RV(backends) and RV(actions); signals nothing.
  diff_mode:
    support: full
    description: The pids matching before and after.
  idempotent:
    support: full
    description: Signalled backends stop matching, so a second run finds nothing to do.
options:
  action:
    description:
      - V(cancel) stops the backend's current query; V(terminate) ends the session and rolls back its transaction.
    type: str
    required: true
    choices: [cancel, terminate]
  states:
    description: Only backends in one of these states.
    type: list
    elements: str
    choices: [active, idle, idle in transaction, idle in transaction (aborted), fastpath function call, disabled]
  min_state_age:
    description:
      - Only backends whose state has not changed for at least this long (C(state_change)).
      - Seconds, or a duration such as V(30m), V(1h30m), V(45s). An empty value is refused (it would drop the
        filter); omit the option instead.
    type: raw
  min_xact_age:
    description: Only backends whose transaction is at least this old (C(xact_start)). Seconds or a duration.
    type: raw
  min_query_age:
    description: Only backends whose current or last query started at least this long ago (C(query_start)).
    type: raw
  datnames:
    description: Only backends connected to one of these databases.
    type: list
    elements: str
  usenames:
    description: Only backends of one of these roles.
    type: list
    elements: str
  application_names:
    description: Only backends with one of these C(application_name)s.
    type: list
    elements: str
  query_pattern:
    description:
      - Only backends whose query text matches this regular expression (Python syntax, searched anywhere in
        the text). Matched by the module, never pasted into SQL.
      - An empty pattern is refused (it matches every query), and so are nested repeats such as V((a+\)+)
        (exponential matching time); a search that takes more than a second fails the module.
    type: str
  wait_event_types:
    description: Only backends waiting on one of these kinds of event (V(Lock) for lock waits).
    type: list
    elements: str
    choices: [Activity, BufferPin, Client, Extension, InjectionPoint, IO, IPC, Lock, LWLock, Timeout]
  pids:
    description: Only these backend pids.
    type: list
    elements: int
  max_backends:
    description:
      - Refuse to act, listing the matches, when more than this many backends match.
        A cap on the blast radius of a wrong filter.
    type: int
    default: 20
  protected_roles:
    description:
      - Backends of these roles, or of members of these roles, are never signalled.
      - The default protects monitoring agents (members of C(pg_monitor)).
    type: list
    elements: str
    default: [pg_monitor]
  protect_replication:
    description: Never signal backends of roles with the REPLICATION attribute that are not superusers.
    type: bool
    default: true
  protected_applications:
    description: Backends with these C(application_name)s are never signalled.
    type: list
    elements: str
    default: [pg_basebackup, pg_dump, pg_dumpall, pg_receivewal, pg_recvlogical, postgres_exporter]
  query_excerpt_length:
    description: Query texts in the result are cut to this many characters (and passwords in them masked).
    type: int
    default: 200
seealso:
  - module: incident.response.pg_activity_info
notes:
  - Signalling another role's backend needs a superuser or a member of C(pg_signal_backend); only a superuser
    may signal a superuser's backend. The module checks this before signalling anything and fails, naming the
    backends, instead of acting on part of them.
'''

EXAMPLES = r'''
- name: Show which sessions idle in transaction for 30 minutes would be ended (run with --check)
  incident.response.pg_backends:
    action: terminate
    states: [idle in transaction, idle in transaction (aborted)]
    min_state_age: 30m
    datnames: [schedgen]
  check_mode: true
  register: plan

- name: Terminate them, at most 10, and wait until they are gone
  incident.response.pg_backends:
    action: terminate
    states: [idle in transaction, idle in transaction (aborted)]
    min_state_age: 30m
    datnames: [schedgen]
    max_backends: 10
    wait_timeout: 60

- name: Cancel refresh queries running for more than 5 minutes
  incident.response.pg_backends:
    action: cancel
    states: [active]
    min_query_age: 5m
    query_pattern: 'pg_tviews_refresh'

- name: End the long idle transactions of three databases in one run, each database its own target
  incident.response.pg_backends:
    action: terminate
    states: [idle in transaction, idle in transaction (aborted)]
    min_state_age: 30m
    max_backends: 10
    targets:
      - name: orders
        login_db: orders
        datnames: [orders]
      - name: billing
        login_db: billing
        datnames: [billing]
        max_backends: 5
      - name: reports
        login_host: reports-db.example.com
        datnames: [reports]
  register: ended

- name: Fail for the targets that could not be worked (the others were)
  ansible.builtin.fail:
    msg: "{{ ended.failed_targets | map('extract', ended.targets) | map(attribute='msg') | list }}"
  when: ended.failed_targets | length > 0
'''

RETURN = r'''
changed:
  description:
    - Whether any backend was signalled (or, in check mode, would be).
    - With O(targets), whether any target's was.
  returned: always
  type: bool
backends:
  description: The backends that match the filters and are not protected; those signalled, or to be signalled.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
  sample: [{"pid": 4711, "datname": "scheduler", "usename": "app", "application_name": "api",
            "client_addr": "127.0.0.1", "backend_type": "client backend", "state": "idle in transaction",
            "wait_event_type": "Client", "wait_event": "ClientRead", "state_age_seconds": 1830.2,
            "xact_age_seconds": 1831.0, "query_age_seconds": 1830.3, "blocked_by": [], "query_id": null,
            "query": "INSERT INTO audit_log ..."}]
protected:
  description: Backends that match the filters but were left alone, each with a C(reason).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: dict
  sample: [{"pid": 4800, "usename": "monitoring", "application_name": "postgres_exporter",
            "reason": "protected role (member of pg_monitor)"}]
actions:
  description:
    - One entry per backend, C(done) false in check mode.
    - With O(targets), those of every target, each with the target's name in C(detail.host) (also in the
      target's own entry of RV(targets)).
  returned: always
  type: list
  elements: dict
  sample: [{"action": "terminate", "target": "pid 4711", "done": true,
            "detail": {"usename": "app", "datname": "scheduler", "state": "idle in transaction"}}]
signalled:
  description: Pids the server accepted a signal for (empty in check mode).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: int
remaining:
  description: Signalled pids that still matched the filters when the wait ended (empty when all stopped).
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: int
wait_seconds:
  description: How long the module waited.
  returned: when O(wait=true) and something was signalled (with O(targets), in each entry of RV(targets))
  type: float
summary:
  description:
    - One line saying what was (or would be) done.
    - With O(targets), how many backends on how many targets, and which targets failed.
  returned: always
  type: str
  sample: "terminated 5 backends (0 still present after 1.0s); 1 protected backend left alone"
diff:
  description:
    - The matching pids before and after (with C(--diff)).
    - With O(targets), keyed by target.
  returned: when diff mode is on
  type: dict
executed_queries:
  description: The statements run, signals included.
  returned: always without O(targets) (with it, in each entry of RV(targets))
  type: list
  elements: str
targets:
  description:
    - With O(targets), one entry per target, keyed by its O(targets[].name) - the full result a run on that
      target alone returns (RV(changed), RV(backends), RV(protected), RV(actions) naming the target in
      C(detail.host), RV(summary), ...), or C(failed=true) and C(msg) for a target that could not be worked
      (unreachable, more than its cap matching, not allowed to signal), with RV(backends) when they were read.
  returned: when O(targets) is given
  type: dict
  sample: {"db1": {"changed": true, "summary": "terminated 1 backend (0 still present after 1.0s)",
                   "actions": [{"action": "terminate", "target": "pid 4711", "done": true,
                                "detail": {"host": "db1", "datname": "db1", "usename": "app"}}]},
           "db2": {"failed": true, "changed": false,
                   "msg": "refusing to terminate 2 backends: more than max_backends=1 match; ..."}}
failed_targets:
  description: With O(targets), the names of the targets that failed (see their C(msg) in RV(targets)).
  returned: when O(targets) is given
  type: list
  elements: str
  sample: ["db2"]
'''


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    WAIT_ARGUMENT_SPEC,
    duration_param,
    format_duration,
    make_action,
    new_module,
    plural,
    regex_param,
    remediation_result,
    validate_wait_args,
    wait_until,
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
    WAIT_EVENT_TYPES,
    BackendCriteria,
    PgClient,
    hidden_sessions_warning,
    is_client_backend,
    is_hidden,
    permission_problems,
    postgres_common_argument_spec,
    protection_reason,
    session_view,
)

SIGNAL_FUNCTION = dict(cancel='pg_catalog.pg_cancel_backend', terminate='pg_catalog.pg_terminate_backend')
PAST_TENSE = dict(cancel='cancelled', terminate='terminated')


def build_criteria(module):
    """Turn the module's parameters into BackendCriteria, or fail the module with one clear message.

    An empty age or pattern is refused: it would silently drop that filter, or match every query.
    """
    params = module.params
    ages = {}
    for name in ('min_state_age', 'min_xact_age', 'min_query_age'):
        ages[name] = duration_param(module, name, allow_empty=False)
    pattern = regex_param(module, 'query_pattern')
    return BackendCriteria(
        states=params.get('states'),
        datnames=params.get('datnames'),
        usenames=params.get('usenames'),
        application_names=params.get('application_names'),
        query_pattern=pattern,
        wait_event_types=params.get('wait_event_types'),
        pids=params.get('pids'),
        **ages
    )


def select_backends(rows, criteria, protected_applications, protect_replication):
    """Split pg_stat_activity rows into (targets, protected) for the criteria."""
    targets, protected = [], []
    for row in rows:
        if row.get('is_self') or not criteria.matches(row):
            continue
        reason = protection_reason(row, protected_applications, protect_replication)
        if reason:
            if is_client_backend(row) or is_hidden(row):
                protected.append((row, reason))
            continue
        targets.append(row)
    return targets, protected


def backends_argument_spec():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(WAIT_ARGUMENT_SPEC)
    argument_spec.update(
        action=dict(type='str', required=True, choices=['cancel', 'terminate']),
        states=dict(type='list', elements='str', choices=list(CLIENT_STATES)),
        min_state_age=dict(type='raw'),
        min_xact_age=dict(type='raw'),
        min_query_age=dict(type='raw'),
        datnames=dict(type='list', elements='str'),
        usenames=dict(type='list', elements='str'),
        application_names=dict(type='list', elements='str'),
        query_pattern=dict(type='str'),
        wait_event_types=dict(type='list', elements='str', choices=list(WAIT_EVENT_TYPES)),
        pids=dict(type='list', elements='int'),
        max_backends=dict(type='int', default=20),
        protected_roles=dict(type='list', elements='str', default=['pg_monitor']),
        protect_replication=dict(type='bool', default=True),
        protected_applications=dict(type='list', elements='str',
                                    default=['pg_basebackup', 'pg_dump', 'pg_dumpall', 'pg_receivewal',
                                             'pg_recvlogical', 'postgres_exporter']),
        query_excerpt_length=dict(type='int', default=200),
    )
    argument_spec.update(targets_argument_spec(datnames=dict(type='list', elements='str'),
                                               max_backends=dict(type='int')))
    return argument_spec


def check_max_backends(module, value, name='max_backends'):
    if value < 1:
        module.fail_json(msg='%s must be at least 1, got %s' % (name, value))


def run_one(module, host=None):
    """Signal the matching backends of one server (the module's options, or one target's): the result a run
    returns. ``host``: the target's name, written into every action (a run over many targets)."""
    p = module.params
    criteria = build_criteria(module)
    if criteria.is_empty():
        module.fail_json(msg='pg_backends needs at least one filter (states, min_*_age, datnames, usenames, '
                             'application_names, query_pattern, wait_event_types or pids): refusing to %s every '
                             'client backend' % p['action'])

    client = PgClient(module)
    try:
        return _signal(module, client, criteria, host)
    finally:
        client.close()


def _signal(module, client, criteria, host):
    p = module.params
    excerpt_length = p['query_excerpt_length']
    protected_apps = p['protected_applications'] or []

    def current_matches(rows=None):
        rows = rows if rows is not None else client.activity(p['protected_roles'] or [])
        return select_backends(rows, criteria, protected_apps, p['protect_replication'])

    rows = client.activity(p['protected_roles'] or [])
    targets, protected = current_matches(rows)
    hidden = hidden_sessions_warning(rows, p['login_user'])
    if hidden:
        module.warn(hidden)
    result = dict(
        backends=[session_view(r, excerpt_length) for r in targets],
        protected=[dict(session_view(r, excerpt_length), reason=reason) for r, reason in protected],
        signalled=[],
        remaining=[],
    )

    if len(targets) > p['max_backends']:
        client.fail('refusing to %s %d backends: more than max_backends=%d match; narrow the filters or raise '
                    'max_backends. Matching pids: %s'
                    % (p['action'], len(targets), p['max_backends'], ', '.join(str(r['pid']) for r in targets)),
                    backends=result['backends'])

    role = client.current_role()
    problems = permission_problems(role, targets)
    if problems:
        client.fail('role %s may not %s %d of the matching backends (needs superuser or pg_signal_backend): %s'
                    % (role['name'], p['action'], len(problems), '; '.join(problems)), backends=result['backends'])

    def detail(row):
        view = session_view(row, excerpt_length)
        found = dict((k, view[k]) for k in ('usename', 'datname', 'application_name', 'state',
                                            'state_age_seconds', 'xact_age_seconds', 'query_age_seconds', 'query'))
        if host is not None:
            found['host'] = host
        return found

    before_pids = [r['pid'] for r in targets]
    actions = []
    for row in targets:
        entry = make_action(p['action'], 'pid %s' % row['pid'], detail(row))
        if not module.check_mode:
            answer = client.query_one('SELECT %s(%%s) AS ok' % SIGNAL_FUNCTION[p['action']], (row['pid'],))
            entry['done'] = bool(answer and answer['ok'])
            if entry['done']:
                result['signalled'].append(row['pid'])
            else:
                entry['error'] = 'backend had already ended'
        actions.append(entry)

    after_pids = before_pids
    if result['signalled'] and p['wait']:
        signalled = set(result['signalled'])

        def all_stopped():
            still = [r['pid'] for r in current_matches()[0] if r['pid'] in signalled]
            all_stopped.remaining = still
            return not still
        all_stopped.remaining = sorted(signalled)
        _ok, elapsed, _last = wait_until(all_stopped, p['wait_timeout'], p['wait_sleep'])
        result['remaining'] = sorted(all_stopped.remaining)
        result['wait_seconds'] = elapsed
        after_pids = result['remaining']
    elif result['signalled']:
        after_pids = [r['pid'] for r in current_matches()[0]]
    client.close()

    verb = PAST_TENSE[p['action']] if not module.check_mode else 'would %s' % p['action']
    summary = '%s %s' % (verb, plural(len(targets), 'backend'))
    if 'wait_seconds' in result:
        summary += ' (%d still present after %s)' % (len(result['remaining']), format_duration(result['wait_seconds']))
    if not targets:
        summary = 'no backend matches; nothing to %s' % p['action']
    if protected:
        summary += '; %s left alone' % plural(len(protected), 'protected backend')
    diff = dict(before=dict(pids=before_pids), after=dict(pids=after_pids if not module.check_mode else []))
    return remediation_result(bool(targets), actions, summary, diff=diff, check_mode=module.check_mode,
                              want_diff=module._diff, executed_queries=client.queries, **result)


def run_targets_result(module, targets):
    """Every target in one run: ``targets`` (one full result each, its actions naming the target), ``actions``
    all of them, ``changed`` when any target changed; a failed target fails in its own entry only."""
    def overrides(target):
        return dict(connection_overrides(target), datnames=target.get('datnames'),
                    max_backends=target.get('max_backends'))
    results = run_targets(module, targets, lambda target_module: run_one(target_module, host=target_module.name),
                          overrides)
    failed = failed_targets(results)
    actions = []
    for result in results.values():
        actions.extend(result.get('actions') or [])
    changed = any(result.get('changed') for result in results.values())
    acted = [name for name, result in results.items() if result.get('actions')]
    verb = PAST_TENSE[module.params['action']] if not module.check_mode else 'would %s' % module.params['action']
    summary = '%s %s on %s' % (verb, plural(len(actions), 'backend'), plural(len(acted), 'target'))
    if failed:
        summary += '; %s failed: %s' % (plural(len(failed), 'target'), ', '.join(failed))
    diff = dict(before=dict((name, (result.get('diff') or {}).get('before')) for name, result in results.items()),
                after=dict((name, (result.get('diff') or {}).get('after')) for name, result in results.items()))
    return remediation_result(changed, actions, summary, diff=diff, check_mode=module.check_mode,
                              want_diff=module._diff, targets=results, failed_targets=failed)


def main():
    module = new_module(AnsibleModule, argument_spec=backends_argument_spec(), supports_check_mode=True)
    p = module.params
    validate_wait_args(module)
    check_max_backends(module, p['max_backends'])
    # the filters are read (and refused) once, before any target is worked
    build_criteria(module)
    targets = validate_targets(module)
    if targets is not None:
        for index, target in enumerate(targets):
            if target.get('max_backends') is not None:
                check_max_backends(module, target['max_backends'], 'targets[%d].max_backends' % index)
        module.exit_json(**run_targets_result(module, targets))
    module.exit_json(**run_one(module))


if __name__ == '__main__':
    main()
