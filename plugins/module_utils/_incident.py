# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The incident record: shape, ids, validation, the one severity mapping, and its two stores.

Private to the collection; the interface every part of the incident record codes against is
documented in docs/incident-record.md (keep both in step).

* ``FileStore``: a directory on the controller, one ``<id>.json`` per incident (written atomically)
  and one append-only ``<id>.events.jsonl`` event log, mode 0600 in a 0700 directory.
* ``PgStore``: tables in a schema of a PostgreSQL database, created and migrated by the collection.

Both redact what they write (``redact_value``) and never raise anything but ``IncidentError``
for what an operator can cause (bad ids, unreachable store, conflicting writes).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import errno
import json
import os
import re
import socket
import tempfile
import time

try:
    import fcntl
    HAS_FCNTL = True
except ImportError:  # not on POSIX: the files store says so
    fcntl = None
    HAS_FCNTL = False

try:
    import getpass
except ImportError:  # pragma: no cover
    getpass = None

from ansible.module_utils.basic import env_fallback

from ansible_collections.incident.response.plugins.module_utils._common import redact
# the severity mapping, the id rule and the error live in _incident_core (small, for the pg_tviews modules)
from ansible_collections.incident.response.plugins.module_utils._incident_core import (  # noqa: F401 pylint: disable=unused-import
    ID_RE,
    SEVERITIES,
    SEVERITY,
    IncidentError,
    validate_incident_id,
)

# psycopg2 is imported by the PostgreSQL store when it is first used: the files store (and the timeline callback,
# and every module start of the incident modules on it) never pays for the import.
psycopg2 = None
pgsql = None
HAS_PSYCOPG2 = None  # not tried yet


def _load_psycopg2():
    """Import psycopg2 once; True when it is there."""
    global psycopg2, pgsql, HAS_PSYCOPG2  # pylint: disable=global-statement
    if HAS_PSYCOPG2 is None:
        try:
            import psycopg2  # pylint: disable=redefined-outer-name,import-outside-toplevel
            import psycopg2.extensions  # pylint: disable=import-outside-toplevel
            import psycopg2.extras  # pylint: disable=import-outside-toplevel
            from psycopg2 import sql as pgsql  # pylint: disable=import-outside-toplevel
            HAS_PSYCOPG2 = True
        except ImportError:
            HAS_PSYCOPG2 = False
    return HAS_PSYCOPG2


DEFAULT_STORE_PATH = '/var/tmp/incident-response/incidents'
DEFAULT_SCHEMA = 'incident_response'
DEFAULT_STORE_TIMEOUT = 10

ID_PREFIX = 'INC'
GENERATED_ID_RE = re.compile(r'^INC-(\d{4}-\d{2}-\d{2})-(\d{3,})$')
SCHEMA_RE = re.compile(r'^[a-z_][a-z0-9_]{0,62}$')

STATUSES = ('investigating', 'identified', 'mitigating', 'monitoring', 'resolved', 'closed')
OPEN_STATUSES = ('investigating', 'identified', 'mitigating', 'monitoring')
CLOSED_STATUSES = ('resolved', 'closed')
TIME_FIELDS = ('started', 'detected', 'acknowledged', 'mitigated', 'resolved', 'closed')
# Which times a status sets when the record reaches it (only those still null). Reaching a later
# status implies the earlier milestones: resolving an incident nobody acknowledged acknowledges it.
STATUS_TIMES = {
    'investigating': (),
    'identified': ('acknowledged',),
    'mitigating': ('acknowledged',),
    'monitoring': ('acknowledged', 'mitigated'),
    'resolved': ('acknowledged', 'mitigated', 'resolved'),
    'closed': ('acknowledged', 'mitigated', 'resolved', 'closed'),
}
SYSTEMS = ('pg_tviews', 'task_scheduler', 'insights', 'schedule_generator')
EVENT_TYPES = ('opened', 'joined', 'updated', 'status', 'severity', 'note', 'task', 'play_start', 'play_end',
               'stats', 'notification', 'escalation', 'check', 'closed')
# Fields an operator (the incident module's `fields`) may set directly.
EDITABLE_FIELDS = ('title', 'system', 'runbook', 'commander', 'responders', 'impact', 'root_cause', 'summary',
                   'workaround', 'eta', 'bridge', 'contributing_factors', 'lessons_learned', 'action_items',
                   'services_affected', 'updates_sent', 'escalation_level', 'evidence_dir', 'labels')
RECORD_KEYS = ('id', 'revision', 'title', 'system', 'runbook', 'alert', 'severity', 'priority',
               'severity_confirmed_by', 'status', 'commander', 'responders', 'impact', 'root_cause', 'summary',
               'created_by', 'times', 'updates_sent', 'escalation_level', 'evidence_dir', 'created', 'updated')

MASK = '********'
SECRET_KEY_RE = re.compile(r'(passw|secret|token|api_?key|webhook_url|routing_key|integration_key|authorization|'
                           r'credential|private_key|dsn|cookie|session_key)', re.IGNORECASE)

# ---------------------------------------------------------------------------------------------------------
# Severity: the one mapping is SEVERITY (in _incident_core; docs/incident-record.md has the same table, for people)
# ---------------------------------------------------------------------------------------------------------

# The P scale of each runbook: which P number is SEV1. The canonical scale is the task scheduler's.
PRIORITY_SCALES = dict(task_scheduler=0, canonical=0, pg_tviews=0, schedule_generator=1, insights=1)
SCALE_LEVELS = dict(task_scheduler=4, canonical=4, pg_tviews=4, schedule_generator=4, insights=3)
SEVERITY_NAMES = dict(critical='SEV1', high='SEV2', medium='SEV3', low='SEV4')
_SEV_RE = re.compile(r'^\s*sev(?:erity)?\s*[-_ ]?\s*([1-4])\s*$', re.IGNORECASE)
_P_RE = re.compile(r'^\s*p\s*[-_ ]?\s*([0-9])\s*$', re.IGNORECASE)


class ConflictError(IncidentError):
    """``update(expected_revision=...)`` found another revision: re-read and try again."""


def _scale_name(scale):
    if scale in (None, '', 'canonical'):
        return 'canonical'
    if scale not in PRIORITY_SCALES:
        raise IncidentError('unknown severity scale %r; use one of: %s'
                            % (scale, ', '.join(sorted(PRIORITY_SCALES))))
    return scale


def normalize_severity(value, scale=None):
    """Return ``SEV1``..``SEV4`` for any runbook's name of a level, or raise IncidentError.

    Accepts ``SEV1``, ``SEV 1``, ``SEV-1``, ``sev_1``, ``1`` (int or digit), ``critical``/``high``/``medium``/
    ``low``, and ``P0``..``P4``: a P value is read on the scale of ``scale`` (a runbook name:
    ``schedule_generator`` and ``insights`` number from P1 = SEV1, ``task_scheduler``, ``pg_tviews`` and the
    canonical scale from P0 = SEV1).
    """
    if value is None or isinstance(value, bool):
        raise IncidentError('severity %r is not a severity; use SEV1..SEV4 or P0..P3 (see docs/incident-record.md)'
                            % (value,))
    scale = _scale_name(scale)
    if isinstance(value, int):
        text = str(value)
    else:
        text = str(value).strip()
    if text.isdigit() and 1 <= int(text) <= 4:
        return 'SEV%d' % int(text)
    match = _SEV_RE.match(text)
    if match:
        return 'SEV' + match.group(1)
    if text.lower() in SEVERITY_NAMES:
        return SEVERITY_NAMES[text.lower()]
    match = _P_RE.match(text)
    if match:
        first = PRIORITY_SCALES[scale]
        level = int(match.group(1)) - first + 1
        if 1 <= level <= SCALE_LEVELS[scale]:
            return 'SEV%d' % level
        raise IncidentError('priority %s is not on the %s scale (P%d..P%d)%s'
                            % (text, scale, first, first + SCALE_LEVELS[scale] - 1,
                               '; P4 is the schedule generator\'s: give scale schedule_generator'
                               if scale == 'canonical' and level == 5 else ''))
    raise IncidentError('unknown severity %r; use SEV1..SEV4 (or SEV 1, SEV-1), P0..P3, or critical/high/medium/low'
                        % (value,))


def priority_for(severity, scale=None):
    """The P value of a severity on ``scale`` (default: the canonical P0..P3 of the task scheduler)."""
    sev = normalize_severity(severity)
    scale = _scale_name(scale)
    level = int(sev[3:])
    if level > SCALE_LEVELS[scale]:
        return None
    return 'P%d' % (level - 1 + PRIORITY_SCALES[scale])


def severity_policy(severity, system=None):
    """One level's values for one runbook (``system``), the canonical values filling what it leaves out.

    Returns a dict: severity, priority (canonical), label, response_minutes, resolution_minutes, update_minutes,
    audience, escalation (list of rules), runbook (the system, or None).
    """
    sev = normalize_severity(severity)
    level = SEVERITY[sev]
    policy = dict(severity=sev, priority=level['priority'], label=sev, runbook=None, escalation=[],
                  response_minutes=level['response_minutes'], resolution_minutes=level['resolution_minutes'],
                  update_minutes=level['update_minutes'], audience=level['audience'], name=level['name'])
    own = level['runbooks'].get(system) if system else None
    if own:
        policy['runbook'] = system
        for key, value in own.items():
            if key == 'priority':
                policy['runbook_priority'] = value
            elif value is not None:
                policy[key] = copy.deepcopy(value)
    return policy


# ---------------------------------------------------------------------------------------------------------
# Ids, times, redaction
# ---------------------------------------------------------------------------------------------------------

def format_id(day, number):
    return '%s-%s-%03d' % (ID_PREFIX, day, number)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment=None):
    """ISO 8601 UTC with milliseconds and 'Z': 2026-12-01T20:01:02.123Z."""
    moment = moment or utc_now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (moment.microsecond // 1000)


def parse_time(value, name='time'):
    """A datetime (UTC) from an ISO 8601 string (a trailing Z allowed) or a datetime; None stays None."""
    if value is None or value == '':
        return None
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        text = str(value).strip()
        if text.endswith('Z') or text.endswith('z'):
            text = text[:-1] + '+00:00'
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise IncidentError('%s: %r is not an ISO 8601 time such as 2026-12-01T20:01:02Z' % (name, value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def normalize_time(value, name='time'):
    """The stored form of a time: ISO 8601 UTC with 'Z', or None."""
    moment = parse_time(value, name)
    return iso(moment) if moment else None


def today(moment=None):
    return (moment or utc_now()).astimezone(datetime.timezone.utc).strftime('%Y-%m-%d')


def _validate_day(day):
    if day is None:
        return today()
    if isinstance(day, (datetime.date, datetime.datetime)):
        return day.strftime('%Y-%m-%d')
    if not re.match(r'^\d{4}-\d{2}-\d{2}$', str(day)):
        raise IncidentError('day must be YYYY-MM-DD, got %r' % (day,))
    return str(day)


_URL_SECRET_PATTERNS = (
    # incoming-webhook URLs carry their secret in the path: Slack's /services/T../B../<secret>, hooks.* hosts
    (re.compile(r'(https?://hooks\.[^/\s]+/)[^\s"\'<>]+', re.IGNORECASE), r'\1' + MASK),
    (re.compile(r'(/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/)[A-Za-z0-9]+'), r'\1' + MASK),
)


def _secret_values(value, key=None, found=None):
    """The values stored under secret-looking keys anywhere in ``value`` (masked wherever else they appear)."""
    found = [] if found is None else found
    if isinstance(value, dict):
        for k, v in value.items():
            _secret_values(v, k, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _secret_values(v, key, found)
    elif isinstance(value, str) and key is not None and isinstance(key, str) and SECRET_KEY_RE.search(key):
        if len(value) >= 3:
            found.append(value)
    return found


def _redact(value, secrets, key=None):
    if key is not None and isinstance(key, str) and SECRET_KEY_RE.search(key) and value not in (None, '', [], {}):
        if not isinstance(value, (dict, list, tuple)):
            return MASK
    if isinstance(value, dict):
        return dict((k, _redact(v, secrets, key=k)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_redact(v, secrets, key=key) for v in value]
    if isinstance(value, str):
        text = value
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = redact(text)
        for pattern, replacement in _URL_SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text
    return value


def redact_value(value, secrets=()):
    """A copy of ``value`` safe to store: secret-looking keys masked, every string redacted.

    ``secrets``: literal values (for example a module's ``no_log_values``) replaced wherever they appear; the
    values found under secret-looking keys (password, token, webhook_url, ...) are also masked wherever else
    they appear in ``value``. Strings also go through the collection's ``redact()`` (``password=...``,
    ``PASSWORD '...'``, ``user:pw@`` in URLs) and webhook URLs (``https://hooks.<host>/...``,
    ``/services/T../B../<secret>``) lose their secret path.
    """
    literal = [s for s in (secrets or ()) if isinstance(s, str) and len(s) >= 3]
    literal.extend(_secret_values(value))
    literal = sorted(set(literal), key=len, reverse=True)
    return _redact(value, literal)


def default_actor():
    """Who opens or changes an incident when nobody says: the AWX job, else user@host."""
    job = os.environ.get('JOB_ID') or os.environ.get('AWX_JOB_ID') or os.environ.get('TOWER_JOB_ID')
    if job:
        return 'awx-job-%s' % job
    user = None
    if getpass is not None:
        try:
            user = getpass.getuser()
        except Exception:  # pylint: disable=broad-except
            user = None
    return '%s@%s' % (user or 'unknown', socket.gethostname())


def new_record(incident_id=None, **fields):
    """A complete record with every key of the contract, defaults filled (not yet stored)."""
    record = dict(
        id=incident_id, revision=0, title=None, system=None, runbook=None, alert=None, severity=None,
        priority=None, severity_confirmed_by=None, status='investigating', commander=None, responders=[],
        impact=None, root_cause=None, summary=None, created_by=None,
        times=dict((name, None) for name in TIME_FIELDS), updates_sent=0, escalation_level=0,
        evidence_dir=None, created=None, updated=None,
    )
    times = fields.pop('times', None) or {}
    record.update(fields)
    for name, value in times.items():
        record['times'][name] = value
    return record


def merge_changes(record, changes):
    """The record after ``changes`` (top-level keys; ``times``, ``alert`` and ``labels`` merged one level)."""
    result = copy.deepcopy(record)
    for name, value in (changes or {}).items():
        if name in ('id', 'revision', 'created'):
            continue
        if name in ('times', 'labels') and isinstance(value, dict) and isinstance(result.get(name), dict):
            merged = dict(result[name])
            merged.update(value)
            result[name] = merged
        else:
            result[name] = copy.deepcopy(value)
    return result


def record_differs(record, changes):
    """True when applying ``changes`` would change the record (ignores updated/revision)."""
    after = merge_changes(record, changes)
    strip = ('updated', 'revision')
    return dict((k, v) for k, v in after.items() if k not in strip) != \
        dict((k, v) for k, v in record.items() if k not in strip)


def _fingerprint(record):
    alert = record.get('alert') or {}
    return alert.get('fingerprint') if isinstance(alert, dict) else None


def _matches(record, filters):
    """Whether a record passes ``list()`` filters (status, severity, system, since, until, fingerprint, open)."""
    filters = filters or {}

    def wanted(name):
        value = filters.get(name)
        if value in (None, '', []):
            return None
        return value if isinstance(value, (list, tuple)) else [value]

    for name in ('status', 'severity', 'system'):
        allowed = wanted(name)
        if allowed is not None and record.get(name) not in allowed:
            return False
    if filters.get('open') is True and record.get('status') not in OPEN_STATUSES:
        return False
    if filters.get('open') is False and record.get('status') in OPEN_STATUSES:
        return False
    if filters.get('fingerprint') and _fingerprint(record) != filters['fingerprint']:
        return False
    moment = parse_time((record.get('times') or {}).get('detected') or record.get('created'))
    since = parse_time(filters.get('since'), 'since')
    until = parse_time(filters.get('until'), 'until')
    if since and (moment is None or moment < since):
        return False
    if until and (moment is None or moment >= until):
        return False
    return True


def _to_json(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=False, default=str)


# ---------------------------------------------------------------------------------------------------------
# The store interface
# ---------------------------------------------------------------------------------------------------------

class Store(object):
    """What both stores do; see docs/incident-record.md. Every method raises only IncidentError."""

    kind = None

    def __init__(self, secrets=(), timeout=DEFAULT_STORE_TIMEOUT):
        self.secrets = tuple(s for s in (secrets or ()) if s)
        self.timeout = timeout

    def describe(self):
        raise NotImplementedError

    def _clean_record(self, record):
        clean = redact_value(record, self.secrets)
        clean['id'] = record.get('id')
        return clean

    def _clean_event(self, event):
        event = dict(event or {})
        if event.get('type') not in EVENT_TYPES:
            raise IncidentError('event type %r is not one of: %s' % (event.get('type'), ', '.join(EVENT_TYPES)))
        event.pop('seq', None)
        event.setdefault('time', iso())
        event.setdefault('key', None)
        return redact_value(event, self.secrets)

    def _prepare_new(self, record):
        fields = copy.deepcopy(dict(record or {}))
        record = new_record(fields.pop('id', None), **fields)
        if record.get('id') is not None:
            validate_incident_id(record['id'])
        now = iso()
        record['revision'] = 1
        record['created'] = record.get('created') or now
        record['updated'] = now
        record['times'] = dict(record.get('times') or {})
        for name in TIME_FIELDS:
            record['times'].setdefault(name, None)
        record['times']['detected'] = record['times'].get('detected') or now
        return record

    def open_or_join(self, record):
        """Create ``record``, or return the incident it joins: ``(record, created)``.

        Joins, in one atomic step (under the store's lock): the incident with the record's ``id`` when one is
        given and exists; otherwise the open incident with the same ``alert.fingerprint``. Otherwise creates it
        (allocating the next id of the day when ``id`` is None).
        """
        raise NotImplementedError

    def next_id(self, day=None):
        """The id the next ``create`` without an id would get (a preview: nothing is reserved)."""
        return self.allocate_id(day)

    def append_events(self, incident_id, events):
        """Append events in order; returns them with their ``seq`` (the stores do it in one write)."""
        return [self.append_event(incident_id, event) for event in events]

    def has_event(self, incident_id, key):
        if not key:
            return False
        return any(event.get('key') == key for event in self.events(incident_id))

    def close(self):
        """Release connections (PgStore); the files store holds none."""


# ---------------------------------------------------------------------------------------------------------
# Files store
# ---------------------------------------------------------------------------------------------------------

class _FileLock(object):
    """An exclusive ``flock`` with a timeout (polls; never blocks forever). Dies with its holder."""

    def __init__(self, path, timeout, what):
        self.path = path
        self.timeout = timeout
        self.what = what
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise IncidentError('cannot open the lock file %s: %s' % (self.path, exc.strerror))
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(self.fd)
                    raise IncidentError('cannot lock %s: %s' % (self.path, exc.strerror))
            if time.monotonic() >= deadline:
                os.close(self.fd)
                self.fd = None
                raise IncidentError('timed out after %ss waiting for the lock on %s (%s)'
                                    % (self.timeout, self.path, self.what))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def __exit__(self, *exc):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None
        return False


class FileStore(Store):
    """A directory: ``<id>.json`` (atomic replace) and ``<id>.events.jsonl`` (append-only) per incident."""

    kind = 'files'

    def __init__(self, path=None, secrets=(), timeout=DEFAULT_STORE_TIMEOUT):
        super(FileStore, self).__init__(secrets, timeout)
        if not HAS_FCNTL:
            raise IncidentError('the files incident store needs a POSIX system (fcntl); use store=postgres')
        path = path or DEFAULT_STORE_PATH
        if not os.path.isabs(path):
            path = os.path.abspath(path)
        self.path = path

    def describe(self):
        return 'files store %s' % self.path

    # -- paths -------------------------------------------------------------------------------------------
    def record_path(self, incident_id):
        return os.path.join(self.path, validate_incident_id(incident_id) + '.json')

    def events_path(self, incident_id):
        return os.path.join(self.path, validate_incident_id(incident_id) + '.events.jsonl')

    def evidence_dir(self, incident_id):
        return os.path.join(self.path, validate_incident_id(incident_id), 'evidence')

    def _ensure_dir(self):
        if os.path.isdir(self.path):
            try:
                info = os.stat(self.path)
                if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                    os.chmod(self.path, 0o700)  # the store is private, whoever created the directory
            except OSError:
                pass
            return
        try:
            os.makedirs(self.path, 0o700)
            os.chmod(self.path, 0o700)
        except OSError as exc:
            if not os.path.isdir(self.path):
                raise IncidentError('cannot create the incident store directory %s: %s' % (self.path, exc.strerror))

    def _lock(self, what):
        self._ensure_dir()
        return _FileLock(os.path.join(self.path, '.lock'), self.timeout, what)

    # -- reading -----------------------------------------------------------------------------------------
    def _read_record(self, path):
        try:
            with open(path, 'r') as handle:
                text = handle.read()
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise IncidentError('cannot read %s: %s' % (path, exc.strerror))
        try:
            return json.loads(text)
        except ValueError:
            raise IncidentError('%s is not a valid incident record (not JSON); it was not written by this '
                                'collection or was edited by hand' % path)

    def get(self, incident_id):
        return self._read_record(self.record_path(incident_id))

    def _record_ids(self):
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return []
            raise IncidentError('cannot list the incident store %s: %s' % (self.path, exc.strerror))
        ids = []
        for name in names:
            if name.endswith('.json') and not name.startswith('.'):
                candidate = name[:-len('.json')]
                if ID_RE.match(candidate) and '..' not in candidate:
                    ids.append(candidate)
        return sorted(ids)

    def list(self, filters=None):
        records = []
        for incident_id in self._record_ids():
            record = self.get(incident_id)
            if record is not None and _matches(record, filters):
                records.append(record)
        return records

    def find_open_by_fingerprint(self, fingerprint):
        if not fingerprint:
            return None
        found = self.list(dict(fingerprint=fingerprint, open=True))
        return found[0] if found else None

    def events(self, incident_id):
        path = self.events_path(incident_id)
        try:
            with open(path, 'rb') as handle:
                data = handle.read()
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return []
            raise IncidentError('cannot read %s: %s' % (path, exc.strerror))
        return self._parse_events(data)

    @staticmethod
    def _parse_events(data):
        events = []
        for line in data.split(b'\n'):
            if not line.strip():
                continue
            try:
                event = json.loads(line.decode('utf-8'))
            except (ValueError, UnicodeDecodeError):
                continue  # a line cut short by a killed run: skipped, never fatal
            if isinstance(event, dict):
                events.append(event)
        return events

    # -- ids ---------------------------------------------------------------------------------------------
    def _next_number(self, day):
        highest = 0
        for incident_id in self._record_ids():
            match = GENERATED_ID_RE.match(incident_id)
            if match and match.group(1) == day:
                highest = max(highest, int(match.group(2)))
        return highest + 1

    def allocate_id(self, day=None):
        """The next free id of ``day`` (UTC today by default). Use ``create`` with id None to take it atomically."""
        day = _validate_day(day)
        return format_id(day, self._next_number(day))

    # -- writing -----------------------------------------------------------------------------------------
    def _write_record(self, record):
        path = self.record_path(record['id'])
        data = (json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False, default=str) + '\n').encode('utf-8')
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % record['id'], suffix='.tmp', dir=self.path)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise IncidentError('cannot write %s: %s' % (path, exc.strerror))
        try:
            dir_fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass

    def _create_locked(self, record):
        if record.get('id') is None:
            day = today(parse_time(record['times'].get('detected')))
            record['id'] = format_id(day, self._next_number(day))
        if os.path.exists(self.record_path(record['id'])):
            raise IncidentError('incident %s already exists in %s' % (record['id'], self.describe()))
        if not record.get('evidence_dir'):
            record['evidence_dir'] = self.evidence_dir(record['id'])
        record = self._clean_record(record)
        self._write_record(record)
        return record

    def create(self, record):
        """Store a new record (revision 1); allocates the day's next id when ``record['id']`` is None."""
        record = self._prepare_new(record)
        with self._lock('creating an incident'):
            return self._create_locked(record)

    def open_or_join(self, record):
        record = self._prepare_new(record)
        with self._lock('opening an incident'):
            if record.get('id') is not None:
                existing = self.get(record['id'])
                if existing is not None:
                    return existing, False
            else:
                existing = self.find_open_by_fingerprint(_fingerprint(record))
                if existing is not None:
                    return existing, False
            return self._create_locked(record), True

    def update(self, incident_id, changes, expected_revision=None):
        """Apply ``changes``; returns the new record (revision + 1), or the same one when nothing changes."""
        validate_incident_id(incident_id)
        with self._lock('updating incident %s' % incident_id):
            record = self.get(incident_id)
            if record is None:
                raise IncidentError('incident %s does not exist in %s' % (incident_id, self.describe()))
            if expected_revision is not None and record.get('revision') != expected_revision:
                raise ConflictError('incident %s changed meanwhile (revision %s, expected %s): run again'
                                    % (incident_id, record.get('revision'), expected_revision))
            changes = redact_value(changes or {}, self.secrets)
            if not record_differs(record, changes):
                return record
            after = merge_changes(record, changes)
            after['revision'] = int(record.get('revision') or 0) + 1
            after['updated'] = iso()
            self._write_record(after)
            return after

    def append_event(self, incident_id, event):
        """Append one event under ``flock`` of the log; returns it with its ``seq`` (1, 2, ...)."""
        return self.append_events(incident_id, [event])[0]

    def append_events(self, incident_id, events):
        """Append events in order under ONE ``flock`` of the log (one read, one ``fsync``); returns them with their
        ``seq``. An event whose ``key`` is in the log already (or earlier in ``events``) is not appended: the one
        recorded is returned in its place."""
        events = [self._clean_event(event) for event in events]
        if not events:
            return []
        path = self.events_path(incident_id)
        if not os.path.exists(self.record_path(incident_id)):
            raise IncidentError('incident %s does not exist in %s' % (incident_id, self.describe()))
        self._ensure_dir()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise IncidentError('cannot open %s: %s' % (path, exc.strerror))
        try:
            self._flock(fd, path, incident_id)
            with os.fdopen(os.dup(fd), 'rb') as reader:
                reader.seek(0)
                data = reader.read()
            existing = self._parse_events(data)
            keyed = dict((old['key'], old) for old in existing if old.get('key'))
            seq = max([e.get('seq') or 0 for e in existing]) if existing else 0
            lines = []
            done = []
            for event in events:
                if event.get('key') and event['key'] in keyed:
                    done.append(keyed[event['key']])  # idempotent: an event with this key is in the log already
                    continue
                seq += 1
                event['seq'] = seq
                if event.get('key'):
                    keyed[event['key']] = event
                lines.append(_to_json(event).encode('utf-8') + b'\n')
                done.append(event)
            if not lines:
                return done
            chunk = b''.join(lines)
            if data and not data.endswith(b'\n'):
                chunk = b'\n' + chunk  # isolate a line cut short by a killed run
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            return done
        except OSError as exc:
            raise IncidentError('cannot append to %s: %s' % (path, exc.strerror))
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _flock(self, fd, path, incident_id):
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.monotonic() >= deadline:
                raise IncidentError('timed out after %ss waiting for the lock on %s (appending to the timeline '
                                    'of %s)' % (self.timeout, path, incident_id))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


# ---------------------------------------------------------------------------------------------------------
# Choosing the store
# ---------------------------------------------------------------------------------------------------------

STORE_ENV = dict(store='INCIDENT_STORE', store_path='INCIDENT_STORE_PATH', store_dsn='INCIDENT_STORE_DSN',
                 store_schema='INCIDENT_STORE_SCHEMA', store_timeout='INCIDENT_STORE_TIMEOUT')


def store_argument_spec():
    """The store options of every incident module (doc fragment ``incident.response.incident``)."""
    return dict(
        store=dict(type='str', choices=['files', 'postgres'], default='files',
                   fallback=(env_fallback, [STORE_ENV['store']])),
        store_path=dict(type='path', default=DEFAULT_STORE_PATH, fallback=(env_fallback, [STORE_ENV['store_path']])),
        store_dsn=dict(type='str', no_log=True, fallback=(env_fallback, [STORE_ENV['store_dsn']])),
        store_schema=dict(type='str', default=DEFAULT_SCHEMA, fallback=(env_fallback, [STORE_ENV['store_schema']])),
        store_timeout=dict(type='int', default=DEFAULT_STORE_TIMEOUT,
                           fallback=(env_fallback, [STORE_ENV['store_timeout']])),
    )


def store_params_from_env(params=None):
    """Store options from ``params`` with the environment filling what is missing (for plugins and scripts)."""
    params = dict(params or {})
    defaults = dict(store='files', store_path=DEFAULT_STORE_PATH, store_dsn=None, store_schema=DEFAULT_SCHEMA,
                    store_timeout=DEFAULT_STORE_TIMEOUT)
    for name, env in STORE_ENV.items():
        if params.get(name) is None or (params.get(name) == '' and name != 'store_timeout'):
            params[name] = os.environ.get(env) or defaults[name]
    return params


def get_store(params, secrets=()):
    """The store the options name: FileStore or PgStore. Raises IncidentError with one clear message."""
    params = store_params_from_env(params)
    try:
        timeout = params.get('store_timeout')
        timeout = DEFAULT_STORE_TIMEOUT if timeout in (None, '') else int(timeout)
    except (TypeError, ValueError):
        raise IncidentError('store_timeout must be a number of seconds, got %r' % (params.get('store_timeout'),))
    if timeout < 1:
        raise IncidentError('store_timeout must be at least 1 second, got %s' % timeout)
    kind = params.get('store')
    if kind == 'files':
        return FileStore(params.get('store_path'), secrets=secrets, timeout=timeout)
    if kind == 'postgres':
        return PgStore(params.get('store_dsn'), schema=params.get('store_schema'), secrets=secrets, timeout=timeout)
    raise IncidentError('store must be files or postgres, got %r' % (kind,))


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL store
# ---------------------------------------------------------------------------------------------------------

MIGRATIONS = (
    (1, 'incident, incident_event, incident_day_counter', """
CREATE TABLE {schema}.incident (
    id text PRIMARY KEY,
    revision integer NOT NULL,
    status text NOT NULL,
    severity text,
    system text,
    fingerprint text,
    detected timestamptz,
    record jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_open_fingerprint ON {schema}.incident (fingerprint)
    WHERE status NOT IN ('resolved', 'closed');
CREATE INDEX incident_detected ON {schema}.incident (detected);
CREATE TABLE {schema}.incident_event (
    incident_id text NOT NULL REFERENCES {schema}.incident (id) ON DELETE CASCADE,
    seq integer NOT NULL,
    time timestamptz NOT NULL,
    type text NOT NULL,
    key text,
    event jsonb NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
CREATE UNIQUE INDEX incident_event_key ON {schema}.incident_event (incident_id, key) WHERE key IS NOT NULL;
CREATE TABLE {schema}.incident_day_counter (
    day date PRIMARY KEY,
    last integer NOT NULL
);
"""),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
_LOCK_NAMESPACE = 'incident.response'


class PgStore(Store):
    """Tables ``incident``, ``incident_event``, ``incident_day_counter``, ``schema_version`` in ``schema``.

    Reads never create anything (check mode writes nothing): a database without the schema reads as an empty
    store. The first write creates the schema and applies the migrations, under a transaction-scoped advisory
    lock. Every transaction runs with ``lock_timeout`` = timeout and ``statement_timeout`` = 2 x timeout.
    """

    kind = 'postgres'

    def __init__(self, dsn=None, schema=DEFAULT_SCHEMA, secrets=(), timeout=DEFAULT_STORE_TIMEOUT):
        super(PgStore, self).__init__(secrets, timeout)
        if not _load_psycopg2():
            raise IncidentError('the PostgreSQL incident store needs psycopg2 (or psycopg2-binary) on the host that '
                                'runs the module (the controller with delegate_to: localhost)')
        schema = schema or DEFAULT_SCHEMA
        if not SCHEMA_RE.match(schema):
            raise IncidentError('store_schema %r is not a plain lower-case identifier ([a-z_][a-z0-9_]*)' % (schema,))
        self.schema = schema
        self.dsn = dsn or ''
        self._where = self._describe_dsn(self.dsn)
        self._migrated = False
        try:
            self.conn = psycopg2.connect(self.dsn, connect_timeout=max(int(timeout), 1),
                                         application_name='incident.response store')
        except psycopg2.Error as exc:
            raise IncidentError('cannot connect to the PostgreSQL incident store %s: %s'
                                % (self._where, self._error_text(exc)))
        self.conn.autocommit = False
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, false), "
                            "set_config('statement_timeout', %s, false)",
                            ('%ds' % timeout, '%ds' % (2 * timeout)))
            self.conn.commit()
        except psycopg2.Error as exc:
            self._rollback()
            raise IncidentError('PostgreSQL incident store %s: %s' % (self._where, self._error_text(exc)))

    # -- helpers -----------------------------------------------------------------------------------------
    @staticmethod
    def _describe_dsn(dsn):
        try:
            parts = psycopg2.extensions.parse_dsn(dsn) if dsn else {}
        except psycopg2.Error:
            raise IncidentError('store_dsn is not a valid libpq connection string or URI')
        host = parts.get('host') or os.environ.get('PGHOST') or 'local socket'
        port = parts.get('port') or os.environ.get('PGPORT') or '5432'
        dbname = parts.get('dbname') or os.environ.get('PGDATABASE') or '(default database)'
        user = parts.get('user') or os.environ.get('PGUSER') or '(default user)'
        return '%s:%s as %s (database %s)' % (host, port, user, dbname)

    def _error_text(self, exc):
        text = str(getattr(exc, 'pgerror', None) or exc).strip()
        lines = [line for line in text.splitlines() if line.strip()]
        return redact_value(lines[0] if lines else exc.__class__.__name__, self.secrets)

    def describe(self):
        return 'postgres store %s, schema %s' % (self._where, self.schema)

    def close(self):
        conn = getattr(self, 'conn', None)
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def _rollback(self):
        try:
            self.conn.rollback()
        except psycopg2.Error:
            pass

    def _q(self, text):
        return pgsql.SQL(text).format(schema=pgsql.Identifier(self.schema))

    def _run(self, what, func, write=False):
        """Run ``func(cursor)`` in one transaction; any database error is one IncidentError naming ``what``."""
        try:
            if write:
                self._migrate()
            with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                result = func(cur)
            self.conn.commit()
            return result
        except IncidentError:
            self._rollback()
            raise
        except psycopg2.Error as exc:
            self._rollback()
            code = getattr(exc, 'pgcode', None)
            hint = ''
            if code in ('55P03', '57014'):
                hint = ' (timed out after %ss: store_timeout)' % self.timeout
            raise IncidentError('PostgreSQL incident store %s, %s: %s%s'
                                % (self._where, what, self._error_text(exc), hint))

    def _version(self, cur):
        cur.execute('SELECT pg_catalog.to_regclass(%s) AS t', ('%s.schema_version' % self.schema,))
        if cur.fetchone()['t'] is None:
            return 0
        cur.execute(self._q('SELECT coalesce(max(version), 0) AS v FROM {schema}.schema_version'))
        return cur.fetchone()['v']

    def _readable(self, cur):
        version = self._version(cur)
        if version > SCHEMA_VERSION:
            raise IncidentError('the incident store schema %s is at version %s, newer than this collection knows '
                                '(%s): upgrade the collection' % (self.schema, version, SCHEMA_VERSION))
        return version > 0

    def _migrate(self):
        if self._migrated:
            return
        try:
            with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                lock_name = '%s:migrate:%s' % (_LOCK_NAMESPACE, self.schema)
                cur.execute('SELECT pg_advisory_xact_lock(hashtext(%s))', (lock_name,))
                cur.execute(self._q('CREATE SCHEMA IF NOT EXISTS {schema}'))
                cur.execute(self._q('CREATE TABLE IF NOT EXISTS {schema}.schema_version ('
                                    'version integer PRIMARY KEY, description text NOT NULL, '
                                    'applied timestamptz NOT NULL DEFAULT now())'))
                version = self._version(cur)
                if version > SCHEMA_VERSION:
                    raise IncidentError('the incident store schema %s is at version %s, newer than this collection '
                                        'knows (%s): upgrade the collection' % (self.schema, version, SCHEMA_VERSION))
                for number, description, text in MIGRATIONS:
                    if number > version:
                        cur.execute(self._q(text))
                        cur.execute(self._q('INSERT INTO {schema}.schema_version (version, description) '
                                            'VALUES (%s, %s)'), (number, description))
            self.conn.commit()
        except IncidentError:
            self._rollback()
            raise
        except psycopg2.Error as exc:
            self._rollback()
            raise IncidentError('PostgreSQL incident store %s: cannot create or migrate schema %s: %s'
                                % (self._where, self.schema, self._error_text(exc)))
        self._migrated = True

    # -- reading -----------------------------------------------------------------------------------------
    def get(self, incident_id):
        validate_incident_id(incident_id)

        def read(cur):
            if not self._readable(cur):
                return None
            cur.execute(self._q('SELECT record FROM {schema}.incident WHERE id = %s'), (incident_id,))
            row = cur.fetchone()
            return row['record'] if row else None
        return self._run('reading incident %s' % incident_id, read)

    def list(self, filters=None):
        filters = dict(filters or {})
        clauses, args = [], []
        for name in ('status', 'severity', 'system'):
            value = filters.get(name)
            if value not in (None, '', []):
                clauses.append('%s = ANY(%%s)' % name)
                args.append(list(value) if isinstance(value, (list, tuple)) else [value])
        if filters.get('open') is True:
            clauses.append('status <> ALL(%s)')
            args.append(list(CLOSED_STATUSES))
        elif filters.get('open') is False:
            clauses.append('status = ANY(%s)')
            args.append(list(CLOSED_STATUSES))
        if filters.get('fingerprint'):
            clauses.append('fingerprint = %s')
            args.append(filters['fingerprint'])
        since = parse_time(filters.get('since'), 'since')
        until = parse_time(filters.get('until'), 'until')
        if since:
            clauses.append('detected >= %s')
            args.append(since)
        if until:
            clauses.append('detected < %s')
            args.append(until)
        where = (' WHERE ' + ' AND '.join(clauses)) if clauses else ''

        def read(cur):
            if not self._readable(cur):
                return []
            cur.execute(self._q('SELECT record FROM {schema}.incident' + where + ' ORDER BY id'), args)
            return [row['record'] for row in cur.fetchall()]
        return self._run('listing incidents', read)

    def find_open_by_fingerprint(self, fingerprint):
        if not fingerprint:
            return None
        found = self.list(dict(fingerprint=fingerprint, open=True))
        return found[0] if found else None

    def events(self, incident_id):
        validate_incident_id(incident_id)

        def read(cur):
            if not self._readable(cur):
                return []
            cur.execute(self._q('SELECT seq, event FROM {schema}.incident_event WHERE incident_id = %s ORDER BY seq'),
                        (incident_id,))
            result = []
            for row in cur.fetchall():
                event = row['event']
                event['seq'] = row['seq']
                result.append(event)
            return result
        return self._run('reading the timeline of %s' % incident_id, read)

    def has_event(self, incident_id, key):
        if not key:
            return False
        validate_incident_id(incident_id)

        def read(cur):
            if not self._readable(cur):
                return False
            cur.execute(self._q('SELECT 1 FROM {schema}.incident_event WHERE incident_id = %s AND key = %s'),
                        (incident_id, key))
            return cur.fetchone() is not None
        return self._run('reading the timeline of %s' % incident_id, read)

    # -- ids ---------------------------------------------------------------------------------------------
    def allocate_id(self, day=None):
        day = _validate_day(day)

        def read(cur):
            last = 0
            if self._readable(cur):
                cur.execute(self._q('SELECT last FROM {schema}.incident_day_counter WHERE day = %s'), (day,))
                row = cur.fetchone()
                last = row['last'] if row else 0
                number = last + 1
                while True:
                    cur.execute(self._q('SELECT 1 FROM {schema}.incident WHERE id = %s'), (format_id(day, number),))
                    if cur.fetchone() is None:
                        return format_id(day, number)
                    number += 1
            return format_id(day, last + 1)
        return self._run('allocating an id', read)

    def _take_id(self, cur, day):
        """The day's next number, counted in the same transaction as the insert (rolled back with it)."""
        while True:
            cur.execute(self._q('INSERT INTO {schema}.incident_day_counter AS c (day, last) VALUES (%s, 1) '
                                'ON CONFLICT (day) DO UPDATE SET last = c.last + 1 RETURNING last'), (day,))
            candidate = format_id(day, cur.fetchone()['last'])
            cur.execute(self._q('SELECT 1 FROM {schema}.incident WHERE id = %s'), (candidate,))
            if cur.fetchone() is None:
                return candidate

    # -- writing -----------------------------------------------------------------------------------------
    def _insert(self, cur, record):
        if record.get('id') is None:
            record['id'] = self._take_id(cur, today(parse_time(record['times'].get('detected'))))
        if not record.get('evidence_dir'):
            record['evidence_dir'] = self.evidence_dir(record['id'])
        record = self._clean_record(record)
        cur.execute(self._q('INSERT INTO {schema}.incident (id, revision, status, severity, system, fingerprint, '
                            'detected, record, created, updated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) '
                            'ON CONFLICT (id) DO NOTHING RETURNING id'),
                    (record['id'], record['revision'], record.get('status') or 'investigating', record.get('severity'),
                     record.get('system'), _fingerprint(record), parse_time(record['times'].get('detected')),
                     psycopg2.extras.Json(record), parse_time(record['created']), parse_time(record['updated'])))
        return record if cur.fetchone() else None

    def create(self, record):
        record = self._prepare_new(record)

        def write(cur):
            stored = self._insert(cur, record)
            if stored is None:
                raise IncidentError('incident %s already exists in %s' % (record['id'], self.describe()))
            return stored
        return self._run('creating an incident', write, write=True)

    def open_or_join(self, record):
        record = self._prepare_new(record)
        fingerprint = _fingerprint(record)

        def write(cur):
            if record.get('id') is not None:
                cur.execute('SELECT pg_advisory_xact_lock(hashtext(%s))',
                            ('%s:%s:id:%s' % (_LOCK_NAMESPACE, self.schema, record['id']),))
                cur.execute(self._q('SELECT record FROM {schema}.incident WHERE id = %s'), (record['id'],))
                row = cur.fetchone()
                if row:
                    return row['record'], False
            elif fingerprint:
                cur.execute('SELECT pg_advisory_xact_lock(hashtext(%s))',
                            ('%s:%s:fingerprint:%s' % (_LOCK_NAMESPACE, self.schema, fingerprint),))
                cur.execute(self._q('SELECT record FROM {schema}.incident WHERE fingerprint = %s AND '
                                    'status <> ALL(%s) ORDER BY id LIMIT 1'), (fingerprint, list(CLOSED_STATUSES)))
                row = cur.fetchone()
                if row:
                    return row['record'], False
            stored = self._insert(cur, record)
            if stored is None:
                raise IncidentError('incident %s already exists in %s' % (record['id'], self.describe()))
            return stored, True
        return self._run('opening an incident', write, write=True)

    def update(self, incident_id, changes, expected_revision=None):
        validate_incident_id(incident_id)
        changes = redact_value(changes or {}, self.secrets)

        def write(cur):
            cur.execute(self._q('SELECT record FROM {schema}.incident WHERE id = %s FOR UPDATE'), (incident_id,))
            row = cur.fetchone()
            if row is None:
                raise IncidentError('incident %s does not exist in %s' % (incident_id, self.describe()))
            record = row['record']
            if expected_revision is not None and record.get('revision') != expected_revision:
                raise ConflictError('incident %s changed meanwhile (revision %s, expected %s): run again'
                                    % (incident_id, record.get('revision'), expected_revision))
            if not record_differs(record, changes):
                return record
            after = merge_changes(record, changes)
            after['revision'] = int(record.get('revision') or 0) + 1
            after['updated'] = iso()
            cur.execute(self._q('UPDATE {schema}.incident SET revision = %s, status = %s, severity = %s, system = %s, '
                                'fingerprint = %s, detected = %s, record = %s, updated = %s WHERE id = %s'),
                        (after['revision'], after.get('status') or 'investigating', after.get('severity'),
                         after.get('system'), _fingerprint(after),
                         parse_time((after.get('times') or {}).get('detected')), psycopg2.extras.Json(after),
                         parse_time(after['updated']), incident_id))
            return after
        if not self._exists_schema():
            raise IncidentError('incident %s does not exist in %s' % (incident_id, self.describe()))
        return self._run('updating incident %s' % incident_id, write, write=True)

    def _exists_schema(self):
        return self._run('reading the schema version', self._readable)

    def append_event(self, incident_id, event):
        return self.append_events(incident_id, [event])[0]

    def append_events(self, incident_id, events):
        """Append events in order in one transaction (the incident row locked once)."""
        validate_incident_id(incident_id)
        events = [self._clean_event(event) for event in events]
        if not events:
            return []

        def write(cur):
            cur.execute(self._q('SELECT 1 FROM {schema}.incident WHERE id = %s FOR UPDATE'), (incident_id,))
            if cur.fetchone() is None:
                raise IncidentError('incident %s does not exist in %s' % (incident_id, self.describe()))
            done = []
            for event in events:
                if event.get('key'):
                    cur.execute(self._q('SELECT seq, event FROM {schema}.incident_event WHERE incident_id = %s AND '
                                        'key = %s'), (incident_id, event['key']))
                    row = cur.fetchone()
                    if row:
                        old = row['event']
                        old['seq'] = row['seq']
                        done.append(old)
                        continue
                cur.execute(self._q('SELECT coalesce(max(seq), 0) + 1 AS seq FROM {schema}.incident_event '
                                    'WHERE incident_id = %s'), (incident_id,))
                event['seq'] = cur.fetchone()['seq']
                cur.execute(self._q('INSERT INTO {schema}.incident_event (incident_id, seq, time, type, key, event) '
                                    'VALUES (%s, %s, %s, %s, %s, %s)'),
                            (incident_id, event['seq'], parse_time(event['time'], 'event time'), event['type'],
                             event.get('key'), psycopg2.extras.Json(event)))
                done.append(event)
            return done
        if not self._exists_schema():
            raise IncidentError('incident %s does not exist in %s' % (incident_id, self.describe()))
        return self._run('appending to the timeline of %s' % incident_id, write, write=True)

    def evidence_dir(self, incident_id):
        """Evidence stays on the host that runs the remediation, under the default files store directory."""
        return os.path.join(DEFAULT_STORE_PATH, validate_incident_id(incident_id), 'evidence')
