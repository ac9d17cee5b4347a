# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Evidence with a chain of custody (private to the collection; docs/security.md).

One capture is one new directory ``<evidence_dir>/<NNN>-<label>/`` (mode 0700, created with ``mkdir``, which
fails when the name exists: nothing is ever overwritten), holding its items (files opened with ``O_EXCL``,
mode 0600), ``manifest.json`` (one entry per item: what, source, when, command or query, bounds, size,
sha256) and ``SHA256SUMS`` (``sha256sum -c`` format, the items and the manifest). The manifest's sha256 goes
into the incident's timeline (an event), so that a later change of any file shows.

Every item is bounded: at most ``max_bytes`` written (the item says ``truncated``) and a deadline in seconds.
The readers here (PostgreSQL server log, /proc/net/tcp, host log lines) are also used by ``pg_activity_info``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import datetime
import hashlib
import json
import os
import re
import socket
import signal
import struct
import subprocess
import time

PR_SET_PDEATHSIG = 1
MANIFEST = 'manifest.json'
CHECKSUMS = 'SHA256SUMS'
MANIFEST_FORMAT = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
LABEL_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$')
CAPTURE_RE = re.compile(r'^(\d{3,})-([A-Za-z0-9][A-Za-z0-9_-]*)$')
ITEM_NAME_RE = re.compile(r'[^A-Za-z0-9._-]+')

TCP_STATES = {
    '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2',
    '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING',
    '0C': 'NEW_SYN_RECV',
}


class EvidenceError(Exception):
    """One clear message: what could not be captured or written, and where."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment=None):
    moment = moment or utc_now()
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.') + \
        '%03dZ' % (moment.microsecond // 1000)


def validate_label(label):
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise EvidenceError('label %r: use 1-40 characters of A-Z a-z 0-9 _ -, starting with a letter or digit'
                            % (label,))
    return label


def safe_name(text):
    """A file name part from free text (a service, a database): no '/', no '..', at most 60 characters."""
    name = ITEM_NAME_RE.sub('_', str(text)).strip('._') or 'item'
    return name[:60]


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b''):
            digest.update(block)
    return digest.hexdigest()


def ensure_private_dir(path):
    """Create ``path`` (and parents) 0700 when missing; a directory that exists is made 0700 if ours."""
    try:
        missing = []
        head = os.path.abspath(path)
        while head and not os.path.isdir(head):
            missing.append(head)
            head = os.path.dirname(head)
        for directory in reversed(missing):  # every directory made here is 0700, not only the last one
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
            os.chmod(directory, 0o700)
        info = os.stat(path)
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise EvidenceError('cannot create the evidence directory %s: %s' % (path, exc.strerror or exc))


def list_captures(evidence_dir):
    """[(number, label, path)] of the captures in ``evidence_dir``, in order (nothing when it does not exist)."""
    found = []
    try:
        names = os.listdir(evidence_dir)
    except OSError:
        return found
    for name in names:
        match = CAPTURE_RE.match(name)
        if match and os.path.isdir(os.path.join(evidence_dir, name)):
            found.append((int(match.group(1)), match.group(2), os.path.join(evidence_dir, name)))
    return sorted(found)


def read_manifest(capture_dir):
    path = os.path.join(capture_dir, MANIFEST)
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise EvidenceError('cannot read the manifest %s: %s' % (path, exc))


def verify_capture(capture_dir):
    """Problems of a capture (empty list: every item is present with its manifest sha256 and size)."""
    problems = []
    manifest = read_manifest(capture_dir)
    for item in manifest.get('items', []):
        if not item.get('file'):
            continue
        path = os.path.join(capture_dir, item['file'])
        if not os.path.isfile(path):
            problems.append('%s is missing' % item['file'])
            continue
        if sha256_file(path) != item.get('sha256'):
            problems.append('%s does not match its sha256' % item['file'])
        elif os.path.getsize(path) != item.get('size'):
            problems.append('%s does not have its size' % item['file'])
    return problems


class Capture(object):
    """One new capture directory; items are added one by one, then ``finish()`` writes manifest and checksums."""

    def __init__(self, evidence_dir, label, meta=None):
        validate_label(label)
        self.evidence_dir = evidence_dir
        self.label = label
        ensure_private_dir(evidence_dir)
        number = (list_captures(evidence_dir) or [(0, None, None)])[-1][0] + 1
        for _attempt in range(1000):
            path = os.path.join(evidence_dir, '%03d-%s' % (number, label))
            try:
                os.mkdir(path, 0o700)
                os.chmod(path, 0o700)
                break
            except FileExistsError:
                number += 1  # another capture took this number meanwhile: never overwrite it
            except OSError as exc:
                raise EvidenceError('cannot create the capture directory %s: %s' % (path, exc.strerror or exc))
        else:
            raise EvidenceError('cannot find a free capture number in %s' % evidence_dir)
        self.number = number
        self.path = path
        self.name = os.path.basename(path)
        self.items = []
        self.meta = dict(meta or {})
        self.started = iso()

    def open_item(self, name):
        """A new file of the capture (0600, O_EXCL: never an existing one), opened for binary writing."""
        name = safe_name(name)
        candidate, index = name, 1
        while True:
            path = os.path.join(self.path, candidate)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                index += 1
                root, ext = os.path.splitext(name)
                candidate = '%s-%d%s' % (root, index, ext)
            except OSError as exc:
                raise EvidenceError('cannot create %s: %s' % (path, exc.strerror or exc))
        os.fchmod(fd, 0o600)
        return candidate, os.fdopen(fd, 'wb')

    def add(self, entry, file_name=None):
        """Record an item: its file's size and sha256 are computed here, from the bytes on disk."""
        entry = dict(entry)
        if file_name:
            path = os.path.join(self.path, file_name)
            entry['file'] = file_name
            entry['size'] = os.path.getsize(path)
            entry['sha256'] = sha256_file(path)
        entry.setdefault('file', None)
        entry.setdefault('size', 0)
        entry.setdefault('sha256', None)
        self.items.append(entry)
        return entry

    def finish(self):
        """Write manifest.json and SHA256SUMS; returns (manifest dict, manifest sha256)."""
        manifest = dict(format=MANIFEST_FORMAT, capture=self.name, label=self.label, started=self.started,
                        finished=iso(), directory=self.path, items=self.items)
        manifest.update(self.meta)
        name, handle = self.open_item(MANIFEST)
        with handle:
            handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode('utf-8') + b'\n')
        digest = sha256_file(os.path.join(self.path, name))
        lines = ['%s  %s\n' % (item['sha256'], item['file']) for item in self.items if item.get('file')]
        lines.append('%s  %s\n' % (digest, name))
        sums, handle = self.open_item(CHECKSUMS)
        with handle:
            handle.write(''.join(lines).encode('utf-8'))
        return manifest, digest


class BoundedWriter(object):
    """A file-like sink that keeps at most ``max_bytes`` and past a deadline refuses more (``truncated`` says so)."""

    def __init__(self, handle, max_bytes, deadline=None):
        self.handle = handle
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.written = 0
        self.truncated = False
        self.timed_out = False

    def write(self, data):
        if isinstance(data, str):
            data = data.encode('utf-8', 'surrogateescape')
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
            raise BoundReached('deadline')
        room = self.max_bytes - self.written
        if len(data) > room:
            self.handle.write(data[:max(room, 0)])
            self.written += max(room, 0)
            self.truncated = True
            raise BoundReached('size')
        self.handle.write(data)
        self.written += len(data)
        return len(data)

    @property
    def full(self):
        return self.truncated or self.timed_out


class BoundReached(Exception):
    """Raised by BoundedWriter when its size or time bound is reached (the item is kept, marked truncated)."""


# ------------------------------------------------------------------------------------------- log time windows
_ISO_RE = re.compile(r'^\s*\[?(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?\s*(Z|UTC|[+-]\d{2}:?\d{2}|[A-Z]{3,4})?')
_SYSLOG_RE = re.compile(r'^([A-Z][a-z]{2})\s+(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ')
_MONTHS = dict((name, index + 1) for index, name in enumerate(
    ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')))


def line_time(line, now=None):
    """The time at the start of a log line (ISO 8601 / PostgreSQL %m / docker timestamps / syslog), or None.

    A time without a zone is read as UTC (PostgreSQL's and the lab's logs are in UTC); syslog's lacks a year:
    the latest one not in the future is taken.
    """
    match = _ISO_RE.match(line)
    if match:
        day, clock, fraction, zone = match.groups()
        try:
            moment = datetime.datetime.strptime('%s %s' % (day, clock), '%Y-%m-%d %H:%M:%S')
        except ValueError:
            return None
        if fraction:
            moment = moment.replace(microsecond=int((fraction + '000000')[:6]))
        offset = datetime.timedelta(0)
        if zone and zone[0] in '+-':
            digits = zone[1:].replace(':', '')
            try:
                offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
            except ValueError:
                return None
            if zone[0] == '-':
                offset = -offset
        return moment.replace(tzinfo=datetime.timezone.utc) - offset
    match = _SYSLOG_RE.match(line)
    if match:
        now = now or utc_now()
        month = _MONTHS.get(match.group(1))
        if not month:
            return None
        try:
            moment = datetime.datetime(now.year, month, int(match.group(2)), int(match.group(3)),
                                       int(match.group(4)), int(match.group(5)), tzinfo=datetime.timezone.utc)
        except ValueError:
            return None
        if moment > now + datetime.timedelta(days=1):
            moment = moment.replace(year=now.year - 1)
        return moment
    return None


def lines_in_window(lines, since, until, pattern=None, keep_undated=True):
    """Lines whose time lies in [since, until]; a line without a time follows the previous dated line (a
    continuation, such as PostgreSQL's DETAIL/STATEMENT), or is kept when ``keep_undated`` and nothing came
    before it. ``pattern`` (an object with ``search``) filters on top."""
    inside = keep_undated
    for line in lines:
        moment = line_time(line)
        if moment is not None:
            inside = (since is None or moment >= since) and (until is None or moment <= until)
        if inside and (pattern is None or pattern.search(line)):
            yield line


def read_tail(path, max_bytes):
    """The last ``max_bytes`` of a file, cut at a line start; (bytes, size of the file, truncated)."""
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as handle:
            start = max(size - max_bytes, 0)
            handle.seek(start)
            data = handle.read(max_bytes)
    except OSError as exc:
        raise EvidenceError('cannot read %s: %s' % (path, exc.strerror or exc))
    if start > 0:
        cut = data.find(b'\n')
        data = data[cut + 1:] if cut >= 0 else b''
    return data, size, start > 0


def newest_log_file(path):
    """``path`` itself when it is a file, else the newest regular file of that directory (None when none)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        return None
    best = None
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isfile(full) and (best is None or os.path.getmtime(full) > os.path.getmtime(best)):
            best = full
    return best


def pg_server_log(client, since, until, max_bytes, log_path=None):
    """PostgreSQL's server log lines of the window, as the role may read them.

    First ``pg_current_logfile()`` + ``pg_read_file()`` (superuser or pg_read_server_files, logging_collector on);
    else ``log_path`` on the host (a file, or a directory whose newest file is read). Returns a dict:
    lines, source, query (what was run), truncated, error (why nothing could be read; None when read).
    """
    row, error = client.try_query(
        "SELECT pg_catalog.pg_current_logfile() AS file, "
        "pg_catalog.current_setting('data_directory', true) AS data_directory, "
        "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) "
        " OR pg_catalog.pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') AS may_read")
    tried = []
    if error is None and row:
        info = row[0]
        if info.get('file') and info.get('may_read'):
            query = ("SELECT pg_catalog.pg_read_file(%s, GREATEST((pg_catalog.pg_stat_file(%s)).size - %s, 0), %s) "
                     "AS data")
            read, error = client.try_query(query, (info['file'], info['file'], max_bytes, max_bytes))
            if error is None and read:
                data = read[0]['data'] or ''
                truncated = len(data.encode('utf-8')) >= max_bytes
                if truncated and '\n' in data:
                    data = data.split('\n', 1)[1]
                lines = list(lines_in_window(data.splitlines(), since, until, keep_undated=not truncated))
                return dict(lines=lines, source='pg_read_file(%s)' % info['file'],
                            query=query % ("'%s'" % info['file'], "'%s'" % info['file'], max_bytes, max_bytes),
                            truncated=truncated, error=None)
            tried.append('pg_read_file: %s' % error)
        elif not info.get('file'):
            tried.append('pg_current_logfile() is NULL (logging_collector is off)')
        else:
            tried.append('the role may not read server files (superuser or pg_read_server_files)')
    elif error:
        tried.append(error)
    if log_path:
        found = newest_log_file(log_path)
        if found is None:
            tried.append('%s: no such file or directory' % log_path)
        else:
            try:
                data, _size, truncated = read_tail(found, max_bytes)
            except EvidenceError as exc:
                tried.append(str(exc))
            else:
                text = data.decode('utf-8', 'replace')
                lines = list(lines_in_window(text.splitlines(), since, until, keep_undated=not truncated))
                return dict(lines=lines, source=found, query=None, truncated=truncated, error=None)
    else:
        tried.append('no log_path on the host given')
    return dict(lines=[], source=None, query=None, truncated=False, error='; '.join(tried))


# ------------------------------------------------------------------------------------------- sockets
def _address(hex_address, family):
    host, port = hex_address.split(':')
    raw = bytes.fromhex(host)
    if family == socket.AF_INET:
        addr = socket.inet_ntop(family, struct.pack('<I', struct.unpack('>I', raw)[0]))
    else:
        words = struct.unpack('<4I', raw)
        addr = socket.inet_ntop(family, struct.pack('>4I', *words))
    return addr, int(port, 16)


def parse_proc_net_tcp(text, family=socket.AF_INET):
    """Rows of /proc/net/tcp or tcp6 -> [dict(local, local_port, remote, remote_port, state, uid, inode)]."""
    rows = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        try:
            local, local_port = _address(parts[1], family)
            remote, remote_port = _address(parts[2], family)
        except (ValueError, OSError, struct.error):
            continue
        rows.append(dict(local=local, local_port=local_port, remote=remote, remote_port=remote_port,
                         state=TCP_STATES.get(parts[3].upper(), parts[3]), uid=int(parts[7]) if parts[7].isdigit()
                         else parts[7], inode=parts[9]))
    return rows


def read_sockets(proc='/proc'):
    """Listening and established TCP sockets of this network namespace (IPv4 and IPv6)."""
    rows = []
    for name, family in (('tcp', socket.AF_INET), ('tcp6', socket.AF_INET6)):
        path = os.path.join(proc, 'net', name)
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            continue
        for row in parse_proc_net_tcp(text, family):
            row['proto'] = name
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- child processes
def _die_with_parent():
    """In the child before exec: SIGKILL when the module's process dies, whatever kills it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def start_process(cmd, env=None, die_with_parent=False):
    """A child (pg_dump, tcpdump) whose output is read as it comes, in a session of its own (so that the whole
    group can be stopped); with ``die_with_parent`` the kernel kills it when the module dies (PR_SET_PDEATHSIG).
    The caller stops it on every path."""
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,  # pylint: disable=consider-using-with
                            start_new_session=True,
                            preexec_fn=_die_with_parent if die_with_parent else None)  # pylint: disable=subprocess-popen-preexec-fn
