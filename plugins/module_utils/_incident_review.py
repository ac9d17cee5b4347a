# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The post-incident review, rendered from an incident record and its events (issue 8, section 6).

Private to the collection: the API may change without notice.

``build_review(record, events)`` reads the record once into a model; ``render_markdown(model)`` writes the
review after the runbooks' PIR templates (with a Mermaid ``gantt`` block) and ``render_html(model)`` a
self-contained HTML page with the timeline drawn as inline SVG. Rendering is deterministic: it depends on the
record and its events only (never on the clock), so the same record renders the same bytes.

Every value taken from the record is escaped for where it goes (Markdown table, Mermaid line, HTML/SVG text)
and passed through the collection's redaction.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import html
import re

from ansible_collections.incident.response.plugins.module_utils._common import redact

# Phases of an incident, from the record's times: (label, from, to, colour).
PHASES = (
    ('Detection', 'started', 'detected', '#c0392b'),
    ('Acknowledgement', 'detected', 'acknowledged', '#e67e22'),
    ('Mitigation', ('acknowledged', 'detected'), 'mitigated', '#2b6cb0'),
    ('Monitoring', 'mitigated', 'resolved', '#27ae60'),
    ('Closure', 'resolved', 'closed', '#8e44ad'),
)
TIME_LABELS = (
    ('started', 'Fault began (alert startsAt)'),
    ('detected', 'Incident opened (detected)'),
    ('acknowledged', 'Acknowledged'),
    ('mitigated', 'Mitigation applied'),
    ('resolved', 'Incident resolved'),
    ('closed', 'Incident closed'),
)
OUTCOME_COLOURS = dict(ok='#7f8c8d', changed='#d4a017', failed='#c0392b', unreachable='#c0392b', skipped='#bdc3c7')
MARKER_COLOURS = dict(notification='#16a085', escalation='#c0392b', status='#34495e', severity='#34495e',
                      note='#7f8c8d', opened='#34495e', closed='#34495e', updated='#95a5a6')
CHECK_COLOURS = dict(passed='#27ae60', failed='#c0392b')
MAX_TASK_BARS = 60
MAX_TABLE_ROWS = 500
TICKS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


class ReviewError(ValueError):
    pass


# ---------------------------------------------------------------- time
def parse_time(value):
    """An ISO 8601 time of the record -> aware UTC datetime, or None."""
    if value is None or value == '':
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value).strip()
    if text.endswith('Z') or text.endswith('z'):
        text = text[:-1] + '+00:00'
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)


def iso(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ') if moment else None


def show_time(moment):
    return moment.strftime('%Y-%m-%d %H:%M:%S') if moment else '-'


def seconds_between(start, end):
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def human_duration(seconds):
    """'2 hours 5 minutes', '3 minutes 20 seconds', '45 seconds' (the runbooks' 'X hours Y minutes')."""
    if seconds is None:
        return None
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    for count, unit in ((days, 'day'), (hours, 'hour'), (minutes, 'minute')):
        if count:
            parts.append('%d %s%s' % (count, unit, '' if count == 1 else 's'))
    if secs and len(parts) < 2 or not parts:
        parts.append('%d second%s' % (secs, '' if secs == 1 else 's'))
    return ' '.join(parts[:2])


# ---------------------------------------------------------------- text
def clean(value, limit=300):
    """One redacted line of text from any record value (None -> '')."""
    if value is None:
        return ''
    if isinstance(value, (list, tuple)):
        value = ', '.join(clean(item, limit) for item in value)
    elif isinstance(value, dict):
        value = ', '.join('%s=%s' % (clean(k, 60), clean(v, 100)) for k, v in sorted(value.items(), key=str))
    text = ' '.join(redact(str(value)).split())
    if limit and len(text) > limit:
        text = text[:limit - 3] + '...'
    return text


def md(value, limit=300):
    """Text for Markdown (paragraphs and table cells): no HTML, no table breaks."""
    text = html.escape(clean(value, limit), quote=False)
    return text.replace('|', '\\|').replace('`', "'")


def mermaid_text(value):
    """A Mermaid gantt task name: none of the characters that end a name or a line."""
    text = clean(value, 60)
    text = re.sub(r'[:;#`<>{}\[\]"]', ' ', text)
    return ' '.join(text.split()) or '-'


def esc(value, limit=300):
    """Text for HTML and SVG (element text and attribute values)."""
    return html.escape(clean(value, limit), quote=True)


# ---------------------------------------------------------------- the model
def _owner_of(record):
    return clean(record.get('commander'), 60) or 'incident commander'


def describe_event(event):
    """(event, action taken, owner, outcome) of one event, as the timeline table shows it."""
    kind = event.get('type') or 'event'
    actor = clean(event.get('actor'), 60)
    message = clean(event.get('message'))
    if kind == 'task':
        what = clean(event.get('task')) or clean(event.get('module')) or 'task'
        outcome = clean(event.get('outcome'), 20) or 'ok'
        action = clean(event.get('summary')) or clean(event.get('module'))
        if event.get('check_mode'):
            outcome += ' (check mode)'
        return what, action, clean(event.get('host'), 60) or actor, outcome
    if kind == 'notification':
        what = 'Notification %s%s' % (clean(event.get('template'), 60) or '',
                                      (' #%s' % event['update_number']) if event.get('update_number') else '')
        outcome = 'delivered' if event.get('delivered') else ('failed: %s' % clean(event.get('error'), 120))
        return what.strip(), 'via %s' % (clean(event.get('channel'), 40) or '?'), actor, outcome
    if kind == 'check':
        name = clean(event.get('check') or event.get('name'), 80) or 'check'
        reasons = clean(event.get('reasons'))
        return 'Monitoring check %s' % name, reasons or message, actor, clean(event.get('status'), 20)
    if kind in ('status', 'severity', 'closed') and (event.get('from') or event.get('to')):
        what = '%s %s \u2192 %s' % ('Status' if kind != 'severity' else 'Severity', clean(event.get('from'), 30) or '-',
                                    clean(event.get('to'), 30) or '-')
        if kind == 'severity' and event.get('confirmed_by'):
            what += ' (confirmed by %s)' % clean(event.get('confirmed_by'), 60)
        return what, message, actor, ''
    if kind == 'escalation' and (event.get('level') or event.get('to')):
        what = 'Escalation level %s to %s' % (clean(event.get('level'), 10) or '?', clean(event.get('to'), 80) or '?')
        return what, message, actor, ''
    if kind == 'opened':
        return 'Incident opened: %s' % (clean(event.get('title')) or '-'), clean(event.get('severity'), 10), actor, ''
    if kind in ('status', 'severity', 'escalation'):
        detail = message
        if not detail:
            for field in ('status', 'severity', 'level', 'escalation_level', 'to'):
                if event.get(field) not in (None, ''):
                    detail = '%s %s' % (field.replace('_', ' '), clean(event.get(field), 60))
                    break
        return '%s%s' % (kind.capitalize(), (': ' + detail) if detail else ''), clean(event.get('reason')), actor, ''
    if kind in ('play_start', 'play_end'):
        return '%s %s' % ('Play started' if kind == 'play_start' else 'Play ended', clean(event.get('play'))), \
            message, actor, ''
    if kind == 'updated' and event.get('fields'):
        return 'Updated %s' % clean(event.get('fields')), message, actor, ''
    if kind == 'stats':
        stats = event.get('stats') or {}
        return 'Run stats', clean(stats) if stats else message, actor, ''
    return (message or kind.replace('_', ' ').capitalize()), clean(event.get('changes')) if kind == 'updated' else '', \
        actor, ''


def build_review(record, events):
    """The review model of one incident: everything the renderers print, decided once."""
    if not isinstance(record, dict) or not record.get('id'):
        raise ReviewError('the incident record has no id')
    events = [e for e in (events or []) if isinstance(e, dict)]
    times = dict((key, parse_time((record.get('times') or {}).get(key))) for key, _label in TIME_LABELS)
    event_times = [t for t in (parse_time(e.get('time')) for e in events) if t]
    event_times += [t for t in (parse_time(e.get('end')) for e in events) if t]
    known = [t for t in times.values() if t] + event_times
    first = min(known) if known else None
    last = max(known) if known else None
    start = times['started'] or times['detected'] or first
    end = times['resolved'] or times['closed']

    phases = []
    for label, frm, to, colour in PHASES:
        frm_keys = frm if isinstance(frm, tuple) else (frm,)
        begin = next((times[k] for k in frm_keys if times[k]), None)
        if begin is None:
            continue
        finish, ongoing = times[to], False
        if finish is None:
            later = [t for key, t in times.items() if t and t > begin and key != to]
            if label == 'Closure' or (label != 'Monitoring' and times['resolved']):
                continue
            finish, ongoing = (max([last] + later) if last else begin), True
        phases.append(dict(label=label, start=begin, end=max(finish, begin), colour=colour, ongoing=ongoing))

    rows = []
    for key, label in TIME_LABELS:
        if times[key]:
            rows.append(dict(time=times[key], seq=-1, kind='time', event=label, action='', owner='', outcome=''))
    tasks, markers, checks = [], [], []
    for index, event in enumerate(events):
        moment = parse_time(event.get('time')) or parse_time(event.get('start'))
        if moment is None:
            continue
        what, action, owner, outcome = describe_event(event)
        kind = event.get('type') or 'event'
        rows.append(dict(time=moment, seq=event.get('seq', index), kind=kind, event=what, action=action, owner=owner,
                         outcome=outcome))
        if kind == 'task':
            begin = parse_time(event.get('start')) or moment
            finish = parse_time(event.get('end')) or begin
            tasks.append(dict(label=what, start=begin, end=max(finish, begin),
                              outcome=clean(event.get('outcome'), 20) or 'ok'))
        elif kind == 'check':
            passed = event.get('passed')
            if passed is None:
                passed = event.get('status') == 'ok'
            checks.append(dict(label=what, time=moment, passed=bool(passed)))
        elif kind in MARKER_COLOURS and kind != 'updated':
            markers.append(dict(label=what, time=moment, kind=kind))
    rows.sort(key=lambda r: (r['time'], r['seq'] if isinstance(r['seq'], int) else 0))

    duration = seconds_between(start, end)
    failed_tasks = [t for t in tasks if t['outcome'] in ('failed', 'unreachable')]
    notifications = [e for e in events if e.get('type') == 'notification']
    regressions = [c for c in checks if not c['passed']]
    metrics = []
    for label, frm, to in (('Time to detect (started to detected)', 'started', 'detected'),
                           ('Time to acknowledge (detected to acknowledged)', 'detected', 'acknowledged'),
                           ('Time to mitigate (started to mitigated)', 'started', 'mitigated'),
                           ('Time to resolve (started to resolved)', 'started', 'resolved')):
        value = seconds_between(times[frm] or (times['detected'] if frm == 'started' else None), times[to])
        metrics.append((label, human_duration(value) if value is not None else 'not reached'))

    alert = record.get('alert') if isinstance(record.get('alert'), dict) else None
    services = [clean(record.get('system'), 80)] if record.get('system') else []
    listed = record.get('services_affected')
    for value in (listed if isinstance(listed, list) else [listed] if listed else []):
        value = clean(value, 80)
        if value and value not in services:
            services.append(value)
    if alert:
        for key in ('service', 'job', 'instance', 'app'):
            value = clean((alert.get('labels') or {}).get(key), 80)
            if value and value not in services:
                services.append(value)
    return dict(
        id=clean(record['id'], 80), title=clean(record.get('title')), system=clean(record.get('system'), 80),
        runbook=clean(record.get('runbook'), 80), severity=clean(record.get('severity'), 10),
        priority=clean(record.get('priority'), 10), confirmed_by=clean(record.get('severity_confirmed_by'), 60),
        status=clean(record.get('status'), 20), commander=clean(record.get('commander'), 60),
        responders=[clean(r, 60) for r in (record.get('responders') or []) if r],
        impact=clean(record.get('impact'), 1000), root_cause=clean(record.get('root_cause'), 2000),
        summary=clean(record.get('summary'), 2000), revision=record.get('revision'),
        contributing_factors=[clean(f, 500) for f in (record.get('contributing_factors') or []) if f],
        lessons=[clean(f, 500) for f in (record.get('lessons_learned') or []) if f],
        action_items=[a for a in (record.get('action_items') or []) if isinstance(a, dict)],
        alert=alert, services=services, owner=_owner_of(record), times=times, start=start, end=end,
        first=first, last=last, duration=duration, phases=phases, rows=rows, tasks=tasks, markers=markers,
        checks=checks, metrics=metrics, failed_tasks=failed_tasks, notifications=notifications,
        regressions=regressions, escalation_level=record.get('escalation_level') or 0,
        updates_sent=record.get('updates_sent') or 0, event_count=len(events),
    )


# ---------------------------------------------------------------- Markdown
def _todo(model, what):
    return '**TODO(%s)**: %s' % (md(model['owner'], 60), what)


def render_mermaid(model):
    """The timeline as a Mermaid gantt chart (GitHub and GitLab render the block)."""
    lines = ['```mermaid', 'gantt', '    title %s timeline (UTC)' % mermaid_text(model['id']),
             '    dateFormat YYYY-MM-DD HH:mm:ss', '    axisFormat %H:%M']
    fmt = '%Y-%m-%d %H:%M:%S'
    count = [0]

    def ident():
        count[0] += 1
        return 't%d' % count[0]

    def add_bar(label, start, end, tag=''):
        end = end if end > start else start + datetime.timedelta(seconds=1)
        lines.append('    %s :%s%s, %s, %s' % (mermaid_text(label), tag, ident(), start.strftime(fmt),
                                               end.strftime(fmt)))
    if model['phases']:
        lines.append('    section Phases')
        for phase in model['phases']:
            add_bar(phase['label'] + (' (ongoing)' if phase['ongoing'] else ''), phase['start'], phase['end'],
                    'active, ' if phase['ongoing'] else 'done, ')
    if model['tasks']:
        lines.append('    section Automation')
        for task in model['tasks'][:MAX_TASK_BARS]:
            add_bar(task['label'], task['start'], task['end'], 'crit, ' if task['outcome'] in ('failed', 'unreachable') else '')
    milestones = [(m['label'], m['time'], '') for m in model['markers']] + \
        [(c['label'] + (' passed' if c['passed'] else ' FAILED'), c['time'], '' if c['passed'] else 'crit, ')
         for c in model['checks']]
    if milestones:
        lines.append('    section Events')
        for label, moment, tag in sorted(milestones, key=lambda m: m[1])[:MAX_TASK_BARS]:
            lines.append('    %s :%smilestone, %s, %s, 0m' % (mermaid_text(label), tag, ident(), moment.strftime(fmt)))
    if len(lines) == 5:
        return ''
    lines.append('```')
    return '\n'.join(lines)


def render_markdown(model):
    """The review in Markdown, after the runbooks' Post-Incident Review templates."""
    out = []
    add = out.append
    times = model['times']
    add('# Post-Incident Review: %s' % md(model['id']))
    add('')
    add('> Generated by incident.response from the incident record (revision %s, %d events). '
        'Sections marked **TODO(owner)** are for a person to write. Once this file is edited, '
        '`post_incident_review.yml` no longer overwrites it (it refuses, or with `force` keeps a versioned copy).'
        % (md(model['revision']) or '-', model['event_count']))
    add('')
    add('## Incident Summary')
    add('')
    add('- **Title**: %s' % (md(model['title']) or _todo(model, 'title')))
    add('- **Date**: %s' % (model['start'].strftime('%Y-%m-%d') if model['start'] else '-'))
    add('- **Date/Time**: %s to %s (UTC)' % (show_time(model['start']),
                                             show_time(model['end']) if model['end'] else 'not resolved'))
    add('- **Duration**: %s' % (human_duration(model['duration']) if model['duration'] is not None
                                else 'ongoing (not resolved)'))
    severity = md(model['severity']) or _todo(model, 'severity')
    if model['priority']:
        severity += ' (%s)' % md(model['priority'])
    if model['confirmed_by']:
        severity += ', confirmed by %s' % md(model['confirmed_by'])
    add('- **Severity**: %s' % severity)
    add('- **Status**: %s' % (md(model['status']) or '-'))
    add('- **Services Affected**: %s' % (', '.join(md(s) for s in model['services']) or _todo(model, 'services')))
    add('- **Customer Impact / Users Affected**: %s' % (md(model['impact'], 1000) or
                                                        _todo(model, 'who and how many were affected')))
    add('- **Incident Commander**: %s' % (md(model['commander']) or _todo(model, 'name the incident commander')))
    add('- **Responders**: %s' % (', '.join(md(r) for r in model['responders']) or '-'))
    if model['alert']:
        alert = model['alert']
        add('- **Alert**: %s (fingerprint %s, startsAt %s)' % (
            md(alert.get('name')) or '-', md(alert.get('fingerprint')) or '-', md(alert.get('starts_at')) or '-'))
    if model['runbook']:
        add('- **Runbook**: %s' % md(model['runbook']))
    add('')
    add('### What happened')
    add('')
    add(md(model['summary'], 2000) or _todo(model, 'what happened, in two or three sentences'))
    add('')
    add('### Key times')
    add('')
    add('| Metric | Value |')
    add('|--------|-------|')
    for label, value in model['metrics']:
        add('| %s | %s |' % (md(label), md(value)))
    add('| Status updates sent | %s |' % md(model['updates_sent']))
    add('| Escalation level reached | %s |' % md(model['escalation_level']))
    add('')
    add('## Timeline')
    add('')
    gantt = render_mermaid(model)
    if gantt:
        add(gantt)
        add('')
    add('| Time (UTC) | Event | Action Taken | Owner | Outcome |')
    add('|------|-------|-------------|-------|---------|')
    for row in model['rows'][:MAX_TABLE_ROWS]:
        add('| %s | %s | %s | %s | %s |' % (show_time(row['time']), md(row['event']), md(row['action']),
                                            md(row['owner']), md(row['outcome'])))
    if len(model['rows']) > MAX_TABLE_ROWS:
        add('')
        add('_%d more events are in the record (incident_info)._' % (len(model['rows']) - MAX_TABLE_ROWS))
    add('')
    add('## Root Cause')
    add('')
    add('**Technical Root Cause**: %s' % (md(model['root_cause'], 2000) or
                                          _todo(model, 'what caused the incident, and why it was not caught earlier')))
    add('')
    add('## Contributing Factors')
    add('')
    for factor in model['contributing_factors']:
        add('- %s' % md(factor, 500))
    add('- %s' % _todo(model, 'the conditions that made it possible or worse'))
    add('')
    add('## What Went Well')
    add('')
    facts = []
    if times['detected'] and times['started']:
        facts.append('Detected %s after the fault began.' % human_duration(seconds_between(times['started'],
                                                                                           times['detected'])))
    if model['tasks']:
        facts.append('%d automated steps recorded, %d changed something.' % (
            len(model['tasks']), len([t for t in model['tasks'] if t['outcome'] == 'changed'])))
    delivered = [n for n in model['notifications'] if n.get('delivered')]
    if delivered:
        facts.append('%d notifications delivered.' % len(delivered))
    if model['checks'] and not model['regressions']:
        facts.append('Every one of the %d monitoring checks after the fix passed.' % len(model['checks']))
    for fact in facts:
        add('- From the record: %s' % md(fact))
    add('- %s' % _todo(model, 'what worked in the response'))
    add('')
    add('## What Could Be Improved')
    add('')
    facts = []
    if model['failed_tasks']:
        facts.append('%d automated steps failed: %s.' % (len(model['failed_tasks']),
                                                         ', '.join(t['label'] for t in model['failed_tasks'][:5])))
    failed = [n for n in model['notifications'] if not n.get('delivered')]
    if failed:
        facts.append('%d notifications were not delivered.' % len(failed))
    if model['regressions']:
        facts.append('%d monitoring checks failed after the fix (regression).' % len(model['regressions']))
    if model['escalation_level']:
        facts.append('Escalated to level %s.' % model['escalation_level'])
    for fact in facts:
        add('- From the record: %s' % md(fact))
    add('- %s' % _todo(model, 'what slowed the response; were escalations appropriate, was communication effective?'))
    add('')
    add('## Action Items')
    add('')
    add('| Action | Owner | Due Date | Priority | Status |')
    add('|--------|-------|----------|----------|--------|')
    for item in model['action_items']:
        add('| %s | %s | %s | %s | %s |' % (md(item.get('action')) or '-', md(item.get('owner')) or '-',
                                            md(item.get('due')) or '-', md(item.get('priority')) or '-',
                                            md(item.get('status')) or 'Open'))
    base = model['end'] or model['start']
    due = (base + datetime.timedelta(days=7)).strftime('%Y-%m-%d') if base else 'TODO'
    add('| %s | TODO(%s) | %s | High | Open |' % (_todo(model, 'immediate fix'), md(model['owner'], 60), due))
    add('| %s | TODO(%s) | %s | Medium | Open |' % (_todo(model, 'monitoring or alerting gap'), md(model['owner'], 60),
                                                    (base + datetime.timedelta(days=14)).strftime('%Y-%m-%d')
                                                    if base else 'TODO'))
    add('')
    add('_Due dates follow the runbooks: high-priority fixes within a week, action items reviewed two weeks after '
        'the incident._')
    add('')
    add('## Lessons Learned')
    add('')
    for lesson in model['lessons']:
        add('- %s' % md(lesson, 500))
    add('- %s' % _todo(model, 'what we learned, for the next incident'))
    add('')
    add('## Prevention Measures')
    add('')
    add('- %s' % _todo(model, 'what prevents a recurrence'))
    add('')
    return '\n'.join(out)


# ---------------------------------------------------------------- HTML + SVG
def _nice_tick(span):
    for tick in TICKS:
        if span / tick <= 10:
            return tick
    return TICKS[-1]


def render_svg(model, width=1000):
    """The timeline as inline SVG: a time axis, the phases as bars, the tasks, checks and events."""
    label_w, pad, row_h, axis_h = 230, 10, 22, 30
    chart_w = width - label_w - 2 * pad - 30
    bars = [(p['label'] + (' (ongoing)' if p['ongoing'] else ''), p['start'], p['end'], p['colour'], 'phase')
            for p in model['phases']]
    tasks = model['tasks'][:MAX_TASK_BARS]
    bars += [(t['label'], t['start'], t['end'], OUTCOME_COLOURS.get(t['outcome'], '#7f8c8d'), 'task') for t in tasks]
    points = [m['time'] for m in model['markers']] + [c['time'] for c in model['checks']]
    moments = [b[1] for b in bars] + [b[2] for b in bars] + points
    rows = len(bars) + (1 if model['markers'] else 0) + (1 if model['checks'] else 0)
    height = axis_h + max(rows, 1) * row_h + 2 * pad
    out = ['<svg xmlns="http://www.w3.org/2000/svg" id="timeline" role="img" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">' % (width, height, width, height),
           '<title>%s timeline (UTC)</title>' % esc(model['id']),
           '<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>' % (width, height)]
    if not moments:
        out.append('<text x="%d" y="%d" fill="#555555">No times recorded yet.</text>' % (pad, axis_h))
        out.append('</svg>')
        return '\n'.join(out)
    t0, t1 = min(moments), max(moments)
    span = max((t1 - t0).total_seconds(), 1.0)
    tick = _nice_tick(span)
    start_epoch = int(t0.timestamp()) // tick * tick
    t0 = datetime.datetime.fromtimestamp(start_epoch, datetime.timezone.utc)
    span = max((t1 - t0).total_seconds(), 1.0)

    def x_of(moment):
        return label_w + pad + chart_w * (moment - t0).total_seconds() / span

    fmt = '%H:%M:%S' if tick < 60 else '%H:%M'
    epoch = start_epoch
    while epoch <= t1.timestamp():
        moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
        x = x_of(moment)
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>' % (x, axis_h - 8, x, height - pad))
        out.append('<text x="%.1f" y="%d" fill="#333333" text-anchor="middle">%s</text>' % (
            x, axis_h - 12, moment.strftime(fmt)))
        epoch += tick
    y = axis_h
    for label, begin, finish, colour, kind in bars:
        x1, x2 = x_of(begin), x_of(finish)
        out.append('<text x="%d" y="%d" fill="#222222">%s</text>' % (pad, y + 15, esc(label, 34)))
        out.append('<rect class="bar %s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" rx="2">'
                   '<title>%s: %s to %s</title></rect>' % (
                       kind, x1, y + 3, max(x2 - x1, 3.0), row_h - 6, colour, esc(label), show_time(begin),
                       show_time(finish)))
        y += row_h
    if model['checks']:
        out.append('<text x="%d" y="%d" fill="#222222">Monitoring checks</text>' % (pad, y + 15))
        for check in model['checks']:
            colour = CHECK_COLOURS['passed' if check['passed'] else 'failed']
            out.append('<circle cx="%.1f" cy="%d" r="6" fill="%s"><title>%s %s at %s</title></circle>' % (
                x_of(check['time']), y + row_h // 2, colour, esc(check['label']),
                'passed' if check['passed'] else 'FAILED', show_time(check['time'])))
        y += row_h
    if model['markers']:
        out.append('<text x="%d" y="%d" fill="#222222">Events</text>' % (pad, y + 15))
        for marker in model['markers']:
            x, cy = x_of(marker['time']), y + row_h // 2
            out.append('<path d="M %.1f %d l 6 6 l -6 6 l -6 -6 z" fill="%s"><title>%s at %s</title></path>' % (
                x, cy - 6, MARKER_COLOURS.get(marker['kind'], '#34495e'), esc(marker['label']),
                show_time(marker['time'])))
        y += row_h
    out.append('</svg>')
    return '\n'.join(out)


_CSS = '''
body { margin: 0; padding: 0 24px 24px; font-family: sans-serif; color: #222222; background: #ffffff; }
header { height: 64px; }
h1 { font-size: 22px; margin: 0; padding-top: 16px; }
h2 { font-size: 18px; border-bottom: 1px solid #dddddd; padding-bottom: 4px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #dddddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.todo { color: #b03a2e; font-weight: bold; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
'''


def render_html(model):
    """A self-contained HTML report: no script, no external resource (the CSP forbids them too)."""
    def todo(what):
        return '<span class="todo">TODO(%s)</span>: %s' % (esc(model['owner'], 60), esc(what))

    def value_or_todo(value, what, limit=2000):
        return esc(value, limit) if value else todo(what)

    out = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
           '<title>Post-Incident Review: %s</title>' % esc(model['id']), '<style>%s</style>' % _CSS, '</head>',
           '<body>', '<header><h1>Post-Incident Review: %s</h1></header>' % esc(model['id']),
           '<section id="timeline-section">', render_svg(model), '<p class="legend">']
    for label, _frm, _to, colour in PHASES:
        out.append('<span><i style="background:%s"></i>%s</span>' % (colour, label))
    out.append('<span><i style="background:%s"></i>task changed</span>' % OUTCOME_COLOURS['changed'])
    out.append('<span><i style="background:%s"></i>task ok</span>' % OUTCOME_COLOURS['ok'])
    out.append('</p></section>')
    out.append('<h2>Incident Summary</h2><table>')
    items = [
        ('Title', value_or_todo(model['title'], 'title')),
        ('Date/Time (UTC)', '%s to %s' % (show_time(model['start']),
                                          show_time(model['end']) if model['end'] else 'not resolved')),
        ('Duration', esc(human_duration(model['duration'])) if model['duration'] is not None else 'ongoing'),
        ('Severity', (esc(model['severity']) + (' (%s)' % esc(model['priority']) if model['priority'] else '') +
                      (', confirmed by %s' % esc(model['confirmed_by']) if model['confirmed_by'] else ''))
         if model['severity'] else todo('severity')),
        ('Status', esc(model['status'])),
        ('Services Affected', esc(', '.join(model['services'])) if model['services'] else todo('services')),
        ('Customer Impact', value_or_todo(model['impact'], 'who and how many were affected')),
        ('Incident Commander', value_or_todo(model['commander'], 'name the incident commander')),
        ('Responders', esc(', '.join(model['responders'])) or '-'),
    ]
    if model['alert']:
        items.append(('Alert', esc('%s (fingerprint %s)' % (clean(model['alert'].get('name')) or '-',
                                                            clean(model['alert'].get('fingerprint')) or '-'))))
    for label, value in model['metrics']:
        items.append((label, esc(value)))
    for label, value in items:
        out.append('<tr><th>%s</th><td>%s</td></tr>' % (esc(label), value))
    out.append('</table>')
    out.append('<h2>What happened</h2><p>%s</p>' % value_or_todo(model['summary'], 'what happened'))
    out.append('<h2>Timeline</h2><table><tr><th>Time (UTC)</th><th>Event</th><th>Action Taken</th><th>Owner</th>'
               '<th>Outcome</th></tr>')
    for row in model['rows'][:MAX_TABLE_ROWS]:
        out.append('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
            show_time(row['time']), esc(row['event']), esc(row['action']), esc(row['owner']), esc(row['outcome'])))
    out.append('</table>')
    out.append('<h2>Root Cause</h2><p>%s</p>' % value_or_todo(model['root_cause'], 'what caused the incident'))
    for title, entries, what in (('Contributing Factors', model['contributing_factors'], 'contributing factors'),
                                 ('What Went Well', [], 'what worked in the response'),
                                 ('What Could Be Improved', [], 'what slowed the response'),
                                 ('Lessons Learned', model['lessons'], 'what we learned')):
        out.append('<h2>%s</h2><ul>' % esc(title))
        for entry in entries:
            out.append('<li>%s</li>' % esc(entry, 500))
        out.append('<li>%s</li></ul>' % todo(what))
    out.append('<h2>Action Items</h2><table><tr><th>Action</th><th>Owner</th><th>Due Date</th><th>Priority</th>'
               '<th>Status</th></tr>')
    for item in model['action_items']:
        out.append('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
            esc(item.get('action')), esc(item.get('owner')), esc(item.get('due')), esc(item.get('priority')),
            esc(item.get('status')) or 'Open'))
    out.append('<tr><td>%s</td><td>%s</td><td>-</td><td>High</td><td>Open</td></tr>' % (
        todo('immediate fix'), esc(model['owner'], 60)))
    out.append('</table>')
    out.append('<p><small>Generated by incident.response from revision %s of the record (%d events).</small></p>'
               % (esc(model['revision']) or '-', model['event_count']))
    out.append('</body>')
    out.append('</html>')
    return '\n'.join(out) + '\n'


def digest(text):
    return hashlib.sha256(text.encode('utf-8')).hexdigest()
