#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: alertmanager_silence
short_description: Create, extend or expire an Alertmanager silence (v2 API), one per matchers and incident
version_added: 0.1.0
description:
  - Silences the alerts that O(matchers) select, from O(starts_at) (default now) until O(ends_at) or for
    O(duration) (the runbooks' 30 minutes by default), with O(created_by) and a O(comment) that carries O(incident_id).
  - "Idempotent: a silence that is active or pending, has the same matchers (in any order) and, when O(incident_id)
    is set, names the same incident in its comment, is found and kept, not duplicated. It is extended when the
    wanted end is more than O(extend_margin) after its end; it is never shortened."
  - O(state=absent) expires the silences found that way (or the one O(silence_id) names).
  - "Guardrails: a silence that matches every alert (no matchers, or only matchers such as C(alertname=~\".*\") or
    C(alertname!=\"\")) is refused unless O(allow_match_all=true); a silence longer than O(max_duration) (4 h) is
    refused."
  - Uses the v2 API (C(POST /api/v2/silences), C(DELETE /api/v2/silence/{id})); the v1 call of the task scheduler
    runbook no longer exists since Alertmanager 0.27.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.alertmanager
attributes:
  check_mode:
    support: full
    description: Reads the silences and reports the same RV(actions) it would take; creates and expires nothing.
  diff_mode:
    support: full
    description: With C(--diff), RV(diff) shows the silence before and after.
  idempotent:
    support: full
    description: A second run finds the silence it created and reports C(changed=false).
options:
  state:
    description:
      - V(present) creates the silence, or extends the one found; V(absent) expires it.
    type: str
    default: present
    choices: [present, absent]
  matchers:
    description:
      - The alerts to silence, as Alertmanager's matchers. Required unless O(silence_id) is set with O(state=absent).
    type: list
    elements: dict
    suboptions:
      name:
        description: Label name, for example C(alertname).
        type: str
        required: true
      value:
        description: Label value, or a regular expression when O(matchers[].isRegex=true).
        type: str
        required: true
      isRegex:
        description: O(matchers[].value) is a regular expression (anchored by Alertmanager).
        type: bool
        default: false
      isEqual:
        description: V(false) negates the matcher (C(!=) or C(!~)).
        type: bool
        default: true
  silence_id:
    description:
      - The id of one silence to extend or expire, instead of finding it by O(matchers).
    type: str
  incident_id:
    description:
      - The incident the silence belongs to. Written into the comment as C([incident <id>]) and used to find the
        silence again, so that two incidents silencing the same alerts keep their own silences.
    type: str
  comment:
    description:
      - Why. The incident id is prepended when O(incident_id) is set and the comment does not carry it yet.
    type: str
    default: Silenced during incident response
  created_by:
    description: Who or what creates the silence.
    type: str
    default: incident.response
  starts_at:
    description:
      - Start, an RFC 3339 time (C(2026-12-01T21:00:00Z)). Defaults to now.
    type: str
  ends_at:
    description:
      - End, an RFC 3339 time. Mutually exclusive with O(duration).
    type: str
  duration:
    description:
      - Length from O(starts_at), as C(30m), C(1h30m) or seconds. Used when O(ends_at) is not set.
    type: str
    default: 30m
  max_duration:
    description:
      - The longest silence the module creates or extends to; longer is refused.
    type: str
    default: 4h
  extend_margin:
    description:
      - A silence found is extended only when the wanted end is later than its end by more than this, so that a
        rerun a few seconds later with the same O(duration) changes nothing.
    type: str
    default: 5m
  allow_match_all:
    description:
      - Allow a silence that matches every alert. Off by default; a silence that hides every alert during an
        incident hides the next incident too.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Silence what remains for the runbook's 30 minutes
  incident.response.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers:
      - name: alertname
        value: NoActiveWorkers
      - name: service
        value: worker
    incident_id: "{{ incident_id }}"
    comment: Workers restarted; waiting for the queue to drain
    created_by: "{{ lookup('ansible.builtin.env', 'USER') }}"
    duration: 30m

- name: Expire it when the incident is resolved
  incident.response.alertmanager_silence:
    matchers:
      - name: alertname
        value: NoActiveWorkers
      - name: service
        value: worker
    incident_id: "{{ incident_id }}"
    state: absent
'''

RETURN = r'''
changed:
  description: Whether a silence was (or, in check mode, would be) created, extended or expired.
  returned: always
  type: bool
silence_id:
  description: The id of the silence created, extended or found (null in check mode before creation, or when none).
  returned: success
  type: str
  sample: 7e0b1f0e-5c7a-4b1e-9f7e-0e4a3c2f1d00
silence_ids:
  description: With O(state=absent), the ids of the silences expired (or that would be).
  returned: success
  type: list
  elements: str
silence:
  description: The silence as it is (or would be) after the run; null when none.
  returned: success
  type: dict
  sample:
    id: 7e0b1f0e-5c7a-4b1e-9f7e-0e4a3c2f1d00
    matchers: [{name: alertname, value: NoActiveWorkers, isRegex: false, isEqual: true}]
    startsAt: '2026-12-01T21:00:00.000Z'
    endsAt: '2026-12-01T21:30:00.000Z'
    createdBy: incident.response
    comment: '[incident INC-1] Workers restarted'
    status: active
actions:
  description: One entry per silence created, extended or expired (or that would be, in check mode).
  returned: success
  type: list
  elements: dict
  sample:
    - action: create_silence
      target: http://127.0.0.1:9093
      detail: {matchers: 'alertname="NoActiveWorkers"', endsAt: '2026-12-01T21:30:00.000Z'}
      done: true
summary:
  description: One line for the incident record.
  returned: success
  type: str
  sample: created silence 7e0b1f0e for alertname="NoActiveWorkers" until 2026-12-01T21:30:00.000Z
diff:
  description: The silence before and after (only with C(--diff)).
  returned: when diff mode is on
  type: dict
'''

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._alertmanager import (
    ALERTMANAGER_ARGUMENT_SPEC, ALERTMANAGER_MUTUALLY_EXCLUSIVE, ALERTMANAGER_REQUIRED_TOGETHER,
    AlertmanagerClient, AlertmanagerError, format_time, matcher_key, matches_everything, normalize_matcher,
    parse_time, utcnow)
from ansible_collections.incident.response.plugins.module_utils._common import (
    new_module,
    DurationError, format_duration, make_action, parse_duration)

LIVE_STATES = ('active', 'pending')


def describe(matchers):
    parts = []
    for m in matchers:
        op = ('=~' if m['isRegex'] else '=') if m['isEqual'] else ('!~' if m['isRegex'] else '!=')
        parts.append('%s%s"%s"' % (m['name'], op, m['value']))
    return ', '.join(parts) or '(no matchers)'


def incident_tag(incident_id):
    return '[incident %s]' % incident_id


def public(silence):
    """The fields of a silence worth returning."""
    if not silence:
        return None
    return dict(id=silence.get('id'), matchers=[normalize_matcher(m, i) for i, m in
                                                enumerate(silence.get('matchers') or [])],
                startsAt=silence.get('startsAt'), endsAt=silence.get('endsAt'), createdBy=silence.get('createdBy'),
                comment=silence.get('comment'), status=(silence.get('status') or {}).get('state'))


def find(silences, matchers, incident_id):
    key = matcher_key(matchers)
    found = []
    for silence in silences:
        if (silence.get('status') or {}).get('state') not in LIVE_STATES:
            continue
        if matcher_key(silence.get('matchers') or []) != key:
            continue
        if incident_id and incident_tag(incident_id) not in (silence.get('comment') or ''):
            continue
        found.append(silence)
    return sorted(found, key=lambda s: s.get('endsAt') or '', reverse=True)


def main():
    argument_spec = dict(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        matchers=dict(type='list', elements='dict', options=dict(
            name=dict(type='str', required=True),
            value=dict(type='str', required=True),
            isRegex=dict(type='bool', default=False),
            isEqual=dict(type='bool', default=True),
        )),
        silence_id=dict(type='str'),
        incident_id=dict(type='str'),
        comment=dict(type='str', default='Silenced during incident response'),
        created_by=dict(type='str', default='incident.response'),
        starts_at=dict(type='str'),
        ends_at=dict(type='str'),
        duration=dict(type='str', default='30m'),
        max_duration=dict(type='str', default='4h'),
        extend_margin=dict(type='str', default='5m'),
        allow_match_all=dict(type='bool', default=False),
    )
    argument_spec.update(ALERTMANAGER_ARGUMENT_SPEC)
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True,
                        mutually_exclusive=ALERTMANAGER_MUTUALLY_EXCLUSIVE,
                        required_together=ALERTMANAGER_REQUIRED_TOGETHER)
    p = module.params
    result = dict(changed=False, silence_id=None, silence=None, actions=[], summary='')

    try:
        matchers = [normalize_matcher(m, i) for i, m in enumerate(p['matchers'] or [])]
        max_duration = parse_duration(p['max_duration'], 'max_duration')
        margin = parse_duration(p['extend_margin'], 'extend_margin') or 0
        now = utcnow()
        starts_at = parse_time(p['starts_at'], 'starts_at') if p['starts_at'] else now
        if p['ends_at']:
            ends_at = parse_time(p['ends_at'], 'ends_at')
        else:
            length = parse_duration(p['duration'], 'duration')
            if not length:
                raise ValueError('duration: must be more than zero (or set ends_at)')
            ends_at = starts_at + datetime.timedelta(seconds=length)
    except (ValueError, DurationError) as exc:
        module.fail_json(msg=str(exc), **result)

    if p['matchers'] is None and not p['silence_id']:
        module.fail_json(msg='matchers is required (or silence_id): which alerts?', **result)
    if p['matchers'] is not None and matches_everything(matchers) and not p['allow_match_all']:
        module.fail_json(msg='refusing a silence that matches every alert (%s): it would hide the next incident '
                             'too; narrow the matchers, or set allow_match_all=true' % describe(matchers), **result)

    if p['state'] == 'present':
        if ends_at <= now:
            module.fail_json(msg='ends_at %s is in the past: nothing to silence' % format_time(ends_at), **result)
        if ends_at <= starts_at:
            module.fail_json(msg='ends_at %s is not after starts_at %s' % (format_time(ends_at),
                                                                           format_time(starts_at)), **result)
        if max_duration and (ends_at - max(starts_at, now)).total_seconds() > max_duration + 1:
            module.fail_json(msg='a silence of %s is longer than max_duration %s: shorten it, or raise max_duration'
                                 % (format_duration((ends_at - max(starts_at, now)).total_seconds()),
                                    format_duration(max_duration)), **result)

    try:
        client = AlertmanagerClient(p)
        if p['silence_id']:
            existing = client.silence(p['silence_id'])
            candidates = [existing] if existing and (existing.get('status') or {}).get('state') in LIVE_STATES else []
            if matchers and candidates and matcher_key(existing.get('matchers') or []) != matcher_key(matchers):
                module.fail_json(msg='silence %s has matchers %s, not %s: refusing to change them through silence_id'
                                     % (p['silence_id'], describe(public(existing)['matchers']), describe(matchers)),
                                 **result)
        else:
            candidates = find(client.silences(), matchers, p['incident_id'])
    except AlertmanagerError as exc:
        if p['silence_id'] and getattr(exc, 'details', {}).get('status_code') == 404:
            module.fail_json(msg='silence %s not found on %s' % (p['silence_id'], p['url']), **result)
        module.fail_json(msg=str(exc), **result)

    target = client.url
    before = public(candidates[0]) if candidates else None

    if p['state'] == 'absent':
        ids = [s['id'] for s in candidates]
        result['silence_ids'] = ids
        for silence_id in ids:
            result['actions'].append(make_action('expire_silence', target, dict(
                id=silence_id, matchers=describe(public(candidates[ids.index(silence_id)])['matchers'])),
                done=False))
        result['changed'] = bool(ids)
        if ids and not module.check_mode:
            for action in result['actions']:
                try:
                    client.expire_silence(action['detail']['id'])
                except AlertmanagerError as exc:
                    action['error'] = str(exc)
                    result['summary'] = 'expiring silence %s failed' % action['detail']['id']
                    module.fail_json(msg=str(exc), **result)
                action['done'] = True
        verb = 'would expire' if module.check_mode else 'expired'
        what = describe(matchers or (before or {}).get('matchers') or [])
        result['summary'] = '%s %d silence(s) for %s' % (verb, len(ids), what) if ids else \
            'no live silence for %s' % describe(matchers)
        if module._diff:
            result['diff'] = dict(before=dict(silences=[public(s) for s in candidates]), after=dict(silences=[]))
        module.exit_json(**result)

    comment = p['comment']
    if p['incident_id'] and incident_tag(p['incident_id']) not in comment:
        comment = '%s %s' % (incident_tag(p['incident_id']), comment)
    wanted_end = format_time(ends_at)

    if candidates:
        existing = candidates[0]
        result['silence_id'] = existing['id']
        current_end = parse_time(existing['endsAt'], 'endsAt')
        if (ends_at - current_end).total_seconds() <= margin:
            result['silence'] = before
            result['summary'] = 'silence %s for %s already in place until %s' % (
                existing['id'][:8], describe(matchers), existing['endsAt'])
            if module._diff:
                result['diff'] = dict(before=before, after=before)
            module.exit_json(**result)
        body = dict(id=existing['id'], matchers=existing['matchers'], startsAt=existing['startsAt'],
                    endsAt=wanted_end, createdBy=existing.get('createdBy') or p['created_by'],
                    comment=existing.get('comment') or comment)
        action = make_action('extend_silence', target, dict(id=existing['id'], matchers=describe(matchers),
                                                            endsAt_before=existing['endsAt'], endsAt=wanted_end))
        verb = 'extend'
    else:
        body = dict(matchers=matchers, startsAt=format_time(starts_at), endsAt=wanted_end,
                    createdBy=p['created_by'], comment=comment)
        action = make_action('create_silence', target, dict(matchers=describe(matchers), startsAt=body['startsAt'],
                                                            endsAt=wanted_end))
        verb = 'create'

    result['changed'] = True
    result['actions'].append(action)
    after = dict(before or {}, **dict((k, v) for k, v in body.items() if k != 'id'))
    after['id'] = body.get('id')
    after['status'] = 'active' if starts_at <= now else 'pending'
    if not module.check_mode:
        try:
            new_id = client.post_silence(body)
        except AlertmanagerError as exc:
            action['error'] = str(exc)
            module.fail_json(msg=str(exc), **result)
        action['done'] = True
        action['detail']['id'] = new_id
        result['silence_id'] = new_id
        after['id'] = new_id
    result['silence'] = after
    result['summary'] = '%s silence %sfor %s until %s' % (
        ('would ' + verb) if module.check_mode else (verb + 'd' if verb.endswith('e') else verb + 'ed'),
        ('%s ' % result['silence_id'][:8]) if result['silence_id'] else '', describe(matchers), wanted_end)
    if module._diff:
        result['diff'] = dict(before=before or {}, after=after)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
