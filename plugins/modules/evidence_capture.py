#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: evidence_capture
short_description: Capture forensic evidence of an incident with a manifest and checksums (chain of custody)
version_added: 0.3.0
description:
  - Collects, into a new capture directory C(<evidence_dir>/NNN-<label>/) of the incident (mode 0700), the
    container logs of a time window, C(pg_dump -Fc) dumps of named databases, the rows of tables for a time window
    (C(COPY) to CSV), the PostgreSQL server log lines of the window, the listening and established TCP sockets,
    and the lines of host logs that match a pattern.
  - Every item is a file of mode 0600, created new (C(O_EXCL)); nothing is ever overwritten, a second capture is
    a new directory. Every item has a manifest entry (what, source, when, command or query, bounds, size,
    sha256) in C(manifest.json), and C(SHA256SUMS) lists every file in C(sha256sum -c) format.
  - The manifest's sha256 is recorded in the incident's timeline (an event of type C(note) with the key
    C(evidence:<capture>:<sha256>)), so a later change of the evidence shows.
  - Every item is bounded in size (O(max_bytes)) and time (O(item_timeout)); an item cut by a bound says
    C(truncated). An item that cannot be captured is in the manifest with its C(error); the others are kept.
  - The raw evidence is kept as it is (it may hold secrets, so it is only readable by its owner); what the module
    returns (previews, matches) is redacted.
  - Check mode lists what would be captured (C(planned)) and writes nothing, connects nowhere.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
  - incident.response.postgres
attributes:
  check_mode:
    support: full
    description: Lists the planned items; writes nothing, reads nothing.
  diff_mode:
    support: none
    description: A capture is new files; there is nothing to diff.
  idempotent:
    support: partial
    description:
      - Each real run is a new capture (evidence is never overwritten), unless O(once=true) finds a capture with the
        same O(label) and reports it unchanged.
options:
  incident_id:
    description:
      - The incident the evidence belongs to (1-64 characters of C(A-Z a-z 0-9 . _ -), no C(/), no C(..)).
    type: str
    required: true
  evidence_dir:
    description:
      - The incident's evidence directory. Default, the store's C(<store_path>/<incident_id>/evidence).
    type: path
  label:
    description: The name of the capture (its directory is C(NNN-<label>)).
    type: str
    default: capture
  once:
    description:
      - When a capture with this O(label) exists already, capture nothing and return it (C(changed=false)).
    type: bool
    default: false
  record_event:
    description:
      - Record the manifest's sha256 in the incident's timeline. The incident must exist.
    type: bool
    default: true
  since:
    description: The window, back from now, such as V(2h) or V(30m).
    type: str
    default: 2h
  max_bytes:
    description: At most this many bytes per item (1 KiB to 4 GiB).
    type: int
    default: 67108864
  item_timeout:
    description: Seconds per item (1 to 3600); an item past it is cut and marked truncated.
    type: int
    default: 120
  compose_project:
    description: The Compose project of O(container_logs).
    type: str
  container_logs:
    description: Services of O(compose_project) whose container logs (stdout and stderr, with timestamps) of the
      window are captured.
    type: list
    elements: str
    default: []
  docker_host:
    description: The Docker daemon; falls back to E(DOCKER_HOST), then the local socket.
    type: str
    default: unix:///var/run/docker.sock
  databases:
    description:
      - Databases dumped with C(pg_dump -Fc) (custom format, restorable with C(pg_restore)), as O(login_user) on
        O(login_host):O(login_port). The password goes in the environment (E(PGPASSWORD)), never on the command
        line.
    type: list
    elements: str
    default: []
  pg_bindir:
    description:
      - Directory of C(pg_dump). Default, C(/usr/lib/postgresql/<server major>/bin) when it exists, else the
        C(pg_dump) on E(PATH) (it must be at least the server's version).
    type: path
  tables:
    description: Tables whose rows of the window are copied to CSV (C(COPY ... TO STDOUT)), newest first.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The table, V(name) or V(schema.name).
        type: str
        required: true
      time_column:
        description: Its time column (the window is on it).
        type: str
        default: at
      max_rows:
        description: At most this many rows (1 to 10000000).
        type: int
        default: 100000
  pg_log:
    description:
      - Capture the PostgreSQL server log lines of the window, through C(pg_current_logfile()) and
        C(pg_read_file()) where the role may (superuser or C(pg_read_server_files), C(logging_collector) on),
        else from O(pg_log_path) on the host.
    type: bool
    default: false
  pg_log_path:
    description: The server log on the host (a file, or a directory whose newest file is read).
    type: path
  sockets:
    description: Capture the listening and established TCP sockets (C(/proc/net/tcp), C(/proc/net/tcp6)) of the
      network namespace the module runs in.
    type: bool
    default: false
  host_logs:
    description: Host log files whose lines of the window matching a pattern are captured (the last O(max_bytes)
      of the file are read).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The log file.
        type: path
        required: true
      pattern:
        description: A regular expression (case-insensitive; nested repeats are refused).
        type: str
        default: failed|unauthorized|invalid
  preview_rows:
    description: Rows (tables) and lines (host logs) returned in RV(items) as a redacted preview.
    type: int
    default: 20
'''

EXAMPLES = r'''
- name: Capture the breach evidence
  incident.response.evidence_capture:
    incident_id: "{{ incident_record.id }}"
    label: breach
    since: 2h
    compose_project: taskscheduler
    container_logs: [api]
    databases: [scheduler]
    tables: [{name: audit_log, time_column: at}]
    pg_log: true
    pg_log_path: /var/lib/incident-response-lab/pg15/log
    sockets: true
    host_logs: [{path: /var/log/auth.log}]
'''

RETURN = r'''
changed:
  description: A capture was written.
  returned: always
  type: bool
actions:
  description: One C(capture) entry per item.
  returned: success
  type: list
  elements: dict
summary:
  description: One line.
  returned: success
  type: str
capture_dir:
  description: The capture's directory (null in check mode).
  returned: success
  type: str
manifest:
  description: The manifest file.
  returned: success
  type: str
manifest_sha256:
  description: The sha256 of the manifest file, recorded in the incident.
  returned: success
  type: str
checksums:
  description: The C(SHA256SUMS) file (C(cd capture_dir && sha256sum -c SHA256SUMS)).
  returned: success
  type: str
items:
  description: The manifest entries (kind, what, source, started, finished, command, query, window, bounds,
    truncated, file, size, sha256, error), plus a redacted C(preview) of tables and host logs.
  returned: success
  type: list
  elements: dict
planned:
  description: In check mode, the items that would be captured.
  returned: check mode
  type: list
  elements: dict
errors:
  description: One line per item that could not be captured.
  returned: success
  type: list
  elements: str
event:
  description: The incident event that records the manifest's sha256.
  returned: when recorded
  type: dict
incident_id:
  description: The incident.
  returned: when captured
  type: str
'''

import datetime
import csv
import os
import re
import select
import shutil
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils import _evidence
from ansible_collections.incident.response.plugins.module_utils import _incident
from ansible_collections.incident.response.plugins.module_utils._common import (
    BackendError,
    duration_param,
    make_action,
    new_module,
    redact,
    regex_param,
    remediation_result,
)
from ansible_collections.incident.response.plugins.module_utils._postgres import (
    PSYCOPG2_IMPORT_ERROR,
    HAS_PSYCOPG2,
    PgClient,
    connection_settings,
    describe_target,
    open_connection,
    postgres_common_argument_spec,
)

if HAS_PSYCOPG2:
    import psycopg2
    import psycopg2.sql

MAX_ITEM_BYTES = 4 * 1024 * 1024 * 1024
IDENT_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_$]{0,62}$')
SERVICE_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(_incident.store_argument_spec())
    spec.update(
        incident_id=dict(type='str', required=True),
        evidence_dir=dict(type='path'),
        label=dict(type='str', default='capture'),
        once=dict(type='bool', default=False),
        record_event=dict(type='bool', default=True),
        since=dict(type='str', default='2h'),
        max_bytes=dict(type='int', default=_evidence.DEFAULT_MAX_BYTES),
        item_timeout=dict(type='int', default=120),
        compose_project=dict(type='str'),
        container_logs=dict(type='list', elements='str', default=[]),
        docker_host=dict(type='str', fallback=(env_fallback, ['DOCKER_HOST']), default='unix:///var/run/docker.sock'),
        databases=dict(type='list', elements='str', default=[]),
        pg_bindir=dict(type='path'),
        tables=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            time_column=dict(type='str', default='at'),
            max_rows=dict(type='int', default=100000),
        )),
        pg_log=dict(type='bool', default=False),
        pg_log_path=dict(type='path'),
        sockets=dict(type='bool', default=False),
        host_logs=dict(type='list', elements='dict', default=[], options=dict(
            path=dict(type='path', required=True),
            pattern=dict(type='str', default='failed|unauthorized|invalid'),
        )),
        preview_rows=dict(type='int', default=20),
    )
    return spec


def _table_parts(module, name):
    parts = name.split('.')
    if len(parts) > 2 or not all(IDENT_RE.match(part) for part in parts):
        module.fail_json(msg='tables: %r is not a table name (name or schema.name, letters, digits and _)' % (name,))
    return parts


class _ComposeModule(object):
    """What ComposeBackend reads of a module: the options of the Compose backend, and fail_json."""

    def __init__(self, module, project):
        self.params = dict(project=project, docker_host=module.params['docker_host'],
                           timeout=min(module.params['item_timeout'], 60), project_dir=None, files=None,
                           history_file=None)
        self.fail_json = module.fail_json


def _kill_group(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue


class Capturer(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.window_seconds = None
        self.until = None
        self.since = None
        self.errors = []
        self._client = None

    # -------------------------------------------------------------- validation and plan (check mode too)
    def validate(self):
        p = self.p
        try:
            _incident.validate_incident_id(p['incident_id'])
            _evidence.validate_label(p['label'])
        except (_incident.IncidentError, _evidence.EvidenceError) as exc:
            self.module.fail_json(msg=str(exc))
        self.window_seconds = duration_param(self.module, 'since', minimum=1, maximum=366 * 86400,
                                             allow_empty=False, required=True)
        if not 1024 <= p['max_bytes'] <= MAX_ITEM_BYTES:
            self.module.fail_json(msg='max_bytes must be between 1024 and %d (4 GiB), got %s: every item needs a '
                                  'size bound' % (MAX_ITEM_BYTES, p['max_bytes']))
        if not 1 <= p['item_timeout'] <= 3600:
            self.module.fail_json(msg='item_timeout must be between 1 and 3600 seconds, got %s: every item needs a '
                                  'time bound' % p['item_timeout'])
        if not 0 <= p['preview_rows'] <= 1000:
            self.module.fail_json(msg='preview_rows must be between 0 and 1000, got %s' % p['preview_rows'])
        if p['container_logs'] and not p['compose_project']:
            self.module.fail_json(msg='container_logs needs compose_project (the Compose project of the services)')
        for service in p['container_logs']:
            if not SERVICE_RE.match(service or ''):
                self.module.fail_json(msg='container_logs: %r is not a service name' % (service,))
        for name in p['databases']:
            if not name or '\x00' in name or name.startswith('-') or len(name) > 63:
                self.module.fail_json(msg='databases: %r is not a database name' % (name,))
        for table in p['tables']:
            _table_parts(self.module, table['name'])
            if not IDENT_RE.match(table['time_column'] or ''):
                self.module.fail_json(msg='tables: time_column %r of %s is not a column name'
                                      % (table['time_column'], table['name']))
            if not 1 <= table['max_rows'] <= 10000000:
                self.module.fail_json(msg='tables: max_rows of %s must be between 1 and 10000000, got %s'
                                      % (table['name'], table['max_rows']))
        self.patterns = []
        for index, entry in enumerate(p['host_logs']):
            self.patterns.append(regex_param(self.module, 'host_logs[%d].pattern' % index, value=entry['pattern'],
                                             flags=re.IGNORECASE, max_input=1024 * 1024))
        if not self.planned_items():
            self.module.fail_json(msg='nothing to capture: give container_logs, databases, tables, pg_log, sockets '
                                  'or host_logs')
        self.until = _evidence.utc_now()
        self.since = self.until - datetime.timedelta(seconds=self.window_seconds)

    def bounds(self, **more):
        bounds = dict(max_bytes=self.p['max_bytes'], timeout_seconds=self.p['item_timeout'])
        bounds.update(more)
        return bounds

    def planned_items(self):
        p = self.p
        items = []
        for service in p['container_logs']:
            items.append(dict(kind='container_logs', what='logs of service %s' % service,
                              source='compose project %s on %s' % (p['compose_project'], p['docker_host'])))
        for name in p['databases']:
            items.append(dict(kind='pg_dump', what='pg_dump -Fc of database %s' % name,
                              source='PostgreSQL at %s' % describe_target(dict(p, login_db=name))))
        for table in p['tables']:
            items.append(dict(kind='table_rows', what='rows of %s by %s in the window' % (table['name'],
                                                                                          table['time_column']),
                              source='PostgreSQL at %s' % describe_target(p)))
        if p['pg_log']:
            items.append(dict(kind='pg_log', what='PostgreSQL server log lines in the window',
                              source='pg_read_file(pg_current_logfile()) or %s' % (p['pg_log_path'] or '(no path)')))
        if p['sockets']:
            items.append(dict(kind='sockets', what='listening and established TCP sockets',
                              source='/proc/net/tcp, /proc/net/tcp6'))
        for entry in p['host_logs']:
            items.append(dict(kind='host_log', what='lines of %s matching %s' % (entry['path'], entry['pattern']),
                              source=entry['path']))
        for item in items:
            item['bounds'] = self.bounds()
        return items

    # -------------------------------------------------------------- items
    def deadline(self):
        return time.monotonic() + self.p['item_timeout']

    def window(self):
        return dict(since=_evidence.iso(self.since), until=_evidence.iso(self.until))

    def client(self):
        if self._client is None:
            self._client = PgClient(self.module)
        return self._client

    def _item(self, capture, kind, what, source, file_name, writer_fn, **entry):
        """Run ``writer_fn(writer, entry)`` into a new file; the manifest entry keeps any error of it."""
        started = _evidence.iso()
        name, handle = capture.open_item(file_name)
        writer = _evidence.BoundedWriter(handle, self.p['max_bytes'], self.deadline())
        entry = dict(entry, kind=kind, what=what, source=source, started=started)
        entry.setdefault('window', self.window())
        entry.setdefault('bounds', self.bounds())
        error = None
        try:
            writer_fn(writer, entry)
        except _evidence.BoundReached:
            pass
        except (BackendError, _evidence.EvidenceError, OSError, ValueError) as exc:
            error = to_native(exc)
        except Exception as exc:  # pylint: disable=broad-except
            if HAS_PSYCOPG2 and isinstance(exc, psycopg2.Error):
                error = ' '.join(to_native(exc).split())
            else:
                raise
        finally:
            handle.close()
        entry['truncated'] = bool(entry.get('truncated') or writer.full)
        if writer.timed_out:
            entry['timed_out'] = True
        entry['finished'] = _evidence.iso()
        if error:
            entry['error'] = redact(error)[:500]
            self.errors.append('%s: %s' % (what, entry['error']))
        preview = entry.pop('_preview', None)
        added = capture.add(entry, name)
        if preview is not None:
            self.previews[id(added)] = preview
        return added

    def container_logs(self, capture, service):
        def write(writer, entry):
            # pylint: disable=import-outside-toplevel
            from ansible_collections.incident.response.plugins.module_utils._compose import ComposeBackend
            backend = ComposeBackend(_ComposeModule(self.module, self.p['compose_project']))
            containers = backend._require(service)  # pylint: disable=protected-access
            entry['containers'] = [c.name for c in containers]
            if not containers:
                raise BackendError('service %s has no container' % service)
            for container in containers:
                writer.write(('==> container %s (%s) <==\n' % (container.name, container.id[:12])).encode())
                stream = container.logs(stdout=True, stderr=True, timestamps=True, stream=True, follow=False,
                                        since=self.since.replace(tzinfo=None), until=self.until.replace(tzinfo=None))
                try:
                    for chunk in stream:
                        writer.write(chunk)
                finally:
                    close = getattr(stream, 'close', None)
                    if close:
                        close()
        cmd = 'docker logs --timestamps --since %s --until %s <each container of service %s>' % (
            _evidence.iso(self.since), _evidence.iso(self.until), service)
        return self._item(capture, 'container_logs', 'logs of service %s' % service,
                          'compose project %s on %s' % (self.p['compose_project'], self.p['docker_host']),
                          'container-%s.log' % service, write, command=cmd)

    def pg_bindir(self):
        if self.p['pg_bindir']:
            return self.p['pg_bindir']
        major = self.client().server_version // 10000
        candidate = '/usr/lib/postgresql/%d/bin' % major
        if os.path.isfile(os.path.join(candidate, 'pg_dump')):
            return candidate
        found = shutil.which('pg_dump')
        return os.path.dirname(found) if found else None

    def pg_dump(self, capture, database):
        p = self.p
        entry_cmd = []

        def write(writer, entry):
            bindir = self.pg_bindir()
            if not bindir or not os.path.isfile(os.path.join(bindir, 'pg_dump')):
                raise _evidence.EvidenceError('pg_dump not found (pg_bindir %s)' % (bindir or 'not given, none on PATH'))
            cmd = [os.path.join(bindir, 'pg_dump'), '--format=custom', '--no-password',
                   '--port=%s' % p['login_port'], '--username=%s' % p['login_user'], '--dbname=%s' % database]
            host = p['login_unix_socket'] or p['login_host']
            if host:
                cmd.insert(3, '--host=%s' % host)
            entry_cmd[:] = cmd
            entry['command'] = cmd
            env = dict(os.environ, PGCONNECT_TIMEOUT=str(p['connect_timeout'] or 10), PGSSLMODE=p['ssl_mode'],
                       PGAPPNAME='incident.response evidence')
            env.pop('PGPASSWORD', None)
            if p['login_password'] is not None:
                env['PGPASSWORD'] = p['login_password']  # the environment, never argv
            proc = _evidence.start_process(cmd, env=env)
            stopped = None
            try:
                while True:
                    if time.monotonic() > writer.deadline:
                        stopped = 'timeout'
                        writer.timed_out = True
                        break
                    ready, _w, _x = select.select([proc.stdout], [], [], 1.0)
                    if not ready:
                        continue
                    chunk = os.read(proc.stdout.fileno(), 1024 * 1024)
                    if not chunk:
                        break
                    try:
                        writer.write(chunk)
                    except _evidence.BoundReached:
                        stopped = 'size'
                        break
            finally:
                if stopped:
                    _kill_group(proc)
                try:
                    proc.wait(timeout=max(writer.deadline - time.monotonic(), 5))
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    stopped = stopped or 'timeout'
                stderr = proc.stderr.read().decode('utf-8', 'replace')
                proc.stdout.close()
                proc.stderr.close()
            entry['rc'] = proc.returncode
            entry['restorable'] = not stopped and proc.returncode == 0
            if stopped:
                entry['truncated'] = True
                entry['note'] = 'pg_dump stopped at the %s bound: the dump is incomplete' % stopped
            elif proc.returncode != 0:
                raise _evidence.EvidenceError('pg_dump exited with %s: %s' % (proc.returncode, ' '.join(stderr.split())[:300]))
        return self._item(capture, 'pg_dump', 'pg_dump -Fc of database %s' % database,
                          'PostgreSQL at %s' % describe_target(dict(p, login_db=database)),
                          'pg_dump-%s.dump' % database, write, command=entry_cmd, window=None)

    def table_rows(self, capture, table):
        p = self.p
        parts = _table_parts(self.module, table['name'])

        def write(writer, entry):
            settings = connection_settings(self.module)
            settings['session'] = dict(settings['session'], statement_timeout='%ds' % p['item_timeout'])
            conn = open_connection(settings)
            try:
                cursor = conn.cursor()
                ident = psycopg2.sql.Identifier(*parts)
                column = psycopg2.sql.Identifier(table['time_column'])
                select = psycopg2.sql.SQL(
                    'SELECT * FROM {table} WHERE {column} >= %s AND {column} <= %s ORDER BY {column} DESC LIMIT %s'
                ).format(table=ident, column=column)
                query = cursor.mogrify(select.as_string(conn), (self.since, self.until, table['max_rows']))
                query = to_native(query)
                entry['query'] = 'COPY (%s) TO STDOUT WITH (FORMAT csv, HEADER)' % query
                cursor.copy_expert(entry['query'], writer)
                cursor.execute(select.as_string(conn), (self.since, self.until, p['preview_rows']))
                names = [d[0] for d in cursor.description]
                rows = [dict(zip(names, [to_native(v) if v is not None else None for v in row]))
                        for row in cursor.fetchall()]
                cursor.execute(psycopg2.sql.SQL(
                    'SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {column} >= %s AND {column} <= %s LIMIT %s) t'
                ).format(table=ident, column=column).as_string(conn), (self.since, self.until, table['max_rows']))
                entry['rows'] = cursor.fetchone()[0]
                entry['_preview'] = rows
            finally:
                conn.close()
        what = 'rows of %s by %s in the window' % (table['name'], table['time_column'])
        return self._item(capture, 'table_rows', what,
                          'PostgreSQL at %s' % describe_target(p), 'table-%s.csv' % table['name'], write,
                          bounds=self.bounds(max_rows=table['max_rows']))

    def pg_log(self, capture):
        def write(writer, entry):
            found = _evidence.pg_server_log(self.client(), self.since, self.until, self.p['max_bytes'],
                                            self.p['pg_log_path'])
            entry['source'] = found['source'] or entry['source']
            if found['query']:
                entry['query'] = found['query']
            entry['lines'] = len(found['lines'])
            entry['truncated'] = found['truncated']
            if found['error']:
                raise _evidence.EvidenceError(found['error'])
            for line in found['lines']:
                writer.write(line + '\n')
        return self._item(capture, 'pg_log', 'PostgreSQL server log lines in the window',
                          'pg_read_file(pg_current_logfile()) or %s' % (self.p['pg_log_path'] or '(no path)'),
                          'postgresql-log.txt', write)

    def sockets(self, capture):
        def write(writer, entry):
            rows = [row for row in _evidence.read_sockets() if row['state'] in ('LISTEN', 'ESTABLISHED')]
            entry['listening'] = sum(1 for row in rows if row['state'] == 'LISTEN')
            entry['established'] = sum(1 for row in rows if row['state'] == 'ESTABLISHED')
            writer.write('%-5s %-12s %-45s %-45s %-6s %s\n' % ('proto', 'state', 'local', 'remote', 'uid', 'inode'))
            for row in sorted(rows, key=lambda r: (r['state'], r['local_port'], r['remote'], r['remote_port'])):
                writer.write('%-5s %-12s %-45s %-45s %-6s %s\n' % (
                    row['proto'], row['state'], '%s:%s' % (row['local'], row['local_port']),
                    '%s:%s' % (row['remote'], row['remote_port']), row['uid'], row['inode']))
        return self._item(capture, 'sockets', 'listening and established TCP sockets',
                          '/proc/net/tcp, /proc/net/tcp6', 'sockets.txt', write, command='read /proc/net/tcp*',
                          window=dict(at=_evidence.iso()))

    def host_log(self, capture, entry_in, pattern):
        def write(writer, entry):
            data, size, truncated = _evidence.read_tail(entry_in['path'], self.p['max_bytes'])
            entry['file_size'] = size
            entry['truncated'] = truncated
            lines = data.decode('utf-8', 'replace').splitlines()
            matched = []
            for line in _evidence.lines_in_window(lines, self.since, self.until, pattern=pattern):
                writer.write(line + '\n')
                matched.append(line)
            entry['lines'] = len(matched)
            entry['_preview'] = [redact(line) for line in matched[:self.p['preview_rows']]]
        return self._item(capture, 'host_log', 'lines of %s matching %s' % (entry_in['path'], entry_in['pattern']),
                          entry_in['path'], 'hostlog-%s.txt' % os.path.basename(entry_in['path']), write,
                          pattern=entry_in['pattern'])

    def reread_preview(self, capture_dir, item):
        """The redacted preview of a table or host log item of an existing capture, read back from its file."""
        if item.get('kind') not in ('table_rows', 'host_log') or not item.get('file'):
            return item
        limit = self.p['preview_rows']
        try:
            with open(os.path.join(capture_dir, item['file']), newline='', encoding='utf-8', errors='replace') as handle:
                if item['kind'] == 'table_rows':
                    rows = []
                    for row in csv.DictReader(handle):
                        if len(rows) >= limit:
                            break
                        rows.append(row)
                else:
                    rows = [redact(line.rstrip('\n')) for line, _n in zip(handle, range(limit))]
        except (OSError, csv.Error):
            return item
        item['preview'] = _incident.redact_value(rows, self.module.no_log_values)
        return item

    # -------------------------------------------------------------- run
    def run(self):
        module, p = self.module, self.p
        self.validate()
        try:
            store = _incident.get_store(p, secrets=module.no_log_values)
            evidence_dir = p['evidence_dir'] or store.evidence_dir(p['incident_id'])
        except _incident.IncidentError as exc:
            module.fail_json(msg=str(exc))
        planned = self.planned_items()
        existing = [c for c in _evidence.list_captures(evidence_dir) if c[1] == p['label']]
        if p['once'] and existing:
            path = existing[-1][2]
            try:
                manifest = _evidence.read_manifest(path)
            except _evidence.EvidenceError as exc:
                module.fail_json(msg=str(exc))
            manifest_path = os.path.join(path, _evidence.MANIFEST)
            items = [self.reread_preview(path, dict(item)) for item in manifest.get('items', [])]
            module.exit_json(**remediation_result(
                False, [], 'capture %s exists already (once=true): nothing captured' % os.path.basename(path),
                capture_dir=path, manifest=manifest_path, manifest_sha256=_evidence.sha256_file(manifest_path),
                checksums=os.path.join(path, _evidence.CHECKSUMS), items=items, errors=[]))
        if module.check_mode:
            actions = [make_action('capture', item['what'], dict(kind=item['kind'], source=item['source'],
                                                                 bounds=item['bounds'])) for item in planned]
            module.exit_json(**remediation_result(
                True, actions, 'would capture %d item(s) into %s/NNN-%s' % (len(planned), evidence_dir, p['label']),
                check_mode=True, capture_dir=None, manifest=None, manifest_sha256=None, checksums=None, items=[],
                planned=planned, errors=[]))
        if p['record_event']:
            try:
                if store.get(p['incident_id']) is None:
                    module.fail_json(msg='incident %s does not exist in %s: open it first (or record_event=false); '
                                     'nothing was captured' % (p['incident_id'], store.describe()))
            except _incident.IncidentError as exc:
                module.fail_json(msg=str(exc))
        try:
            capture = _evidence.Capture(evidence_dir, p['label'], meta=dict(
                incident_id=p['incident_id'], actor=_incident.default_actor(), window=self.window(),
                host=os.uname()[1], tool='incident.response.evidence_capture'))
        except _evidence.EvidenceError as exc:
            module.fail_json(msg=str(exc))
        self.previews = {}
        items = []
        try:
            for service in p['container_logs']:
                items.append(self.container_logs(capture, service))
            for database in p['databases']:
                items.append(self.pg_dump(capture, database))
            for table in p['tables']:
                items.append(self.table_rows(capture, table))
            if p['pg_log']:
                items.append(self.pg_log(capture))
            if p['sockets']:
                items.append(self.sockets(capture))
            for entry, pattern in zip(p['host_logs'], self.patterns):
                items.append(self.host_log(capture, entry, pattern))
            manifest, digest = capture.finish()
        except _evidence.EvidenceError as exc:
            module.fail_json(msg='%s (the capture so far is in %s)' % (exc, capture.path))
        finally:
            if self._client is not None:
                self._client.close()
        manifest_path = os.path.join(capture.path, _evidence.MANIFEST)
        event = None
        if p['record_event']:
            try:
                event = store.append_event(p['incident_id'], dict(
                    type='note', key='evidence:%s:%s' % (capture.name, digest), actor='incident.response.evidence_capture',
                    message='evidence %s captured: %d item(s), manifest sha256 %s' % (capture.name, len(items), digest),
                    evidence=dict(capture=capture.name, directory=capture.path, manifest=manifest_path,
                                  manifest_sha256=digest, items=len(items), errors=len(self.errors))))
            except _incident.IncidentError as exc:
                module.fail_json(msg='the evidence is in %s but recording it failed: %s' % (capture.path, exc))
            finally:
                store.close()
        shown = []
        for item in items:
            view = _incident.redact_value(dict(item), module.no_log_values)
            if id(item) in self.previews:
                view['preview'] = _incident.redact_value(self.previews[id(item)], module.no_log_values)
            shown.append(view)
        actions = [make_action('capture', item['what'], dict(file=item['file'], size=item['size'],
                                                             sha256=item['sha256'], truncated=item['truncated']),
                               done=True, error=item.get('error')) for item in items]
        summary = 'captured %d item(s) into %s (manifest sha256 %s)%s' % (
            len(items), capture.path, digest, ('; %d could not be captured' % len(self.errors)) if self.errors else '')
        module.exit_json(**remediation_result(
            True, actions, summary, capture_dir=capture.path, manifest=manifest_path, manifest_sha256=digest,
            checksums=os.path.join(capture.path, _evidence.CHECKSUMS), items=shown, errors=self.errors, event=event,
            incident_id=p['incident_id']))


def main():
    module = new_module(AnsibleModule, argument_spec(), supports_check_mode=True)
    if (module.params['tables'] or module.params['databases'] or module.params['pg_log']) and not HAS_PSYCOPG2:
        from ansible.module_utils.basic import missing_required_lib  # pylint: disable=import-outside-toplevel
        module.fail_json(msg=missing_required_lib('psycopg2') + ' (on the host that runs the module)',
                         exception=PSYCOPG2_IMPORT_ERROR)
    Capturer(module).run()


if __name__ == '__main__':
    main()
