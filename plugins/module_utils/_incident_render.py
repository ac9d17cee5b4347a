# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The runbooks' notification templates, rendered from an incident record (issue 8, section 3).

Private to the collection. The templates are Python strings so that they travel with the module to
wherever it runs. Each is the runbook's text with its ``[placeholders]`` written as ``${name}``; a value the
record (or the caller's ``vars``) does not have is rendered as the runbook's bracketed placeholder, so a
person sees what is missing, and nothing is left in brackets when the record has the value.

Substitution is Python's ``string.Template``: names only, no attribute access, no expressions, no code. An
operator's own template (a file) uses the same ``${name}`` syntax; its first line may be ``Subject: ...``.
A malformed template, or one naming a variable that does not exist, fails with one clear message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import string

from ansible_collections.incident.response.plugins.module_utils import _incident_timers as timers_mod

KINDS = ('initial', 'update', 'resolution', 'escalation', 'status_page')


class TemplateError(ValueError):
    pass


# ------------------------------------------------------------------------------------------------ templates
_TVIEWS_EMERGENCY = u'''\
EMERGENCY TVIEW INCIDENT - ${timestamp}

Status: ${tview_status}
Impact: ${impact}
ETA: ${eta}
Workaround: ${workaround}
Contact: ${commander}
'''

_TS_P0 = u'''\
\U0001F6A8 P0 CRITICAL INCIDENT - Task Scheduling System

INCIDENT: ${incident_line}
STARTED: ${started_iso}
IMPACT: ${impact}
STATUS: ${status_upper}

Incident Commander: ${commander}
Bridge: ${bridge}

Actions in progress:
${actions_taken}

Next update: ${next_update_time}
'''

_TS_P1 = u'''\
\u26A0\uFE0F  P1 HIGH PRIORITY - Task Scheduling System

INCIDENT: ${alert_name}
STARTED: ${started_iso}
IMPACT: ${impact}
STATUS: ${status_upper}

Lead Responder: ${commander}
ETA Resolution: ${eta}

Current actions:
${actions_taken}

Next update: ${next_update_time}
'''

_TS_RESOLUTION = u'''\
\u2705 RESOLVED - Task Scheduling System Incident

INCIDENT: ${alert_name}
DURATION: ${started_iso} to ${resolved_iso} (${duration})
ROOT CAUSE: ${root_cause}

RESOLUTION:
${resolution_steps}

IMPACT SUMMARY:
- ${impact}
- ${data_integrity}
- ${performance_impact}

POST-INCIDENT:
Review scheduled for ${review_scheduled}
Improvement items logged in ${ticket_system}

Incident Commander: ${commander}
'''

_INSIGHTS_SLACK = u'''\
**Incident Update - ${incident_id}**

**Status**: ${status_title}
**Impact**: ${impact}
**Next Update**: ${next_update_in}

**Actions Taken**:
${actions_taken}

**Next Steps**:
${next_steps}
'''

_INSIGHTS_STATUS_PAGE = u'''\
**Service Degradation - ${service_name}**

We are currently experiencing ${brief}.
Our team is actively working to resolve this issue.

**Impact**: Users may experience ${user_impact}
**ETA**: We expect resolution within ${resolution_window}

Next update in ${interval_minutes} minutes.
'''

_SG_INITIAL = u'''\
INCIDENT NOTIFICATION

Incident ID: ${incident_id}
Severity: ${severity_label}
Status: ${status_title}
Started: ${started_utc}

ISSUE:
${issue}

IMPACT:
- Affected Users: ${affected_users}
- Affected Services: ${affected_services}
- User-Facing Impact: ${impact}

CURRENT STATUS:
${current_status}

ACTIONS TAKEN:
${actions_taken}

NEXT STEPS:
${next_steps}
- Next update at ${next_update_time}

INCIDENT COMMANDER: ${commander}
RESPONDERS: ${responders}

Next update in: ${interval_minutes} minutes
'''

_SG_UPDATE = u'''\
INCIDENT UPDATE #${update_number}

Incident ID: ${incident_id}
Severity: ${severity_label}
Status: ${status_title}
Duration: ${duration}

PROGRESS:
${progress}

CURRENT STATUS:
${current_status}

ACTIONS TAKEN:
${actions_taken}

NEXT STEPS:
${next_steps}
- ${eta}

ESTIMATED RESOLUTION: ${estimated_resolution}

Next update in: ${interval_minutes} minutes
'''

_SG_RESOLUTION = u'''\
INCIDENT RESOLVED

Incident ID: ${incident_id}
Severity: ${severity_label}
Status: Resolved
Duration: ${duration}
Resolved: ${resolved_utc}

ISSUE:
${issue}

IMPACT:
- Affected Users: ${affected_users}
- Duration: ${user_impact_duration}

ROOT CAUSE:
${root_cause}

RESOLUTION:
${resolution}

ACTIONS TAKEN:
${actions_taken}

PREVENTION:
${prevention}

POST-INCIDENT REVIEW:
Scheduled for: ${review_scheduled}
Participants: ${participants}

Thank you for your patience during this incident.
'''

_SG_ESCALATION = u'''\
ESCALATION REQUEST

Incident ID: ${incident_id}
Severity: ${severity_label}
Duration: ${duration_minutes} minutes
Current Responder: ${commander}

SITUATION:
${issue}

IMPACT:
${impact}

ACTIONS ATTEMPTED:
${actions_attempted}

REASON FOR ESCALATION:
${escalation_reason}

REQUESTING:
${escalation_target}

URGENCY:
${urgency}

Current Status: ${status_title}
'''

_SG_STATUS_PAGE = u'''\
\U0001F534 ${service_name} - Major Outage

We are currently experiencing issues with ${functionality}.

Impact: ${user_impact}
Started: ${started_utc}
Status: ${status_title}

We are actively working to resolve this issue and will provide updates
every ${interval_minutes} minutes.

Last updated: ${now_utc}
'''

# name -> (subject, body, source in the runbooks)
TEMPLATES = dict(
    tviews_emergency=(u'EMERGENCY TVIEW INCIDENT - ${timestamp} (${incident_id}, ${severity_label})',
                      _TVIEWS_EMERGENCY,
                      'pg-tviews-emergency-procedures.md: Communication During Emergency, Communication Template'),
    task_scheduler_p0=(u'P0 CRITICAL INCIDENT - Task Scheduling System: ${brief} (${incident_id})', _TS_P0,
                       'task-scheduler-incident-response.md: P0 Critical Incident Notification'),
    task_scheduler_p1=(u'P1 HIGH PRIORITY - Task Scheduling System: ${brief} (${incident_id})', _TS_P1,
                       'task-scheduler-incident-response.md: P1 High Priority Incident Notification'),
    task_scheduler_resolution=(u'RESOLVED - Task Scheduling System Incident: ${brief} (${incident_id})',
                               _TS_RESOLUTION, 'task-scheduler-incident-response.md: Resolution Notification Template'),
    insights_slack_update=(u'Incident Update - ${incident_id}: ${brief}', _INSIGHTS_SLACK,
                           'insights-incident-response.md: Step 4 Communication, Slack update template'),
    insights_status_page=(u'Service Degradation - ${service_name}', _INSIGHTS_STATUS_PAGE,
                          'insights-incident-response.md: Step 4 Communication, Status page update template'),
    schedule_generator_initial=(u'[${severity_label}] Incident: ${brief}', _SG_INITIAL,
                                'schedule-generator-incident-response.md: Initial Incident Notification'),
    schedule_generator_update=(u'[${severity_label}] Update: ${brief}', _SG_UPDATE,
                               'schedule-generator-incident-response.md: Status Update'),
    schedule_generator_resolution=(u'[RESOLVED] [${severity_label}]: ${brief}', _SG_RESOLUTION,
                                   'schedule-generator-incident-response.md: Resolution Notification'),
    schedule_generator_escalation=(u'ESCALATION NEEDED: [${severity_label}] ${brief}', _SG_ESCALATION,
                                   'schedule-generator-incident-response.md: Escalation Request'),
    schedule_generator_status_page=(u'${service_name} - Major Outage', _SG_STATUS_PAGE,
                                    'schedule-generator-incident-response.md: User-Facing Status Page Update'),
)

# (system, kind) -> template name; a system missing here uses the schedule generator's (the most complete set).
_BY_SYSTEM = {
    ('pg_tviews', 'initial'): 'tviews_emergency',
    ('pg_tviews', 'update'): 'tviews_emergency',
    ('pg_tviews', 'resolution'): 'tviews_emergency',
    ('task_scheduler', 'resolution'): 'task_scheduler_resolution',
    ('insights', 'initial'): 'insights_slack_update',
    ('insights', 'update'): 'insights_slack_update',
    ('insights', 'resolution'): 'insights_slack_update',
    ('insights', 'status_page'): 'insights_status_page',
}

# What a missing value renders as: the runbook's own placeholder.
PLACEHOLDERS = dict(
    impact='[Description of user/business impact]', eta='[Estimated resolution time]',
    workaround='[Any available alternatives]', commander='[Name]', responders='[Names]',
    bridge='[Conference line/Slack channel]', alert_name='[Alert name]', root_cause='[Brief root cause description]',
    resolution_steps='- [Resolution step 1]', data_integrity='[Data integrity status]',
    performance_impact='[Performance impact]', review_scheduled='[Date/Time]', ticket_system='[Ticket system]',
    next_steps='- [Next action]', actions_taken='- [Action 1]', actions_attempted='- [Action 1 - Result]',
    issue='[Clear description of the problem]', affected_users='[All/Percentage/Specific feature users]',
    affected_services='[List services]', current_status='[What we know so far]',
    resolution='[How it was fixed]', prevention="[What we're doing to prevent recurrence]",
    participants='[Names]', escalation_reason='[Why escalating - unclear root cause, requires expertise, etc.]',
    escalation_target='[Who/what you need]', urgency='[Why this needs immediate attention]',
    service_name='[Service Name]', functionality='[specific functionality]', user_impact='[What users cannot do]',
    brief='[Brief Description]', started_iso='[ISO timestamp]', started_utc='[Time]', resolved_iso='[End time]',
    resolved_utc='[YYYY-MM-DD HH:MM UTC]', duration='[X hours Y minutes]',
    user_impact_duration='[How long users were affected]',
    timestamp='[TIMESTAMP]', incident_line='[Alert name and brief description]',
    resolution_window='[Estimated resolution time]', estimated_resolution='Unknown',
)

SYSTEM_NAMES = dict(pg_tviews='pg_tviews', task_scheduler='Task Scheduling System',
                    insights='Clustering Analysis', schedule_generator='Schedule Generator')

_VALID_NAME = re.compile(r'^[a-z_][a-z0-9_]*$')


class _Template(string.Template):
    idpattern = r'[a-z_][a-z0-9_]*'
    flags = 0  # names are lower case: ${Name} is malformed, not silently another variable


def template_name(kind_or_name, record):
    """The template to use: a template name as is, or a kind (initial, update, ...) for the record's system."""
    if kind_or_name in TEMPLATES:
        return kind_or_name
    if kind_or_name not in KINDS:
        raise TemplateError('unknown template %r: use a kind (%s) or a template name (%s)'
                            % (kind_or_name, ', '.join(KINDS), ', '.join(sorted(TEMPLATES))))
    system = timers_mod.system_key(record.get('system'))
    if system == 'task_scheduler' and kind_or_name in ('initial', 'update'):
        return 'task_scheduler_p0' if record.get('severity') == 'SEV1' else 'task_scheduler_p1'
    return _BY_SYSTEM.get((system, kind_or_name), 'schedule_generator_%s' % kind_or_name)


def template_kind(name):
    for kind in KINDS:
        if name.endswith(kind) or name.endswith('_' + kind):
            return kind
    return {'tviews_emergency': 'update', 'task_scheduler_p0': 'initial', 'task_scheduler_p1': 'initial',
            'insights_slack_update': 'update'}.get(name, 'update')


def parse_template_text(text, source):
    """An operator's template file: optional ``Subject: ...`` first line, then the body."""
    if not isinstance(text, str):
        try:
            text = text.decode('utf-8')
        except UnicodeDecodeError:
            raise TemplateError('template %s: not UTF-8 text' % source)
    subject = None
    if text.startswith('Subject:'):
        first, _sep, rest = text.partition('\n')
        subject = first[len('Subject:'):].strip()
        text = rest[1:] if rest.startswith('\n') else rest
    if not text.strip():
        raise TemplateError('template %s: the body is empty' % source)
    return subject, text


def load_template_file(path):
    try:
        with open(path, 'rb') as handle:
            data = handle.read(1024 * 1024 + 1)
    except (IOError, OSError) as exc:
        raise TemplateError('template %s: cannot be read: %s' % (path, exc.strerror or exc))
    if len(data) > 1024 * 1024:
        raise TemplateError('template %s: larger than 1 MiB' % path)
    return parse_template_text(data, path)


def check_template(text, source, known):
    """Raise TemplateError naming the first malformed placeholder or unknown variable of ``text``."""
    for match in _Template.pattern.finditer(text):
        line = text.count('\n', 0, match.start()) + 1
        column = match.start() - (text.rfind('\n', 0, match.start()) + 1) + 1
        if match.group('invalid') is not None:
            snippet = text[match.start():match.start() + 20].split('\n')[0]
            raise TemplateError(
                'template %s: malformed placeholder %r at line %d, column %d; write ${name} (lower-case letters, '
                'digits, _) and $$ for a dollar sign' % (source, snippet, line, column))
        name = match.group('named') or match.group('braced')
        if name is not None and name not in known:
            raise TemplateError('template %s: unknown placeholder ${%s} at line %d; known: %s'
                                % (source, name, line, ', '.join(sorted(known))))


def substitute(text, values, source):
    check_template(text, source, values)
    try:
        return _Template(text).substitute(values)
    except (ValueError, KeyError) as exc:  # check_template catches these first; kept as a last guard
        raise TemplateError('template %s: %s' % (source, exc))


# ------------------------------------------------------------------------------------------------ context
def _utc_text(moment):
    return moment.strftime('%Y-%m-%d %H:%M UTC') if moment else None


def _hours_minutes(seconds):
    minutes = int(max(seconds, 0) // 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return '%d hour%s %d minute%s' % (hours, '' if hours == 1 else 's', minutes, '' if minutes == 1 else 's')
    return '%d minute%s' % (minutes, '' if minutes == 1 else 's')


def _minutes_text(minutes):
    if minutes is None:
        return None
    if minutes % 60 == 0 and minutes >= 60:
        hours = minutes // 60
        return '%d hour%s' % (hours, '' if hours == 1 else 's')
    return '%d minutes' % minutes


def _bullets(items):
    items = [str(item).strip() for item in items if item is not None and str(item).strip()]
    if not items:
        return None
    return '\n'.join('- %s' % item for item in items)


def _as_text(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        return ', '.join(str(item) for item in value)
    if isinstance(value, dict):
        return ', '.join('%s=%s' % item for item in sorted(value.items()))
    text = str(value)
    return text if text.strip() else None


def _as_bullets(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return _bullets(value)
    text = str(value).strip()
    if not text:
        return None
    return text if text.startswith('- ') else '- %s' % text


_BULLET_VARS = ('actions_taken', 'actions_attempted', 'next_steps', 'resolution_steps')


def _event_actions(events, with_result=False, since_seq=None):
    lines = []
    for event in events or []:
        if since_seq is not None and (event.get('seq') or 0) <= since_seq:
            continue
        etype = event.get('type')
        if etype == 'task' and event.get('outcome') in ('changed', 'failed'):
            what = event.get('summary') or event.get('task') or event.get('module')
            if with_result:
                what = '%s - %s' % (what, event.get('outcome'))
            lines.append(what)
        elif etype == 'note' and event.get('message'):
            lines.append(event['message'])
    return lines[-10:]


def _progress_item(event):
    """One line of 'what has changed since the last update' from a timeline event, or None."""
    etype = event.get('type')
    if etype in ('status', 'severity') and event.get('to'):
        return '%s %s -> %s%s' % (etype, event.get('from') or '-', event.get('to'),
                                  (' (confirmed by %s)' % event['confirmed_by']) if event.get('confirmed_by') else '')
    if etype == 'updated' and event.get('fields'):
        fields = event['fields']
        return 'updated: %s' % (', '.join(sorted(fields)) if isinstance(fields, (list, dict)) else fields)
    if etype in ('status', 'severity', 'note', 'updated', 'check', 'escalation') and event.get('message'):
        return event['message']
    if etype == 'task' and event.get('outcome') in ('changed', 'failed'):
        return event.get('summary') or event.get('task')
    return None


def _eta(rules, resolution_due, now, open_now):
    if not open_now:
        return 'resolved'
    if not resolution_due:
        return None
    target = _minutes_text(rules['resolution'])
    if resolution_due >= now:
        return 'Unknown; resolution target %s (by %s)' % (target, _utc_text(resolution_due))
    return 'Unknown; the resolution target of %s passed at %s' % (target, _utc_text(resolution_due))


def build_context(record, events=None, values=None, now=None, update_number=0, escalation=None):
    """Every variable a template may use, from the record, its events and the caller's ``values``."""
    now = now or timers_mod.utcnow()
    values = dict(values or {})
    severity = record.get('severity')
    rules = timers_mod.rules_for(severity, record.get('system')) if severity in timers_mod.SEVERITIES else {}
    times = timers_mod._times(record)  # pylint: disable=protected-access
    started = times['started'] or times['detected']
    detected = times['detected'] or started
    end = times['resolved'] or times['closed'] or now
    interval = rules.get('interval')
    status = record.get('status') or 'investigating'
    system = timers_mod.system_key(record.get('system'))
    alert = record.get('alert') or {}
    title = record.get('title') or record.get('summary')
    alert_name = alert.get('name')
    responders = record.get('responders') or []
    events = list(events or [])
    last_update_seq = None
    for event in events:
        if event.get('type') == 'notification' and event.get('delivered') and \
                event.get('template') in ('update', 'initial') + tuple(TEMPLATES):
            last_update_seq = event.get('seq')
    progress_items = []
    for event in events:
        if last_update_seq is not None and (event.get('seq') or 0) <= last_update_seq:
            continue
        item = _progress_item(event)
        if item:
            progress_items.append(item)
    if times['resolved'] or status in ('resolved', 'closed'):
        tview_status = 'RESOLVED'
    elif times['mitigated'] or status == 'monitoring':
        tview_status = 'MITIGATED'
    else:
        tview_status = 'ACTIVE'
    resolution_due = detected + datetime.timedelta(minutes=rules['resolution']) \
        if detected and rules.get('resolution') else None
    next_update = now + datetime.timedelta(minutes=interval) if interval else None
    open_now = status not in ('resolved', 'closed')
    ctx = dict(
        incident_id=record.get('id'),
        title=title,
        brief=title or alert_name,
        issue=record.get('summary') or title,
        system=record.get('system'),
        system_name=SYSTEM_NAMES.get(system, record.get('system')),
        service_name=SYSTEM_NAMES.get(system) if record.get('system') == system else record.get('system'),
        severity=severity,
        severity_label=('SEV-%s' % severity[3:]) if severity else None,
        priority=record.get('priority'),
        status=status,
        status_title=status.capitalize(),
        status_upper=status.upper(),
        tview_status=tview_status,
        impact=record.get('impact'),
        user_impact=record.get('impact'),
        functionality=title or alert_name,
        root_cause=record.get('root_cause'),
        summary=record.get('summary'),
        commander=record.get('commander'),
        responders=_as_text(responders),
        participants=_as_text([name for name in [record.get('commander')] + list(responders) if name]),
        alert_name=alert_name or title,
        incident_line=' - '.join(item for item in (alert_name, title) if item) or None,
        affected_services=_as_text(values.get('affected_services')) or record.get('system'),
        started_iso=timers_mod.iso(started),
        started_utc=_utc_text(started),
        detected_utc=_utc_text(detected),
        timestamp=_utc_text(detected),
        resolved_iso=timers_mod.iso(times['resolved']),
        resolved_utc=_utc_text(times['resolved']),
        now_utc=_utc_text(now),
        now_iso=timers_mod.iso(now),
        duration=_hours_minutes((end - started).total_seconds()) if started else None,
        duration_minutes=str(int(max((end - started).total_seconds(), 0) // 60)) if started else None,
        user_impact_duration=_hours_minutes(((times['mitigated'] or end) - started).total_seconds())
        if started else None,
        update_number=str(update_number or 0),
        interval_minutes=str(interval) if interval else 'as needed',
        next_update_in=('In %d minutes' % interval) if interval and open_now else 'None: resolved',
        next_update_time=('%s (in %d minutes)' % (next_update.strftime('%H:%M UTC'), interval))
        if next_update and open_now else 'none: resolved',
        resolution_target=_minutes_text(rules.get('resolution')),
        resolution_window=_minutes_text(rules.get('resolution')),
        eta=_eta(rules, resolution_due, now, open_now),
        estimated_resolution='Unknown',
        current_status=record.get('summary') or ('%s (%s)' % (status.capitalize(), tview_status.lower())),
        progress=_bullets(progress_items) or 'No change recorded since the last update.',
        actions_taken=_bullets(_event_actions(events)),
        actions_attempted=_bullets(_event_actions(events, with_result=True)),
        resolution_steps=_bullets(_event_actions(events)),
        resolution=record.get('resolution'),
        escalation_level=str((escalation or {}).get('level') or record.get('escalation_level') or 0),
        escalation_target=(escalation or {}).get('target'),
        escalation_reason=_as_text((escalation or {}).get('reasons')) or (escalation or {}).get('reason'),
        urgency=('%s: response target %s, resolution target %s' % (
            ('SEV-%s' % severity[3:]) if severity else severity, _minutes_text(rules.get('response')) or 'n/a',
            _minutes_text(rules.get('resolution')) or 'n/a')) if rules else None,
        ticket_system=None, review_scheduled=None, data_integrity=None, performance_impact=None,
        prevention=None, next_steps=None, bridge=None, workaround=None, affected_users=None,
    )
    # Record fields of the same name (a store may keep extra fields), then the caller's values, win.
    for name in list(ctx):
        if name in record and record.get(name) not in (None, '', []) and name not in ('status', 'severity'):
            ctx[name] = record[name]
    for name, value in values.items():
        if not _VALID_NAME.match(str(name)):
            raise TemplateError('vars: %r is not a valid placeholder name (lower case letters, digits, _)' % name)
        ctx[name] = value
    rendered = {}
    for name, value in ctx.items():
        text = _as_bullets(value) if name in _BULLET_VARS else _as_text(value)
        if text is None:
            text = PLACEHOLDERS.get(name, '[%s]' % name.replace('_', ' '))
        rendered[name] = text
    return rendered


def render(name_or_kind, record, events=None, values=None, now=None, update_number=0, escalation=None,
           override=None):
    """Render one template; returns dict(template, kind, subject, body, source, placeholders_left).

    ``override`` is (subject or None, body, source) read from an operator's file.
    """
    name = template_name(name_or_kind, record)
    subject_t, body_t, source = TEMPLATES[name]
    if override:
        o_subject, body_t, source = override
        if o_subject:
            subject_t = o_subject
    ctx = build_context(record, events=events, values=values, now=now, update_number=update_number,
                        escalation=escalation)
    subject = substitute(subject_t, ctx, source if override else 'built-in %s (subject)' % name)
    body = substitute(body_t, ctx, source if override else 'built-in %s' % name)
    left = sorted(set(value for value in PLACEHOLDERS.values() if value.startswith('[') and
                      (value in body or value in subject)))
    return dict(template=name, kind=name_or_kind if name_or_kind in KINDS else template_kind(name),
                subject=' '.join(subject.split()), body=body, source=source, placeholders_left=left)
