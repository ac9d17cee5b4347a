# -*- coding: utf-8 -*-
# Copyright: (c) 2026, incident.response contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: timeline
type: aggregate
short_description: Record every task of a run in the timeline of its incident
description:
  - >-
    When a run carries an incident id, appends one event per task result to the event log of that incident in the
    incident store (C(docs/incident-record.md)): start and end time, host, play, task name, module, outcome
    (C(ok), C(changed), C(failed), C(skipped), C(unreachable)), check mode, and for this collection's modules
    (C(incident.response.*)) their C(summary) and C(actions) (remediations) or C(status) and C(reasons)
    (diagnoses). Also the start and the end of each play and the run's stats at the end.
  - "The incident id of the run is, first found: the extra variable C(incident_id); the fact C(incident_id) set by
    the C(incident.response.incident) role's C(open) entry point (or the id returned by the
    C(incident.response.incident) module); the play variable C(incident_id); the environment variable
    C(INCIDENT_ID)."
  - >-
    Events are kept until the incident exists in the store (the role's C(open) creates it), then written in
    order, so the play start and the tasks before C(open) are recorded too. A run without an incident id records
    nothing.
  - >-
    C(no_log) tasks are recorded as censored (no result text). Every event goes through the collection's
    redaction (C(redact_value) of C(_incident)) and every value of a variable or environment variable whose
    name looks secret (password, token, webhook, dsn, ...) is masked before it is written.
  - >-
    Check mode (C(--check)) records nothing and leaves the store untouched; with C(-v) the callback shows each
    event it would have recorded.
  - >-
    The results of a task (one per host) are written together, in one write of the store, when the next task
    starts (or the play ends), so a run on many hosts costs one write per task, not one per host.
  - >-
    A task whose module worked many targets in one run (the C(targets) option of C(pg_activity_info) and
    C(pg_backends), the C(pg_connections) role's batch) is recorded as one event per target, with the target as
    its host, that target's own outcome, summary and actions, and C(ran_on) the host that ran the module.
  - >-
    A store that cannot be written warns once and never fails the play.
  - >-
    The store is the one the C(incident.response.incident) module of the run used (its C(store), C(store_path),
    C(store_schema)); otherwise the options below.
  - >-
    Enable it in C(ansible.cfg) (C([defaults] callbacks_enabled = incident.response.timeline)) or with the
    environment variable C(ANSIBLE_CALLBACKS_ENABLED=incident.response.timeline).
version_added: 0.2.0
requirements:
  - enabled in C(callbacks_enabled)
options:
  store:
    description: The incident store, C(files) or C(postgres).
    type: str
    default: files
    choices: [files, postgres]
    env:
      - name: INCIDENT_STORE
    ini:
      - section: callback_timeline
        key: store
  store_path:
    description: Directory of the files store.
    type: path
    default: /var/tmp/incident-response/incidents
    env:
      - name: INCIDENT_STORE_PATH
    ini:
      - section: callback_timeline
        key: store_path
  store_dsn:
    description:
      - libpq DSN or URI of the PostgreSQL store. Empty, the C(PG*) environment variables apply.
    type: str
    env:
      - name: INCIDENT_STORE_DSN
    ini:
      - section: callback_timeline
        key: store_dsn
  store_schema:
    description: Schema of the PostgreSQL store.
    type: str
    default: incident_response
    env:
      - name: INCIDENT_STORE_SCHEMA
    ini:
      - section: callback_timeline
        key: store_schema
  store_timeout:
    description: Seconds to wait for the store (file lock; PostgreSQL connect and statements).
    type: int
    default: 10
    env:
      - name: INCIDENT_STORE_TIMEOUT
    ini:
      - section: callback_timeline
        key: store_timeout
  incident_id:
    description:
      - The incident of the run when neither the extra variables, the incident role nor the play name one.
    type: str
    env:
      - name: INCIDENT_ID
    ini:
      - section: callback_timeline
        key: incident_id
"""

import getpass
import json
import os

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.incident.response.plugins.plugin_utils import _timeline as tl

try:
    from ansible_collections.incident.response.plugins.module_utils._incident import get_store, redact_value
    HAS_INCIDENT = True
    INCIDENT_IMPORT_ERROR = None
except Exception as exc:  # pylint: disable=broad-exception-caught
    HAS_INCIDENT = False
    INCIDENT_IMPORT_ERROR = exc


def _parts(result):
    """host, task, result dict of a callback task result (ansible-core 2.19 names, older ones as fallback)."""
    host = getattr(result, 'host', None)
    task = getattr(result, 'task', None)
    data = getattr(result, 'result', None)
    if host is None or task is None or not isinstance(data, dict):
        host, task, data = result._host, result._task, result._result  # pylint: disable=protected-access
    return host, task, data


def _module(task):
    return str(getattr(task, 'resolved_action', None) or task.action)


def _plain(value):
    """JSON round trip: plain dicts, lists and strings (no tagged or lazy values of the templating engine)."""
    return json.loads(json.dumps(value, default=str))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'incident.response.timeline'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check = False
        self._incident_id = None
        self._source = None
        self._confirmed = False
        self._broken = False
        self._warned = False
        self._pending = []
        self._recorded = 0
        self._would = 0
        self._store = None
        self._store_params = None
        self._starts = {}
        self._task_names = {}
        self._play = None
        self._play_uuid = None
        self._secrets = set()
        self._actor = None
        self._extra_vars = {}

    # ------------------------------------------------------------------ plumbing
    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._store_params = dict(store=self.get_option('store'), store_path=self.get_option('store_path'),
                                  store_dsn=self.get_option('store_dsn'), store_schema=self.get_option('store_schema'),
                                  store_timeout=self.get_option('store_timeout'))
        if self._store_params['store_dsn']:
            self._secrets.add(self._store_params['store_dsn'])

    def _warn_once(self, message):
        if not self._warned:
            self._warned = True
            self._display.warning('incident.response.timeline: %s' % message)

    def _get_store(self):
        if self._store is None:
            self._store = get_store(dict(self._store_params), secrets=tuple(sorted(self._secrets)))
        return self._store

    def _set_store_params(self, found):
        changed = False
        for key, value in found.items():
            if self._store_params.get(key) != value:
                self._store_params[key] = value
                changed = True
        if changed:
            self._close_store()

    def _close_store(self):
        store, self._store = self._store, None
        close = getattr(store, 'close', None)
        if callable(close):
            try:
                close()
            except Exception:  # pylint: disable=broad-exception-caught
                pass

    def _clean(self, event):
        event = dict((key, value) for key, value in event.items() if value is not None)
        event = _plain(event)
        if HAS_INCIDENT:
            event = redact_value(event, tuple(self._secrets))
        return tl.mask_literals(event, self._secrets)

    # ------------------------------------------------------------------ the incident of the run
    def _learn_id(self, incident_id, source, confirmed=False):
        if not incident_id or not isinstance(incident_id, str):
            return
        incident_id = str(incident_id)
        if incident_id != self._incident_id:
            self._incident_id = incident_id
            self._source = source
            self._confirmed = False
        if confirmed:
            self._confirmed = True
        elif not self._confirmed:
            self._confirm()
        self._flush()

    def _confirm(self):
        """Is the incident in the store? (one read; the incident role's open creates it)."""
        if self._check or self._broken or not self._incident_id or not HAS_INCIDENT:
            return
        try:
            self._confirmed = self._get_store().get(self._incident_id) is not None
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._fail_store(exc)

    def _fail_store(self, exc):
        self._broken = True
        self._warn_once('cannot record the timeline of incident %s in the %s store (%s): %s. The play goes on; '
                        'the timeline of this run is not recorded.'
                        % (self._incident_id, self._store_params.get('store'), self._where(),
                           tl.mask_literals(str(exc), self._secrets)))
        self._pending = []
        self._close_store()

    def _where(self):
        if self._store_params.get('store') == 'postgres':
            return 'schema %s' % self._store_params.get('store_schema')
        return self._store_params.get('store_path')

    def _emit(self, event, flush=True):
        if self._broken:
            return
        self._pending.append(self._clean(event))
        if flush:
            self._flush()

    def _flush(self):
        if self._check:
            # check mode records nothing: show what would be recorded (-v), once the incident is known
            while self._pending and self._incident_id:
                self._would += 1
                self._display.v('incident.response.timeline (check mode, not recorded in %s): %s'
                                % (self._incident_id, tl.describe(self._pending.pop(0))))
            return
        if self._broken or not self._confirmed or not self._pending or not HAS_INCIDENT:
            return
        try:
            # one write (one lock, one read of the log, one fsync) for the results kept since the last one
            batch = list(self._pending)
            self._get_store().append_events(self._incident_id, batch)
            del self._pending[:len(batch)]
            self._recorded += len(batch)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._fail_store(exc)

    # ------------------------------------------------------------------ playbook events
    def v2_playbook_on_start(self, playbook):
        self._check = bool(context.CLIARGS.get('check'))
        user = os.environ.get('JOB_ID') and ('awx job %s' % os.environ['JOB_ID'])
        if not user:
            try:
                user = getpass.getuser()
            except Exception:  # pylint: disable=broad-exception-caught
                user = 'unknown'
        self._actor = 'ansible-playbook (%s)' % user
        self._secrets |= tl.env_secrets()
        if not HAS_INCIDENT:
            self._warn_once('the incident store is not available (%s): nothing is recorded.' % INCIDENT_IMPORT_ERROR)

    def v2_playbook_on_play_start(self, play):
        try:
            self._end_play()
            self._play = play.get_name().strip() or ','.join(play.hosts or [])
            self._play_uuid = str(play._uuid)  # pylint: disable=protected-access
            manager = play.get_variable_manager()
            extra = dict(getattr(manager, 'extra_vars', None) or {}) if manager else {}
            play_vars = dict(play.vars or {})
            self._secrets |= tl.secret_values(extra, play_vars)
            if not self._incident_id:
                if isinstance(extra.get('incident_id'), str) and extra['incident_id'].strip():
                    self._learn_id(extra['incident_id'].strip(), 'extra vars')
                elif isinstance(play_vars.get('incident_id'), str) and play_vars['incident_id'].strip() \
                        and '{{' not in play_vars['incident_id']:
                    self._learn_id(play_vars['incident_id'].strip(), 'play vars')
                elif self.get_option('incident_id'):
                    self._learn_id(self.get_option('incident_id'), 'INCIDENT_ID')
            hosts = play.hosts if isinstance(play.hosts, list) else [play.hosts]
            self._emit(tl.play_start_event(self._play, [str(h) for h in hosts], self._check, actor=self._actor,
                                           play_uuid=self._play_uuid))
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn_once('play start not recorded: %s' % exc)

    def _end_play(self):
        if self._play is not None:
            self._emit(tl.play_end_event(self._play, actor=self._actor, play_uuid=self._play_uuid))
            self._play = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        # the results of the previous task (one per host) are written together when the next task starts
        self._flush()
        self._task_names[str(task._uuid)] = task.name or task.action  # pylint: disable=protected-access

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def v2_playbook_on_cleanup_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_start(self, host, task):
        self._starts[(host.get_name(), str(task._uuid))] = tl.utc_now()  # pylint: disable=protected-access

    # ------------------------------------------------------------------ task results
    def _task_result(self, kind, result, ignore_errors=False):
        try:
            host, task, data = _parts(result)
            module = _module(task)
            uuid = str(task._uuid)  # pylint: disable=protected-access
            role = task._role._role_name if getattr(task, '_role', None) else None  # pylint: disable=protected-access
            found = tl.incident_id_from_result(module, data)
            if module in tl.INCIDENT_MODULES:
                self._set_store_params(tl.store_params_from_result(module, data))
            # one event, or one per target of a module that worked many targets in one run (pg_connections_batch)
            events = tl.task_events(
                host=host.get_name(), play=self._play, task=self._task_names.get(uuid) or task.name or task.action,
                module=module, kind=kind, result=data, start=self._starts.pop((host.get_name(), uuid), None),
                end=tl.utc_now(), check_mode=bool(task.check_mode) or self._check, no_log=bool(task.no_log),
                ignore_errors=ignore_errors, role=role, task_uuid=uuid, actor=self._actor)
            # kept until the next task starts (or the play ends): the hosts of one task in one write
            for event in events:
                self._emit(event, flush=False)
            if found:
                # the incident module's own result says the incident exists (unless it ran in check mode)
                confirmed = module in tl.INCIDENT_MODULES and not task.check_mode and not self._check
                self._learn_id(found, 'incident role', confirmed=confirmed)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn_once('a task result was not recorded: %s' % exc)

    def v2_runner_on_ok(self, result):
        self._task_result('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_result('failed', result, ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._task_result('skipped', result)

    def v2_runner_on_unreachable(self, result):
        self._task_result('unreachable', result)

    # ------------------------------------------------------------------ the end
    def v2_playbook_on_stats(self, stats):
        try:
            self._end_play()
            per_host = dict((host, stats.summarize(host)) for host in sorted(stats.processed))
            self._emit(tl.stats_event(per_host, actor=self._actor))
            if not self._confirmed and self._incident_id:
                self._confirm()
                self._flush()
            self._report()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn_once('the stats were not recorded: %s' % exc)
        finally:
            self._close_store()

    def _report(self):
        if not self._incident_id:
            return
        if self._check:
            self._display.display('incident.response.timeline: check mode, nothing recorded in incident %s '
                                  '(%d events would be; -v shows them)' % (self._incident_id, self._would))
        elif self._recorded and not self._broken:
            self._display.display('incident.response.timeline: %d events recorded in incident %s'
                                  % (self._recorded, self._incident_id))
        elif self._pending and not self._broken and HAS_INCIDENT:
            self._warn_once('incident %s is not in the %s store (%s): the timeline of this run (%d events) is not '
                            'recorded. Open the incident first (the incident role, entry point open).'
                            % (self._incident_id, self._store_params.get('store'), self._where(), len(self._pending)))
