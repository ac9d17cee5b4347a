# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Alertmanager v2 API client shared by the alertmanager_* modules.

Private to the collection: the API may change without notice.

One connection argument spec (documented once in doc_fragments/alertmanager.py), one client on Ansible's
``open_url`` (basic auth or a bearer token, CA file, validate_certs, timeout), errors as AlertmanagerError
with a message that names the URL, and the time and matcher helpers of silences.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re
import socket

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode, quote
from ansible.module_utils.urls import open_url, SSLValidationError, ConnectionError as UrlsConnectionError

from ansible_collections.incident.response.plugins.module_utils._common import BackendError

ALERTMANAGER_ARGUMENT_SPEC = dict(
    url=dict(type='str', fallback=(env_fallback, ['ALERTMANAGER_URL']), aliases=['alertmanager_url']),
    url_username=dict(type='str', aliases=['username']),
    url_password=dict(type='str', no_log=True, aliases=['password']),
    bearer_token=dict(type='str', no_log=True),
    ca_path=dict(type='path', aliases=['ca_cert']),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='int', default=10),
)

ALERTMANAGER_MUTUALLY_EXCLUSIVE = [('bearer_token', 'url_username'), ('bearer_token', 'url_password')]
ALERTMANAGER_REQUIRED_TOGETHER = [('url_username', 'url_password')]

_UTC = datetime.timezone.utc
_TIME_RE = re.compile(
    r'^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$', re.IGNORECASE)

# Label values that a matcher is tried on to decide whether it matches every alert (see matches_everything).
_PROBE_VALUES = ('a', 'Z', '0', 'TaskSchedulerAPIDown', 'x y-z_1.2:3/4', 'critical')


class AlertmanagerError(BackendError):
    """Alertmanager could not be reached or refused the request; the message names the URL."""


def utcnow():
    return datetime.datetime.now(_UTC)


def parse_time(value, name='time'):
    """An RFC 3339 time (Alertmanager's, or an operator's) as an aware UTC datetime; ValueError names the option."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_UTC)
    match = _TIME_RE.match(to_text(value or '').strip())
    if not match:
        raise ValueError('%s: %r is not an RFC 3339 time such as 2026-12-01T21:00:00Z' % (name, value))
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or '0')[:6].ljust(6, '0'))
    try:
        stamp = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    except ValueError as exc:
        raise ValueError('%s: %r is not a valid time (%s)' % (name, value, exc))
    if zone and zone.upper() != 'Z':
        sign = -1 if zone[0] == '-' else 1
        digits = zone[1:].replace(':', '')
        offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        stamp = stamp.replace(tzinfo=datetime.timezone(sign * offset))
    else:
        stamp = stamp.replace(tzinfo=_UTC)
    return stamp.astimezone(_UTC)


def format_time(stamp):
    """RFC 3339 in UTC with milliseconds, as Alertmanager writes it."""
    stamp = stamp.astimezone(_UTC)
    return stamp.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (stamp.microsecond // 1000)


def normalize_matcher(matcher, index=0):
    """A matcher as the v2 API spells it (name, value, isRegex, isEqual); ValueError names what is wrong."""
    if not isinstance(matcher, dict):
        raise ValueError('matchers[%d]: expected a mapping with name and value, got %r' % (index, matcher))
    name = matcher.get('name')
    value = matcher.get('value')
    if not name or not isinstance(name, str):
        raise ValueError('matchers[%d]: name is required (a label name such as alertname)' % index)
    if value is None:
        raise ValueError('matchers[%d] (%s): value is required' % (index, name))
    is_regex = matcher.get('isRegex', matcher.get('is_regex', False))
    is_equal = matcher.get('isEqual', matcher.get('is_equal', True))
    unknown = set(matcher) - set(['name', 'value', 'isRegex', 'is_regex', 'isEqual', 'is_equal'])
    if unknown:
        raise ValueError('matchers[%d] (%s): unknown keys %s; use name, value, isRegex, isEqual'
                         % (index, name, ', '.join(sorted(unknown))))
    if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise ValueError('matchers[%d] (%s): isRegex and isEqual must be true or false' % (index, name))
    value = to_text(value)
    if is_regex:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError('matchers[%d] (%s): %r is not a valid regular expression (%s)' % (index, name, value, exc))
    return dict(name=name, value=value, isRegex=is_regex, isEqual=is_equal)


def matcher_key(matchers):
    """A hashable, order-free form of a list of matchers: two silences with the same key silence the same alerts."""
    return tuple(sorted((m['name'], to_text(m['value']), bool(m.get('isRegex', False)), bool(m.get('isEqual', True)))
                        for m in matchers))


def matcher_matches(matcher, value):
    """Whether one matcher matches a label value (Alertmanager anchors regular expressions)."""
    if matcher['isRegex']:
        hit = re.match('^(?:%s)$' % matcher['value'], value) is not None
    else:
        hit = value == matcher['value']
    return hit if matcher['isEqual'] else not hit


def matches_everything(matchers):
    """True when the matchers would silence every alert.

    No matchers, or only matchers that match every non-empty label value tried (``alertname=~".*"``,
    ``alertname=~".+"``, ``alertname!=""``, ...): every alert has an alertname, so such a silence mutes all.
    A matcher on another label alone is also broad when it matches every value, since Alertmanager treats a
    missing label as the empty string and these matchers rarely care.
    """
    if not matchers:
        return True
    # A negative matcher on a value spares that value: try it too (alertname!="NoActiveWorkers" is narrow enough).
    return all(all(matcher_matches(m, probe) for probe in _PROBE_VALUES + ((m['value'],) if m['value'] else ()))
               for m in matchers)


class AlertmanagerClient(object):
    """Talks to one Alertmanager through its v2 API (``/api/v2``)."""

    def __init__(self, params):
        url = (params.get('url') or '').strip()
        if not url:
            raise AlertmanagerError('url is required: set url (or the ALERTMANAGER_URL environment variable) to '
                                    'the Alertmanager, for example http://127.0.0.1:9093')
        if not re.match(r'^https?://[^/]', url, re.IGNORECASE):
            raise AlertmanagerError('url %r is not an http(s) URL, for example http://127.0.0.1:9093' % url)
        self.url = url.rstrip('/')
        if self.url.endswith('/api/v2'):
            self.url = self.url[:-len('/api/v2')]
        self.username = params.get('url_username')
        self.password = params.get('url_password')
        self.token = params.get('bearer_token')
        self.ca_path = params.get('ca_path')
        self.validate_certs = params.get('validate_certs', True)
        self.timeout = params.get('timeout') or 10
        # HTTP headers are latin-1 on one line: anything else would be a traceback of http.client (fuzzing, issue 9).
        for name in ('url_username', 'url_password', 'bearer_token'):
            value = params.get(name)
            if value is None:
                continue
            try:
                value.encode('latin-1')
                bad = any(c in value for c in '\r\n\x00')
            except (UnicodeEncodeError, AttributeError):
                bad = True
            if bad:
                raise AlertmanagerError('%s must be one line of latin-1 characters (it goes into an HTTP header)'
                                        % name)

    def request(self, method, path, query=None, body=None):
        """One API call; returns the decoded JSON (or None for an empty body). Raises AlertmanagerError."""
        url = '%s/api/v2%s' % (self.url, path)
        if query:
            url += '?' + urlencode(query, doseq=True)
        headers = {'Accept': 'application/json'}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers['Content-Type'] = 'application/json'
        if self.token:
            headers['Authorization'] = 'Bearer %s' % self.token
        where = '%s %s' % (method, url)
        try:
            response = open_url(url, method=method, data=data, headers=headers, validate_certs=self.validate_certs,
                                url_username=self.username, url_password=self.password,
                                force_basic_auth=bool(self.username), timeout=self.timeout, ca_path=self.ca_path,
                                follow_redirects='safe', http_agent='incident.response')
            raw = response.read()
        except HTTPError as exc:
            try:
                detail = to_text(exc.read()).strip()
            except Exception:  # pylint: disable=broad-except
                detail = ''
            raise AlertmanagerError('Alertmanager refused %s: HTTP %s %s' % (where, exc.code, detail[:300] or exc.reason),
                                    status_code=exc.code)
        except SSLValidationError as exc:
            raise AlertmanagerError('TLS verification failed for %s: %s (set ca_path, or validate_certs=false on a '
                                    'lab)' % (self.url, to_native(exc).splitlines()[0]))
        except (URLError, UrlsConnectionError, socket.timeout, socket.error, OSError) as exc:
            reason = getattr(exc, 'reason', None) or exc
            raise AlertmanagerError('Alertmanager at %s is unreachable (%s): %s' % (self.url, where, to_native(reason)))
        if not raw:
            return None
        try:
            return json.loads(to_text(raw))
        except ValueError:
            raise AlertmanagerError('Alertmanager at %s answered %s with something that is not JSON: %r'
                                    % (self.url, where, to_text(raw)[:200]))

    # The calls the modules use.
    def silences(self):
        result = self.request('GET', '/silences')
        if not isinstance(result, list):
            raise AlertmanagerError('Alertmanager at %s: GET /api/v2/silences did not return a list' % self.url)
        return result

    def silence(self, silence_id):
        return self.request('GET', '/silence/%s' % quote(silence_id, safe=''))

    def post_silence(self, silence):
        result = self.request('POST', '/silences', body=silence) or {}
        return result.get('silenceID')

    def expire_silence(self, silence_id):
        self.request('DELETE', '/silence/%s' % quote(silence_id, safe=''))

    def alerts(self, filters=None, receiver=None, active=True, silenced=True, inhibited=True, unprocessed=True):
        query = [('active', str(bool(active)).lower()), ('silenced', str(bool(silenced)).lower()),
                 ('inhibited', str(bool(inhibited)).lower()), ('unprocessed', str(bool(unprocessed)).lower())]
        for expression in filters or []:
            query.append(('filter', expression))
        if receiver:
            query.append(('receiver', receiver))
        result = self.request('GET', '/alerts', query=query)
        if not isinstance(result, list):
            raise AlertmanagerError('Alertmanager at %s: GET /api/v2/alerts did not return a list' % self.url)
        return result
