#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: tview_emergency
short_description: Plan, then act on, the pg_tviews emergency protocol (or the system reset) in one transaction
version_added: 0.1.0
description:
  - "O(step=plan): the assessment of M(incident.response.tview_info) (emergency level, SEV, exit criteria) and the
    plan of O(protocol) computed from the same state, in one call and one read-only session that takes no lock:
    the refresh backends to cancel, the pending refreshes to archive then clear, the TVIEWs to disable (or, with
    O(protocol=reset), to re-enable with their errors cleared), the sessions to terminate (stabilisation).
    Returns RV(plan_digest), a hash of the state the plan was computed from, and RV(outcome), the summary of
    the run."
  - "O(step=act): the act phase in ONE transaction under C(pg_try_advisory_xact_lock(hashtext(O(lock_name)))): a
    second run is refused at once with one message naming the session that holds the lock; the lock ends with
    the transaction, however the run ends (a killed run leaves no lock: no background process is involved). Under
    the lock the state is read again and compared with O(plan_digest): when it changed (another run acted, a
    TVIEW was disabled, a refresh started), nothing is done and the module fails with
    C(the state changed since the plan: run the plan again). Then, in the transaction: the evidence is written
    under O(evidence_dir) (catalog as it was and the queue rows moved, streamed with C(COPY ... TO STDOUT) into
    files, never through Ansible), the refresh backends are cancelled, the pending refreshes are moved into
    C(pg_tviews_queue_archive) tagged with O(incident_id), the TVIEWs are disabled (extension contract: its
    triggers suspended for the database), the stabilisation sessions are terminated; then it commits and
    verifies (assessment and integrity check of every TVIEW, many per statement) and writes the summary of the run
    (RV(outcome)) as C(summary.json) next to the evidence."
  - "Evidence never overwrites evidence: each act writes into a new directory C(<protocol>-<UTC time>) under
    O(evidence_dir) (a suffix C(-2), C(-3) when that name exists), files created exclusively, mode 0600."
  - "Check mode (either step): computes the plan, takes no lock of any kind (no row lock, no advisory lock),
    writes nothing and returns what it would do."
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
  - incident.response.tviews
attributes:
  check_mode:
    support: full
    description: Returns the plan and what O(step=act) would do; takes no lock, writes nothing.
  diff_mode:
    support: none
    description: No diff; RV(plan) and RV(actions) say what changes.
  idempotent:
    support: full
    description: A second act finds nothing left to do (no backend, no pending row, every TVIEW disabled) and changes nothing.
options:
  step:
    description: V(plan) computes the assessment, the plan and its digest; V(act) carries the plan out.
    type: str
    required: true
    choices: [plan, act]
  protocol:
    description: V(disable) is the Critical Emergency Protocol; V(reset) the TVIEW system reset (restoration option 2).
    type: str
    default: disable
    choices: [disable, reset]
  plan_digest:
    description: RV(plan_digest) of the plan that was approved; required with O(step=act) unless O(approve_current_plan=true).
    type: str
  incident_id:
    description:
      - The incident (1-64 of C(A-Z a-z 0-9 . _ -), starting with a letter or digit, no C(/), no C(..)); tags the
        archived rows and the disable reason. Required with O(step=act); refused before anything is done when invalid.
    type: str
  evidence_dir:
    description: The directory (on the host that runs the module) under which each act writes its evidence directory.
    type: path
  reason:
    description: Stored in C(emergency_disable_reason) (prefixed with C([incident_id])) with O(protocol=disable).
    type: str
    default: Critical incident response
  refresh_pattern:
    description: Active sessions of this database whose query matches this (Python) regular expression are the refresh backends to cancel.
    type: str
    default: (?i)pg_tviews_refresh|refresh materialized view
  max_backends:
    description: Refuse when more backends than this would be cancelled, or terminated.
    type: int
    default: 20
  protected_roles:
    description: Sessions of members of these roles are never signalled.
    type: list
    elements: str
    default: [pg_monitor]
  protected_applications:
    description: Sessions with these application names are never signalled.
    type: list
    elements: str
    default: [pg_basebackup, pg_dump, pg_dumpall, pg_receivewal, pg_recvlogical, postgres_exporter]
  stabilise_age:
    description: Sessions idle in transaction, or waiting on a lock, at least this long are terminated (O(protocol=disable)).
    type: raw
    default: 30m
  lock_name:
    description: The advisory lock (its C(hashtext)) that lets one emergency or reset run act at a time.
    type: str
    default: incident.response/tview_emergency
  integrity_check:
    description: Read every TVIEW after the act (with O(step=plan), read them in the plan).
    type: bool
    default: true
  integrity_timeout:
    description: Statement timeout of each TVIEW read of the integrity check.
    type: raw
    default: 5s
  approve_current_plan:
    description:
      - With O(step=act) and no O(plan_digest), approve the plan computed under the lock; for a run approved before
        its plan was shown (C(-e approve=true), an AWX survey), one call instead of plan then act. Everything else
        holds (the lock, the caps, the evidence, the verification); the plan is returned, and with
        O(protocol=disable) nothing is done unless the emergency level calls for the protocol (RV(not_warranted)) or
        O(force=true).
    type: bool
    default: false
  force:
    description: With O(approve_current_plan=true) and O(protocol=disable), act even when the runbook's level does not call for the protocol.
    type: bool
    default: false
  return_tviews:
    description:
      - Return every TVIEW's row in RV(before) and RV(after) (C(tviews)) and one C(integrity) entry per TVIEW read.
      - "Off, those lists stay out of the result (C(integrity_failures) and C(integrity_checked) remain): with
        thousands of TVIEWs they would travel through Ansible on every run; the evidence's C(catalog.csv) has
        every row."
    type: bool
    default: false
seealso:
  - module: incident.response.tview_info
  - module: incident.response.tview_state
  - module: incident.response.tview_queue
notes:
  - The act needs what M(incident.response.tview_state), M(incident.response.tview_queue) and
    M(incident.response.pg_backends) need (UPDATE on the catalog, DELETE on the queue, INSERT on the archive,
    pg_signal_backend); it refuses before anything changes when the role lacks it.
  - With an approval given interactively long after the plan, new refreshes or an advancing queue are not a
    change (rows enqueued after the plan are archived too); another run's archive, a TVIEW disabled or enabled
    meanwhile, or a different set of backends to signal are.
'''

EXAMPLES = r'''
- name: Assess and plan
  incident.response.tview_emergency:
    login_db: app
    step: plan
  register: plan

- name: Act on the approved plan (one transaction, one run at a time)
  incident.response.tview_emergency:
    login_db: app
    step: act
    plan_digest: "{{ plan.plan_digest }}"
    incident_id: INC-1234
    evidence_dir: /var/tmp/incident-response/incidents/INC-1234/evidence
'''

RETURN = r'''
contract:
  description: The contract found, V(runbook) or V(extension).
  returned: always
  type: str
changed:
  description: Whether the act changed anything (in check mode, would).
  returned: always
  type: bool
before:
  description:
    - The assessment of M(incident.response.tview_info) (status, reasons, totals, emergency level, SEV, exit
      criteria; C(tviews) with O(return_tviews=true)) the plan was computed from.
  returned: always
  type: dict
after:
  description:
    - The assessment after the act, with the integrity check (O(step=plan) with O(integrity_check=true), the
      plan's state); C(integrity_ok), C(integrity_checked) (TVIEWs read), C(integrity_failures) (name and error
      of each TVIEW that cannot be read); C(integrity) and C(tviews) with O(return_tviews=true).
  returned: "when O(step=act) acted (not in check mode), or O(step=plan) with O(integrity_check=true)"
  type: dict
not_warranted:
  description: With O(approve_current_plan=true), true when nothing was done because the level does not call for the protocol.
  returned: with O(approve_current_plan=true)
  type: bool
outcome:
  description:
    - The summary of the run (the evidence's C(summary.json)), C(incident_id), C(check_mode) (true unless the act
      acted), C(database), C(contract), C(level_before), C(severity), C(plan_digest), C(cancelled), C(terminated),
      C(archived), one summary per step (C(cancel_summary), C(queue_summary), C(disable_summary),
      C(stabilise_summary)), C(integrity_ok), C(integrity_failures), C(restart_recommended), C(restart_note),
      C(exit_criteria), C(evidence_dir), C(evidence_files).
  returned: always
  type: dict
plan:
  description: The plan, C(cancel) and C(terminate) (the sessions), C(protected) (left alone), C(tviews) (to disable or enable),
    C(pending) (count, C(min_id), C(max_id)), C(has_work) and one summary per step (C(cancel_summary), C(queue_summary),
    C(tviews_summary), C(stabilise_summary)).
  returned: always
  type: dict
plan_digest:
  description: The hash of the state the plan was computed from; pass it to O(step=act).
  returned: always
  type: str
summaries:
  description: One line per step of what was (or would be) done, C(cancel), C(queue), C(tviews), C(stabilise).
  returned: always
  type: dict
cancelled:
  description: The pids signalled with pg_cancel_backend.
  returned: always
  type: list
  elements: int
terminated:
  description: The pids signalled with pg_terminate_backend.
  returned: always
  type: list
  elements: int
archived:
  description: Queue rows moved into the archive (would be, in check mode).
  returned: always
  type: int
tviews_changed:
  description: TVIEWs disabled or enabled (would be, in check mode); 1 for the database setting on the extension contract.
  returned: always
  type: int
evidence:
  description: C(dir) (this run's new evidence directory, null when nothing was written) and C(files), each with C(name),
    C(path), C(rows) (COPY files), C(bytes) and C(sha256).
  returned: always
  type: dict
lock:
  description: C(name) and C(key) of the advisory lock; C(holder) the session holding it when another run has it.
  returned: always
  type: dict
would_refuse:
  description: Why an act now would be refused (another run holds the lock, the state changed since the plan), or null.
  returned: with O(step=plan), or O(step=act) in check mode
  type: str
actions:
  description: One entry per step done (or to be done in check mode).
  returned: always
  type: list
  elements: dict
summary:
  description: One line saying what was (or would be) done.
  returned: always
  type: str
executed_queries:
  description: The statements run.
  returned: always
  type: list
  elements: str
'''

import datetime
import errno
import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    diagnosis_result,
    duration_param,
    make_action,
    new_module,
    plural,
    regex_param,
    remediation_result,
)
from ansible_collections.incident.response.plugins.module_utils._incident_core import IncidentError, validate_incident_id
from ansible_collections.incident.response.plugins.module_utils._postgres import (
    IDLE_IN_TRANSACTION_STATES,
    BackendCriteria,
    PgClient,
    is_client_backend,
    is_hidden,
    permission_problems,
    postgres_common_argument_spec,
    protection_reason,
    session_view,
)
from ansible_collections.incident.response.plugins.module_utils._tviews import (
    EXTENSION,
    SUSPEND_SETTING,
    Queue,
    assess,
    assessment_argument_spec,
    extension_suspension,
    is_on,
    pgsql,
    validate_assessment,
)

DIGEST_VERSION = 'v1'
STATE_CHANGED = 'the state changed since the plan: run the plan again'


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(assessment_argument_spec())
    spec.update(
        step=dict(type='str', required=True, choices=['plan', 'act']),
        protocol=dict(type='str', default='disable', choices=['disable', 'reset']),
        plan_digest=dict(type='str'),
        incident_id=dict(type='str'),
        evidence_dir=dict(type='path'),
        reason=dict(type='str', default='Critical incident response'),
        refresh_pattern=dict(type='str', default='(?i)pg_tviews_refresh|refresh materialized view'),
        max_backends=dict(type='int', default=20),
        protected_roles=dict(type='list', elements='str', default=['pg_monitor']),
        protected_applications=dict(type='list', elements='str', default=[
            'pg_basebackup', 'pg_dump', 'pg_dumpall', 'pg_receivewal', 'pg_recvlogical', 'postgres_exporter']),
        stabilise_age=dict(type='raw', default='30m'),
        lock_name=dict(type='str', default='incident.response/tview_emergency'),
        integrity_check=dict(type='bool', default=True),
        integrity_timeout=dict(type='raw', default='5s'),
        approve_current_plan=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        return_tviews=dict(type='bool', default=False),
    )
    return spec


def digest(state):
    """The plan digest: the version, the queue bound (the plan's highest pending id) and a sha256 of the state."""
    text = json.dumps(state, sort_keys=True, default=str, separators=(',', ':'))
    return '%s:%d:%s' % (DIGEST_VERSION, state['bound'] or 0, hashlib.sha256(text.encode('utf-8')).hexdigest())


def digest_bound(value):
    """The queue bound carried by a digest, or None when the value is not a digest of this module."""
    parts = (value or '').split(':')
    if len(parts) != 3 or parts[0] != DIGEST_VERSION or not parts[1].isdigit() or len(parts[2]) != 64:
        return None
    return int(parts[1])


class Protocol(object):
    def __init__(self, module, client, thresholds, integrity_ms, stabilise_age, pattern):
        self.module = module
        self.client = client
        self.p = module.params
        self.thresholds = thresholds
        self.integrity_ms = integrity_ms
        self.stabilise_age = stabilise_age
        self.pattern = pattern
        self.contract = None
        self.queue = None
        self.database = None

    # --- what the state is ----------------------------------------------------------------
    def assessment(self, integrity=False):
        status, reasons, result, context = assess(
            self.client, self.p['contract'], self.thresholds, error_limit=self.p['error_limit'], integrity=integrity,
            integrity_timeout_ms=self.integrity_ms, integrity_limit=self.p['integrity_limit'])
        self.contract = context['contract']
        self.database = result['database']
        if 'integrity' in result:
            result['integrity_checked'] = len(result['integrity'])
            result['integrity_failures'] = [r for r in result['integrity'] if not r['ok']]
        if not self.p['return_tviews']:
            result.pop('tviews', None)
            result.pop('integrity', None)
        return diagnosis_result(status, reasons, **result)

    def backends(self):
        """(cancel, terminate, protected) sessions of this database."""
        rows = self.client.activity(self.p['protected_roles'])
        cancel, terminate, protected = [], [], []
        refresh = BackendCriteria(states=['active'], datnames=[self.database], query_pattern=self.pattern)
        idle = BackendCriteria(states=list(IDLE_IN_TRANSACTION_STATES), datnames=[self.database],
                               min_state_age=self.stabilise_age)
        waiting = BackendCriteria(wait_event_types=['Lock'], datnames=[self.database], min_query_age=self.stabilise_age)
        for row in rows:
            if row.get('is_self'):
                continue
            wanted = None
            if self.p['protocol'] == 'disable' and refresh.matches(row):
                wanted = cancel
            elif self.p['protocol'] == 'disable' and (idle.matches(row) or waiting.matches(row)):
                wanted = terminate
            if wanted is None:
                continue
            reason = protection_reason(row, self.p['protected_applications'])
            if reason:
                if is_client_backend(row) or is_hidden(row):
                    protected.append(dict(session_view(row), reason=reason))
                continue
            wanted.append(row)
        return cancel, terminate, protected

    def tview_targets(self):
        """The TVIEWs (runbook) or database setting (extension) the protocol changes."""
        if self.contract == EXTENSION:
            current = extension_suspension(self.client)['database']
            if self.p['protocol'] == 'disable':
                return ['database %s' % self.database] if not is_on(current) else []
            return ['database %s' % self.database] if current is not None else []
        if self.p['protocol'] == 'disable':
            where = 'NOT emergency_disabled'
        else:
            where = ('emergency_disabled OR emergency_disable_time IS NOT NULL OR emergency_disable_reason IS NOT NULL '
                     'OR last_error IS NOT NULL')
        rows = self.client.query('SELECT entity_name AS name FROM pg_tviews_metadata WHERE %s ORDER BY 1' % where)
        return [r['name'] for r in rows]

    def pending(self, bound=None):
        if self.contract == EXTENSION:
            return dict(count=None, min_id=None, max_id=None)
        self.queue = self.queue or Queue(self.client, None)
        has_id = 'id' in self.queue.columns
        statement = pgsql.SQL('SELECT count(*) AS count, {lo} AS min_id, {hi} AS max_id FROM {queue} '
                              'WHERE processed_at IS NULL').format(
            lo=pgsql.SQL('min(id)' if has_id else 'NULL::bigint'), hi=pgsql.SQL('max(id)' if has_id else 'NULL::bigint'),
            queue=self.queue.queue)
        params = []
        if bound is not None and has_id:
            statement += pgsql.SQL(' AND id <= %s')
            params.append(bound)
        return self.client.query_one(statement, params)

    def survey(self, bound=None):
        """The state the plan is computed from, and the plan."""
        cancel, terminate, protected = self.backends()
        tviews = self.tview_targets()
        pending = self.pending(bound)
        state = dict(protocol=self.p['protocol'], contract=self.contract, database=self.database,
                     bound=int((pending['max_id'] or 0) if bound is None else bound),
                     pending=[pending['count'], pending['min_id'], pending['max_id']], tviews=tviews,
                     cancel=sorted(r['pid'] for r in cancel), terminate=sorted(r['pid'] for r in terminate))
        plan = dict(cancel=[session_view(r) for r in cancel], terminate=[session_view(r) for r in terminate],
                    protected=protected, tviews=tviews, pending=pending,
                    has_work=bool(cancel or terminate or tviews or pending['count']))
        return state, plan, (cancel, terminate)

    # --- what it would do / did ------------------------------------------------------------
    def summaries(self, plan, done, archived=None, changed_tviews=None):
        p = self.p
        incident = p['incident_id'] or '(the incident)'
        cancel, terminate = len(plan['cancel']), len(plan['terminate'])
        pending = plan['pending']['count'] if archived is None else archived
        tviews = len(plan['tviews']) if changed_tviews is None else changed_tviews
        s = {}
        if self.p['protocol'] == 'reset':
            s['cancel'] = 'no backend is signalled by a reset'
        elif cancel:
            s['cancel'] = '%s %s' % ('cancelled' if done else 'would cancel', plural(cancel, 'backend'))
        else:
            s['cancel'] = 'no backend matches; nothing to cancel'
        if plan['protected']:
            s['cancel'] += '; %s left alone' % plural(len(plan['protected']), 'protected backend')
        if self.contract == EXTENSION:
            s['queue'] = 'the pg_tviews extension keeps no refresh queue: nothing to archive'
        elif pending:
            s['queue'] = '%s %s under incident %s into %s' % (
                'archived' if done else 'would archive', plural(pending, 'pending refresh', 'pending refreshes'),
                incident, self.queue.archive_name)
        else:
            s['queue'] = 'no pending refresh: nothing to archive'
        verb = 'disable' if p['protocol'] == 'disable' else 'enable'
        if self.contract == EXTENSION:
            word = 'suspend' if p['protocol'] == 'disable' else 'resume'
            s['tviews'] = ('%s TVIEW triggers for database %s (%s)' % (
                (word + 'ed') if done else 'would ' + word, self.database, SUSPEND_SETTING)) if tviews else \
                'TVIEW triggers already %sed for database %s; nothing to do' % (word, self.database)
        elif tviews:
            s['tviews'] = '%s %s' % ((verb + 'd') if done else 'would ' + verb, plural(tviews, 'TVIEW'))
        else:
            s['tviews'] = 'nothing to %s: every TVIEW already %sd' % (verb, verb)
        if self.p['protocol'] == 'reset':
            s['stabilise'] = 'no session is terminated by a reset'
        elif terminate:
            s['stabilise'] = '%s %s (idle in transaction or waiting on locks for %ds or more)' % (
                'terminated' if done else 'would terminate', plural(terminate, 'session'), self.stabilise_age)
        else:
            s['stabilise'] = 'no session idle in transaction or waiting on locks for %ds or more' % self.stabilise_age
        return s

    # --- the act ------------------------------------------------------------------------------
    def lock_key(self):
        return self.client.query_one('SELECT hashtext(%s)::bigint AS k', (self.p['lock_name'],))['k']

    def holder(self, key):
        return self.client.query_one("""
SELECT a.pid, a.usename, a.application_name, host(a.client_addr) AS client_addr,
       to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS since
FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                                           WHERE datname = current_database())
  AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s::bigint
  AND a.pid <> pg_catalog.pg_backend_pid()
LIMIT 1""", (key,))

    def refuse_held(self, key):
        who = self.holder(key)
        if who:
            msg = ('another emergency run holds the lock %s (session pid %s, application_name %r, user %s%s%s): '
                   'nothing was changed; wait for it to end, then run the plan again'
                   % (self.p['lock_name'], who['pid'], who['application_name'], who['usename'],
                      ', from %s' % who['client_addr'] if who['client_addr'] else '',
                      ', since %s' % who['since'] if who['since'] else ''))
        else:
            msg = ('another emergency run holds the lock %s (its session is not visible to this role): nothing was '
                   'changed; wait for it to end, then run the plan again' % self.p['lock_name'])
        self.client.fail(msg, lock=dict(name=self.p['lock_name'], key=key, holder=who))


class Evidence(object):
    """A new directory per run under evidence_dir; files created exclusively, each with rows, bytes and sha256."""

    def __init__(self, module, base, protocol):
        self.module = module
        self.files = []
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        try:
            os.makedirs(base, 0o700, exist_ok=True)
        except OSError as exc:
            module.fail_json(msg='cannot create the evidence directory %s: %s; nothing was changed' % (base, exc.strerror))
        for attempt in range(1, 1000):
            name = '%s-%s%s' % (protocol, stamp, '' if attempt == 1 else '-%d' % attempt)
            path = os.path.join(base, name)
            try:
                os.mkdir(path, 0o700)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    continue
                module.fail_json(msg='cannot create the evidence directory %s: %s; nothing was changed'
                                 % (path, exc.strerror))
            self.path = path
            return
        module.fail_json(msg='cannot find a new evidence directory name under %s; nothing was changed' % base)

    def open(self, name):
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        return path, os.fdopen(fd, 'wb')

    def add(self, name, path, size, sha, rows=None):
        entry = dict(name=name, path=path, bytes=size, sha256=sha)
        if rows is not None:
            entry['rows'] = rows
        self.files.append(entry)
        return entry

    def write_json(self, name, data):
        body = (json.dumps(data, indent=2, sort_keys=True, default=str) + '\n').encode('utf-8')
        path, handle = self.open(name)
        with handle:
            handle.write(body)
        return self.add(name, path, len(body), hashlib.sha256(body).hexdigest())

    def copy(self, client, name, statement, params=None):
        path, handle = self.open(name)
        hashing = _HashingWriter(handle)
        with handle:
            rows = client.copy_to(statement, params, hashing)
        return self.add(name, path, hashing.size, hashing.sha.hexdigest(), rows=rows)


class _HashingWriter(object):
    def __init__(self, handle):
        self.handle = handle
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        if not isinstance(data, bytes):
            data = data.encode('utf-8')
        self.sha.update(data)
        self.size += len(data)
        return self.handle.write(data)


def validate(module):
    p = module.params
    if p['step'] == 'act' and not p['plan_digest'] and not p['approve_current_plan']:
        module.fail_json(msg='step=act needs plan_digest (the plan_digest returned by step=plan): approve a plan first')
    if p['plan_digest'] and p['approve_current_plan']:
        module.fail_json(msg='plan_digest and approve_current_plan are mutually exclusive: approve one plan')
    if p['plan_digest'] and digest_bound(p['plan_digest']) is None:
        module.fail_json(msg='plan_digest %r is not a plan digest of tview_emergency (run step=plan)'
                         % p['plan_digest'][:80])
    if p['step'] == 'act' and not p['incident_id']:
        module.fail_json(msg='step=act needs incident_id (it tags the archived rows and names the evidence)')
    if p['incident_id'] is not None:
        try:
            validate_incident_id(p['incident_id'])
        except IncidentError as exc:
            module.fail_json(msg='%s; nothing was changed' % exc)
    if p['step'] == 'act' and not p['evidence_dir'] and not module.check_mode:
        module.fail_json(msg='step=act needs evidence_dir (where the evidence of the run is written)')
    if not p['lock_name']:
        module.fail_json(msg='lock_name must not be empty')
    if p['max_backends'] < 1:
        module.fail_json(msg='max_backends must be at least 1, got %s' % p['max_backends'])
    thresholds, integrity_ms = validate_assessment(module, timeout_name='integrity_timeout')
    stabilise_age = duration_param(module, 'stabilise_age', allow_empty=False, required=True)
    pattern = regex_param(module, 'refresh_pattern')
    if pattern is None:
        module.fail_json(msg='refresh_pattern must be a regular expression')
    return thresholds, integrity_ms, stabilise_age, pattern


def cap_problem(p, cancel, terminate):
    for what, rows in (('cancel', cancel), ('terminate', terminate)):
        if len(rows) > p['max_backends']:
            return ('refusing to %s %d backends: more than max_backends=%d match; narrow the filters or raise '
                    'max_backends. Matching pids: %s; nothing was changed'
                    % (what, len(rows), p['max_backends'], ', '.join(str(r['pid']) for r in rows)))
    return None


RESTART_SAFE = 'Integrity check passed: a controlled restart (playbooks/tview_restart.yml) is safe if still needed.'
RESTART_UNSAFE = 'Data integrity issues detected: do NOT restart; restore from backup (playbooks/tview_restore_check.yml).'


def outcome(p, proto, before, after, plan_digest, summaries, acted, cancelled=(), terminated=(), archived=0,
            evidence=None):
    """The summary of the run (what the role prints and the evidence's summary.json holds)."""
    after = after or before
    integrity_ok = after.get('integrity_ok')
    return dict(
        incident_id=p['incident_id'], check_mode=not acted, database=proto.database, contract=proto.contract,
        level_before=before.get('emergency_label'), severity=before.get('severity'), plan_digest=plan_digest,
        cancelled=list(cancelled), cancel_summary=summaries['cancel'], queue_summary=summaries['queue'],
        archived=archived, disable_summary=summaries['tviews'], stabilise_summary=summaries['stabilise'],
        terminated=list(terminated), integrity_ok=integrity_ok, integrity_failures=after.get('integrity_failures') or [],
        restart_recommended=False, restart_note=RESTART_SAFE if integrity_ok else RESTART_UNSAFE,
        exit_criteria=after.get('exit_criteria'),
        evidence_dir=evidence.path if evidence else 'none (nothing to change)',
        evidence_files=list(evidence.files) if evidence else [])


def main():
    module = new_module(AnsibleModule, argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    thresholds, integrity_ms, stabilise_age, pattern = validate(module)
    client = PgClient(module)
    name = 'incident.response tview_emergency %s %s' % (p['protocol'], p['incident_id'] or p['step'])
    settings = [('application_name', name[:63])]
    if client.version_at_least(14):
        # a killed run's backend notices its client is gone even while it waits (the lock ends with it)
        settings.append(('client_connection_check_interval', '1s'))
    for setting, value in settings:
        client.query('SELECT pg_catalog.set_config(%s, %s, false)', (setting, value))
    proto = Protocol(module, client, thresholds, integrity_ms, stabilise_age, pattern)
    key = proto.lock_key()
    lock = dict(name=p['lock_name'], key=key, holder=None)
    acting = p['step'] == 'act' and not module.check_mode

    if not acting:
        # plan (or an act in check mode): one read-only pass, no lock of any kind
        with client.transaction(commit=False):
            client.query('SET TRANSACTION READ ONLY')
            before = proto.assessment(integrity=p['step'] == 'plan' and p['integrity_check'])
            bound = digest_bound(p['plan_digest']) if p['step'] == 'act' else None
            state, plan, rows = proto.survey(bound)
            lock['holder'] = proto.holder(key)
        plan_digest = digest(state)
        problem = cap_problem(p, *rows)
        if problem:
            client.fail(problem)
        warnings = []
        if lock['holder']:
            warnings.append('another run holds the lock %s (session pid %s, application_name %r): an act now would '
                            'be refused' % (p['lock_name'], lock['holder']['pid'], lock['holder']['application_name']))
        if p['step'] == 'act' and not p['approve_current_plan'] and plan_digest != p['plan_digest']:
            warnings.append('%s (an act now would be refused)' % STATE_CHANGED)
        summaries = proto.summaries(plan, done=False)
        plan.update(('%s_summary' % k, v) for k, v in summaries.items())
        actions = []
        if p['step'] == 'act':
            actions = [make_action(k, proto.database, dict(summary=v)) for k, v in sorted(summaries.items())
                       if not v.startswith(('no ', 'nothing', 'the pg_tviews extension keeps', 'TVIEW triggers already'))]
        client.close()
        result = dict(contract=proto.contract, before=before, plan=plan, plan_digest=plan_digest, summaries=summaries,
                      cancelled=[], terminated=[], archived=plan['pending']['count'] or 0, tviews_changed=len(plan['tviews']),
                      evidence=dict(dir=None, files=[]), lock=lock, executed_queries=client.queries)
        if before.get('integrity') is not None:
            result['after'] = before
        result['would_refuse'] = '; '.join(warnings) or None
        if warnings:
            result['warnings'] = warnings
        result['outcome'] = outcome(p, proto, before, result.get('after'), plan_digest, summaries, acted=False,
                                    archived=result['archived'])
        summary = '; '.join(summaries[k] for k in ('cancel', 'queue', 'tviews', 'stabilise'))
        module.exit_json(**remediation_result(bool(actions), actions, summary, check_mode=True, **result))

    # --- act: one transaction under the advisory lock ------------------------------------------
    evidence = None
    cancelled, terminated, actions = [], [], []
    archived = changed_tviews = 0
    with client.transaction():
        got = client.query_one('SELECT pg_catalog.pg_try_advisory_xact_lock(%s) AS ok', (key,))
        if not got['ok']:
            proto.refuse_held(key)
        before = proto.assessment()
        state, plan, (cancel, terminate) = proto.survey(digest_bound(p['plan_digest']) if p['plan_digest'] else None)
        approved = digest(state) if p['approve_current_plan'] else p['plan_digest']
        if p['approve_current_plan'] and p['protocol'] == 'disable' and not p['force'] and \
                before.get('recommended_action') != 'EXECUTE_EMERGENCY_PROTOCOL':
            # the gate: not an emergency. Nothing is done (leaving the block rolls back; the lock goes with it)
            summaries = proto.summaries(plan, done=False)
            plan.update(('%s_summary' % k, v) for k, v in summaries.items())
            module.exit_json(**remediation_result(
                False, [], 'nothing done: the runbook recommends %s, not the emergency protocol'
                % before.get('recommended_action'), contract=proto.contract, before=before, plan=plan,
                plan_digest=approved, summaries=summaries, cancelled=[], terminated=[], archived=0, tviews_changed=0,
                lock=lock, not_warranted=True, evidence=dict(dir=None, files=[]), executed_queries=client.queries,
                outcome=outcome(p, proto, before, None, approved, summaries, acted=False)))
        if digest(state) != approved:
            client.fail('%s: the plan was approved for another state (now %s pending, %s to %s, %s to cancel, %s '
                        'to terminate); nothing was changed'
                        % (STATE_CHANGED, plan['pending']['count'], plural(len(plan['tviews']), 'TVIEW'),
                           'disable' if p['protocol'] == 'disable' else 'enable', len(cancel), len(terminate)),
                        lock=lock)
        problem = cap_problem(p, cancel, terminate) or '; '.join(
            permission_problems(client.current_role(), cancel + terminate))
        if problem:
            client.fail(problem if problem.startswith('refusing') else
                        'role may not signal every backend (needs superuser or pg_signal_backend): %s; nothing was '
                        'changed' % problem)
        if proto.contract != EXTENSION and (plan['pending']['count'] or p['protocol'] == 'disable'):
            missing = proto.queue.privilege_problem('archive') if plan['pending']['count'] else []
            grant = client.query_one("SELECT has_table_privilege('pg_tviews_metadata', 'UPDATE') AS ok")
            if plan['tviews'] and not grant['ok']:
                missing.append('UPDATE on pg_tviews_metadata')
            if missing:
                client.fail('role %s lacks %s: nothing was changed'
                            % (client.query_one('SELECT current_user AS u')['u'], ', '.join(missing)))
        if plan['has_work']:
            evidence = Evidence(module, p['evidence_dir'], 'emergency' if p['protocol'] == 'disable' else 'reset')
            try:
                evidence.write_json('assessment.json', dict(
                    (k, v) for k, v in before.items() if k not in ('tviews', 'executed_queries')))
                evidence.write_json('plan.json', dict(plan, plan_digest=approved, incident_id=p['incident_id']))
                if proto.contract == EXTENSION:
                    evidence.copy(client, 'catalog.csv', 'COPY (SELECT * FROM tviews.registry ORDER BY 1, 2) '
                                  'TO STDOUT WITH (FORMAT csv, HEADER)')
                else:
                    evidence.copy(client, 'catalog.csv', 'COPY (SELECT * FROM pg_tviews_metadata ORDER BY entity_name) '
                                  'TO STDOUT WITH (FORMAT csv, HEADER)')
            except OSError as exc:
                client.fail('cannot write the evidence under %s: %s; nothing was changed' % (evidence.path, exc))
        # 1. cancel the refresh backends (their row locks go with their transactions)
        for row in cancel:
            ok = client.query_one('SELECT pg_catalog.pg_cancel_backend(%s) AS ok', (row['pid'],))['ok']
            if ok:
                cancelled.append(row['pid'])
            actions.append(make_action('cancel', 'pid %s' % row['pid'], dict(
                usename=row['usename'], application_name=row['application_name'],
                query=session_view(row)['query']), done=bool(ok), error=None if ok else 'backend had already ended'))
        # 2. archive then clear the queue; the rows moved are the evidence file queue.csv, streamed by the same
        # statement that moves them (one pass over the queue: the runbook's DELETE plus the archive's INSERT)
        if proto.contract != EXTENSION and plan['pending']['count']:
            proto.queue.ensure_archive()
            try:
                archived = evidence.copy(client, 'queue.csv', *proto.queue.move_to_archive_copy(p['incident_id']))['rows']
            except OSError as exc:
                client.fail('cannot write the evidence under %s: %s; nothing was changed' % (evidence.path, exc))
            actions.append(make_action('archive_and_clear', 'pg_tviews_queue', dict(
                rows=archived, incident_id=p['incident_id'], archive=proto.queue.archive_name), done=True))
        # 3. disable (or enable) the TVIEWs
        if plan['tviews']:
            changed_tviews = change_tviews(client, proto, plan['tviews'])
            actions.append(make_action('disable' if p['protocol'] == 'disable' else 'enable',
                                       'database %s' % proto.database if proto.contract == EXTENSION else
                                       plural(changed_tviews, 'TVIEW'),
                                       dict(tviews=plan['tviews'][:50], count=changed_tviews), done=True))
        # 4. stabilise: terminate what is stuck (last, just before the commit)
        for row in terminate:
            ok = client.query_one('SELECT pg_catalog.pg_terminate_backend(%s) AS ok', (row['pid'],))['ok']
            if ok:
                terminated.append(row['pid'])
            actions.append(make_action('terminate', 'pid %s' % row['pid'], dict(
                usename=row['usename'], state=row['state'], wait_event_type=row['wait_event_type']),
                done=bool(ok), error=None if ok else 'backend had already ended'))
    # committed: the lock is gone with the transaction. Verify.
    after = proto.assessment(integrity=p['integrity_check'])
    client.close()
    summaries = proto.summaries(plan, done=True, archived=archived,
                                changed_tviews=changed_tviews if proto.contract != EXTENSION else len(plan['tviews']))
    plan.update(('%s_summary' % k, v) for k, v in proto.summaries(plan, done=False).items())
    summary = '; '.join(summaries[k] for k in ('cancel', 'queue', 'tviews', 'stabilise'))
    record = outcome(p, proto, before, after, approved, summaries, acted=True, cancelled=cancelled,
                     terminated=terminated, archived=archived, evidence=evidence)
    warnings = []
    if evidence:
        # committed already: a summary that cannot be written is a warning, the act stands
        try:
            evidence.write_json('summary.json', record)
        except OSError as exc:
            warnings.append('the act is done, but the summary could not be written under %s: %s' % (evidence.path, exc))
    module.exit_json(**remediation_result(
        bool(actions), actions, summary, contract=proto.contract, before=before, after=after, plan=plan,
        plan_digest=approved, summaries=summaries, cancelled=cancelled, terminated=terminated, archived=archived,
        tviews_changed=changed_tviews, lock=lock, outcome=record,
        evidence=dict(dir=evidence.path if evidence else None, files=evidence.files if evidence else []),
        executed_queries=client.queries, **(dict(warnings=warnings) if warnings else {})))


def change_tviews(client, proto, names):
    p = proto.p
    if proto.contract == EXTENSION:
        action = 'SET {} = on' if p['protocol'] == 'disable' else 'RESET {}'
        client.execute(pgsql.SQL('ALTER DATABASE {} ').format(pgsql.Identifier(proto.database))
                       + pgsql.SQL(action).format(pgsql.SQL(SUSPEND_SETTING)))
        return 1
    if p['protocol'] == 'disable':
        reason = '[%s] %s' % (p['incident_id'], p['reason'])
        return client.execute('UPDATE pg_tviews_metadata SET emergency_disabled = true, emergency_disable_time = now(), '
                              'emergency_disable_reason = %s WHERE entity_name = ANY(%s) AND NOT emergency_disabled',
                              (reason, names))
    return client.execute('UPDATE pg_tviews_metadata SET emergency_disabled = false, emergency_disable_time = NULL, '
                          'emergency_disable_reason = NULL, last_error = NULL WHERE entity_name = ANY(%s)', (names,))


if __name__ == '__main__':
    main()
