#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: incident_notify
short_description: Send one of the runbooks' notifications of an incident on Slack, a webhook, email and PagerDuty
version_added: 0.2.0
description:
  - Renders one template of the runbooks (O(template)) from the incident record and its timeline, and sends it
    on every channel of O(channels) that the incident's severity reaches (see RV(messages[].routed)).
  - "Channels: V(slack) (incoming webhook), V(webhook) (generic JSON POST), V(email) (SMTP with STARTTLS or TLS,
    AUTH), V(pagerduty) (Events API v2: V(trigger), V(acknowledge) or V(resolve), the incident id as
    C(dedup_key); the endpoint is O(channels[].url), for PagerDuty's regional endpoints)."
  - "Routing by severity: a channel has an O(channels[].audience); SEV1 reaches the V(executive), V(management),
    V(team), V(oncall) (pager) and V(public) (status page) audiences, SEV2 V(management), V(team) and V(oncall),
    SEV3 V(team), SEV4 nobody (document only): the audience of the level in the runbook's severity table
    decides, see docs/incident-notifications.md. The V(status_page) template goes to V(public) channels only.
    O(channels[].severities) and O(channels[].templates) override the routing of one channel."
  - "Every message sent or failed is an event of type C(notification) in the incident's timeline (channel,
    template, update number, delivered or the error). A message is sent once per incident, template kind,
    update number and channel (the event C(key) C(notify:<kind>:<number>:<channel>)): a re-run sends nothing
    again, a channel that failed is tried again. Before sending, a run claims the message (an event
    C(claim:<key>:<attempt>), appended once by the store): two overlapping runs never both send it."
  - "A channel that fails does not fail the task unless O(channels[].required=true): the failure is recorded
    and warned. Webhook URLs, routing keys, header values and SMTP passwords never reach the record, the
    result or a message."
  - When a status update (O(template=update)) was delivered, the record's C(updates_sent) becomes
    O(update_number); when an escalation request was delivered, C(escalation_level) becomes
    O(escalation_level) and an C(escalation) event is recorded (O(record_progress)).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
attributes:
  check_mode:
    support: full
    description: Renders every message and returns it in RV(messages); sends nothing and writes nothing.
  diff_mode:
    support: full
    description: Shows the record's C(updates_sent), C(escalation_level) and notification keys before and after.
  idempotent:
    support: full
    description: A message already delivered (its key is in the timeline) is not sent again.
options:
  incident_id:
    description: The incident.
    type: str
    required: true
  template:
    description:
      - A kind, rendered with the template of the incident's runbook (C(system)) - V(initial), V(update),
        V(resolution), V(escalation), V(status_page) - or a template name such as V(tviews_emergency),
        V(task_scheduler_p0), V(task_scheduler_p1), V(task_scheduler_resolution), V(insights_slack_update),
        V(insights_status_page), V(schedule_generator_initial), V(schedule_generator_update),
        V(schedule_generator_resolution), V(schedule_generator_escalation), V(schedule_generator_status_page).
    type: str
    required: true
  update_number:
    description:
      - The number N of a status update (the C(INCIDENT UPDATE) number); required with O(template=update).
        M(incident.response.incident_timers_info) gives the number due.
      - For other templates it defaults to V(0) (one message per incident and channel), and for
        O(template=escalation) to O(escalation_level).
    type: int
  escalation_level:
    description: The escalation level requested (with O(template=escalation)); default the record's level + 1.
    type: int
  escalation_target:
    description: Who is requested (C(REQUESTING)), with O(template=escalation).
    type: str
  escalation_reason:
    description: Why (C(REASON FOR ESCALATION)), with O(template=escalation).
    type: str
  vars:
    description:
      - Values for the templates' placeholders that the record does not hold, for example C(eta), C(workaround),
        C(bridge), C(next_steps) (a list becomes bullets), C(affected_users), C(prevention), C(review_scheduled).
        They take precedence over the record.
    type: dict
    default: {}
  template_overrides:
    description:
      - "Operator's templates, by kind or template name, each a path to a UTF-8 file on the host that runs the
        module. The first line may be C(Subject: ...); placeholders are C(${name}) (C($$) for a dollar sign).
        Substitution is by name only (Python C(string.Template)): a malformed placeholder or an unknown name
        fails the task with one message before anything is sent."
    type: dict
    default: {}
  event_action:
    description:
      - The PagerDuty event action. V(auto) is V(resolve) for the resolution, V(acknowledge) for a status update
        of an acknowledged incident, else V(trigger).
    type: str
    choices: [auto, trigger, acknowledge, resolve]
    default: auto
  record_progress:
    description: Update C(updates_sent) / C(escalation_level) of the record after a delivered update / escalation.
    type: bool
    default: true
  channels:
    description: The channels. Keep their secrets in Ansible Vault or AWX credentials.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The channel's name in the timeline and the results (default its type). Unique.
        type: str
      type:
        description: The kind of channel.
        type: str
        required: true
        choices: [slack, webhook, email, pagerduty]
      audience:
        description:
          - Who reads it. Defaults - V(slack) and V(webhook) V(team), V(email) V(management), V(pagerduty)
            V(oncall). V(public) is the status page (gets only the status page template).
        type: str
        choices: [executive, management, team, oncall, public]
      severities:
        description: Send for these severities only (V(SEV1)..V(SEV4)), instead of the audience routing.
        type: list
        elements: str
      templates:
        description: Send these kinds or template names only.
        type: list
        elements: str
      required:
        description: A failure of this channel fails the task (after every channel was tried and recorded).
        type: bool
        default: false
      url:
        description:
          - The webhook URL (V(slack), V(webhook)) or the PagerDuty Events API endpoint (default
            C(https://events.pagerduty.com/v2/enqueue); C(https://events.eu.pagerduty.com/v2/enqueue) in the EU).
            Secret.
        type: str
      headers:
        description: Extra HTTP headers (for example an C(Authorization) token of a webhook). Secret.
        type: dict
      routing_key:
        description: The PagerDuty integration (routing) key. Secret.
        type: str
      slack_channel:
        description: Slack channel override (only for webhooks that allow it).
        type: str
      username:
        description: Slack username override.
        type: str
      icon_emoji:
        description: Slack icon override.
        type: str
      smtp_host:
        description: The SMTP server (V(email)).
        type: str
      smtp_port:
        description: Its port; default 587 with STARTTLS, 465 with TLS, 25 without.
        type: int
      smtp_username:
        description: SMTP AUTH user.
        type: str
      smtp_password:
        description: SMTP AUTH password. Secret.
        type: str
      smtp_security:
        description: V(starttls) (refuses a server without STARTTLS), V(tls) (implicit TLS) or V(none).
        type: str
        choices: [starttls, tls, none]
        default: starttls
      mail_from:
        description: The sender address.
        type: str
      mail_to:
        description: The recipients.
        type: list
        elements: str
      ca_path:
        description: A CA bundle to verify the server's certificate (HTTPS, SMTP TLS).
        type: path
      validate_certs:
        description: Verify TLS certificates.
        type: bool
        default: true
      timeout:
        description: Seconds to wait for the channel.
        type: int
        default: 10
seealso:
  - module: incident.response.incident_timers_info
'''

EXAMPLES = r'''
- name: Tell everyone the severity reaches (initial notification)
  incident.response.incident_notify:
    incident_id: "{{ incident_id }}"
    template: initial
    vars:
      bridge: "#inc-{{ incident_id }}"
    channels:
      - name: slack-incidents
        type: slack
        url: "{{ vault_slack_webhook_url }}"
      - name: email-management
        type: email
        smtp_host: smtp.example.com
        smtp_username: incident-bot
        smtp_password: "{{ vault_smtp_password }}"
        mail_from: incident-bot@example.com
        mail_to: [incident-team@example.com]
      - name: pagerduty
        type: pagerduty
        routing_key: "{{ vault_pagerduty_routing_key }}"
        required: true
      - name: status-page
        type: webhook
        audience: public
        url: "{{ vault_status_page_webhook }}"
  delegate_to: localhost

- name: Status update number 3 (incident_timers_info says which is due)
  incident.response.incident_notify:
    incident_id: "{{ incident_id }}"
    template: update
    update_number: 3
    channels: "{{ incident_notify_channels }}"
'''

RETURN = r'''
changed:
  description: Whether a message was sent or an event recorded.
  returned: always
  type: bool
summary:
  description: One line.
  returned: always
  type: str
  sample: "update #2 of INC-2026-12-01-001: sent on slack, email; pagerduty failed (recorded)"
actions:
  description: One entry per channel routed (action C(notify)), done or, in check mode, that would be done.
  returned: always
  type: list
  elements: dict
incident_id:
  description: The incident.
  returned: always
  type: str
template:
  description: The template rendered.
  returned: always
  type: str
  sample: schedule_generator_update
update_number:
  description: The update number of the messages (the escalation level for an escalation).
  returned: always
  type: int
messages:
  description: One entry per channel of O(channels).
  returned: always
  type: list
  elements: dict
  contains:
    channel:
      description: The channel's name.
      type: str
    type:
      description: The channel's type.
      type: str
    key:
      description: The idempotency key.
      type: str
    routed:
      description: Whether the severity and template reach this channel, and why in C(reason).
      type: bool
    reason:
      description: Why the channel is or is not routed.
      type: str
    state:
      description: V(sent), V(failed), V(already_sent), V(not_routed), V(would_send) (check mode),
        V(in_progress) (another run is sending it right now).
      type: str
    delivered:
      description: Delivered now or before.
      type: bool
    error:
      description: The channel's error (no secret in it).
      type: str
    subject:
      description: The rendered subject.
      type: str
    body:
      description: The rendered body.
      type: str
    detail:
      description: The channel's answer (HTTP status, PagerDuty event_action and dedup_key, email recipients).
      type: dict
sent_channels:
  description: Channels that delivered in this run.
  returned: always
  type: list
  elements: str
failed_channels:
  description: Channels that failed in this run (the task fails only when one of them is required).
  returned: always
  type: list
  elements: str
placeholders_left:
  description: Runbook placeholders still in the message (values the record does not have).
  returned: always
  type: list
  elements: str
diff:
  description: Before and after (updates_sent, escalation_level, notification keys); with --diff only.
  returned: when diff mode
  type: dict
'''

import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import make_action, new_module
from ansible_collections.incident.response.plugins.module_utils import _incident
from ansible_collections.incident.response.plugins.module_utils import _incident_render as render_mod
from ansible_collections.incident.response.plugins.module_utils import _incident_timers as timers_mod
from ansible_collections.incident.response.plugins.module_utils import _notify


def argument_spec():
    spec = _incident.store_argument_spec()
    spec.update(
        incident_id=dict(type='str', required=True),
        template=dict(type='str', required=True),
        update_number=dict(type='int'),
        escalation_level=dict(type='int'),
        escalation_target=dict(type='str'),
        escalation_reason=dict(type='str'),
        vars=dict(type='dict', default={}),
        template_overrides=dict(type='dict', default={}),
        event_action=dict(type='str', default='auto', choices=['auto', 'trigger', 'acknowledge', 'resolve']),
        record_progress=dict(type='bool', default=True),
        channels=dict(type='list', elements='dict', default=[], options=_notify.CHANNEL_SPEC),
    )
    return spec


class NotifyError(Exception):
    pass


def _secrets(params):
    found = []
    for channel in params.get('channels') or []:
        found.extend(_notify.secrets_of(channel))
    if params.get('store_dsn'):
        found.append(params['store_dsn'])
    return found


def _override(params, name, kind):
    overrides = params.get('template_overrides') or {}
    unknown = [key for key in overrides if key not in render_mod.TEMPLATES and key not in render_mod.KINDS]
    if unknown:
        raise NotifyError('template_overrides: unknown template %s; use a kind (%s) or a template name'
                          % (', '.join(sorted(map(str, unknown))), ', '.join(render_mod.KINDS)))
    for key in (name, kind):
        if overrides.get(key):
            try:
                subject, body = render_mod.load_template_file(str(overrides[key]))
            except render_mod.TemplateError as exc:
                raise NotifyError(str(exc))
            return subject, body, str(overrides[key])
    return None


def _claim(store, incident_id, key, base, stale_after):
    """Claim the sending of the message ``key``: its claim key, or None when another run holds the claim.

    The claim is an event with the key ``claim:<key>:<attempt>`` (``attempt``: the failures recorded for ``key``).
    The store appends an event with a given key once, also under concurrency, and returns the stored one: two
    overlapping runs agree on who sends. A claim older than ``stale_after`` seconds whose run never reported is
    recorded as failed (``stale:<claim key>``, once) and the message claimed again.
    """
    for _round in range(3):
        events = store.events(incident_id)
        attempt = len([e for e in events if e.get('type') == 'notification' and e.get('attempt_of') == key
                       and e.get('delivered') is False])
        claim_key = 'claim:%s:%d' % (key, attempt)
        mine = uuid.uuid4().hex
        stored = store.append_event(incident_id, dict(base, key=claim_key, claim=mine, attempt_of=key,
                                                      delivered=None, state='sending',
                                                      message='sending %s on %s' % (base['template_name'],
                                                                                    base['channel'])))
        if stored.get('claim') == mine:
            return claim_key
        if store.has_event(incident_id, key):
            return None
        claimed_at = timers_mod.parse_time(stored.get('time'), 'claim time')
        if claimed_at is None or (timers_mod.utcnow() - claimed_at).total_seconds() < stale_after:
            return None
        store.append_event(incident_id, dict(
            base, key='stale:' + claim_key, attempt_of=key, delivered=False,
            error='the run that claimed this message at %s never reported; treated as failed' % stored.get('time'),
            message='%s on %s: stale claim' % (base['template_name'], base['channel'])))
    return None


def run(module):
    params = module.params
    secrets = _secrets(params)
    incident_id = _incident.validate_incident_id(params['incident_id'])
    channels = params['channels'] or []
    names = []
    for channel in channels:
        try:
            _notify.validate_channel(channel, tuple(render_mod.KINDS) + tuple(render_mod.TEMPLATES))
        except _notify.ChannelError as exc:
            raise NotifyError(str(exc))
        names.append(_notify.channel_name(channel))
    duplicates = sorted(set(name for name in names if names.count(name) > 1))
    if duplicates:
        raise NotifyError('channels: the name %s is used twice; give each channel its own name (it is part of the '
                          'key that makes sending idempotent)' % ', '.join(duplicates))

    store = _incident.get_store(params, secrets=secrets)
    try:
        record = store.get(incident_id)
        if record is None:
            raise NotifyError('incident %s does not exist in %s' % (incident_id, store.describe()))
        if record.get('severity') not in timers_mod.SEVERITIES:
            raise NotifyError('incident %s has no severity (%r): set it first, routing depends on it'
                              % (incident_id, record.get('severity')))
        try:
            name = render_mod.template_name(params['template'], record)
        except render_mod.TemplateError as exc:
            raise NotifyError(str(exc))
        kind = params['template'] if params['template'] in render_mod.KINDS else render_mod.template_kind(name)

        escalation = None
        if kind == 'escalation':
            level = params['escalation_level'] or int(record.get('escalation_level') or 0) + 1
            escalation = dict(level=level, target=params['escalation_target'],
                              reason=params['escalation_reason'])
            number = params['update_number'] if params['update_number'] is not None else level
        elif kind == 'update':
            if params['update_number'] is None:
                raise NotifyError('update_number is required with template=%s (the N of "INCIDENT UPDATE #N"; '
                                  'incident_timers_info returns the number due)' % params['template'])
            number = params['update_number']
        else:
            number = params['update_number'] or 0
        if number < 0:
            raise NotifyError('update_number must not be negative, got %d' % number)

        events = store.events(incident_id)
        try:
            message = render_mod.render(name, record, events=events, values=params['vars'], update_number=number,
                                        escalation=escalation, override=_override(params, name, kind))
        except render_mod.TemplateError as exc:
            raise NotifyError(str(exc))
        message['update_number'] = number
        message['kind'] = kind
        for field in ('subject', 'body'):
            message[field] = _incident.redact_value(message[field], secrets)

        action = _notify.pagerduty_action(kind, record, params['event_action'])
        results, actions, sent, failed, written = [], [], [], [], []
        done_count = routed_count = 0
        for channel in channels:
            cname = _notify.channel_name(channel)
            key = 'notify:%s:%d:%s' % (kind, number, cname)
            is_routed, reason = _notify.routed(channel, record['severity'], kind, name, record.get('system'))
            entry = dict(channel=cname, type=channel['type'], key=key, routed=is_routed, reason=reason,
                         delivered=False, error=None, subject=message['subject'], body=message['body'], detail={},
                         required=channel['required'])
            results.append(entry)
            if not is_routed:
                entry['state'] = 'not_routed'
                continue
            routed_count += 1
            if store.has_event(incident_id, key):
                entry.update(state='already_sent', delivered=True)
                done_count += 1
                continue
            detail = dict(channel=cname, type=channel['type'], template=name, update_number=number)
            if channel['type'] == 'pagerduty':
                detail.update(event_action=action, dedup_key=incident_id)
            if module.check_mode:
                entry['state'] = 'would_send'
                entry['detail'] = dict(detail)
                actions.append(make_action('notify', cname, detail, done=False))
                continue
            base = dict(type='notification', actor='incident.response.incident_notify', channel=cname,
                        channel_type=channel['type'], template=kind, template_name=name, update_number=number,
                        subject=message['subject'], event_action=action if channel['type'] == 'pagerduty' else None)
            claim_key = _claim(store, incident_id, key, base, stale_after=max(120, 3 * (channel['timeout'] or 10)))
            if claim_key is None:
                if store.has_event(incident_id, key):
                    entry.update(state='already_sent', delivered=True)
                    done_count += 1
                else:
                    entry['state'] = 'in_progress'
                    module.warn('incident %s: %s on channel %s is being sent by another run right now; not sent '
                                'again' % (incident_id, name, cname))
                continue
            try:
                answer = _notify.send(channel, message, record, pagerduty_event_action=action)
                entry.update(state='sent', delivered=True, detail=answer)
                sent.append(cname)
                done_count += 1
                actions.append(make_action('notify', cname, dict(detail, **answer), done=True))
            except _notify.ChannelError as exc:
                error = _notify.scrub(str(exc), secrets)
                entry.update(state='failed', error=error)
                failed.append(cname)
                actions.append(make_action('notify', cname, detail, done=False, error=error))
                module.warn('incident %s: %s on channel %s (%s) failed: %s (recorded in the timeline)'
                            % (incident_id, name, cname, channel['type'], error))
            written.append(store.append_event(incident_id, dict(
                base, key=key if entry['delivered'] else 'failed:' + claim_key, attempt_of=key,
                delivered=entry['delivered'], error=entry['error'],
                message='%s %s on %s' % (name, 'delivered' if entry['delivered'] else 'failed', cname))))

        before = dict(updates_sent=int(record.get('updates_sent') or 0),
                      escalation_level=int(record.get('escalation_level') or 0),
                      notifications=sorted(e.get('key') for e in events if e.get('type') == 'notification'
                                           and (e.get('key') or '').startswith('notify:')))
        after = dict(before, notifications=list(before['notifications']))
        progress = {}
        would = len([r for r in results if r.get('state') == 'would_send'])
        complete = done_count + would > 0 or routed_count == 0
        if params['record_progress'] and complete:
            if kind == 'update' and number > before['updates_sent']:
                progress['updates_sent'] = number
            if kind == 'escalation' and escalation['level'] > before['escalation_level']:
                progress['escalation_level'] = escalation['level']
        after.update(progress)
        after['notifications'] = sorted(after['notifications'] + [e['key'] for e in written if e.get('delivered')] +
                                        [r['key'] for r in results if r.get('state') == 'would_send'])

        changed = bool(written or progress or [r for r in results if r.get('state') == 'would_send'])
        if 'updates_sent' in progress:
            actions.append(make_action('record_update_number', incident_id,
                                       dict(updates_sent=progress['updates_sent']), done=not module.check_mode))
        if not module.check_mode:
            if progress:
                store.update(incident_id, progress)
            if 'escalation_level' in progress and not store.has_event(incident_id, 'escalation:%d' % escalation['level']):
                store.append_event(incident_id, dict(
                    type='escalation', key='escalation:%d' % escalation['level'],
                    actor='incident.response.incident_notify', level=escalation['level'],
                    target=escalation.get('target'), reason=escalation.get('reason'),
                    message='escalation level %d requested: %s' % (escalation['level'], escalation.get('target')
                                                                   or 'next level')))
        elif kind == 'escalation' and progress:
            actions.append(make_action('record_escalation', incident_id, dict(level=escalation['level']), done=False))
    finally:
        store.close()

    label = '%s%s' % (name, (' #%d' % number) if kind in ('update', 'escalation') else '')
    parts = []
    if module.check_mode:
        would = [r['channel'] for r in results if r['state'] == 'would_send']
        parts.append('would send on %s' % ', '.join(would) if would else 'nothing to send')
    else:
        if sent:
            parts.append('sent on %s' % ', '.join(sent))
        if failed:
            parts.append('%s failed (recorded)' % ', '.join(failed))
        if not sent and not failed:
            parts.append('nothing to send')
    already = [r['channel'] for r in results if r['state'] == 'already_sent']
    if already:
        parts.append('already sent on %s' % ', '.join(already))
    if not routed_count:
        parts.append('no channel routed for %s' % record['severity'])
    result = dict(changed=changed, incident_id=incident_id, template=name, update_number=number, messages=results,
                  actions=actions, sent_channels=sent, failed_channels=failed, placeholders_left=message['placeholders_left'],
                  summary='%s of %s: %s' % (label, incident_id, '; '.join(parts)))
    if module._diff:
        result['diff'] = dict(before=before, after=after)
    required_failed = [r for r in results if r['state'] == 'failed' and r['required']]
    if required_failed:
        result['msg'] = 'required channel %s failed: %s' % (
            ', '.join('%s (%s)' % (r['channel'], r['type']) for r in required_failed),
            '; '.join(r['error'] for r in required_failed))
        module.fail_json(**result)
    module.exit_json(**result)


def main():
    module = new_module(AnsibleModule, argument_spec=argument_spec(), supports_check_mode=True)
    try:
        run(module)
    except (NotifyError, _incident.IncidentError, timers_mod.TimerError, render_mod.TemplateError) as exc:
        module.fail_json(msg=_incident.redact_value(str(exc), _secrets(module.params)), changed=False)


if __name__ == '__main__':
    main()
