#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, incident.response contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn ansible-runner job events (a job run by AWX) into the timeline events of an incident.

    job_events_to_timeline.py PRIVATE_DATA_DIR/artifacts/IDENT [--incident-id ID] [--check]
    job_events_to_timeline.py job_events.json ...        # a JSON list of events, or an AWX API page {"results": [...]}

The events are the ones the callback incident.response.timeline writes for a run on the command line (both are
built by plugins/plugin_utils/_timeline.py): play_start, one task event per task result, play_end, stats. The
incident is, first found: --incident-id; the incident the job's incident module (the incident role's open) or its
facts named; the extra variable incident_id of the job (env/extravars of the private data dir); INCIDENT_ID.
The store is the one the job's incident module used, else --store/--store-path or INCIDENT_STORE* variables.

Idempotent: each event carries the key job:<job>:<counter>; a second conversion of the same job adds nothing. A
job whose timeline the callback already recorded (same task uuids) is not added twice. --check (or a job run with
--check) prints the events and writes nothing. Exit 0 when done, 1 with one message on stderr when not.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys


def _add_collection_path():
    """Make ansible_collections.incident.response importable: this file is <collection>/scripts/."""
    collection = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = collection.split(os.sep)
    if parts[-3:] == ['ansible_collections', 'incident', 'response']:
        candidates = [os.sep.join(parts[:-3]) or os.sep]
    else:
        candidates = [os.path.join(collection, 'build', 'collections')]
    candidates += [p for p in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p]
    for path in candidates:
        if os.path.isdir(os.path.join(path, 'ansible_collections', 'incident', 'response')) and path not in sys.path:
            sys.path.insert(0, path)


_add_collection_path()

# pylint: disable=wrong-import-position
from ansible_collections.incident.response.plugins.plugin_utils import _timeline as tl  # noqa: E402
from ansible_collections.incident.response.plugins.module_utils._incident import (  # noqa: E402
    IncidentError, get_store, validate_incident_id)

RESULT_EVENTS = tuple(tl.RUNNER_OUTCOME)


class ConvertError(Exception):
    pass


def read_events(source):
    """Job events from a directory (artifacts/<ident>, its job_events/, a private data dir) or a JSON file."""
    if os.path.isdir(source):
        directory = source
        if os.path.isdir(os.path.join(source, 'job_events')):
            directory = os.path.join(source, 'job_events')
        elif os.path.isdir(os.path.join(source, 'artifacts')):
            idents = sorted(glob.glob(os.path.join(source, 'artifacts', '*', 'job_events')))
            if len(idents) != 1:
                raise ConvertError('%s holds %d jobs under artifacts/: name one (artifacts/<ident>)'
                                   % (source, len(idents)))
            directory = idents[0]
        events = []
        for path in glob.glob(os.path.join(directory, '*.json')):
            if path.endswith('-partial.json'):
                continue
            try:
                with open(path) as handle:
                    events.append(json.load(handle))
            except (OSError, ValueError) as exc:
                raise ConvertError('cannot read the job event %s: %s' % (path, exc))
        if not events:
            raise ConvertError('no job events (*.json) in %s' % directory)
    elif os.path.isfile(source):
        try:
            with open(source) as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ConvertError('cannot read %s as JSON: %s' % (source, exc))
        events = data.get('results') if isinstance(data, dict) else data
        if not isinstance(events, list):
            raise ConvertError('%s is neither a list of job events nor an AWX page with "results"' % source)
    else:
        raise ConvertError('%s does not exist' % source)
    events = [event for event in events if isinstance(event, dict) and event.get('event')]
    return sorted(events, key=lambda event: (int(event.get('counter') or 0), event.get('created') or ''))


def artifact_dir(source):
    if os.path.isdir(os.path.join(source, 'job_events')):
        return source
    if os.path.basename(os.path.normpath(source)) == 'job_events':
        return os.path.dirname(os.path.normpath(source))
    return None


def job_command(source):
    """The command line ansible-runner ran (artifacts/<ident>/command), or []."""
    directory = artifact_dir(source) if os.path.isdir(source) else None
    path = os.path.join(directory, 'command') if directory else None
    if not path or not os.path.exists(path):
        return []
    try:
        with open(path) as handle:
            return list(json.load(handle).get('command') or [])
    except (OSError, ValueError, AttributeError):
        return []


def job_extravars(source):
    """env/extravars of the private data dir (artifacts/<ident>/../../env/extravars), JSON or YAML."""
    directory = artifact_dir(source) if os.path.isdir(source) else None
    if not directory:
        return {}
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(directory))), 'env', 'extravars')
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as handle:
            text = handle.read()
        try:
            data = json.loads(text)
        except ValueError:
            import yaml  # pylint: disable=import-outside-toplevel
            data = yaml.safe_load(text)
    except Exception:  # pylint: disable=broad-exception-caught
        return {}
    return data if isinstance(data, dict) else {}


def is_check_run(command):
    return any(arg in ('--check', '-C') or re.match(r'^-[A-Za-z]*C[A-Za-z]*$', arg or '') for arg in command)


def base_uuid(uuid):
    """ansible-runner appends _N to a task uuid that repeats; the callback records the task's own uuid."""
    return re.sub(r'_\d+$', '', str(uuid)) if uuid else None


def convert(events, job, check_mode, actor):
    """(timeline events, incident id found in the job, store params found in the job)."""
    timeline = []
    found_id = None
    store_params = {}
    play = None
    play_uuid = None

    def end_play(created):
        if play is not None:
            timeline.append((None, tl.play_end_event(play, actor=actor, time=created, play_uuid=play_uuid)))

    for event in events:
        kind = event.get('event')
        data = event.get('event_data') or {}
        created = event.get('created')
        key = 'job:%s:%s' % (job, event.get('counter'))
        if kind == 'playbook_on_play_start':
            end_play(created)
            play = (data.get('play') or '').strip() or data.get('play_pattern')
            play_uuid = base_uuid(data.get('play_uuid'))
            hosts = [h for h in (data.get('play_pattern') or '').split(',') if h]
            start = tl.play_start_event(play, hosts, check_mode, actor=actor, time=created, play_uuid=play_uuid)
            timeline.append((key, start))
        elif kind in RESULT_EVENTS:
            module = data.get('resolved_action') or data.get('task_action')
            res = data.get('res') if isinstance(data.get('res'), dict) else {}
            items = tl.task_events(
                host=data.get('host'), play=data.get('play') or play, task=data.get('task'), module=module,
                kind=tl.RUNNER_OUTCOME[kind], result=res, start=data.get('start'),
                end=data.get('end') or created, check_mode=check_mode, ignore_errors=bool(data.get('ignore_errors')),
                role=data.get('role'), task_uuid=base_uuid(data.get('task_uuid')), actor=actor)
            for item in items:
                # one event per target of a run over many targets: each its own key
                timeline.append(('%s:%s' % (key, item['host']) if 'ran_on' in item else key, item))
            new_id = tl.incident_id_from_result(module, res)
            if new_id:
                found_id = found_id or new_id
            store_params.update(tl.store_params_from_result(module, res))
        elif kind == 'playbook_on_stats':
            end_play(created)
            play = None
            stats = tl.stats_event(tl.runner_stats(data), actor=actor, time=created)
            timeline.append((key, stats))
    # keys: play_end events take the key of what ends them
    result = []
    for index, (key, item) in enumerate(timeline):
        if key is None:
            following = next((k for k, _e in timeline[index + 1:] if k), 'end')
            key = '%s:play_end' % following
        item['key'] = key
        result.append(dict((k, v) for k, v in item.items() if v is not None))
    return result, found_id, store_params


def job_name(events, source):
    for event in events:
        if event.get('job_id'):
            return 'awx-%s' % event['job_id']
        if event.get('runner_ident'):
            return str(event['runner_ident'])
    return os.path.basename(os.path.normpath(source))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('source', help='artifacts/<ident> of ansible-runner, its job_events/, or a JSON file')
    parser.add_argument('--incident-id', help='the incident (default: the one the job opened or joined)')
    parser.add_argument('--store', choices=['files', 'postgres'], help='default: INCIDENT_STORE, files')
    parser.add_argument('--store-path', help='files store directory (default: INCIDENT_STORE_PATH)')
    parser.add_argument('--store-schema', help='PostgreSQL store schema (default: INCIDENT_STORE_SCHEMA)')
    parser.add_argument('--check', action='store_true', help='print the events, write nothing')
    parser.add_argument('--job', help='the job name in the event keys (default: AWX job id or runner ident)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        events = read_events(args.source)
        job = args.job or job_name(events, args.source)
        command = job_command(args.source)
        extravars = job_extravars(args.source)
        check_run = is_check_run(command)
        actor = 'ansible-runner (%s)' % job
        timeline, found_id, store_params = convert(events, job, check_run, actor)
        incident_id = (args.incident_id or found_id or
                       (extravars.get('incident_id') if isinstance(extravars.get('incident_id'), str) else None)
                       or os.environ.get('INCIDENT_ID'))
        if not incident_id:
            raise ConvertError('the job names no incident (no incident role/module result, no extra variable '
                               'incident_id): pass --incident-id')
        validate_incident_id(incident_id)
        secrets = tl.env_secrets() | tl.secret_values(extravars)
        timeline = [tl.mask_literals(item, secrets) for item in timeline]
        output = dict(incident_id=incident_id, job=job, events=len(timeline), check_mode=bool(args.check or check_run))
        if args.check or check_run:
            output.update(written=0, timeline=timeline,
                          msg='check mode (%s): nothing written' % ('--check' if args.check else 'the job ran with --check'))
            print(json.dumps(output, indent=2, sort_keys=True))
            return 0
        params = dict(store_params)
        for name in ('store', 'store_path', 'store_schema'):
            if getattr(args, name):
                params[name] = getattr(args, name)
        store = get_store(params, secrets=tuple(sorted(secrets)))
        try:
            if store.get(incident_id) is None:
                raise ConvertError('incident %s does not exist in the %s: open it first (the incident role, '
                                   'entry point open)' % (incident_id, store.describe()))
            existing = store.events(incident_id)
            keys = set(e.get('key') for e in existing if e.get('key'))
            job_tasks = set(e['task_uuid'] for e in timeline if e.get('task_uuid'))
            by_callback = [e for e in existing if e.get('type') == 'task' and e.get('task_uuid') in job_tasks
                           and not str(e.get('key') or '').startswith('job:')]
            written = 0
            if by_callback:
                output['msg'] = 'the timeline callback already recorded this job (%d task events): nothing added' \
                    % len(by_callback)
            else:
                for item in timeline:
                    if item['key'] in keys:
                        continue
                    store.append_event(incident_id, item)
                    written += 1
                output['msg'] = '%d events written, %d already there' % (written, len(timeline) - written)
            output.update(written=written, store=store.describe())
        finally:
            store.close()
        print(json.dumps(output, indent=2, sort_keys=True))
        return 0
    except (ConvertError, IncidentError) as exc:
        sys.stderr.write('job_events_to_timeline: %s\n' % exc)
        return 1


if __name__ == '__main__':
    sys.exit(main())
