# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Update and escalation timers of the runbooks, computed from an incident record (issue 8, section 4).

Private to the collection. Pure functions: no store, no clock of their own (``now`` is passed in), so the
tests move the clock by writing the record's times in the past.

The rules are those of ``_incident.SEVERITY`` (the one severity table, ``severity_policy(severity,
system)``): per level and runbook, the update interval, response time, resolution target, audience and the
escalation rules (``when``: declared, unmitigated, unresolved, root_cause_unknown; ``after_minutes``; ``to``;
``level``). An ``unmitigated`` rule ("service down for more than 15 minutes") counts from ``times.started``,
the others from ``times.detected``. Escalation stops once the incident is monitoring, resolved or closed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.incident.response.plugins.module_utils import _incident

SEVERITIES = ('SEV1', 'SEV2', 'SEV3', 'SEV4')
OPEN_STATUSES = ('investigating', 'identified', 'mitigating', 'monitoring')
ESCALATING_STATUSES = ('investigating', 'identified', 'mitigating')

# Which channel audiences a severity's audience reaches (an audience includes the ones below it). 'oncall' is
# the pager (PagerDuty): SEV1 and SEV2 page ("Page on-call engineer", response within 5 / 15 minutes);
# 'public' is the status page: SEV1 only ("Public status page update"; SEV-2 is an "Internal status update").
AUDIENCE_REACH = dict(executive=('executive', 'management', 'team'), management=('management', 'team'),
                      team=('team',), document=())
PAGED = ('SEV1', 'SEV2')
PUBLIC = ('SEV1',)

# Anchor of each escalation condition: 'unmitigated' is "service down for more than N minutes", counted from
# when the fault began (started); the others from when the incident was declared (detected).
ANCHORS = dict(declared='detected', unmitigated='started', unresolved='detected', root_cause_unknown='detected')


class TimerError(ValueError):
    pass


def system_key(system):
    """The runbook of a record's system (pg_tviews, task_scheduler, insights, schedule_generator) or None."""
    text = (system or '').strip().lower().replace('-', '_').replace(' ', '_')
    aliases = dict(tviews='pg_tviews', pg_tview='pg_tviews', taskscheduler='task_scheduler',
                   schedgen='schedule_generator', insights_app='insights')
    text = aliases.get(text, text)
    return text if text in _incident.SYSTEMS else None


def rules_for(severity, system=None):
    """The timing rules of one severity for one runbook, from ``_incident.SEVERITY`` (severity_policy).

    Returns dict: system, label, interval (update minutes or None), response, resolution, audience,
    escalation (list of (level, after_minutes, anchor, when, target)).
    """
    if severity not in SEVERITIES:
        raise TimerError('unknown severity %r: expected one of %s' % (severity, ', '.join(SEVERITIES)))
    key = system_key(system)
    try:
        policy = _incident.severity_policy(severity, key)
    except _incident.IncidentError as exc:
        raise TimerError(str(exc))
    rules = []
    for rule in policy.get('escalation') or []:
        when = rule.get('when') or 'unresolved'
        rules.append((int(rule.get('level') or 1), float(rule.get('after_minutes') or 0),
                      ANCHORS.get(when, 'detected'), when, rule.get('to') or 'the next escalation level'))
    return dict(system=key, label=policy.get('label') or severity, interval=policy.get('update_minutes'),
                response=policy.get('response_minutes'), resolution=policy.get('resolution_minutes'),
                audience=policy.get('audience'), escalation=rules, severity=severity)


def audiences(severity, system=None):
    """The channel audiences an incident of ``severity`` reaches."""
    rules = rules_for(severity, system)
    reach = list(AUDIENCE_REACH.get(rules['audience'], ()))
    if severity in PAGED:
        reach.append('oncall')
    if severity in PUBLIC:
        reach.append('public')
    return tuple(reach)


_WHEN_TEXT = dict(declared='%(label)s incident declared',
                  unmitigated='%(label)s: service down (not mitigated) for more than %(after)s',
                  unresolved='%(label)s not resolved within %(after)s',
                  root_cause_unknown='%(label)s: root cause unclear after %(after)s of investigation')


def _after_text(minutes):
    minutes = int(minutes)
    if minutes and minutes % 60 == 0:
        return '%d hour%s' % (minutes // 60, '' if minutes == 60 else 's')
    return '%d minutes' % minutes


def parse_time(value, name='time'):
    """ISO 8601 (with Z or an offset; naive means UTC) -> aware UTC datetime; None stays None."""
    if value is None or value == '':
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        text = str(value).strip()
        if text.endswith('Z') or text.endswith('z'):
            text = text[:-1] + '+00:00'
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise TimerError('%s: %r is not an ISO 8601 time such as 2026-12-01T20:00:00Z' % (name, value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)


def iso(moment):
    if moment is None:
        return None
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _times(record):
    times = record.get('times') or {}
    return dict((key, parse_time(times.get(key), 'times.%s' % key)) for key in
                ('started', 'detected', 'acknowledged', 'mitigated', 'resolved', 'closed'))


def timers(record, now=None):
    """What is due for one incident at ``now``.

    Status update #N is the N-th interval since the incident was detected: it is due when N intervals have
    passed and fewer than N updates were sent (``updates_sent`` holds the number of the last one). A run that
    comes late sends the current number once, never a burst of the missed ones. Escalation level L is due when
    one of its rules holds and ``escalation_level`` < L; the highest level due is sent.
    """
    now = now or utcnow()
    severity = record.get('severity')
    rules = rules_for(severity, record.get('system'))
    status = record.get('status') or 'investigating'
    times = _times(record)
    detected = times['detected'] or times['started']
    started = times['started'] or detected
    updates_sent = int(record.get('updates_sent') or 0)
    escalation_level = int(record.get('escalation_level') or 0)
    out = dict(incident_id=record.get('id'), severity=severity, priority=record.get('priority'),
               system=rules['system'], status=status, now=iso(now),
               update_interval_minutes=rules['interval'], response_minutes=rules['response'],
               resolution_minutes=rules['resolution'], updates_sent=updates_sent,
               escalation_level=escalation_level, next_update_number=None, next_update_due=None,
               update_due=False, escalations=[], escalation_due=None, due=[])
    if rules['resolution'] is not None and detected is not None:
        out['resolution_due'] = iso(detected + datetime.timedelta(minutes=rules['resolution']))
    else:
        out['resolution_due'] = None
    if detected is None:
        out['reasons'] = ['the record has no detected or started time: no timer can run']
        return out
    elapsed_min = (now - detected).total_seconds() / 60.0
    out['elapsed_minutes'] = round(elapsed_min, 1)

    if rules['interval'] and status in OPEN_STATUSES:
        slot = int(elapsed_min // rules['interval'])
        if slot > updates_sent:
            out['update_due'] = True
            out['next_update_number'] = slot
            out['next_update_due'] = iso(detected + datetime.timedelta(minutes=slot * rules['interval']))
            out['due'].append(dict(kind='update', template='update', update_number=slot,
                                   key='notify:update:%d' % slot,
                                   reason='status update #%d due (every %d minutes at %s)'
                                          % (slot, rules['interval'], rules['label'])))
        else:
            number = updates_sent + 1
            out['next_update_number'] = number
            out['next_update_due'] = iso(detected + datetime.timedelta(minutes=number * rules['interval']))

    escalating = status in ESCALATING_STATUSES and times['resolved'] is None
    due_level = 0
    due_rules = []
    for level, after, anchor, when, target in rules['escalation']:
        base = started if anchor == 'started' else detected
        at = base + datetime.timedelta(minutes=after)
        if when == 'unmitigated':
            holds = escalating and times['mitigated'] is None
        elif when == 'root_cause_unknown':
            holds = escalating and not record.get('root_cause')
        else:
            holds = escalating
        reason = _WHEN_TEXT.get(when, '%(label)s: escalation after %(after)s') % dict(
            label=rules['label'], after=_after_text(after))
        entry = dict(level=level, after_minutes=after, anchor=anchor, when=when, target=target,
                     reason=reason, at=iso(at), applies=holds, due=bool(holds and now >= at),
                     sent=level <= escalation_level)
        out['escalations'].append(entry)
        if entry['due'] and level > escalation_level:
            due_rules.append(entry)
            due_level = max(due_level, level)
    if due_level:
        chosen = [entry for entry in due_rules if entry['level'] == due_level]
        out['escalation_due'] = dict(level=due_level, target=chosen[0]['target'],
                                     reasons=[entry['reason'] for entry in chosen], at=chosen[0]['at'])
        out['due'].append(dict(kind='escalation', template='escalation', escalation_level=due_level,
                               update_number=due_level, key='escalation:%d' % due_level,
                               target=chosen[0]['target'],
                               reason='; '.join(entry['reason'] for entry in chosen)))
    pending = [entry for entry in out['escalations'] if entry['applies'] and not entry['due']
               and entry['level'] > escalation_level]
    out['next_escalation'] = min(pending, key=lambda entry: entry['at']) if pending else None
    reasons = [item['reason'] for item in out['due']]
    out['reasons'] = reasons
    return out


def diagnosis_status(result):
    """ok (nothing due), warning (a status update due), critical (an escalation due)."""
    if result.get('escalation_due'):
        return 'critical'
    if result.get('update_due'):
        return 'warning'
    return 'ok'
