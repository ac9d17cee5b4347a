#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pgbouncer_pool
short_description: Reset, pause, resume or kill a PgBouncer database's pool through the admin console
version_added: 0.1.0
description:
  - Sends one of PgBouncer's admin commands for each database named in O(databases), never for all databases
    at once (the command without a name), the gentle alternative to restarting PgBouncer.
  - V(reconnect) (C(RECONNECT db)) closes each server connection of the database when its client releases it
    (end of the transaction in transaction pooling, of the session in session pooling) and opens new ones on
    demand; clients are not disconnected.
  - V(pause) (C(PAUSE db)) waits until every server connection is released, closes them and makes new queries of
    clients wait (clients stay connected); bounded by O(wait_timeout), past which C(RESUME db) is sent so that the
    database runs as before, and the module fails naming the bound.
  - V(resume) (C(RESUME db)) ends a pause (or the pause a C(KILL) leaves).
  - V(kill) (C(KILL db)) drops every client and server connection of the database at once (transactions are rolled
    back by PostgreSQL); refused unless O(allow_kill=true). PgBouncer leaves a killed database paused; the module
    sends C(RESUME db) after it unless O(resume_after_kill=false).
  - V(wait_close) (C(WAIT_CLOSE db)) waits until the server connections marked by a C(RECONNECT) (or a C(RELOAD))
    are closed, bounded by O(wait_timeout).
  - Idempotent from PgBouncer's state (C(SHOW DATABASES), C(SHOW SERVERS), C(SHOW CLIENTS)) - a paused database is
    not paused again, resuming a running one changes nothing, C(RECONNECT) is not sent when every server connection
    is already marked for closing (or there is none), C(WAIT_CLOSE) when none is marked, C(KILL) when the database
    has no connection.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.pgbouncer
attributes:
  check_mode:
    support: full
    description: Reads the state and returns the commands it would send (RV(commands), RV(actions) not done); sends none.
  diff_mode:
    support: full
    description: Each database's state (paused, disabled, clients, servers, servers marked for closing) before and after.
  idempotent:
    support: full
    description: A second run finds nothing to do (see the description) and reports RV(changed=false).
options:
  action:
    description: The admin command to send for each database.
    type: str
    required: true
    choices: [reconnect, pause, resume, kill, wait_close]
  databases:
    description:
      - The PgBouncer databases (names of its C([databases]) section) to act on. Required and never empty - the
        module does not send the all-databases form of a command; to act on every database, name each one.
      - A name PgBouncer does not know, or its admin console C(pgbouncer), fails the module before anything is sent.
    type: list
    elements: str
  allow_kill:
    description:
      - O(action=kill) is refused unless this is true - C(KILL) disconnects every client of the database at once.
    type: bool
    default: false
  resume_after_kill:
    description: Send C(RESUME db) after C(KILL db), so that clients can connect again at once.
    type: bool
    default: true
  wait_timeout:
    description:
      - Longest wait for C(PAUSE) (which waits for transactions to end) and C(WAIT_CLOSE), as a duration or
        seconds. Other commands are bounded by O(command_timeout).
    type: raw
    default: 30s
seealso:
  - module: incident.response.pgbouncer_info
'''

EXAMPLES = r'''
- name: Gentle reset - new server connections as transactions end
  incident.response.pgbouncer_pool:
    action: reconnect
    databases: [schedgen]

- name: Wait until the old server connections are closed
  incident.response.pgbouncer_pool:
    action: wait_close
    databases: [schedgen]
    wait_timeout: 2m

- name: Drop every connection of one database (gated)
  incident.response.pgbouncer_pool:
    action: kill
    databases: [schedgen]
    allow_kill: true
'''

RETURN = r'''
changed:
  description: True exactly when RV(actions) is not empty.
  returned: always
  type: bool
actions:
  description: One entry per command sent (or, in check mode, that would be sent).
  returned: always
  type: list
  elements: dict
  sample: [{"action": "pause", "target": "scheduler", "done": true,
            "detail": {"command": "PAUSE \"scheduler\"", "clients": 4, "servers": 3}}]
summary:
  description: One line saying what was (or would be) sent.
  returned: always
  type: str
  sample: 'sent PAUSE "scheduler"'
commands:
  description: The admin commands sent (or that would be sent, in check mode), in order.
  returned: always
  type: list
  elements: str
databases:
  description: Each named database's state after the run (before it, in check mode).
  returned: always
  type: dict
  sample: {"scheduler": {"paused": true, "disabled": false, "clients": 4, "servers": 0, "close_needed": 0}}
diff:
  description: The same state before and after, with C(--diff) only.
  returned: when the user asked for it (--diff) and there was something to do
  type: dict
executed_queries:
  description: The admin commands run, SHOW commands included.
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    MAX_DURATION,
    duration_param,
    make_action,
    new_module,
    remediation_result,
    wait_until,
)
from ansible_collections.incident.response.plugins.module_utils._pgbouncer import (
    ADMIN_DB,
    PgBouncerAdmin,
    connection_summary,
    database_views,
    pgbouncer_argument_spec,
    quote_name,
)

VERBS = dict(reconnect='RECONNECT', pause='PAUSE', resume='RESUME', kill='KILL', wait_close='WAIT_CLOSE')
WAITING_VERBS = ('PAUSE', 'WAIT_CLOSE')


def validate_databases(names):
    """The error message for the ``databases`` option, or None."""
    if not names:
        return ('databases must name at least one PgBouncer database: this module never sends a command for all '
                'databases at once (PAUSE, KILL, RECONNECT without a name); to act on every database, name each one')
    for name in names:
        if not isinstance(name, str) or not name.strip():
            return 'databases must not contain an empty name'
    if ADMIN_DB in names:
        return 'databases must not name %s: it is PgBouncer\'s admin console, not a pool' % ADMIN_DB
    if len(set(names)) != len(names):
        return 'databases names a database more than once: %s' % ', '.join(names)
    return None


def database_state(views, clients, servers):
    """{name: paused, disabled, clients, servers, close_needed} for the named databases."""
    state = {}
    for name, view in views.items():
        state[name] = dict(paused=view['paused'], disabled=view['disabled'],
                           clients=clients.get(name, {}).get('total', 0),
                           servers=servers.get(name, {}).get('total', 0),
                           close_needed=servers.get(name, {}).get('close_needed', 0))
    return state


def plan(action, names, state, resume_after_kill=True):
    """The commands to send, as (database, verb, why) - pure, from the state read."""
    steps = []
    notes = []
    for name in names:
        s = state[name]
        if action == 'pause':
            if s['paused']:
                notes.append('%s is already paused' % name)
            else:
                steps.append((name, 'PAUSE'))
        elif action == 'resume':
            if s['paused']:
                steps.append((name, 'RESUME'))
            else:
                notes.append('%s is not paused' % name)
        elif action == 'reconnect':
            if s['servers'] - s['close_needed'] > 0:
                steps.append((name, 'RECONNECT'))
            else:
                notes.append('%s has no server connection left to reconnect' % name)
        elif action == 'wait_close':
            if s['close_needed']:
                steps.append((name, 'WAIT_CLOSE'))
            else:
                notes.append('%s has no server connection marked for closing' % name)
        elif action == 'kill':
            if s['clients'] or s['servers']:
                steps.append((name, 'KILL'))
                if resume_after_kill:
                    steps.append((name, 'RESUME'))
            elif s['paused'] and resume_after_kill:
                steps.append((name, 'RESUME'))
            else:
                notes.append('%s has no connection to kill' % name)
    return steps, notes


def servers_of(admin, name):
    return [row for row in admin.show('SERVERS') if row.get('database') == name]


def predict(state, steps):
    """The state the steps would leave (the --diff of check mode): pure."""
    after = dict((name, dict(view)) for name, view in state.items())
    for name, verb in steps:
        s = after[name]
        if verb == 'PAUSE':
            s.update(paused=True, servers=0, close_needed=0)
        elif verb == 'RESUME':
            s['paused'] = False
        elif verb == 'RECONNECT':
            s['close_needed'] = s['servers']
        elif verb == 'WAIT_CLOSE':
            s.update(servers=s['servers'] - s['close_needed'], close_needed=0)
        elif verb == 'KILL':
            s.update(clients=0, servers=0, close_needed=0, paused=True)
    return after


def read_state(admin, names):
    views = database_views(admin.show('DATABASES'))
    unknown = [name for name in names if name not in views]
    if unknown:
        admin.fail('PgBouncer at %s does not know the database%s %s (it serves: %s); nothing was sent'
                   % (admin.target, 's' if len(unknown) > 1 else '', ', '.join(unknown),
                      ', '.join(sorted(views)) or 'none'))
    clients = connection_summary(admin.show('CLIENTS'))
    servers = connection_summary(admin.show('SERVERS'))
    views = dict((name, views[name]) for name in names)
    return database_state(views, clients, servers)


def main():
    argument_spec = pgbouncer_argument_spec()
    argument_spec.update(
        action=dict(type='str', required=True, choices=sorted(VERBS)),
        databases=dict(type='list', elements='str'),
        allow_kill=dict(type='bool', default=False),
        resume_after_kill=dict(type='bool', default=True),
        wait_timeout=dict(type='raw', default='30s'),
    )
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    names = p['databases'] or []
    problem = validate_databases(names)
    if problem:
        module.fail_json(msg=problem)
    if p['action'] == 'kill' and not p['allow_kill']:
        module.fail_json(msg='action=kill drops every client and server connection of %s at once: set '
                         'allow_kill: true to do it (reconnect is the gentle reset)' % ', '.join(names))
    wait_timeout = duration_param(module, 'wait_timeout', minimum=0.1, maximum=MAX_DURATION, required=True)

    admin = PgBouncerAdmin(module)
    before = read_state(admin, names)
    steps, notes = plan(p['action'], names, before, p['resume_after_kill'])
    commands = ['%s %s' % (verb, quote_name(name)) for name, verb in steps]

    def action_entry(name, verb, done):
        return make_action(verb.lower(), name, dict(command='%s %s' % (verb, quote_name(name)),
                                                    clients=before[name]['clients'], servers=before[name]['servers'],
                                                    paused=before[name]['paused']), done=done)

    if module.check_mode or not steps:
        actions = [action_entry(name, verb, False) for name, verb in steps]
        if steps:
            summary = 'would send %s' % '; '.join(commands)
        else:
            summary = '%s; nothing to do' % '; '.join(notes)
        admin.close()
        module.exit_json(**remediation_result(bool(actions), actions, summary,
                                              diff=dict(before=before, after=predict(before, steps)),
                                              check_mode=module.check_mode,
                                              want_diff=module._diff, commands=commands, databases=before,
                                              executed_queries=admin.queries))

    actions = []
    for name, verb in steps:
        started = time.monotonic()
        deadline = wait_timeout if verb in WAITING_VERBS else None
        dummy, error = admin.try_command(verb, name, deadline=deadline)
        timed_out = admin.timed_out
        if error is None and verb == 'PAUSE':
            # Some PgBouncer versions (1.18) answer PAUSE of one database before its servers are released: wait
            # for what PAUSE promises (no server connection left), within what is left of wait_timeout.
            left = max(wait_timeout - (time.monotonic() - started), 0.1)
            released, dummy, dummy = wait_until(lambda: not servers_of(admin, name), left, 0.5)
            if not released:
                error, timed_out = 'server connections still held', True
        if error is None:
            actions.append(action_entry(name, verb, True))
            continue
        queries = admin.queries
        admin.close()
        msg = '%s %s failed on PgBouncer at %s: %s' % (verb, quote_name(name), admin.target, error)
        if verb == 'PAUSE' and timed_out:
            # The pause goes on inside PgBouncer after we hang up: undo it, so the database runs as before.
            undo = PgBouncerAdmin(module)
            dummy, undo_error = undo.try_command('RESUME', name)
            queries += undo.queries
            undo.close()
            msg = ('PAUSE %s did not complete within wait_timeout %s: clients still hold server connections in '
                   'transactions; %s' % (quote_name(name), p['wait_timeout'],
                                         'RESUME was sent, the database runs as before' if undo_error is None
                                         else 'RESUME failed too (%s): send RESUME %s by hand'
                                         % (undo_error, quote_name(name))))
        elif verb == 'WAIT_CLOSE' and timed_out:
            msg = ('WAIT_CLOSE %s did not complete within wait_timeout %s: server connections marked for closing '
                   'are still in use (their clients have not released them)' % (quote_name(name), p['wait_timeout']))
        module.fail_json(msg=msg, actions=actions, commands=commands, executed_queries=queries)

    after = read_state(admin, names)
    admin.close()
    module.exit_json(**remediation_result(True, actions, 'sent %s' % '; '.join(commands),
                                          diff=dict(before=before, after=after), check_mode=False,
                                          want_diff=module._diff, commands=commands, databases=after,
                                          executed_queries=admin.queries))


if __name__ == '__main__':
    main()
