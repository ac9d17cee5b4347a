#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: incident_monitor
short_description: The bookkeeping of an incident's monitoring period (start, record each round of checks, decide)
version_added: 0.2.0
description:
  - The runbooks end mitigation with a watch ("monitor the system for 30-60 minutes post-fix"). The role
    C(incident.response.incident_monitor) (playbook C(incident_monitor.yml)) re-runs the read-only diagnosis of
    the incident's system every O(interval) for O(window); this module keeps the record of it.
  - O(state=start) checks that the incident is V(monitoring) (or, with O(enter=true), puts an open incident in
    V(monitoring), setting C(times.mitigated)), validates the window, the interval and the checks, and returns
    the deadline and the number of rounds. A resolved or closed incident, or one in another status without
    O(enter=true), is not monitored (RV(active=false)), which keeps a schedule that runs the playbook harmless.
  - O(state=record) appends one C(check) event per result of a round (keys C(monitor:<run_id>:<round>:<name>), so
    a re-run records nothing twice) and says whether the round regressed.
  - "O(state=finish) decides: every check passed -> V(resolved) (C(times.resolved) set); a check failed ->
    back to V(mitigating) with an C(escalation) event (level + 1, the target from the severity table's escalation
    rules) and C(escalation_level) raised; no check ran -> stays V(monitoring)."
  - Each status change is also a C(status) event, with C(from), C(to) and a message, as the C(incident) module
    writes them.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
attributes:
  check_mode:
    support: full
    description: Computes and returns what it would write (status, events); writes nothing.
  diff_mode:
    support: none
    description: The events and changes are in the result.
  idempotent:
    support: full
    description: Events carry keys of the run; a decision already recorded is not recorded again.
options:
  incident_id:
    description: The incident.
    type: str
    required: true
  state:
    description: Which step.
    type: str
    choices: [start, record, finish]
    default: start
  run_id:
    description:
      - The monitoring run, used in the events' keys. O(state=start) returns one when not given
        (C(monitor-<UTC time>)); pass it to O(state=record) and O(state=finish).
      - Required with O(state=record) and O(state=finish).
    type: str
  window:
    description: How long to watch (O(state=start)); seconds or a duration such as V(30m), V(6s).
    type: raw
    default: 30m
  interval:
    description: Time between two rounds of checks (O(state=start)); seconds or a duration such as V(60s).
    type: raw
    default: 60s
  enter:
    description:
      - With O(state=start), put an incident that is V(investigating), V(identified) or V(mitigating) in
        V(monitoring) first. Without it only an incident already in V(monitoring) is watched.
    type: bool
    default: false
  checks:
    description: The checks of each round (O(state=start) validates them); C(name) unique, C(module) one of the
      collection's read-only diagnoses.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A short unique name, such as C(tviews) or C(api).
        type: str
        required: true
      module:
        description: The diagnosis module that runs it.
        type: str
        required: true
        choices: [tview_info, http_check, service_info, pg_activity_info, alertmanager_alert_info]
      args:
        description: The module's options.
        type: dict
      pass_statuses:
        description: Statuses that pass (default V(ok)).
        type: list
        elements: str
  round:
    description: The number of the round (O(state=record)), from 0.
    type: int
    default: 0
  results:
    description:
      - The results of one round (O(state=record)), one per check, each with C(name), C(module), C(status),
        C(reasons) and C(passed); a missing C(passed) is C(status == ok).
    type: list
    elements: dict
    default: []
  failed_checks:
    description: The names of the checks that failed during the run (O(state=finish)); empty when all passed.
    type: list
    elements: str
    default: []
  checks_run:
    description: How many checks ran during the run (O(state=finish)).
    type: int
    default: 0
  escalate:
    description: On a regression (O(state=finish)), record an escalation event and raise C(escalation_level).
    type: bool
    default: true
  actor:
    description: Who records (defaults to the AWX job or user@host).
    type: str
seealso:
  - module: incident.response.incident
  - module: incident.response.tview_info
  - module: incident.response.http_check
  - module: incident.response.service_info
'''

EXAMPLES = r'''
- name: Start the monitoring period
  incident.response.incident_monitor:
    incident_id: INC-2026-12-01-001
    window: 30m
    interval: 60s
    checks:
      - name: tviews
        module: tview_info
        args: {login_db: app}
  register: monitor

- name: Record a round
  incident.response.incident_monitor:
    state: record
    incident_id: INC-2026-12-01-001
    run_id: "{{ monitor.run_id }}"
    round: 0
    results:
      - {name: tviews, module: tview_info, status: ok, reasons: []}

- name: Decide
  incident.response.incident_monitor:
    state: finish
    incident_id: INC-2026-12-01-001
    run_id: "{{ monitor.run_id }}"
    checks_run: 1
    failed_checks: []
'''

RETURN = r'''
active:
  description: Whether the incident is being monitored (O(state=start)).
  returned: success
  type: bool
run_id:
  description: The monitoring run.
  returned: success
  type: str
incident_status:
  description: The incident's status after this step (or that it would have, in check mode).
  returned: success
  type: str
incident_status_before:
  description: The incident's status before this step.
  returned: success
  type: str
system:
  description: The incident's system.
  returned: success
  type: str
window_seconds:
  description: The window, in seconds (O(state=start)).
  returned: when O(state=start)
  type: float
interval_seconds:
  description: The interval, in seconds (O(state=start)).
  returned: when O(state=start)
  type: float
rounds:
  description: The most rounds that fit in the window (O(state=start)).
  returned: when O(state=start)
  type: int
deadline:
  description: Epoch seconds after which no check starts (O(state=start)).
  returned: when O(state=start)
  type: float
passed:
  description: Whether every check of the round passed (O(state=record)).
  returned: when O(state=record)
  type: bool
regression:
  description: Whether a check failed (O(state=record), O(state=finish)).
  returned: when O(state=record) or O(state=finish)
  type: bool
failed_checks:
  description: Names of the checks of the round that failed (O(state=record)).
  returned: when O(state=record)
  type: list
  elements: str
outcome:
  description: V(resolved), V(mitigating) or V(monitoring) (nothing decided) (O(state=finish)); V(skipped) from
    O(state=start) when not monitored.
  returned: success
  type: str
escalation:
  description: The escalation recorded on a regression (C(level), C(to)), or null.
  returned: when O(state=finish)
  type: dict
events:
  description: The events written (or that would be, in check mode).
  returned: success
  type: list
  elements: dict
actions:
  description: What was done (or would be).
  returned: success
  type: list
  elements: dict
summary:
  description: One line for the operator.
  returned: success
  type: str
'''

import math

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import (
    new_module,
    DurationError, excerpt, format_duration, make_action, parse_duration)
from ansible_collections.incident.response.plugins.module_utils import _incident as inc

ENTERABLE = ('investigating', 'identified', 'mitigating')
MAX_REASONS = 10


class Monitor(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.actor = self.p.get('actor') or inc.default_actor()
        self.store = inc.get_store(self.p, secrets=module.no_log_values)
        self.result = dict(changed=False, events=[], actions=[])

    def record(self):
        incident_id = inc.validate_incident_id(self.p['incident_id'])
        record = self.store.get(incident_id)
        if record is None:
            raise inc.IncidentError('incident %s does not exist in %s' % (incident_id, self.store.describe()))
        return record

    def append(self, incident_id, event):
        if event.get('key') and self.store.has_event(incident_id, event['key']):
            return None
        event = dict(event, actor=self.actor)
        if self.check:
            event = inc.redact_value(event, self.module.no_log_values)
            event.setdefault('time', inc.iso())
        else:
            event = self.store.append_event(incident_id, event)
        self.result['events'].append(event)
        self.result['changed'] = True
        return event

    def set_status(self, record, status, message, extra=None):
        """The status change, the times it implies, and its status event (as the incident module writes them)."""
        now = inc.iso()
        times = dict((name, now) for name in inc.STATUS_TIMES.get(status, ())
                     if not (record.get('times') or {}).get(name))
        changes = dict(status=status)
        if times:
            changes['times'] = times
        changes.update(extra or {})
        if not self.check:
            for attempt in range(3):
                try:
                    record = self.store.update(record['id'], changes, expected_revision=record.get('revision'))
                    break
                except inc.ConflictError:
                    if attempt == 2:
                        raise
                    record = self.record()  # another writer (the timeline, a notification) came first
                    if record.get('status') not in ('monitoring', self.result.get('incident_status_before')):
                        raise inc.IncidentError('incident %s changed to %s meanwhile: not set to %s'
                                                % (record['id'], record.get('status'), status))
        else:
            record = inc.merge_changes(record, changes)
        event = {'type': 'status', 'from': self.result.get('incident_status_before'), 'to': status, 'message': message,
                 'key': '%s:status:%s' % (self.key_prefix(), status)}
        if times:
            event['times'] = times
        self.append(record['id'], event)
        self.result['actions'].append(make_action('set_status', record['id'], dict(status=status, times=times),
                                                  done=not self.check))
        self.result['changed'] = True
        return record

    def key_prefix(self):
        return 'monitor:%s' % self.p['run_id']

    # -- start -------------------------------------------------------------------------------------------
    def start(self):
        p = self.p
        try:
            window = parse_duration(p['window'], 'window')
            interval = parse_duration(p['interval'], 'interval')
        except DurationError as exc:
            raise inc.IncidentError(to_native(exc))
        if not window or window <= 0:
            raise inc.IncidentError('window must be more than 0 seconds, got %r' % (p['window'],))
        if not interval or interval < 1:
            raise inc.IncidentError('interval must be at least 1 second, got %r' % (p['interval'],))
        if interval > window:
            raise inc.IncidentError('interval (%s) must not be longer than the window (%s)'
                                    % (format_duration(interval), format_duration(window)))
        names = [c.get('name') for c in p['checks']]
        if not p['checks']:
            raise inc.IncidentError('no checks to run: give checks (the role maps the incident\'s system to its '
                                    'checks; set incident_monitor_checks for another system)')
        for name in names:
            if not name or not isinstance(name, str) or not inc.ID_RE.match(name):
                raise inc.IncidentError('checks: name %r must be 1-64 characters of A-Z a-z 0-9 . _ -' % (name,))
        if len(set(names)) != len(names):
            raise inc.IncidentError('checks: names must be unique, got %s' % ', '.join(names))
        record = self.record()
        if not p['run_id']:
            stamp = inc.iso().replace(':', '').replace('-', '').replace('.', '')
            p['run_id'] = 'monitor-%s' % stamp
        inc.validate_incident_id(p['run_id'])
        status = record.get('status')
        self.result.update(run_id=p['run_id'], incident_status_before=status, incident_status=status,
                           system=record.get('system'),
                           window_seconds=window, interval_seconds=interval,
                           rounds=int(math.floor(window / interval)) + 1,
                           deadline=inc.utc_now().timestamp() + window, active=False, outcome='skipped')
        if status in inc.CLOSED_STATUSES:
            self.result['summary'] = '%s is %s: nothing to monitor' % (record['id'], status)
            return self.result
        if status != 'monitoring':
            if not p['enter']:
                self.result['summary'] = ('%s is %s, not monitoring: nothing to monitor (the remediation sets '
                                          'monitoring; enter=true starts the period from %s)'
                                          % (record['id'], status, status))
                return self.result
            record = self.set_status(record, 'monitoring', 'monitoring period started: %s every %s (%s)' % (
                format_duration(window), format_duration(interval), ', '.join(names)))
            self.result['incident_status'] = 'monitoring'
        self.result.update(active=True, outcome='monitoring')
        self.result['summary'] = '%s: %smonitoring for %s, a round of %d checks every %s (at most %d rounds)' % (
            record['id'], 'would start ' if self.check and status != 'monitoring' else '', format_duration(window),
            len(names), format_duration(interval), self.result['rounds'])
        return self.result

    # -- record ------------------------------------------------------------------------------------------
    def record_round(self):
        record = self.record()
        self.result.update(run_id=self.p['run_id'], incident_status_before=record.get('status'),
                           incident_status=record.get('status'),
                           system=record.get('system'))
        failed = []
        for item in self.p['results']:
            name = str(item.get('name') or 'check')
            status = str(item.get('status') or 'unknown')
            passed = item.get('passed')
            if passed is None:
                passed = status == 'ok'
            passed = bool(passed)
            reasons = item.get('reasons') or []
            if not isinstance(reasons, list):
                reasons = [reasons]
            reasons = [excerpt(str(r), 300) for r in reasons[:MAX_REASONS]]
            if not passed:
                failed.append(name)
            message = '%s %s: %s' % (name, 'passed' if passed else 'FAILED', status) + \
                ((' (%s)' % '; '.join(reasons[:3])) if reasons else '')
            self.append(record['id'], dict(type='check', check=name, module=item.get('module'), status=status,
                                           passed=passed, reasons=reasons, round=self.p['round'],
                                           run_id=self.p['run_id'], message=message,
                                           key='%s:%d:%s' % (self.key_prefix(), self.p['round'], name)))
        self.result['actions'].append(make_action('record_checks', record['id'], dict(
            round=self.p['round'], checks=len(self.p['results']), failed=failed), done=not self.check))
        self.result.update(passed=not failed, failed_checks=failed, regression=bool(failed), outcome='monitoring')
        self.result['summary'] = '%s: round %d, %s' % (
            record['id'], self.p['round'], 'every check passed' if not failed else 'FAILED: %s' % ', '.join(failed))
        return self.result

    # -- finish ------------------------------------------------------------------------------------------
    def escalation_target(self, record, level):
        try:
            policy = inc.severity_policy(record.get('severity'), record.get('system')) if record.get('severity') \
                else None
        except inc.IncidentError:
            policy = None
        rules = (policy or {}).get('escalation') or []
        for rule in rules:
            if rule.get('level') == level:
                return rule.get('to')
        return rules[-1].get('to') if rules else 'the incident commander'

    def finish(self):
        record = self.record()
        status = record.get('status')
        failed = list(self.p['failed_checks'])
        self.result.update(run_id=self.p['run_id'], incident_status_before=status, incident_status=status,
                           system=record.get('system'),
                           regression=bool(failed), escalation=None)
        decided = self.store.has_event(record['id'], '%s:decision' % self.key_prefix())
        if decided:
            self.result['outcome'] = status
            self.result['summary'] = '%s: the monitoring run %s is already decided (%s)' % (
                record['id'], self.p['run_id'], status)
            return self.result
        if status != 'monitoring' and not self.check:
            self.result['outcome'] = status
            self.result['summary'] = '%s: the status changed to %s during the monitoring run: left as it is' % (
                record['id'], status)
            return self.result
        if failed:
            level = int(record.get('escalation_level') or 0) + 1
            extra = dict(escalation_level=level) if self.p['escalate'] else None
            record = self.set_status(record, 'mitigating', 'regression during the monitoring period: %s failed'
                                     % ', '.join(failed), extra)
            if self.p['escalate']:
                target = self.escalation_target(record, level)
                self.append(record['id'], dict(type='escalation', level=level, to=target, reason='regression',
                                               message='regression after the fix (%s failed): escalate to %s'
                                               % (', '.join(failed), target),
                                               key='%s:escalation' % self.key_prefix()))
                self.result['escalation'] = dict(level=level, to=target)
            self.result.update(incident_status='mitigating', outcome='mitigating')
            self.result['summary'] = '%s: %sback to mitigating, %s failed during monitoring%s' % (
                record['id'], 'would go ' if self.check else '', ', '.join(failed),
                ('; escalation level %d (%s)' % (level, self.result['escalation']['to']))
                if self.result['escalation'] else '')
        elif self.p['checks_run'] > 0:
            record = self.set_status(record, 'resolved', 'every check passed during the monitoring period (%d checks)'
                                     % self.p['checks_run'])
            self.result.update(incident_status='resolved', outcome='resolved')
            self.result['summary'] = '%s: %sresolved, %d checks passed during monitoring' % (
                record['id'], 'would be ' if self.check else '', self.p['checks_run'])
        else:
            self.result['outcome'] = 'monitoring'
            self.result['summary'] = '%s: no check ran, nothing decided (still %s)' % (record['id'], status)
            return self.result
        self.append(record['id'], dict(type='note', message='monitoring run %s: %s' % (
            self.p['run_id'], self.result['outcome']), key='%s:decision' % self.key_prefix()))
        return self.result


def main():
    argument_spec = dict(
        incident_id=dict(type='str', required=True),
        state=dict(type='str', default='start', choices=['start', 'record', 'finish']),
        run_id=dict(type='str'),
        window=dict(type='raw', default='30m'),
        interval=dict(type='raw', default='60s'),
        enter=dict(type='bool', default=False),
        checks=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            module=dict(type='str', required=True, choices=['tview_info', 'http_check', 'service_info',
                                                            'pg_activity_info', 'alertmanager_alert_info']),
            args=dict(type='dict'),
            pass_statuses=dict(type='list', elements='str', no_log=False),
        )),
        round=dict(type='int', default=0),
        results=dict(type='list', elements='dict', default=[]),
        failed_checks=dict(type='list', elements='str', default=[]),
        checks_run=dict(type='int', default=0),
        escalate=dict(type='bool', default=True),
        actor=dict(type='str'),
    )
    argument_spec.update(inc.store_argument_spec())
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True,
                        required_if=[('state', 'record', ('run_id',)), ('state', 'finish', ('run_id',))])
    monitor = None
    try:
        monitor = Monitor(module)
        state = module.params['state']
        if state != 'start':
            inc.validate_incident_id(module.params['run_id'])
        if state == 'start':
            result = monitor.start()
        elif state == 'record':
            result = monitor.record_round()
        else:
            result = monitor.finish()
    except inc.IncidentError as exc:
        module.fail_json(msg=to_native(exc))
    finally:
        if monitor is not None:
            monitor.store.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
