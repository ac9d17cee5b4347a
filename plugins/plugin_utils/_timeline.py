# -*- coding: utf-8 -*-
# Copyright: (c) 2026, incident.response contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The timeline events of a run, built the same way from the callback and from ansible-runner job events.

Controller-side code shared by ``plugins/callback/timeline.py`` (a run on the command line) and
``scripts/job_events_to_timeline.py`` (a job run by ansible-runner / AWX). Both build the events with the functions
here, so a run leaves the same incident record whichever way it ran. Pure Python: no Ansible objects, only the
values taken from them.
"""

from __future__ import annotations

import datetime
import os
import re

# Modules of this collection: their summary/actions (remediations) and status/reasons (diagnoses) go into the event.
COLLECTION_PREFIX = 'incident.response.'

# Names of the incident module, as tasks spell it.
INCIDENT_MODULES = ('incident.response.incident', 'incident')

# Facts that carry the incident id of the run: set by the incident role's `open` (incident_id) or a record.
ID_FACTS = ('incident_id',)
RECORD_FACTS = ('incident_record', 'incident')

# Variable and environment names whose values are secrets: masked literally in every event string.
SECRET_NAME = re.compile(r'(?i)(passw(or)?d|passwd|secret|token|webhook|dsn|api_?key|routing_?key|private_?key|credential)')
CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
MASK = '********'

OUTCOMES = ('ok', 'changed', 'failed', 'skipped', 'unreachable')

# ansible-runner event names -> outcome
RUNNER_OUTCOME = {
    'runner_on_ok': 'ok',
    'runner_on_failed': 'failed',
    'runner_on_skipped': 'skipped',
    'runner_on_unreachable': 'unreachable',
}


def utc_now():
    return iso(datetime.datetime.now(datetime.timezone.utc))


def iso(value):
    """ISO 8601 UTC with milliseconds and 'Z'; accepts a datetime (naive = UTC) or an ISO string."""
    if value is None or value == '':
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith('Z'):
            text = text[:-1] + '+00:00'
        try:
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    value = value.astimezone(datetime.timezone.utc)
    return value.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (value.microsecond // 1000)


def local_time_iso(value):
    """ansible-runner writes start/end in the controller's local time without a zone: read them as local."""
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # naive -> the local zone of this machine
    return iso(parsed)


def is_collection_module(module):
    return bool(module) and str(module).startswith(COLLECTION_PREFIX)


def outcome_of(kind, result):
    """ok | changed | failed | skipped | unreachable from a result kind (ok/failed/skipped/unreachable)."""
    if kind == 'ok':
        return 'changed' if isinstance(result, dict) and result.get('changed') else 'ok'
    return kind


def _item_results(result):
    items = result.get('results') if isinstance(result, dict) else None
    if isinstance(items, list):
        return [item for item in items if isinstance(item, dict)]
    return None


def module_details(module, result):
    """summary / actions (remediations), status / reasons (diagnoses) of this collection's modules; loops merged."""
    if not is_collection_module(module) or not isinstance(result, dict):
        return {}
    parts = _item_results(result)
    if parts is None:
        parts = [result]
    details = {}
    summaries = [str(part['summary']) for part in parts if part.get('summary')]
    if summaries:
        details['summary'] = '; '.join(summaries)
    actions = []
    for part in parts:
        if isinstance(part.get('actions'), list):
            actions.extend(part['actions'])
    if actions or any('actions' in part for part in parts):
        details['actions'] = actions
    statuses = [part['status'] for part in parts if isinstance(part.get('status'), str)]
    if statuses:
        details['status'] = statuses[0] if len(statuses) == 1 else statuses
    reasons = []
    for part in parts:
        if isinstance(part.get('reasons'), list):
            reasons.extend(part['reasons'])
    if reasons:
        details['reasons'] = reasons
    for key in ('severity', 'priority'):
        if isinstance(result.get(key), str):
            details[key] = result[key]
    return details


def failure_message(result):
    if not isinstance(result, dict):
        return None
    msg = result.get('msg')
    if not msg:
        for part in _item_results(result) or []:
            if part.get('failed') and part.get('msg'):
                msg = part['msg']
                break
    if msg is None:
        return None
    text = msg if isinstance(msg, str) else repr(msg)
    return text[:2000]


def task_event(host, play, task, module, kind, result, start=None, end=None, check_mode=False, no_log=False,
               ignore_errors=False, role=None, task_uuid=None, actor=None):
    """The event of one task result on one host."""
    result = result if isinstance(result, dict) else {}
    outcome = outcome_of(kind, result)
    no_log = bool(no_log or result.get('_ansible_no_log') or 'censored' in result)
    event = dict(
        type='task',
        time=iso(end) or utc_now(),
        actor=actor,
        start=iso(start),
        end=iso(end),
        host=host,
        play=play,
        task=task,
        module=module,
        outcome=outcome,
        check_mode=bool(check_mode),
    )
    if role:
        event['role'] = role
    if task_uuid:
        event['task_uuid'] = task_uuid
    if outcome == 'failed' and ignore_errors:
        event['ignored'] = True
    # A skipped task has no result to hide, and the job events of ansible-runner do not say whether a skipped
    # task was no_log: the callback and the converter record it the same way, uncensored.
    if no_log and outcome != 'skipped':
        event['censored'] = True
        event['message'] = CENSORED
        return event
    event.update(module_details(module, result))
    if outcome in ('failed', 'unreachable'):
        msg = failure_message(result)
        if msg:
            event['message'] = msg
    return event


def target_results(module, result):
    """The targets of a run over many targets (the ``targets`` option of pg_activity_info and pg_backends):
    ``[(target name, its own result)]``, or None for an ordinary result."""
    if not is_collection_module(module) or not isinstance(result, dict):
        return None
    targets = result.get('targets')
    if not isinstance(targets, dict) or not targets or not all(isinstance(v, dict) for v in targets.values()):
        return None
    return [(str(name), entry) for name, entry in targets.items()]


def task_events(host, play, task, module, kind, result, **kwargs):
    """The events of one task result: one per target when the module worked many targets in one run (``host``
    the target, ``ran_on`` the host that ran the module, the outcome and the details that target's own), so the
    timeline says which target each action was on as when every target ran the module itself; else the one
    event of :func:`task_event`."""
    censored = kwargs.get('no_log') or (isinstance(result, dict) and result.get('_ansible_no_log'))
    parts = target_results(module, result) if kind == 'ok' and not censored else None
    if not parts:
        return [task_event(host, play, task, module, kind, result, **kwargs)]
    events = []
    for name, entry in parts:
        event = task_event(name, play, task, module, 'failed' if entry.get('failed') else 'ok', entry, **kwargs)
        event['ran_on'] = host
        events.append(event)
    return events


def play_start_event(play, hosts, check_mode, actor=None, time=None, play_uuid=None):
    event = dict(type='play_start', time=iso(time) or utc_now(), actor=actor, play=play, hosts=hosts,
                 check_mode=bool(check_mode))
    if play_uuid:
        event['play_uuid'] = play_uuid
    return event


def play_end_event(play, actor=None, time=None, play_uuid=None):
    event = dict(type='play_end', time=iso(time) or utc_now(), actor=actor, play=play)
    if play_uuid:
        event['play_uuid'] = play_uuid
    return event


STAT_NAMES = ('ok', 'changed', 'failures', 'unreachable', 'skipped', 'rescued', 'ignored')


def stats_event(per_host, actor=None, time=None):
    """per_host: {host: {ok, changed, failures, unreachable, skipped, rescued, ignored}}."""
    hosts = {}
    for host in sorted(per_host):
        counts = per_host[host]
        hosts[host] = dict((name, int(counts.get(name, 0) or 0)) for name in STAT_NAMES)
    failed = any(c['failures'] or c['unreachable'] for c in hosts.values())
    return dict(type='stats', time=iso(time) or utc_now(), actor=actor, hosts=hosts,
                outcome='failed' if failed else 'ok')


def runner_stats(event_data):
    """ansible-runner's playbook_on_stats event data -> per-host counts like AggregateStats.summarize()."""
    names = dict(ok='ok', changed='changed', failures='failures', dark='unreachable', skipped='skipped',
                 rescued='rescued', ignored='ignored')
    per_host = {}
    for runner_name, name in names.items():
        for host, count in (event_data.get(runner_name) or {}).items():
            per_host.setdefault(host, {})[name] = count
    for host in event_data.get('processed') or {}:
        per_host.setdefault(host, {})
    return per_host


def incident_id_from_result(module, result):
    """The incident id a task result names: the incident module's result, or a fact set by the incident role."""
    if not isinstance(result, dict) or result.get('failed'):
        return None
    facts = result.get('ansible_facts')
    if isinstance(facts, dict):
        for name in ID_FACTS:
            if isinstance(facts.get(name), str) and facts[name]:
                return facts[name]
        for name in RECORD_FACTS:
            record = facts.get(name)
            if isinstance(record, dict) and isinstance(record.get('id'), str) and record['id']:
                return record['id']
    if module in INCIDENT_MODULES and not result.get('_ansible_no_log'):
        if isinstance(result.get('incident_id'), str) and result['incident_id']:
            return result['incident_id']
        for name in ('incident', 'record'):
            record = result.get(name)
            if isinstance(record, dict) and isinstance(record.get('id'), str) and record['id']:
                return record['id']
    return None


def store_params_from_result(module, result):
    """The store an incident module used (store, store_path, store_schema from its invocation): the callback
    records into the same store. store_dsn is no_log (masked in the invocation): it comes from the callback's own
    options."""
    if module not in INCIDENT_MODULES or not isinstance(result, dict):
        return {}
    args = (result.get('invocation') or {}).get('module_args') or {}
    found = {}
    for name in ('store', 'store_path', 'store_schema'):
        value = args.get(name)
        if isinstance(value, str) and value and 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' not in value:
            found[name] = value
    return found


def secret_values(*mappings):
    """Literal secret values (strings of 4+ characters) of variables/environment names that look secret."""
    found = set()
    for mapping in mappings:
        if not isinstance(mapping, dict):
            continue
        for name, value in mapping.items():
            if SECRET_NAME.search(str(name)):
                _collect(value, found)
    return found


def _collect(value, found):
    if isinstance(value, str):
        if len(value) >= 4 and '{{' not in value:
            found.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found)


def mask_literals(value, secrets):
    """Replace every occurrence of a known secret value in every string of value."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return dict((key, mask_literals(item, secrets)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [mask_literals(item, secrets) for item in value]
    return value


def env_secrets():
    return secret_values(dict(os.environ))


def describe(event):
    """One line for the display (check mode shows what it would record)."""
    kind = event.get('type')
    if kind == 'task':
        text = '%s %s [%s] %s' % (event.get('outcome'), event.get('host'), event.get('module'), event.get('task'))
        if event.get('summary'):
            text += ': %s' % event['summary']
        elif event.get('status'):
            text += ': %s' % event['status']
        return text
    if kind in ('play_start', 'play_end'):
        return '%s %s' % (kind, event.get('play'))
    if kind == 'stats':
        return 'stats %s' % ', '.join('%s ok=%d changed=%d failed=%d' % (h, c['ok'], c['changed'], c['failures'])
                                      for h, c in event.get('hosts', {}).items())
    return str(kind)
