#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: tview_queue
short_description: Inspect, archive-then-clear and restore the pg_tviews refresh queue
version_added: 0.1.0
description:
  - "O(action=inspect): the pending refreshes of C(pg_tviews_queue) (count, oldest age, per TVIEW) and what
    the archive holds per incident."
  - "O(action=archive): the runbook's C(DELETE FROM pg_tviews_queue WHERE processed_at IS NULL), made safe:
    the pending rows are moved into C(pg_tviews_queue_archive) (created when missing, next to the queue),
    tagged with O(incident_id) and the time, in one statement, so one transaction: either both happen or
    neither. Nothing is lost."
  - "O(action=restore): puts the rows archived under O(incident_id) back into the queue (with their ids and
    times) and marks them C(restored_at) in the archive, in one statement."
  - Counts what each step moved; idempotent (a second archive finds no pending row, a second restore finds
    nothing left to restore); check mode counts and changes nothing.
  - The extension contract keeps no queue; there the module changes nothing and says so.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
attributes:
  check_mode:
    support: full
    description: Counts the rows it would move; moves nothing, creates nothing.
  diff_mode:
    support: full
    description: Pending and archived counts before and after.
  idempotent:
    support: full
    description: Rows moved are no longer pending (archive) or no longer unrestored (restore).
options:
  action:
    description: What to do.
    type: str
    default: inspect
    choices: [inspect, archive, restore]
  incident_id:
    description: The tag of the archived rows; required with V(archive) and V(restore).
    type: str
  names:
    description: Only the queue rows of these TVIEWs (C(entity_name)).
    type: list
    elements: str
  contract:
    description: Which pg_tviews contract to expect; V(auto) detects it.
    type: str
    default: auto
    choices: [auto, runbook, extension]
  top:
    description: How many TVIEWs to list in RV(pending_by_tview).
    type: int
    default: 20
  return_rows:
    description: Also return the pending rows themselves in RV(rows) (evidence), as they were before any change.
    type: bool
    default: false
  max_rows:
    description: With O(return_rows=true), return at most this many rows (oldest first).
    type: int
    default: 100000
seealso:
  - module: incident.response.tview_info
  - module: incident.response.tview_state
notes:
  - Archive needs C(SELECT) and C(DELETE) on C(pg_tviews_queue) and C(INSERT) on the archive (or C(CREATE) on
    the schema the first time); restore needs C(INSERT) on the queue and C(UPDATE) on the archive.
'''

EXAMPLES = r'''
- name: Archive then clear the pending refreshes (emergency runbook, Step 1)
  incident.response.tview_queue:
    login_db: app
    action: archive
    incident_id: INC-1234

- name: Put them back once the incident is over
  incident.response.tview_queue:
    login_db: app
    action: restore
    incident_id: INC-1234
'''

RETURN = r'''
contract:
  description: The contract found, V(runbook) or V(extension).
  returned: always
  type: str
changed:
  description: Whether rows were moved (or, in check mode, would be).
  returned: always
  type: bool
pending:
  description: Pending rows (C(processed_at IS NULL)) now (before, in check mode).
  returned: always
  type: int
oldest_pending_seconds:
  description: Age of the oldest pending row.
  returned: always
  type: float
pending_by_tview:
  description: Pending rows per TVIEW, most first, at most O(top).
  returned: always
  type: list
  elements: dict
rows:
  description: The pending rows before any change (every column, as JSON), oldest first, at most O(max_rows).
  returned: when O(return_rows=true)
  type: list
  elements: dict
rows_truncated:
  description: Whether more pending rows exist than RV(rows) holds.
  returned: when O(return_rows=true)
  type: bool
archived:
  description: Rows moved into the archive by this run (would be, in check mode).
  returned: always
  type: int
restored:
  description: Rows put back into the queue by this run (would be, in check mode).
  returned: always
  type: int
archive:
  description: C(table) of the archive and its rows per incident (C(incident_id), C(rows), C(restored)).
  returned: always
  type: dict
actions:
  description: One entry per step done (or to be done in check mode).
  returned: always
  type: list
  elements: dict
diff:
  description: Pending and archived counts before and after.
  returned: when diff mode is on
  type: dict
summary:
  description: One line saying what was (or would be) done.
  returned: always
  type: str
  sample: archived 20000 pending refreshes under incident INC-1234 into public.pg_tviews_queue_archive
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
    Queue,
    detect_contract,
)


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(
        action=dict(type='str', default='inspect', choices=['inspect', 'archive', 'restore']),
        incident_id=dict(type='str'),
        names=dict(type='list', elements='str'),
        contract=dict(type='str', default='auto', choices=CONTRACT_CHOICES),
        top=dict(type='int', default=20),
        return_rows=dict(type='bool', default=False),
        max_rows=dict(type='int', default=100000),
    )
    return spec


def argument_problem(params):
    if params['action'] in ('archive', 'restore') and not (params.get('incident_id') or '').strip():
        return 'action=%s needs incident_id (the tag of the archived rows)' % params['action']
    if params.get('names') is not None and not params['names']:
        return 'names must not be empty'
    if params['max_rows'] < 0:
        return 'max_rows must not be negative, got %s' % params['max_rows']
    if params['top'] < 0:
        return 'top must not be negative, got %s' % params['top']
    return None


def main():
    module = new_module(AnsibleModule, argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    problem = argument_problem(p)
    if problem:
        module.fail_json(msg=problem)
    client = PgClient(module)
    contract = detect_contract(client, p['contract'])
    if contract == EXTENSION:
        client.close()
        module.exit_json(**remediation_result(
            False, [], 'the pg_tviews extension keeps no refresh queue: nothing to %s'
            % ('inspect' if p['action'] == 'inspect' else p['action']),
            contract=contract, pending=None, oldest_pending_seconds=None, pending_by_tview=[], archived=0,
            restored=0, archive=dict(table=None, incidents=[]), executed_queries=client.queries))

    queue = Queue(client, p['names'])
    pending_before, oldest, by_tview = queue.pending(p['top'])
    archived_before = queue.archive_counts()
    evidence = {}
    if p['return_rows']:
        evidence['rows'] = queue.rows(p['max_rows'])
        evidence['rows_truncated'] = len(evidence['rows']) < pending_before
    actions = []
    archived = restored = 0
    incident = p['incident_id']
    if p['action'] != 'inspect':
        missing = queue.privilege_problem(p['action'])
        if missing:
            client.fail('role %s lacks %s: nothing was %s' % (
                client.query_one('SELECT current_user AS u')['u'], ', '.join(missing),
                'archived' if p['action'] == 'archive' else 'restored'))
    if p['action'] == 'archive':
        archived = pending_before
        if pending_before:
            if not module.check_mode:
                with client.transaction():
                    queue.ensure_archive()
                    archived = queue.move_to_archive(incident)
            actions.append(make_action('archive_and_clear', 'pg_tviews_queue',
                                       dict(rows=archived, incident_id=incident, archive=queue.archive_name),
                                       done=not module.check_mode))
    elif p['action'] == 'restore':
        restored = queue.unrestored(incident)
        if restored and not module.check_mode:
            with client.transaction():
                restored = queue.move_back(incident)
        if restored:
            actions.append(make_action('restore', 'pg_tviews_queue',
                                       dict(rows=restored, incident_id=incident, archive=queue.archive_name),
                                       done=not module.check_mode))

    if actions and not module.check_mode:
        pending_after, oldest_after, by_tview_after = queue.pending(p['top'])
        archived_after = queue.archive_counts()
    else:
        pending_after, oldest_after, by_tview_after = pending_before, oldest, by_tview
        archived_after = archived_before
    client.close()

    if p['action'] == 'inspect':
        summary = '%s pending%s' % (plural(pending_before, 'refresh', 'refreshes'),
                                    '' if oldest is None else ', oldest %ds' % oldest)
    elif p['action'] == 'archive' and archived:
        moved = plural(archived, 'pending refresh', 'pending refreshes')
        verb = 'would archive' if module.check_mode else 'archived'
        summary = '%s %s under incident %s into %s' % (verb, moved, incident, queue.archive_name)
    elif p['action'] == 'archive':
        summary = 'no pending refresh: nothing to archive'
    elif restored:
        moved = plural(restored, 'refresh', 'refreshes')
        verb = 'would restore' if module.check_mode else 'restored'
        summary = '%s %s archived under incident %s' % (verb, moved, incident)
    else:
        summary = 'nothing archived under incident %s is left to restore' % incident

    def incident_rows(counts):
        if not incident or counts is None:
            return None
        return sum(r['rows'] for r in counts if r['incident_id'] == incident)

    result = dict(
        contract=contract,
        pending=pending_after,
        oldest_pending_seconds=None if oldest_after is None else round(oldest_after, 1),
        pending_by_tview=by_tview_after,
        archived=archived,
        restored=restored,
        archive=dict(table=queue.archive_name if queue.archive_exists else None, incidents=archived_after),
        executed_queries=client.queries,
    )
    result.update(evidence)
    predicted_pending = pending_before - archived + restored
    diff = dict(
        before=dict(pending=pending_before, archived_for_incident=incident_rows(archived_before)),
        after=dict(pending=predicted_pending if module.check_mode else pending_after,
                   archived_for_incident=incident_rows(archived_after) if not module.check_mode
                   else (incident_rows(archived_before) or 0) + archived))
    module.exit_json(**remediation_result(bool(actions), actions, summary, diff=diff, check_mode=module.check_mode,
                                          want_diff=module._diff, **result))


if __name__ == '__main__':
    main()
