#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: tview_state
short_description: Emergency disable or enable pg_tviews TVIEWs (or suspend and resume the extension's triggers)
version_added: 0.1.0
description:
  - "Runbook catalog: sets C(emergency_disabled) of the TVIEWs selected (all, by O(names), or those whose
    C(last_error) matches O(error_pattern)) with C(emergency_disable_time) and C(emergency_disable_reason)
    (the emergency runbook's Step 1 and the checklist's Step 8), or clears them (O(state=enabled)); with
    O(clear_errors=true) also clears C(last_error) (the reset of restoration option 2)."
  - "Extension contract: the extension has no per-TVIEW flag; O(state=disabled) suspends its triggers for
    the whole database (C(ALTER DATABASE ... SET pg_tviews.suspend_triggers = on)) or for O(roles)
    (C(ALTER ROLE ... IN DATABASE ... SET)), O(state=enabled) resets that setting. Selecting TVIEWs by
    O(names) or O(error_pattern) is refused there, saying why. New sessions see the change."
  - The pattern is a PostgreSQL regular expression, bound as a parameter, never pasted into SQL; an invalid
    one fails with one message before anything changes.
  - Unknown O(names) fail the module, listing them, before anything changes.
  - Reads and updates in one transaction (rows locked with C(FOR UPDATE)); returns each TVIEW's before and
    after (C(--diff)); idempotent; check mode changes nothing.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
attributes:
  check_mode:
    support: full
    description: Returns the TVIEWs it would change in RV(actions) and RV(diff); changes nothing.
  diff_mode:
    support: full
    description: Each changed TVIEW's flags (or the suspension setting) before and after.
  idempotent:
    support: full
    description: TVIEWs already in the requested state are left alone.
options:
  state:
    description: V(disabled) marks the TVIEWs emergency disabled (or suspends triggers); V(enabled) undoes it.
    type: str
    required: true
    choices: [disabled, enabled]
  all:
    description: Every TVIEW of the catalog.
    type: bool
    default: false
  names:
    description: These TVIEWs (C(entity_name)); every name must exist.
    type: list
    elements: str
  error_pattern:
    description: The TVIEWs whose C(last_error) matches this PostgreSQL regular expression (runbook catalog only).
    type: str
  reason:
    description: Stored in C(emergency_disable_reason) with O(state=disabled).
    type: str
    default: Critical incident response
  incident_id:
    description: Prefixed to O(reason) as C([incident_id]) when given.
    type: str
  clear_errors:
    description: With O(state=enabled), also clear C(last_error) of the selected TVIEWs.
    type: bool
    default: false
  contract:
    description: Which pg_tviews contract to expect; V(auto) detects it.
    type: str
    default: auto
    choices: [auto, runbook, extension]
  roles:
    description: Extension contract only; suspend or resume for these roles (in this database) instead of the database.
    type: list
    elements: str
seealso:
  - module: incident.response.tview_info
  - module: incident.response.tview_queue
notes:
  - The runbook catalog needs C(UPDATE) on C(pg_tviews_metadata); the extension contract needs a superuser (or the
    owner of the database or role) for C(ALTER DATABASE/ROLE ... SET).
'''

EXAMPLES = r'''
- name: Emergency disable every TVIEW (emergency runbook, Step 1)
  incident.response.tview_state:
    login_db: app
    state: disabled
    all: true
    reason: Critical incident response
    incident_id: INC-1234

- name: Pause the TVIEWs failing on a permission error (checklist, Step 8)
  incident.response.tview_state:
    login_db: app
    state: disabled
    error_pattern: 'permission denied'

- name: Re-enable them and clear their errors (restoration option 2)
  incident.response.tview_state:
    login_db: app
    state: enabled
    all: true
    clear_errors: true
'''

RETURN = r'''
contract:
  description: The contract found, V(runbook) or V(extension).
  returned: always
  type: str
changed:
  description: Whether anything changed (or, in check mode, would).
  returned: always
  type: bool
tviews:
  description: The TVIEWs selected, each with C(name), C(before), C(after) and C(changed) (runbook catalog).
  returned: always
  type: list
  elements: dict
actions:
  description:
    - One entry per TVIEW (or setting) changed; C(done) false in check mode.
    - Runbook catalog, the C(detail) of each names the C(database) of the TVIEW (a run on many targets says which
      target each action was on).
  returned: always
  type: list
  elements: dict
diff:
  description: The selected TVIEWs' flags (or the suspension setting) before and after.
  returned: when diff mode is on
  type: dict
summary:
  description: One line saying what was (or would be) done.
  returned: always
  type: str
  sample: disabled 12 TVIEWs (8 already disabled)
executed_queries:
  description: The statements run.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    make_action,
    new_module,
    plural,
    remediation_result,
)
from ansible_collections.incident.response.plugins.module_utils._postgres import PgClient, postgres_common_argument_spec
from ansible_collections.incident.response.plugins.module_utils._tviews import (
    CONTRACT_CHOICES,
    EXTENSION,
    SUSPEND_SETTING,
    detect_contract,
    extension_suspension,
    is_on,
    pgsql,
)

FLAG_COLUMNS = ('emergency_disabled', 'emergency_disable_time', 'emergency_disable_reason', 'last_error')


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(
        state=dict(type='str', required=True, choices=['disabled', 'enabled']),
        all=dict(type='bool', default=False),
        names=dict(type='list', elements='str'),
        error_pattern=dict(type='str'),
        reason=dict(type='str', default='Critical incident response'),
        incident_id=dict(type='str'),
        clear_errors=dict(type='bool', default=False),
        contract=dict(type='str', default='auto', choices=CONTRACT_CHOICES),
        roles=dict(type='list', elements='str'),
    )
    return spec


def selection_problem(params):
    """Exactly one way of choosing TVIEWs; returns a message or None."""
    chosen = [name for name in ('all', 'names', 'error_pattern') if params.get(name)]
    if params.get('names') is not None and not params['names']:
        return 'names must not be empty'
    if params.get('error_pattern') == '':
        return 'error_pattern must not be empty'
    if not chosen:
        return 'choose the TVIEWs: all=true, names or error_pattern'
    if len(chosen) > 1:
        return 'all, names and error_pattern are mutually exclusive; got %s' % ', '.join(chosen)
    return None


def full_reason(params):
    if params.get('incident_id'):
        return '[%s] %s' % (params['incident_id'], params['reason'])
    return params['reason']


def wanted_change(row, state, clear_errors):
    """Whether a TVIEW row must change to reach the state (pure; unit tested)."""
    if state == 'disabled':
        return not row['emergency_disabled']
    return bool(row['emergency_disabled'] or row['emergency_disable_time'] is not None
                or row['emergency_disable_reason'] is not None or (clear_errors and row['last_error'] is not None))


def view(row):
    return dict((k, row[k]) for k in FLAG_COLUMNS)


def runbook(module, client):
    p = module.params
    if p['roles']:
        client.fail('roles applies to the extension contract only; the runbook catalog disables TVIEWs one by one')
    grant = client.query_one("SELECT has_table_privilege('pg_tviews_metadata', 'UPDATE') AS ok, current_user AS who")
    if not grant['ok']:
        client.fail('role %s may not update pg_tviews_metadata (it needs UPDATE on it): nothing was changed'
                    % grant['who'])
    # One transaction: the rows are locked (FOR UPDATE) from the read to the update. Check mode takes no
    # row lock: it must never wait behind a running refresh.
    with client.transaction():
        if p['error_pattern'] is not None:
            dummy, error = client.try_query("SELECT '' ~ %s AS ok", (p['error_pattern'],))
            if error:
                client.fail('error_pattern %r is not a valid PostgreSQL regular expression: %s' % (p['error_pattern'], error))
        where, params = 'true', []
        if p['names']:
            where, params = 'entity_name = ANY(%s)', [p['names']]
        elif p['error_pattern'] is not None:
            where, params = 'last_error ~ %s', [p['error_pattern']]
        rows = client.query("""
SELECT entity_name AS name, emergency_disabled,
       to_char(emergency_disable_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS emergency_disable_time,
       emergency_disable_reason, last_error
FROM pg_tviews_metadata WHERE {where} ORDER BY entity_name{lock}
""".format(where=where, lock='' if module.check_mode else ' FOR UPDATE'), params)
        if p['names']:
            unknown = sorted(set(p['names']) - set(r['name'] for r in rows))
            if unknown:
                client.fail('unknown TVIEW%s %s: not in pg_tviews_metadata; nothing was changed'
                            % ('s' if len(unknown) > 1 else '', ', '.join(unknown)))
        targets = [r for r in rows if wanted_change(r, p['state'], p['clear_errors'])]
        database = client.query_one('SELECT current_database() AS d')['d'] if targets else None
        reason = full_reason(p)
        updated = {}
        if targets and not module.check_mode:
            names = [r['name'] for r in targets]
            if p['state'] == 'disabled':
                after = client.query("""
UPDATE pg_tviews_metadata SET emergency_disabled = true, emergency_disable_time = now(),
       emergency_disable_reason = %s
WHERE entity_name = ANY(%s)
RETURNING entity_name AS name, emergency_disabled,
          to_char(emergency_disable_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS emergency_disable_time,
          emergency_disable_reason, last_error
""", (reason, names))
            else:
                after = client.query("""
UPDATE pg_tviews_metadata SET emergency_disabled = false, emergency_disable_time = NULL,
       emergency_disable_reason = NULL{clear}
WHERE entity_name = ANY(%s)
RETURNING entity_name AS name, emergency_disabled, NULL::text AS emergency_disable_time,
          emergency_disable_reason, last_error
""".format(clear=', last_error = NULL' if p['clear_errors'] else ''), (names,))
            updated = dict((r['name'], r) for r in after)

    result_rows, actions = [], []
    now_marker = '(now)'
    for row in rows:
        changing = row in targets
        if changing and row['name'] in updated:
            after = view(updated[row['name']])
        elif changing:  # check mode: what it would become
            after = view(row)
            if p['state'] == 'disabled':
                after.update(emergency_disabled=True, emergency_disable_time=now_marker, emergency_disable_reason=reason)
            else:
                after.update(emergency_disabled=False, emergency_disable_time=None, emergency_disable_reason=None)
                if p['clear_errors']:
                    after['last_error'] = None
        else:
            after = view(row)
        result_rows.append(dict(name=row['name'], before=view(row), after=after, changed=changing))
        if changing:
            detail = dict(reason=reason) if p['state'] == 'disabled' else dict(clear_errors=p['clear_errors'])
            detail['database'] = database  # many targets at once: which target's TVIEW
            actions.append(make_action('disable' if p['state'] == 'disabled' else 'enable', row['name'], detail,
                                       done=not module.check_mode))
    verb = 'disable' if p['state'] == 'disabled' else 'enable'
    done = ('would %s' % verb) if module.check_mode else (verb + 'd')
    summary = '%s %s' % (done, plural(len(targets), 'TVIEW'))
    if len(rows) != len(targets):
        summary += ' (%d already %s)' % (len(rows) - len(targets), p['state'])
    if rows and not targets:
        summary = 'nothing to %s: %s already %s' % (verb, plural(len(rows), 'TVIEW'), p['state'])
    if not rows:
        summary = 'no TVIEW matches; nothing to %s' % verb
    diff = dict(before=dict((r['name'], r['before']) for r in result_rows if r['changed']),
                after=dict((r['name'], r['after']) for r in result_rows if r['changed']))
    return bool(targets), actions, summary, diff, dict(tviews=result_rows)


def extension(module, client):
    p = module.params
    if p['names'] or p['error_pattern'] is not None:
        client.fail('the pg_tviews extension has no per-TVIEW emergency flag (and no last_error to match): it '
                    'suspends its triggers for a database or roles (pg_tviews.suspend_triggers); use all=true, '
                    'optionally with roles')
    if p['clear_errors']:
        client.fail('clear_errors: the pg_tviews extension keeps no last_error to clear')
    before = extension_suspension(client)
    database = client.query_one('SELECT current_database() AS d')['d']
    want_on = p['state'] == 'disabled'
    targets = []
    if p['roles']:
        known = client.query('SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)', (p['roles'],))
        unknown = sorted(set(p['roles']) - set(r['rolname'] for r in known))
        if unknown:
            client.fail('unknown role%s %s; nothing was changed' % ('s' if len(unknown) > 1 else '', ', '.join(unknown)))
        for role in p['roles']:
            current = before['roles'].get('%s in %s' % (role, database))
            if is_on(current) != want_on or (not want_on and current is not None):
                targets.append(('role', role, current))
    else:
        current = before['database']
        if is_on(current) != want_on or (not want_on and current is not None):
            targets.append(('database', database, current))
    actions = []
    for kind, name, current in targets:
        if kind == 'role':
            target = pgsql.SQL('ALTER ROLE {} IN DATABASE {}').format(pgsql.Identifier(name), pgsql.Identifier(database))
        else:
            target = pgsql.SQL('ALTER DATABASE {}').format(pgsql.Identifier(name))
        action = pgsql.SQL('SET {} = on' if want_on else 'RESET {}').format(pgsql.SQL(SUSPEND_SETTING))
        if not module.check_mode:
            client.execute(pgsql.SQL(' ').join([target, action]))
        actions.append(make_action('suspend_triggers' if want_on else 'resume_triggers', '%s %s' % (kind, name),
                                   dict(before=current, after='on' if want_on else None), done=not module.check_mode))
    after = extension_suspension(client) if targets and not module.check_mode else before
    verb = 'suspend' if want_on else 'resume'
    past = 'suspended' if want_on else 'resumed'
    scope = ('roles %s' % ', '.join(p['roles'])) if p['roles'] else 'database %s' % database
    if targets:
        where = ', '.join('%s %s' % (t[0], t[1]) for t in targets)
        done = 'would ' + verb if module.check_mode else past
        summary = '%s TVIEW triggers for %s (%s)' % (done, where, SUSPEND_SETTING)
    else:
        summary = 'TVIEW triggers already %s for %s; nothing to do' % (past, scope)
    predicted = dict(database=after['database'], roles=dict(after['roles']))
    if module.check_mode:
        for kind, name, current in targets:
            if kind == 'role':
                predicted['roles']['%s in %s' % (name, database)] = 'on' if want_on else None
            else:
                predicted['database'] = 'on' if want_on else None
    diff = dict(before=dict(database=before['database'], roles=before['roles']), after=predicted)
    return bool(targets), actions, summary, diff, dict(tviews=[], suspension=after)


def main():
    module = new_module(AnsibleModule, argument_spec=argument_spec(), supports_check_mode=True)
    problem = selection_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    client = PgClient(module)
    contract = detect_contract(client, module.params['contract'])
    changed, actions, summary, diff, facts = (extension if contract == EXTENSION else runbook)(module, client)
    client.close()
    module.exit_json(**remediation_result(changed, actions, summary, diff=diff, check_mode=module.check_mode,
                                          want_diff=module._diff, contract=contract, executed_queries=client.queries,
                                          **facts))


if __name__ == '__main__':
    main()
