# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Update and escalation timers of the runbooks, computed from an incident record (issue 8, section 4).

Private to the collection. Pure functions: no store, no clock of their own (``now`` is passed in), so the
tests move the clock by writing the record's times in the past.

Per runbook (the record's ``system``) and canonical severity SEV1..SEV4:

- ``interval``: minutes between two status updates (None: no updates);
- ``response`` / ``resolution``: the runbook's response time and resolution target, in minutes;
- ``escalation``: rules ``(level, after_minutes, anchor, condition, target, reason)``; ``anchor`` is the
  record time the clock starts from (``detected`` or ``started``), ``condition`` ``unresolved`` (the
  incident is not yet mitigated) or ``no_root_cause`` (and no root cause is recorded).

The values come from ``_incident.SEVERITY`` when the store module provides them for a level (update
interval, response time, resolution target); the per-runbook rules below are what the runbooks write.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

SEVERITIES = ('SEV1', 'SEV2', 'SEV3', 'SEV4')
OPEN_STATUSES = ('investigating', 'identified', 'mitigating', 'monitoring')
ESCALATING_STATUSES = ('investigating', 'identified', 'mitigating')

# Audience of each severity: who is told (pg_tviews checklist's "Communication" column, schedule generator's
# "Communication" sections, task scheduler's stakeholder list). An audience includes the ones after it.
AUDIENCE = dict(SEV1='executive', SEV2='management', SEV3='team', SEV4='document')
# Which channel audiences hear a severity. 'oncall' is the pager (PagerDuty); 'public' the status page,
# for SEV1 only ("Public status page update"; SEV-2 is an "Internal status update").
ROUTES = dict(
    SEV1=('executive', 'management', 'team', 'oncall', 'public'),
    SEV2=('management', 'team', 'oncall'),
    SEV3=('team',),
    SEV4=(),
)

_D = 'detected'
_S = 'started'
_U = 'unresolved'
_R = 'no_root_cause'

# The schedule generator runbook: its SEV-1..4 are the canonical levels, and its rules are the default for a
# system whose runbook gives no time threshold (insights, free text).
_SCHEDULE_GENERATOR = dict(
    SEV1=dict(interval=15, response=5, resolution=60, escalation=(
        (1, 0, _D, _U, 'Engineering Lead and Product Owner', 'SEV-1 incident declared'),
        (2, 60, _D, _U, 'Product Owner', 'resolution target of 1 hour missed: SLA commitments at risk'),
    )),
    SEV2=dict(interval=30, response=15, resolution=240, escalation=(
        (1, 15, _D, _R, 'Engineering Lead', 'root cause unclear after 15 minutes of investigation'),
        (1, 30, _D, _U, 'Engineering Lead', 'SEV-2 incident not resolved within 30 minutes'),
        (2, 240, _D, _U, 'Product Owner', 'resolution target of 4 hours missed: SLA commitments at risk'),
    )),
    SEV3=dict(interval=120, response=60, resolution=1440, escalation=(
        (1, 15, _D, _R, 'Engineering Lead', 'root cause unclear after 15 minutes of investigation'),
        (2, 1440, _D, _U, 'Product Owner', 'resolution target of 24 hours missed: SLA commitments at risk'),
    )),
    SEV4=dict(interval=None, response=None, resolution=10080, escalation=()),
)

RULES = dict(
    schedule_generator=_SCHEDULE_GENERATOR,
    # Task scheduler: P0..P3 = SEV1..SEV4. "Immediate Escalation (P0): service down for >15 minutes, unable to
    # identify root cause within 15 minutes" -> all hands; "30-Minute Escalation (P1)" -> technical leads;
    # "2-Hour Escalation (P2)" -> operations team; then the technical path once the resolution SLA is missed.
    task_scheduler=dict(
        SEV1=dict(interval=15, response=5, resolution=30, escalation=(
            (1, 15, _S, _U, 'all hands (Technical Leadership, Operations, on-call engineers)',
             'P0: service down for more than 15 minutes'),
            (1, 15, _D, _R, 'all hands (Technical Leadership, Operations, on-call engineers)',
             'P0: root cause not identified within 15 minutes'),
            (2, 30, _D, _U, 'Engineering Manager', 'P0 resolution SLA of 30 minutes missed'),
        )),
        SEV2=dict(interval=30, response=15, resolution=120, escalation=(
            (1, 30, _D, _U, 'Technical Lead', 'P1: not resolved within 30 minutes'),
            (2, 120, _D, _U, 'Engineering Manager', 'P1 resolution SLA of 2 hours missed'),
        )),
        SEV3=dict(interval=60, response=30, resolution=480, escalation=(
            (1, 120, _D, _U, 'Operations team', 'P2: persistent for 2 hours'),
        )),
        SEV4=dict(interval=None, response=120, resolution=1440, escalation=()),
    ),
    # pg_tviews: response times of the checklist's severity matrix, updates of the emergency procedures
    # (15 / 30 / 60 minutes), "Time Thresholds: issue not resolved within severity-based timeframes" ->
    # Level 1 Team Lead, then Level 2 Department Manager (twice the timeframe), Level 3 Executive Leadership
    # for major incidents (SEV 1, four times the timeframe).
    pg_tviews=dict(
        SEV1=dict(interval=15, response=15, resolution=None, escalation=(
            (1, 15, _D, _U, 'Level 1: Team Lead', 'SEV 1 not resolved within its 15 minute timeframe'),
            (2, 30, _D, _U, 'Level 2: Department Manager', 'SEV 1 not resolved within 30 minutes'),
            (3, 60, _D, _U, 'Level 3: Executive Leadership', 'SEV 1 (major incident) not resolved within 1 hour'),
        )),
        SEV2=dict(interval=30, response=60, resolution=None, escalation=(
            (1, 60, _D, _U, 'Level 1: Team Lead', 'SEV 2 not resolved within its 1 hour timeframe'),
            (2, 120, _D, _U, 'Level 2: Department Manager', 'SEV 2 not resolved within 2 hours'),
        )),
        SEV3=dict(interval=60, response=240, resolution=None, escalation=(
            (1, 240, _D, _U, 'Level 1: Team Lead', 'SEV 3 not resolved within its 4 hour timeframe'),
        )),
        SEV4=dict(interval=None, response=1440, resolution=None, escalation=(
            (1, 1440, _D, _U, 'Level 1: Team Lead', 'SEV 4 not resolved within its 24 hour timeframe'),
        )),
    ),
    # Insights: P1..P3 = SEV1..SEV3, response < 15 min / 1 hour / 4 hours, "Next Update: In 30 minutes".
    # It gives no escalation threshold: the schedule generator's rules apply.
    insights=dict(
        SEV1=dict(interval=30, response=15, resolution=60, escalation=_SCHEDULE_GENERATOR['SEV1']['escalation']),
        SEV2=dict(interval=30, response=60, resolution=240, escalation=_SCHEDULE_GENERATOR['SEV2']['escalation']),
        SEV3=dict(interval=30, response=240, resolution=1440, escalation=_SCHEDULE_GENERATOR['SEV3']['escalation']),
        SEV4=dict(interval=None, response=None, resolution=None, escalation=()),
    ),
)


class TimerError(ValueError):
    pass


def _severity_table():
    try:
        from ansible_collections.incident.response.plugins.module_utils import _incident  # pylint: disable=import-outside-toplevel
    except ImportError:
        return {}
    return getattr(_incident, 'SEVERITY', None) or {}


def _minutes(value):
    """A SEVERITY value in minutes: an int, a float, or a dict with 'minutes'/'seconds'."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        if value.get('minutes') is not None:
            return value['minutes']
        if value.get('seconds') is not None:
            return value['seconds'] / 60.0
    return None


def system_key(system):
    text = (system or '').strip().lower().replace('-', '_').replace(' ', '_')
    aliases = dict(tviews='pg_tviews', pg_tview='pg_tviews', taskscheduler='task_scheduler',
                   scheduler='task_scheduler', schedgen='schedule_generator', insights_app='insights')
    text = aliases.get(text, text)
    return text if text in RULES else 'schedule_generator'


def rules_for(severity, system=None):
    """The timing rules of one severity for one runbook (dict: interval, response, resolution, escalation)."""
    if severity not in SEVERITIES:
        raise TimerError('unknown severity %r: expected one of %s' % (severity, ', '.join(SEVERITIES)))
    rules = dict(RULES[system_key(system)][severity])
    rules['system'] = system_key(system)
    return rules


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
                                   reason='status update #%d due every %d minutes (%s)'
                                          % (slot, rules['interval'], severity)))
        else:
            number = updates_sent + 1
            out['next_update_number'] = number
            out['next_update_due'] = iso(detected + datetime.timedelta(minutes=number * rules['interval']))

    escalating = status in ESCALATING_STATUSES and times['mitigated'] is None and times['resolved'] is None
    due_level = 0
    due_rules = []
    for level, after, anchor, condition, target, reason in rules['escalation']:
        base = started if anchor == _S else detected
        at = base + datetime.timedelta(minutes=after)
        holds = escalating and (condition != _R or not record.get('root_cause'))
        entry = dict(level=level, after_minutes=after, anchor=anchor, condition=condition, target=target,
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
