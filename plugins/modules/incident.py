#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: incident
short_description: Open or join an incident, update it, add a human step to its timeline, close it
version_added: 0.2.0
description:
  - One record per incident, from the first alert to the review (docs/incident-record.md).
  - V(open) joins instead of opening a second incident when the incident O(incident_id) exists, or, without an
    id, when an open incident has the same alert fingerprint (O(alert.fingerprint)). Without an id and without a
    fingerprint every run opens a new incident with the next id of the day, C(INC-YYYY-MM-DD-NNN).
  - V(update) sets status, severity (with who confirmed it) and fields; reaching a status sets the times it
    implies (C(acknowledged), C(mitigated), C(resolved), C(closed)) when they are still empty.
  - V(event) adds a step done by a person to the timeline, such as C(bridge opened) or
    C(executive approval given by NAME).
  - V(close) sets the status to V(closed) (or V(resolved) with O(status=resolved)).
  - Every change is also an event in the incident's timeline.
  - Nothing secret is written. Values of C(no_log) options and secret-looking keys are masked.
  - Check mode computes and returns the record and the event that would be written and writes nothing.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
attributes:
  check_mode:
    support: full
    description: Returns the record and event that would be written; writes nothing, allocates no id.
  diff_mode:
    support: full
    description: The record before and after.
  idempotent:
    support: full
    description:
      - A second identical V(update) or V(close) finds nothing to change; V(open) with the same id or fingerprint
        joins; V(event) with the same O(key) (by default derived from its content) is recorded once.
options:
  state:
    description: What to do.
    type: str
    choices: [open, update, event, close]
    default: open
  incident_id:
    description:
      - The incident. Required unless O(state=open).
      - With V(open), an id given by the operator is validated (1-64 characters of C(A-Z a-z 0-9 . _ -), no C(/),
        no C(..)) and used as is; a run with the id of an existing incident joins it.
    type: str
    aliases: [id]
  title:
    description: A one-line title.
    type: str
  system:
    description:
      - The system affected, C(pg_tviews), C(task_scheduler), C(insights), C(schedule_generator) or free text.
      - It picks the runbook's values in the severity mapping (update interval, escalation).
    type: str
  runbook:
    description: The runbook followed.
    type: str
  alert:
    description: The alert that opened the incident (Alertmanager's fields).
    type: dict
    suboptions:
      name:
        description: The alert name.
        type: str
      labels:
        description: The alert's labels.
        type: dict
      fingerprint:
        description: The alert's fingerprint; V(open) joins the open incident with the same one.
        type: str
      starts_at:
        description: When the alert started (ISO 8601); the incident's C(started) time unless O(times) gives one.
        type: str
        aliases: [startsAt]
      annotations:
        description: The alert's annotations (summary, description, runbook URL).
        type: dict
      status:
        description: The alert's status as Alertmanager sent it (C(firing), C(resolved)).
        type: str
  severity:
    description:
      - C(SEV1)..C(SEV4) or any runbook's name for a level (C(SEV 1), C(SEV-1), C(P0)..C(P3), C(critical)...).
      - A C(P) value is read on the scale of O(severity_scale).
    type: str
  severity_scale:
    description:
      - The runbook whose C(P) numbers O(severity) uses. V(schedule_generator) and V(insights) count from
        C(P1) = C(SEV1); the default (the task scheduler's) from C(P0) = C(SEV1).
    type: str
    choices: [canonical, task_scheduler, schedule_generator, insights, pg_tviews]
    default: canonical
  severity_confirmed_by:
    description: The person who confirmed the severity.
    type: str
  status:
    description:
      - The new status (V(open), V(update)); with V(close), V(resolved) or V(closed) (the default).
    type: str
    choices: [investigating, identified, mitigating, monitoring, resolved, closed]
  commander:
    description: The incident commander.
    type: str
  responders:
    description: The responders (the whole list).
    type: list
    elements: str
  impact:
    description: The impact, in a sentence.
    type: str
  root_cause:
    description: The root cause, once known.
    type: str
  summary:
    description: A summary of what happened and what was done.
    type: str
  fields:
    description:
      - Other fields of the record to set, for example C(workaround), C(eta), C(bridge), C(services_affected),
        C(evidence_dir), C(updates_sent), C(escalation_level), C(action_items), C(contributing_factors),
        C(lessons_learned), C(labels).
    type: dict
  times:
    description:
      - Times to set explicitly (ISO 8601), keys C(started), C(detected), C(acknowledged), C(mitigated),
        C(resolved), C(closed). A key given as null clears that time.
    type: dict
  event_type:
    description: The type of the event added by V(event).
    type: str
    default: note
    choices: [note, check, escalation, notification, task]
  text:
    description:
      - The text of the event (V(event)), for example C(bridge opened); also recorded with the first event of
        V(update) and V(close), as its C(message).
    type: str
  event:
    description: More fields of the event added by V(event).
    type: dict
  key:
    description:
      - The idempotency key of the event added by V(event); an event with this key is recorded once.
      - Defaults to one derived from O(event_type), O(text) and O(event), so that a re-run does not record the
        same step twice. Set O(allow_duplicate=true) to record it again.
    type: str
  allow_duplicate:
    description: With V(event), record the event even if the same one is in the timeline.
    type: bool
    default: false
  actor:
    description: Who does this (a name, a job id). Defaults to the AWX job id or C(user@host).
    type: str
'''

EXAMPLES = r'''
- name: Open the incident of this alert (joins the open one with the same fingerprint)
  incident.response.incident:
    title: Task scheduler API down
    system: task_scheduler
    severity: P0
    alert:
      name: TaskSchedulerAPIDown
      fingerprint: "{{ alert.fingerprint }}"
      starts_at: "{{ alert.startsAt }}"
  register: opened

- name: Severity confirmed by the commander
  incident.response.incident:
    state: update
    incident_id: "{{ opened.incident_id }}"
    severity: SEV1
    severity_confirmed_by: Alice
    commander: Alice
    status: identified

- name: A human step
  incident.response.incident:
    state: event
    incident_id: "{{ opened.incident_id }}"
    text: executive approval given by Bob

- name: Close it
  incident.response.incident:
    state: close
    incident_id: "{{ opened.incident_id }}"
    root_cause: connection leak in the worker pool

- name: The whole play on the PostgreSQL store
  module_defaults:
    group/incident.response.incident:
      store: postgres
      store_dsn: "host=db.example.com dbname=incidents user=incident"
  block:
    - name: Open
      incident.response.incident:
        incident_id: INC-2026-12-01-001
        title: pg_tviews emergency
'''

RETURN = r'''
incident_id:
  description: The incident's id (in check mode, the id V(open) would take).
  returned: success
  type: str
  sample: INC-2026-12-01-001
created:
  description: V(open) created the incident (or would, in check mode).
  returned: success
  type: bool
  sample: true
joined:
  description: V(open) joined an existing incident (same id or same alert fingerprint).
  returned: success
  type: bool
  sample: false
incident:
  description: The record after the operation (in check mode, as it would be).
  returned: success
  type: dict
  sample: {id: INC-2026-12-01-001, revision: 2, status: identified, severity: SEV1, priority: P0}
events:
  description: The events written (in check mode, that would be written), with their C(seq) when written.
  returned: success
  type: list
  elements: dict
  sample: [{type: status, from: investigating, to: identified, seq: 2}]
changes:
  description: The fields changed (V(update), V(close)), before and after.
  returned: success
  type: dict
  sample: {status: {before: investigating, after: identified}}
actions:
  description: What was done (or would be, in check mode).
  returned: success
  type: list
  elements: dict
  sample: [{action: update, target: INC-2026-12-01-001, detail: {fields: [status]}, done: true}]
summary:
  description: One line.
  returned: success
  type: str
  sample: "INC-2026-12-01-001: status investigating -> identified"
store:
  description: The store used (never its password).
  returned: success
  type: str
  sample: files store /var/tmp/incident-response/incidents
diff:
  description: The record before and after (with C(--diff)).
  returned: when diff mode is on
  type: dict
  sample: {before: {status: investigating}, after: {status: identified}}
'''

import hashlib
import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import make_action, new_module
from ansible_collections.incident.response.plugins.module_utils import _incident as inc

RECORD_OPTIONS = ('title', 'system', 'runbook', 'commander', 'responders', 'impact', 'root_cause', 'summary')


def _severity(params):
    if params.get('severity') in (None, ''):
        return None, None
    sev = inc.normalize_severity(params['severity'], params.get('severity_scale'))
    return sev, inc.priority_for(sev)


def _alert(params):
    alert = params.get('alert')
    if not alert:
        return None
    # Alertmanager's own spelling (startsAt) is an alias: keep the option's name only.
    alert = dict((k, v) for k, v in alert.items() if v is not None and k != 'startsAt')
    if alert.get('starts_at'):
        alert['starts_at'] = inc.normalize_time(alert['starts_at'], 'alert.starts_at')
    return alert or None


def _times(params):
    given = params.get('times') or {}
    times = {}
    for name, value in given.items():
        if name not in inc.TIME_FIELDS:
            raise inc.IncidentError('times: unknown key %r; use %s' % (name, ', '.join(inc.TIME_FIELDS)))
        times[name] = inc.normalize_time(value, 'times.%s' % name)
    return times


def _fields(params):
    fields = dict(params.get('fields') or {})
    for name in fields:
        if name in ('id', 'revision', 'created', 'updated', 'times', 'status', 'severity', 'priority', 'alert'):
            raise inc.IncidentError('fields: %s is set with its own option, not in fields' % name)
    for name in RECORD_OPTIONS:
        if params.get(name) is not None:
            fields[name] = params[name]
    return fields


def status_times(record_times, status, now, explicit):
    """The times a status sets (those still empty and not given explicitly)."""
    changes = {}
    for name in inc.STATUS_TIMES.get(status, ()):
        if not record_times.get(name) and name not in explicit:
            changes[name] = now
    return changes


def plan_update(record, params, now, closing=False):
    """The changes to ``record`` the options ask for, and the events that record them."""
    changes = _fields(params)
    sev, priority = _severity(params)
    if sev:
        changes['severity'] = sev
        changes['priority'] = priority
    if params.get('severity_confirmed_by'):
        changes['severity_confirmed_by'] = params['severity_confirmed_by']
    alert = _alert(params)
    if alert:
        merged = dict(record.get('alert') or {})
        merged.update(alert)
        changes['alert'] = merged
    status = params.get('status')
    if closing:
        status = status or 'closed'
        if status not in inc.CLOSED_STATUSES:
            raise inc.IncidentError('state=close takes status resolved or closed, not %s' % status)
    times = _times(params)
    if status:
        changes['status'] = status
        times_for_status = status_times(record.get('times') or {}, status, now, times)
        times_for_status.update(times)
        times = times_for_status
    if times:
        changes['times'] = times
    # keep only what differs
    differing = {}
    for name, value in changes.items():
        if name == 'times':
            diff_times = dict((k, v) for k, v in value.items() if (record.get('times') or {}).get(k) != v)
            if diff_times:
                differing['times'] = diff_times
        elif record.get(name) != value:
            differing[name] = value
    return differing


def events_for(record, changes, params, actor, closing=False):
    events = []
    message = params.get('text')
    if 'status' in changes:
        event = dict(type='closed' if closing else 'status', actor=actor,
                     **{'from': record.get('status'), 'to': changes['status']})
        if changes.get('times'):
            event['times'] = changes['times']
        events.append(event)
    if 'severity' in changes or 'severity_confirmed_by' in changes:
        events.append(dict(type='severity', actor=actor, priority=changes.get('priority', record.get('priority')),
                           confirmed_by=changes.get('severity_confirmed_by', record.get('severity_confirmed_by')),
                           **{'from': record.get('severity'), 'to': changes.get('severity', record.get('severity'))}))
    skip = ('status', 'severity', 'priority', 'severity_confirmed_by') + (('times',) if 'status' in changes else ())
    others = sorted(k for k in changes if k not in skip)
    if others:
        events.append(dict(type='updated', actor=actor, fields=others,
                           values=dict((k, changes[k]) for k in others)))
    if message and events:
        events[0]['message'] = message
    return events


def _changes_view(record, changes):
    view = {}
    for name, value in changes.items():
        if name == 'times':
            for key, moment in value.items():
                view['times.%s' % key] = dict(before=(record.get('times') or {}).get(key), after=moment)
        else:
            view[name] = dict(before=record.get(name), after=value)
    return view


def event_key(params):
    if params.get('key'):
        return params['key']
    if params.get('allow_duplicate'):
        return None
    payload = json.dumps(dict(type=params['event_type'], message=params.get('text'), event=params.get('event')),
                         sort_keys=True, default=str)
    return '%s:%s' % (params['event_type'], hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16])


class Runner(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.actor = self.params.get('actor') or inc.default_actor()
        self.now = inc.iso()
        self.result = dict(changed=False, created=False, joined=False, events=[], changes={}, actions=[])
        self.store = inc.get_store(self.params, secrets=module.no_log_values)
        self.result['store'] = self.store.describe()

    def _redacted(self, value):
        return inc.redact_value(value, self.module.no_log_values)

    def _finish(self, before, after, summary):
        self.result['incident'] = after
        self.result['incident_id'] = (after or before or {}).get('id')
        self.result['summary'] = summary
        if self.module._diff:
            self.result['diff'] = dict(before=before or {}, after=after or {})
        return self.result

    def _require(self, incident_id):
        if not incident_id:
            raise inc.IncidentError('incident_id is required with state=%s' % self.params['state'])
        inc.validate_incident_id(incident_id)
        record = self.store.get(incident_id)
        if record is None:
            raise inc.IncidentError('incident %s does not exist in %s' % (incident_id, self.store.describe()))
        return record

    # -- open --------------------------------------------------------------------------------------------
    def new_record(self):
        p = self.params
        sev, priority = _severity(p)
        alert = _alert(p)
        times = _times(p)
        if alert and alert.get('starts_at') and 'started' not in times:
            times['started'] = alert['starts_at']
        times.setdefault('detected', self.now)
        status = p.get('status') or 'investigating'
        times.update(status_times({}, status, self.now, times))
        if 'started' not in times:
            times['started'] = times['detected']
        fields = _fields(p)
        record = inc.new_record(p.get('incident_id'), **fields)
        record.update(alert=alert, severity=sev, priority=priority, status=status,
                      severity_confirmed_by=p.get('severity_confirmed_by'), created_by=self.actor)
        record['times'].update(times)
        if not record.get('title'):
            record['title'] = (alert or {}).get('name') or (p.get('system') and '%s incident' % p['system']) \
                or 'incident'
        return record

    def open(self):
        p = self.params
        if p.get('incident_id'):
            inc.validate_incident_id(p['incident_id'])
        record = self.new_record()
        existing = None
        if p.get('incident_id'):
            existing = self.store.get(p['incident_id'])
        elif (record.get('alert') or {}).get('fingerprint'):
            existing = self.store.find_open_by_fingerprint(record['alert']['fingerprint'])
        if existing is None and not self.check:
            stored, created = self.store.open_or_join(record)
            if not created:
                existing = stored
        if existing is not None:
            how = 'id' if p.get('incident_id') else 'alert fingerprint %s' % record['alert']['fingerprint']
            self.result['joined'] = True  # joining writes nothing: no action, changed stays false
            return self._finish(existing, existing, '%s: joined (same %s), status %s'
                                % (existing['id'], how, existing.get('status')))
        opened = dict(type='opened', actor=self.actor, title=record.get('title'), severity=record.get('severity'),
                      status=record.get('status'), alert=record.get('alert'))
        self.result['changed'] = True
        self.result['created'] = True
        if self.check:
            record['id'] = record['id'] or self.store.allocate_id(inc.today(inc.parse_time(record['times']['detected'])))
            record['revision'] = 1
            record['created'] = record['updated'] = self.now
            record = self._redacted(record)
            record['evidence_dir'] = record.get('evidence_dir') or self._evidence_dir(record['id'])
            self.result['events'] = [self._redacted(opened)]
        else:
            record = stored
            self.result['events'] = [self.store.append_event(record['id'], opened)]
        self.result['actions'].append(make_action('open', record['id'], dict(severity=record.get('severity'),
                                                                             status=record.get('status')),
                                                  done=not self.check))
        return self._finish(None, record, '%s: %s %s (%s)' % (record['id'], 'would open' if self.check else 'opened',
                                                              record.get('title'), record.get('severity') or
                                                              'severity not set'))

    def _evidence_dir(self, incident_id):
        if hasattr(self.store, 'evidence_dir'):
            return self.store.evidence_dir(incident_id)
        return None

    # -- update / close ----------------------------------------------------------------------------------
    def update(self, closing=False):
        for attempt in range(1, 4):
            record = self._require(self.params.get('incident_id'))
            changes = plan_update(record, self.params, self.now, closing=closing)
            changes = self._redacted(changes)
            if not inc.record_differs(record, changes):
                return self._finish(record, record, '%s: nothing to change (status %s)'
                                    % (record['id'], record.get('status')))
            events = events_for(record, changes, self.params, self.actor, closing=closing)
            if self.check:
                after = inc.merge_changes(record, changes)
                after['revision'] = record.get('revision', 0) + 1
                after['updated'] = self.now
                self.result['events'] = [self._redacted(e) for e in events]
                break
            try:
                # planned from this revision: another writer in between means plan again
                after = self.store.update(record['id'], changes, expected_revision=record.get('revision'))
            except inc.ConflictError:
                if attempt == 3:
                    raise
                continue
            self.result['events'] = [self.store.append_event(record['id'], e) for e in events]
            break
        self.result['changed'] = True
        self.result['changes'] = _changes_view(record, changes)
        names = sorted(self.result['changes'])
        self.result['actions'].append(make_action('close' if closing else 'update', record['id'],
                                                  dict(fields=names), done=not self.check))
        parts = []
        for name in names:
            if name in ('status', 'severity'):
                parts.append('%s %s -> %s' % (name, self.result['changes'][name]['before'],
                                              self.result['changes'][name]['after']))
        others = [n for n in names if n not in ('status', 'severity')]
        if others:
            parts.append('set %s' % ', '.join(others))
        return self._finish(record, after, '%s: %s%s' % (record['id'], 'would change: ' if self.check else '',
                                                         '; '.join(parts)))

    # -- event -------------------------------------------------------------------------------------------
    def event(self):
        p = self.params
        record = self._require(p.get('incident_id'))
        if not p.get('text') and not p.get('event'):
            raise inc.IncidentError('state=event needs a text (or event fields)')
        event = dict(p.get('event') or {})
        for name in ('seq', 'type', 'key'):
            event.pop(name, None)
        event.update(type=p['event_type'], actor=self.actor, key=event_key(p))
        if p.get('text'):
            event['message'] = p['text']
        event = self._redacted(event)
        if event['key'] and self.store.has_event(record['id'], event['key']):
            return self._finish(record, record, '%s: the event is already in the timeline (key %s)'
                                % (record['id'], event['key']))
        self.result['changed'] = True
        if self.check:
            event.setdefault('time', self.now)
            self.result['events'] = [event]
        else:
            self.result['events'] = [self.store.append_event(record['id'], event)]
        self.result['actions'].append(make_action('event', record['id'], dict(type=event['type'], key=event['key']),
                                                  done=not self.check))
        text = event.get('message') or event['type']
        return self._finish(record, record, '%s: %s %s' % (record['id'], 'would record' if self.check else 'recorded',
                                                           text))


def main():
    argument_spec = dict(
        state=dict(type='str', default='open', choices=['open', 'update', 'event', 'close']),
        incident_id=dict(type='str', aliases=['id']),
        title=dict(type='str'),
        system=dict(type='str'),
        runbook=dict(type='str'),
        alert=dict(type='dict', options=dict(
            name=dict(type='str'),
            labels=dict(type='dict'),
            fingerprint=dict(type='str'),
            starts_at=dict(type='str', aliases=['startsAt']),
            annotations=dict(type='dict'),
            status=dict(type='str'),
        )),
        severity=dict(type='str'),
        severity_scale=dict(type='str', default='canonical',
                            choices=['canonical', 'task_scheduler', 'schedule_generator', 'insights', 'pg_tviews']),
        severity_confirmed_by=dict(type='str'),
        status=dict(type='str', choices=list(inc.STATUSES)),
        commander=dict(type='str'),
        responders=dict(type='list', elements='str'),
        impact=dict(type='str'),
        root_cause=dict(type='str'),
        summary=dict(type='str'),
        fields=dict(type='dict'),
        times=dict(type='dict'),
        event_type=dict(type='str', default='note', choices=['note', 'check', 'escalation', 'notification', 'task']),
        text=dict(type='str'),
        event=dict(type='dict'),
        key=dict(type='str', no_log=False),
        allow_duplicate=dict(type='bool', default=False),
        actor=dict(type='str'),
    )
    argument_spec.update(inc.store_argument_spec())
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True,
                        required_if=[('state', 'update', ('incident_id',)), ('state', 'event', ('incident_id',)),
                                     ('state', 'close', ('incident_id',))])
    store = None
    try:
        runner = Runner(module)
        store = runner.store
        state = module.params['state']
        if state == 'open':
            result = runner.open()
        elif state == 'event':
            result = runner.event()
        else:
            result = runner.update(closing=(state == 'close'))
    except inc.IncidentError as exc:
        module.fail_json(msg=str(exc))
    finally:
        if store is not None:
            store.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
