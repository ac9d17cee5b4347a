# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Backend-independent helpers shared by every module of the collection.

Private to the collection: the API may change without notice.

What lives here:
- durations (``30m``, ``1h30m``, ``90``) parsed once, the same way everywhere;
- timestamps of the platforms (RFC 3339 of Docker and Kubernetes) parsed once;
- the one result shape (``status``/``reasons`` for diagnoses, ``actions``/``summary`` for remediations);
- the waiter behind every ``wait``/``wait_timeout``/``wait_sleep`` option;
- redaction of secrets before anything reaches a result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import time

STATUS_ORDER = ('ok', 'warning', 'critical')

_DURATION_PART = re.compile(r'(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)', re.IGNORECASE)
_DURATION_FULL = re.compile(r'^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+$', re.IGNORECASE)
_UNIT_SECONDS = {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}

WAIT_ARGUMENT_SPEC = dict(
    wait=dict(type='bool', default=True),
    wait_timeout=dict(type='int', default=30),
    wait_sleep=dict(type='int', default=1),
)


class DurationError(ValueError):
    pass


class BackendError(Exception):
    """A backend (Compose, Kubernetes, ...) could not do what was asked.

    The message is the one line the operator reads: it names the target. ``details``
    (for example ``cmd``, ``rc``, ``stdout``, ``stderr``) go into the failed result.
    """

    def __init__(self, msg, **details):
        super(BackendError, self).__init__(msg)
        self.details = details


def parse_duration(value, name='duration'):
    """Return a duration in seconds (float) or None.

    Accepts a number of seconds (int, float or digit string) or a string of
    unit-suffixed parts such as ``30m``, ``1h30m``, ``45s``, ``500ms``, ``2d``.
    Negative or malformed values raise DurationError naming the option.
    """
    if value is None or value == '':
        return None
    if isinstance(value, bool):
        raise DurationError('%s: expected a duration such as 30m or 90s, got %r' % (name, value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        if text.startswith('-'):
            raise DurationError('%s: must not be negative, got %r' % (name, value))
        try:
            seconds = float(text)
        except ValueError:
            if not _DURATION_FULL.match(text):
                raise DurationError(
                    '%s: %r is not a duration; use seconds (90) or units ms, s, m, h, d, w (30m, 1h30m)' % (name, value))
            seconds = sum(float(num) * _UNIT_SECONDS[unit.lower()] for num, unit in _DURATION_PART.findall(text))
    if seconds < 0:
        raise DurationError('%s: must not be negative, got %r' % (name, value))
    return seconds


def format_duration(seconds):
    """Render seconds the way an operator reads them: 95 -> '1m35s'."""
    if seconds is None:
        return None
    seconds = int(round(seconds))
    parts = []
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size:
            parts.append('%d%s' % (seconds // size, unit))
            seconds %= size
    if seconds or not parts:
        parts.append('%ds' % seconds)
    return ''.join(parts)


_RFC3339 = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$')


def parse_time(value):
    """An RFC 3339 timestamp (Docker's nanoseconds, Kubernetes' seconds, ``Z`` or an offset) -> aware datetime.

    None for no value, Docker's zero time (``0001-01-01T00:00:00Z``, a container never started) and anything
    that is not such a timestamp (a garbled date or offset included): callers treat it as "unknown".
    A timestamp without an offset is UTC.
    """
    if not value:
        return None
    text = str(value)
    if text.startswith('0001-01-01'):
        return None
    match = _RFC3339.match(text)
    if not match:
        return None
    try:
        base = datetime.datetime.strptime(match.group(1), '%Y-%m-%dT%H:%M:%S')
        if match.group(2):
            base = base.replace(microsecond=int((match.group(2)[1:] + '000000')[:6]))
        offset = datetime.timedelta(0)
        tz = match.group(3)
        if tz and tz != 'Z':
            sign = 1 if tz[0] == '+' else -1
            offset = sign * datetime.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        return base.replace(tzinfo=datetime.timezone(offset))
    except (ValueError, OverflowError):
        return None


def plural(count, noun, nouns=None):
    """'1 backend', '3 backends': summaries read as sentences."""
    return '%d %s' % (count, noun if count == 1 else (nouns or noun + 's'))


def worst_status(statuses):
    """The most severe of ``ok``/``warning``/``critical`` (``ok`` for none)."""
    worst = 'ok'
    for status in statuses:
        if status in STATUS_ORDER and STATUS_ORDER.index(status) > STATUS_ORDER.index(worst):
            worst = status
    return worst


class StatusBuilder(object):
    """Collects threshold findings into ``status`` and ``reasons``."""

    def __init__(self):
        self.reasons = []
        self._levels = []

    def add(self, level, reason):
        self._levels.append(level)
        self.reasons.append(reason)

    def check(self, value, warning, critical, reason_fmt):
        """Compare ``value`` with thresholds (None disables one); record a reason when crossed."""
        if critical is not None and value >= critical:
            self.add('critical', reason_fmt % {'value': value, 'threshold': critical, 'level': 'critical'})
        elif warning is not None and value >= warning:
            self.add('warning', reason_fmt % {'value': value, 'threshold': warning, 'level': 'warning'})

    @property
    def status(self):
        return worst_status(self._levels)


def make_action(action, target, detail=None, done=False, error=None):
    """One entry of a remediation's ``actions`` list."""
    entry = dict(action=action, target=target, detail=detail or {}, done=done)
    if error:
        entry['error'] = error
    return entry


def wait_until(predicate, timeout, sleep):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass.

    Returns ``(satisfied, elapsed_seconds, last_value)``. The one waiter behind the
    ``wait``/``wait_timeout``/``wait_sleep`` options of every module.
    """
    start = time.monotonic()
    sleep = max(float(sleep), 0.1)
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value:
            return True, round(elapsed, 2), value
        if elapsed >= timeout:
            return False, round(elapsed, 2), value
        time.sleep(min(sleep, max(timeout - elapsed, 0.1)))


def validate_wait_args(module):
    if module.params.get('wait_timeout') is not None and module.params['wait_timeout'] < 0:
        module.fail_json(msg='wait_timeout must not be negative, got %s' % module.params['wait_timeout'])
    if module.params.get('wait_sleep') is not None and module.params['wait_sleep'] < 1:
        module.fail_json(msg='wait_sleep must be at least 1 second, got %s' % module.params['wait_sleep'])


_SECRET_PATTERNS = (
    (re.compile(r"(PASSWORD\s+)('(?:[^']|'')*'|\"[^\"]*\"|\S+)", re.IGNORECASE), r"\1'********'"),
    (re.compile(r'((?:password|passwd|pwd|secret|token|api_key)\s*[=:]\s*)("[^"]*"|\'[^\']*\'|[^\s,;&]+)',
                re.IGNORECASE), r'\1********'),
    (re.compile(r'(://[^:/@\s]+:)([^@/\s]+)(@)'), r'\1********\3'),
)


def redact(text):
    """Mask passwords and tokens in free text (queries, URLs, command lines)."""
    if not text:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def excerpt(text, length):
    """A redacted, single-line excerpt of at most ``length`` characters."""
    if text is None:
        return None
    text = ' '.join(redact(text).split())
    if length and len(text) > length:
        return text[:max(length - 3, 0)] + '...'
    return text
