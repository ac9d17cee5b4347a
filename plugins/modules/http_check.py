#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: http_check
short_description: Probe HTTP endpoints a few times and judge them by answers and latency p95
version_added: 0.1.0
description:
  - Sends O(count) requests to each of O(urls) and records each answer's status code and latency, the p95 of the
    latencies and whether the body matches O(body_pattern).
  - "RV(health): V(down) when an endpoint never answered as expected (status in O(expect_status) and body
    matching); V(degraded) when some probes failed or a p95 is above O(p95_warning) seconds; else V(ok)."
  - "RV(status), the status every diagnosis of the collection speaks: V(critical) when an endpoint is down or at
    SEV1/SEV2 (a p95 above O(p95_critical)), V(warning) when degraded at SEV3, else V(ok)."
  - "RV(severity) follows the schedule generator runbook: every endpoint down is SEV1 (complete outage), one
    endpoint of several down or a p95 above O(p95_critical) (30 s) is SEV2, a p95 above O(p95_warning) (10 s)
    or some failed probes is SEV3."
  - Used by the playbooks of the collection to verify a recovery. Reads only.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.attributes.info_module
options:
  urls:
    description: The endpoints to probe.
    type: list
    elements: str
    required: true
    aliases: [url]
  count:
    description: Requests per endpoint.
    type: int
    default: 3
  interval:
    description: Seconds to pause between two requests to the same endpoint (at most 3600).
    type: float
    default: 0
  method:
    description: HTTP method.
    type: str
    default: GET
    choices: [GET, HEAD, POST, OPTIONS]
  expect_status:
    description: Status codes that count as a good answer.
    type: list
    elements: int
    default: [200]
  body_pattern:
    description:
      - A Python regular expression the body of a good answer must match (searched in the first MiB of the
        body). Nested repeats such as V((a+\)+) are refused, and a search that takes more than a second fails
        the module.
    type: str
  headers:
    description:
      - Request headers. The values of credential headers (C(Authorization), C(Proxy-Authorization), C(Cookie),
        and any header whose name holds C(token), C(key) or C(secret)) are masked in the module's output
        (C(invocation) too).
    type: dict
  url_username:
    description:
      - User name for HTTP Basic authentication (sent on the first request, as O(url_password)).
      - Prefer it to credentials in the URL; a password written in a URL (C(http://user:pw@host/)) is masked
        in the output all the same.
    type: str
  url_password:
    description: Password for HTTP Basic authentication. Never shown in the output.
    type: str
  request_timeout:
    description:
      - Seconds to wait for one answer (positive, at most 3600). A request that times out counts as failed with
        this latency.
      - Keep it above O(p95_critical) so that a SEV2 latency can be measured.
    type: float
    default: 35
  validate_certs:
    description: Verify TLS certificates.
    type: bool
    default: true
  p95_warning:
    description: p95 latency in seconds above which an endpoint is degraded (SEV3).
    type: float
    default: 10
  p95_critical:
    description: p95 latency in seconds above which an endpoint is degraded at SEV2.
    type: float
    default: 30
'''

EXAMPLES = r'''
- name: Is the API back?
  incident.response.http_check:
    urls:
      - http://127.0.0.1:58080/health
      - http://127.0.0.1:58080/health/ready
    count: 5
  register: api
  failed_when: api.status != 'ok'

- name: Tell a slow API from a dead one
  ansible.builtin.debug:
    msg: "{{ api.health }}: {{ api.reasons }}"

- name: Wait until the API answers (the module's own retries with until)
  incident.response.http_check:
    url: http://127.0.0.1:58080/health
    body_pattern: '"status": *"ok"'
  register: health
  until: health.status == 'ok'
  retries: 20
  delay: 3
'''

RETURN = r'''
status:
  description: C(ok), C(warning) or C(critical), the worst endpoint (the status of every diagnosis).
  returned: success
  type: str
  sample: ok
health:
  description: C(ok), C(degraded) or C(down), the worst endpoint (the detail behind RV(status)).
  returned: success
  type: str
  sample: ok
changed:
  description: Always false (reads only).
  returned: always
  type: bool
  sample: false
severity:
  description: C(SEV1), C(SEV2), C(SEV3), or null when ok.
  returned: success
  type: str
  sample: SEV3
priority:
  description: C(P0), C(P1), C(P2), the priority of the severity on the collection's one scale (P0 = SEV1, see
    docs/incident-record.md), or null when ok.
  returned: success
  type: str
  sample: P2
reasons:
  description: One sentence per finding.
  returned: success
  type: list
  elements: str
  sample: ["http://127.0.0.1:58080/health: 0 of 3 probes answered as expected (500 x3)"]
p95:
  description: The highest p95 latency of the endpoints, in seconds (null when none answered).
  returned: success
  type: float
  sample: 0.012
endpoints:
  description: One entry per URL.
  returned: success
  type: list
  elements: dict
  contains:
    url:
      description: The URL.
      type: str
    status:
      description: C(ok), C(warning) or C(critical).
      type: str
    health:
      description: C(ok), C(degraded) or C(down).
      type: str
    severity:
      description: C(SEV2), C(SEV3), or null when ok.
      type: str
    ok_count:
      description: Probes answered as expected.
      type: int
    count:
      description: Probes sent.
      type: int
    status_codes:
      description: Status code of each probe (null when no HTTP answer).
      type: list
      elements: int
    latencies:
      description: Seconds of each probe.
      type: list
      elements: float
    p95:
      description: p95 of the latencies of the probes that got an answer or timed out (nearest rank).
      type: float
    body_match:
      description: Whether every answered body matched O(body_pattern) (null without a pattern).
      type: bool
    errors:
      description: Errors of the probes that got no HTTP answer.
      type: list
      elements: str
'''

import math
import re
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import unquote
from ansible.module_utils.urls import open_url

from ansible_collections.incident.response.plugins.module_utils._common import (
    diagnosis_result,
    duration_param,
    new_module,
    redact,
    regex_param,
    worst_status,
)
from ansible_collections.incident.response.plugins.module_utils._incident import priority_for

LEVELS = ('ok', 'degraded', 'down')
MAX_SECONDS = 3600
BODY_LIMIT = 1024 * 1024


def status_of(health, severity):
    """The diagnosis status of an endpoint's health: down or SEV1/SEV2 is critical, degraded warning."""
    if health == 'down' or severity in ('SEV1', 'SEV2'):
        return 'critical'
    return 'warning' if health == 'degraded' else 'ok'


def p95(values):
    """Nearest-rank 95th percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(int(math.ceil(0.95 * len(ordered))) - 1, 0)]


def probe(module, url, pattern):
    p = module.params
    start = time.monotonic()
    code, body, error, timed_out = None, None, None, False
    try:
        response = open_url(url, method=p['method'], headers=p['headers'], timeout=p['request_timeout'],
                            validate_certs=p['validate_certs'], follow_redirects='safe',
                            url_username=p['url_username'], url_password=p['url_password'],
                            force_basic_auth=bool(p['url_username']))
        code = response.getcode()
        body = response.read()
    except HTTPError as exc:
        code = exc.code
        try:
            body = exc.read()
        except (OSError, ValueError):
            body = b''
    except (socket.timeout, TimeoutError) as exc:
        error, timed_out = 'timed out after %ss' % p['request_timeout'], True
    except URLError as exc:
        reason = exc.reason
        timed_out = isinstance(reason, (socket.timeout, TimeoutError))
        error = 'timed out after %ss' % p['request_timeout'] if timed_out else to_native(reason)
    except (OSError, ValueError) as exc:
        error = to_native(exc)
    elapsed = round(time.monotonic() - start, 4)
    text = to_native(body or b'', errors='replace')
    matched = None
    if pattern is not None and code is not None:
        matched = bool(pattern.search(text))
    good = code in p['expect_status'] and matched is not False
    return dict(code=code, latency=elapsed, error=error, timed_out=timed_out, matched=matched, good=good)


def judge(endpoint, p):
    """Status and severity of one endpoint."""
    reasons = []
    if endpoint['ok_count'] == 0:
        codes = ', '.join(sorted(set(str(c) for c in endpoint['status_codes'] if c is not None))) or 'no answer'
        reasons.append('%s: 0 of %d probes answered as expected (%s%s)' % (
            endpoint['url'], endpoint['count'], codes,
            ('; ' + endpoint['errors'][0]) if endpoint['errors'] else ''))
        return 'down', 'SEV2', reasons
    status, severity = 'ok', None
    if endpoint['ok_count'] < endpoint['count']:
        status, severity = 'degraded', 'SEV3'
        reasons.append('%s: %d of %d probes failed' % (endpoint['url'], endpoint['count'] - endpoint['ok_count'],
                                                       endpoint['count']))
    value = endpoint['p95']
    if value is not None and value > p['p95_critical']:
        status, severity = 'degraded', 'SEV2'
        reasons.append('%s: p95 %.2fs is above %ss (SEV2)' % (endpoint['url'], value, p['p95_critical']))
    elif value is not None and value > p['p95_warning']:
        status = 'degraded'
        severity = severity or 'SEV3'
        reasons.append('%s: p95 %.2fs is above %ss (SEV3)' % (endpoint['url'], value, p['p95_warning']))
    return status, severity, reasons


SECRET_HEADER = re.compile(r'^(?:proxy-)?authorization$|^cookie$|token|key|secret|password', re.IGNORECASE)
URL_PASSWORD = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:([^@/\s]+)@')


def credentials_in(params):
    """The secrets of the arguments that are not no_log options: a password written in a URL, the values of
    credential headers. Read from the raw arguments too (before their checks), as a failure returns them."""
    found = set()
    urls = params.get('urls') if params.get('urls') is not None else params.get('url')
    for url in urls if isinstance(urls, list) else [urls]:
        match = URL_PASSWORD.match(url) if isinstance(url, str) else None
        if match:
            found.add(match.group(1))
            found.add(unquote(match.group(1)))
    headers = params.get('headers')
    if isinstance(headers, dict):
        for name, value in headers.items():
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and SECRET_HEADER.search(str(name)):
                found.add(str(value))
                # 'Bearer xyz', 'Basic xyz': the credential alone too (it may be echoed without its scheme)
                found.update(part for part in str(value).split()[1:] if len(part) >= 4)
    found.discard('')
    return found


class HttpCheckModule(AnsibleModule):
    """AnsibleModule that masks the credentials of ``urls`` and ``headers`` everywhere in what it returns
    (``invocation.module_args`` included), as it masks no_log options."""

    def _mask_credentials(self):
        params = getattr(self, 'params', None)
        if isinstance(params, dict):
            self.no_log_values.update(credentials_in(params))

    def exit_json(self, **kwargs):
        self._mask_credentials()
        super(HttpCheckModule, self).exit_json(**kwargs)

    def fail_json(self, msg, **kwargs):
        self._mask_credentials()
        super(HttpCheckModule, self).fail_json(msg=msg, **kwargs)


def main():
    module = new_module(
        HttpCheckModule,
        argument_spec=dict(
            urls=dict(type='list', elements='str', required=True, aliases=['url']),
            count=dict(type='int', default=3),
            interval=dict(type='float', default=0),
            method=dict(type='str', default='GET', choices=['GET', 'HEAD', 'POST', 'OPTIONS']),
            expect_status=dict(type='list', elements='int', default=[200]),
            body_pattern=dict(type='str'),
            headers=dict(type='dict'),
            url_username=dict(type='str'),
            url_password=dict(type='str', no_log=True),
            request_timeout=dict(type='float', default=35),
            validate_certs=dict(type='bool', default=True),
            p95_warning=dict(type='float', default=10),
            p95_critical=dict(type='float', default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p['urls']:
        module.fail_json(msg='urls: give at least one URL')
    for url in p['urls']:
        if not re.match(r'^https?://[^/\s]+', url or ''):
            module.fail_json(msg='urls: %r is not an http:// or https:// URL' % redact(url))
    if p['count'] < 1:
        module.fail_json(msg='count must be at least 1, got %s' % p['count'])
    if not (p['request_timeout'] > 0) or not (p['interval'] >= 0):
        module.fail_json(msg='request_timeout must be positive and interval not negative')
    duration_param(module, 'request_timeout', maximum=MAX_SECONDS)
    duration_param(module, 'interval', maximum=MAX_SECONDS)
    for name in ('p95_warning', 'p95_critical'):
        duration_param(module, name)
    if p['p95_warning'] < 0 or p['p95_critical'] < p['p95_warning']:
        module.fail_json(msg='p95_warning must not be negative and p95_critical not below it, got %s and %s'
                         % (p['p95_warning'], p['p95_critical']))
    for name, value in (p['headers'] or {}).items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) \
                or any(c in '%s%s' % (name, value) for c in '\r\n\x00'):
            module.fail_json(msg='headers: %r must be a single-line string' % redact(str(name)))
    pattern = regex_param(module, 'body_pattern', max_input=BODY_LIMIT) if p['body_pattern'] else None

    endpoints, reasons, severities, healths = [], [], [], []
    for url in p['urls']:
        probes = []
        for index in range(p['count']):
            if index and p['interval']:
                time.sleep(p['interval'])
            probes.append(probe(module, url, pattern))
        measured = [x['latency'] for x in probes if x['code'] is not None or x['timed_out']]
        matches = [x['matched'] for x in probes if x['matched'] is not None]
        endpoint = dict(
            url=redact(url),
            count=len(probes),
            ok_count=len([x for x in probes if x['good']]),
            status_codes=[x['code'] for x in probes],
            latencies=[x['latency'] for x in probes],
            p95=p95(measured),
            body_match=(all(matches) if matches else None) if pattern is not None else None,
            errors=[redact(x['error']) for x in probes if x['error']],
        )
        health, severity, found = judge(endpoint, p)
        endpoint['health'] = health
        endpoint['status'] = status_of(health, severity)
        endpoint['severity'] = severity
        endpoints.append(endpoint)
        reasons.extend(found)
        healths.append(health)
        if severity:
            severities.append(severity)

    down = healths.count('down')
    health = max(healths, key=LEVELS.index)
    severity = min(severities) if severities else None
    if down and down == len(healths):
        severity = 'SEV1'
        reasons.append('every endpoint is down: complete outage (SEV1)')
    priority = priority_for(severity) if severity else None
    p95_values = [e['p95'] for e in endpoints if e['p95'] is not None]
    status = worst_status([status_of(health, severity)] + [e['status'] for e in endpoints])
    module.exit_json(**diagnosis_result(status, reasons, health=health, severity=severity, priority=priority,
                                        p95=max(p95_values) if p95_values else None, endpoints=endpoints))


if __name__ == '__main__':
    main()
