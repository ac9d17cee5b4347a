# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Backend-independent helpers shared by every module of the collection.

Private to the collection: the API may change without notice.

What lives here:
- durations (``30m``, ``1h30m``, ``90``) parsed once, the same way everywhere;
- timestamps of the platforms (RFC 3339 of Docker and Kubernetes) parsed once;
- the one result shape (``status``/``reasons`` for diagnoses, ``actions``/``summary`` for remediations),
  built by diagnosis_result() and remediation_result();
- the argument helpers duration_param() and regex_param(): one message, never a traceback;
- the waiter behind every ``wait``/``wait_timeout``/``wait_sleep`` option;
- redaction of secrets before anything reaches a result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import math
import re
import signal
import threading
import time

# The statuses a diagnosis may report. ``unknown``: the diagnosis could not reach its target
# (the reason says why), reported instead of failing, as community.postgresql's postgresql_ping does.
STATUS_ORDER = ('ok', 'warning', 'critical', 'unknown')
# Severity, for worst_status(): a known critical outranks an unknown, an unknown outranks a warning.
_SEVERITY = ('ok', 'warning', 'unknown', 'critical')

# No duration option of the collection means more than ten years; above it is a typo (or 1e400).
MAX_DURATION = 10 * 366 * 86400.0

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
    shown = value if len(repr(value)) <= 60 else '%s...' % repr(value)[:57]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DurationError('%s: expected a duration such as 30m or 90s, got %r' % (name, shown))
    try:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = value.strip()
            if text.startswith('-'):
                raise DurationError('%s: must not be negative, got %r' % (name, shown))
            try:
                seconds = float(text)
            except ValueError:
                if len(text) > 200 or not _DURATION_FULL.match(text):
                    raise DurationError(
                        '%s: %r is not a duration; use seconds (90) or units ms, s, m, h, d, w (30m, 1h30m)'
                        % (name, shown))
                seconds = sum(float(num) * _UNIT_SECONDS[unit.lower()] for num, unit in _DURATION_PART.findall(text))
    except OverflowError:
        seconds = float('inf')
    if math.isnan(seconds):
        raise DurationError('%s: %r is not a duration (not a number)' % (name, shown))
    if seconds < 0:
        raise DurationError('%s: must not be negative, got %r' % (name, shown))
    if seconds > MAX_DURATION:
        raise DurationError('%s: %r is longer than the maximum of %s' % (name, shown, format_duration(MAX_DURATION)))
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
    """The most severe of the statuses (``ok`` for none): critical > unknown > warning > ok."""
    worst = 'ok'
    for status in statuses:
        if status in _SEVERITY and _SEVERITY.index(status) > _SEVERITY.index(worst):
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


ACTION_KEYS = ('action', 'target', 'detail', 'done')


def diagnosis_result(status, reasons, **facts):
    """The result of a diagnosis (``*_info`` modules, ``http_check``): ``status`` + ``reasons`` + facts.

    ``status`` is one of STATUS_ORDER; ``unknown`` when the target could not be reached (say why in
    ``reasons``): a diagnosis reports, it does not fail. ``changed`` is always false.
    """
    if status not in STATUS_ORDER:
        raise ValueError('diagnosis status %r is not one of %s' % (status, ', '.join(STATUS_ORDER)))
    result = dict(facts)
    result.update(changed=False, status=status, reasons=list(reasons or []))
    return result


def remediation_result(changed, actions, summary, diff=None, check_mode=False, want_diff=False, **facts):
    """The result of a remediation: ``changed``, ``actions`` (make_action entries), ``summary`` + facts.

    ``diff`` (``before``/``after``) is returned only when the user asked for it (``--diff``:
    ``module._diff``), the one rule across modules. In check mode no action may be ``done``.
    """
    actions = list(actions or [])
    for entry in actions:
        if not isinstance(entry, dict) or any(key not in entry for key in ACTION_KEYS):
            raise ValueError('action %r is not a make_action() entry' % (entry,))
        if check_mode and entry['done']:
            raise ValueError('action %r is marked done in check mode' % (entry,))
    result = dict(facts)
    result.update(changed=bool(changed), actions=actions, summary=summary)
    result.pop('diff', None)
    if want_diff and diff is not None:
        result['diff'] = diff
    return result


_UNSET = object()


def new_module(module_class, argument_spec, **kwargs):
    """``module_class(argument_spec, **kwargs)`` (the module's AnsibleModule), but a value that ansible-core's own type checks cannot
    convert without an exception (``'inf'`` for an int option raises OverflowError, ``10**400`` for a float
    option too) fails the module with one message naming the option, instead of a traceback."""
    try:
        module = module_class(argument_spec=argument_spec, **kwargs)
    except (OverflowError, ArithmeticError, ValueError, TypeError) as exc:
        problem = exc
    else:
        # A NUL in a path is a ValueError of every os call that gets it (found by fuzzing, issue 9).
        for name, spec in argument_spec.items():
            value = module.params.get(name)
            values = value if isinstance(value, list) else [value]
            if spec.get('type') == 'path' and any(isinstance(v, str) and '\x00' in v for v in values):
                module.fail_json(msg='%s: a path must not contain a NUL character' % name)
        return module
    # Read the arguments again without type conversion (secrets still masked), to say which one is wrong.
    raw_spec = dict((name, dict(type='raw', no_log=bool(spec.get('no_log')), aliases=spec.get('aliases') or []))
                    for name, spec in argument_spec.items())
    module = module_class(argument_spec=raw_spec, supports_check_mode=True)
    culprit = None
    for name, spec in argument_spec.items():
        value = module.params.get(name)
        if value is not None and spec.get('options') and spec.get('type') in ('dict', 'list'):
            # ansible-core's suboption handling raises TypeError on a scalar where it wants a dict (or list).
            items = value if spec.get('type') == 'list' and isinstance(value, list) else [value]
            if spec.get('type') == 'list' and not isinstance(value, list) or \
                    not all(isinstance(item, (dict, str)) for item in items):
                culprit = name
                module.fail_json(msg='%s: expected %s, got %s' % (
                    name, 'a list of dicts' if spec.get('type') == 'list' else 'a dict', _shown(value)))
        if value is None or spec.get('type') not in ('int', 'float'):
            continue
        try:
            number = float(value)
            if spec.get('type') == 'int':
                int(number)
        except (OverflowError, ValueError, TypeError):
            culprit = name
            break
    if culprit:
        module.fail_json(msg='%s: %s is out of range or not a number' % (culprit, _shown(module.params[culprit])))
    module.fail_json(msg='an option has a value that cannot be read (%s)' % problem)
    return None


def _shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def duration_param(module, name, value=_UNSET, minimum=None, maximum=None, resolution=None, allow_empty=True,
                   required=False):
    """Read the duration option ``name`` (or ``value``) in seconds, or fail the module with one message.

    ``None`` (not given) is returned as None. ``''`` too, unless ``allow_empty=False`` (an empty value
    must not silently drop a filter). With ``required=True`` (a threshold the module cannot do without,
    typically one with a default that the user nulled) neither is accepted. Refused: garbage, negatives, inf/nan, values beyond the float range
    or above ``maximum`` (default MAX_DURATION), below ``minimum``, and, with ``resolution`` (seconds, e.g.
    0.001 for a timeout set in milliseconds), a positive value that would round to 0 and so turn a
    timeout off (``0.4ms``).
    """
    if value is _UNSET:
        value = module.params.get(name)
    if required and (value is None or (isinstance(value, str) and not value.strip())):
        module.fail_json(msg='%s must be a duration such as 30s or 5m, got %r' % (name, value))
    if isinstance(value, str) and not value.strip() and not allow_empty:
        module.fail_json(msg='%s must not be empty: omit it, or give a duration such as 30s or 5m' % name)
    try:
        seconds = parse_duration(value, name)
    except DurationError as exc:
        module.fail_json(msg=str(exc))
    if seconds is None:
        return None
    if maximum is not None and seconds > maximum:
        module.fail_json(msg='%s: %r is above the maximum of %s' % (name, value, format_duration(maximum)))
    if resolution and 0 < seconds and round(seconds / resolution) == 0:
        module.fail_json(msg='%s: %r is below the resolution of %s: it would round to 0, which turns it off'
                         % (name, value, _short_duration(resolution)))
    if minimum is not None and seconds < minimum:
        module.fail_json(msg='%s: %r is below the minimum of %s' % (name, value, _short_duration(minimum)))
    return seconds


def _short_duration(seconds):
    if seconds < 1:
        return '%gms' % (seconds * 1000)
    return format_duration(seconds)


class RegexTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise RegexTimeout()


# Regular expression opcodes, to refuse nested unbounded quantifiers such as (a+)+ or (a*b?)*.
_REPEATS = ()
try:
    from re import _constants as _sre_constants  # Python 3.11+
    from re import _parser as _sre_parser
except ImportError:  # pragma: no cover - older Pythons
    _sre_constants = _sre_parser = None
if _sre_constants is not None:
    _REPEATS = tuple(getattr(_sre_constants, name) for name in ('MAX_REPEAT', 'MIN_REPEAT')
                     if hasattr(_sre_constants, name))


def _nested_quantifier(parsed, inside_repeat=False):
    """True when a variable-length repeat sits inside an unbounded repeat (star height > 1)."""
    for op, av in parsed:
        if op in _REPEATS:
            low, high, sub = av
            unbounded = high == _sre_constants.MAXREPEAT or high > 1000
            if inside_repeat and low != high:
                return True
            if _nested_quantifier(sub, inside_repeat or unbounded):
                return True
            continue
        children = []
        if isinstance(av, (list, tuple)):
            for item in av:
                if isinstance(item, _sre_parser.SubPattern):
                    children.append(item)
                elif isinstance(item, (list, tuple)):
                    children.extend(x for x in item if isinstance(x, _sre_parser.SubPattern))
        elif isinstance(av, _sre_parser.SubPattern):
            children.append(av)
        for child in children:
            if _nested_quantifier(child, inside_repeat):
                return True
    return False


class BoundedRegex(object):
    """A compiled pattern whose searches are bounded: input cut to ``max_input`` characters and, in the
    main thread, ``timeout`` seconds per search (the module fails with one message past it)."""

    def __init__(self, module, name, pattern, max_input, timeout):
        self.module = module
        self.name = name
        self.regex = pattern
        self.pattern = pattern.pattern
        self.max_input = max_input
        self.timeout = timeout

    def _bounded(self, method, text):
        if text is None:
            return None
        text = text[:self.max_input]
        timed = (self.timeout and threading.current_thread() is threading.main_thread()
                 and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
        if not timed:
            return method(text)
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
            try:
                return method(text)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except RegexTimeout:
            self.module.fail_json(msg='%s: %r took more than %gs to match one input: simplify the pattern'
                                  % (self.name, self.pattern, self.timeout))
        finally:
            signal.signal(signal.SIGALRM, previous)

    def search(self, text):
        return self._bounded(self.regex.search, text)

    def match(self, text):
        return self._bounded(self.regex.match, text)


def regex_param(module, name, value=_UNSET, allow_empty=False, flags=0, max_input=65536, timeout=1.0):
    """Compile the regular expression option ``name`` (or ``value``), or fail the module with one message.

    Returns None when not given, else a BoundedRegex. Refused: an invalid pattern, an empty one unless
    ``allow_empty`` (it matches everything), and nested unbounded quantifiers such as ``(a+)+$`` whose
    matching time is exponential. Searches are bounded in input length and time (see BoundedRegex).
    """
    if value is _UNSET:
        value = module.params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        module.fail_json(msg='%s: expected a regular expression (a string), got %r' % (name, value))
    shown = value if len(value) <= 80 else value[:77] + '...'
    if value == '' and not allow_empty:
        module.fail_json(msg='%s must not be empty: an empty pattern matches everything' % name)
    try:
        compiled = re.compile(value, flags)
        nested = _sre_parser is not None and _nested_quantifier(_sre_parser.parse(value, flags))
    except (re.error, OverflowError, RecursionError, ValueError, TypeError) as exc:
        module.fail_json(msg='%s %r is not a valid regular expression: %s' % (name, shown, exc))
    if nested:
        module.fail_json(msg='%s: %r nests a repeat inside a repeat (such as (a+)+), which can take exponential '
                         'time to match: write it without the nesting' % (name, shown))
    return BoundedRegex(module, name, compiled, max_input, timeout)


def wait_until(predicate, timeout, sleep, pause=None):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass.

    Returns ``(satisfied, elapsed_seconds, last_value)``. The one waiter behind the
    ``wait``/``wait_timeout``/``wait_sleep`` options of every module. ``pause(seconds)``, when given,
    replaces the sleep between two polls: it may return early (a backend that hears of a change), never
    later than ``seconds``.
    """
    start = time.monotonic()
    sleep = max(float(sleep), 0.1)
    pause = pause or time.sleep
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value:
            return True, round(elapsed, 2), value
        if elapsed >= timeout:
            return False, round(elapsed, 2), value
        pause(min(sleep, max(timeout - elapsed, 0.1)))


def validate_wait_args(module):
    if module.params.get('wait_timeout') is not None and module.params['wait_timeout'] < 0:
        module.fail_json(msg='wait_timeout must not be negative, got %s' % module.params['wait_timeout'])
    if module.params.get('wait_sleep') is not None and module.params['wait_sleep'] < 1:
        module.fail_json(msg='wait_sleep must be at least 1 second, got %s' % module.params['wait_sleep'])


# What a secret looks like in free text. Order matters: the specific shapes first.
_SECRET_KEY = r'(?<![\w.-])[\w.-]{0,40}(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key)[\w.-]{0,40}'
_SECRET_VALUE = r'("(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|[^\s,;&}\])]+)'
# pgcrypto and friends take the key as an argument: every string literal of their arguments is masked.
_KEYED_FUNCTION = re.compile(r'(\b(?:pgp_sym_\w+|pgp_pub_\w+|encrypt(?:_iv)?|decrypt(?:_iv)?|hmac|crypt|'
                             r'gen_salt_with|set_config)\s*\()([^()]*)(\))', re.IGNORECASE)
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def _mask_arguments(match):
    return match.group(1) + _LITERAL.sub("'********'", match.group(2)) + match.group(3)


_SECRET_PATTERNS = (
    # Authorization: Bearer xyz / Basic xyz / Token xyz, in headers, JSON or dicts
    (re.compile(r'(\b(?:proxy-)?authorization["\']?\s*[:=]\s*["\']?(?:(?:bearer|basic|token|digest|negotiate)\s+)?)'
                r'([^\s"\',;]+)', re.IGNORECASE), r'\1********'),
    (re.compile(r'(\bbearer\s+)([A-Za-z0-9._~+/=-]{4,})', re.IGNORECASE), r'\1********'),
    (_KEYED_FUNCTION, _mask_arguments),
    # password => 'x' (named arguments), "password": "x" (JSON), password=x, token: x, PGPASSWORD=x
    (re.compile(r'(["\']?' + _SECRET_KEY + r'["\']?\s*(?:=>|:=|=|:)\s*)' + _SECRET_VALUE, re.IGNORECASE),
     lambda m: m.group(1) + ('"********"' if m.group(2).startswith('"') else
                             "'********'" if m.group(2).startswith("'") else '********')),
    # ALTER ROLE x PASSWORD 'y'
    (re.compile(r"(PASSWORD\s+)('(?:[^']|'')*'|\"[^\"]*\"|(?!=>)[^\s'\"=:][^\s,;]*)", re.IGNORECASE),
     r"\1'********'"),
    # user:pass@ in URLs, also an empty user (redis://:pw@host)
    (re.compile(r'(://[^:/@\s]*:)([^@/\s]+)(@)'), r'\1********\3'),
    # redis-cli -a pw / --pass pw
    (re.compile(r'(\bredis-cli\b[^\n]*?\s(?:-a|--pass)\s+)(\S+)'), r'\1********'),
)


def redact(text):
    """Mask passwords and tokens in free text (queries, URLs, command lines, JSON, headers, log lines)."""
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
