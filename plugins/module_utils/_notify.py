# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Notification channels of the incident record (issue 8, section 3).

Private to the collection. Four channel types:

- ``slack``: a Slack incoming webhook (``{"text": ...}``, Slack answers ``ok``);
- ``webhook``: a generic JSON webhook (the message and the incident's fields, POST);
- ``email``: SMTP with ``smtplib`` (STARTTLS or implicit TLS, AUTH), one text/plain message;
- ``pagerduty``: PagerDuty Events API v2 (``trigger`` / ``acknowledge`` / ``resolve``, the incident id as
  ``dedup_key``; the endpoint URL is an option, for PagerDuty's regional endpoints).

HTTP goes through Ansible's ``open_url`` (proxies, TLS verification, timeouts as every Ansible module has
them). Secrets (webhook URLs, routing keys, SMTP passwords, header values) never reach an error text: every
message built here is scrubbed of the channel's secret values first.

Routing: each channel has an ``audience``; a severity reaches the audiences of ``_incident_timers.audiences``
(from the SEVERITY table's audience of the level for the record's runbook: executive reaches executive,
management and team; SEV1 and SEV2 also page (oncall); SEV1 also reaches the public status page; document
reaches nobody). The status page template goes to ``public`` channels
only; every other template to the other channels.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import email.message
import email.utils
import json
import smtplib
import socket
import ssl

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.incident.response.plugins.module_utils import _incident_timers as timers_mod

CHANNEL_TYPES = ('slack', 'webhook', 'email', 'pagerduty')
AUDIENCES = ('executive', 'management', 'team', 'oncall', 'public')
DEFAULT_AUDIENCE = dict(slack='team', webhook='team', email='management', pagerduty='oncall')
PAGERDUTY_URL = 'https://events.pagerduty.com/v2/enqueue'
PAGERDUTY_SEVERITY = dict(SEV1='critical', SEV2='error', SEV3='warning', SEV4='info')
PAGERDUTY_ACTIONS = ('trigger', 'acknowledge', 'resolve')

CHANNEL_SPEC = dict(
    name=dict(type='str'),
    type=dict(type='str', required=True, choices=list(CHANNEL_TYPES)),
    audience=dict(type='str', choices=list(AUDIENCES)),
    severities=dict(type='list', elements='str'),
    templates=dict(type='list', elements='str'),
    required=dict(type='bool', default=False),
    url=dict(type='str', no_log=True),
    headers=dict(type='dict', no_log=True),
    routing_key=dict(type='str', no_log=True),
    slack_channel=dict(type='str'),
    username=dict(type='str'),
    icon_emoji=dict(type='str'),
    smtp_host=dict(type='str'),
    smtp_port=dict(type='int'),
    smtp_username=dict(type='str'),
    smtp_password=dict(type='str', no_log=True),
    smtp_security=dict(type='str', choices=['starttls', 'tls', 'none'], default='starttls'),
    mail_from=dict(type='str'),
    mail_to=dict(type='list', elements='str'),
    ca_path=dict(type='path'),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='int', default=10),
)

SECRET_KEYS = ('url', 'routing_key', 'smtp_password')
KINDS = ('initial', 'update', 'resolution', 'escalation', 'status_page')


class ChannelError(Exception):
    pass


def channel_name(channel):
    return channel.get('name') or channel['type']


def secrets_of(channel):
    """The values of a channel that must never appear in a result, an event or a message."""
    found = [channel.get(key) for key in SECRET_KEYS if channel.get(key)]
    for value in (channel.get('headers') or {}).values():
        if value:
            found.append(str(value))
    if channel.get('url'):
        # the path of a webhook URL is its token (Slack: /services/T.../B.../XXXX)
        path = channel['url'].split('://', 1)[-1].partition('/')[2]
        if len(path) >= 8:
            found.append(path)
    return sorted(set(str(item) for item in found if len(str(item)) >= 4), key=len, reverse=True)


def scrub(text, secrets):
    text = '' if text is None else str(text)
    for secret in secrets:
        text = text.replace(secret, '********')
    return text


def validate_channel(channel, known_templates=()):
    """One clear message for a channel that cannot work, before anything is sent."""
    name = channel_name(channel)
    kind = channel['type']
    if kind in ('slack', 'webhook') and not channel.get('url'):
        raise ChannelError('channel %s (%s): url is required (the webhook URL, a secret: keep it in Vault or an AWX '
                           'credential)' % (name, kind))
    if kind in ('slack', 'webhook', 'pagerduty') and channel.get('url') and \
            not channel['url'].lower().startswith(('http://', 'https://')):
        raise ChannelError('channel %s (%s): url must be an http:// or https:// URL' % (name, kind))
    if kind == 'pagerduty' and not channel.get('routing_key'):
        raise ChannelError('channel %s (pagerduty): routing_key is required (the integration key of the service)'
                           % name)
    if kind == 'email':
        missing = [key for key in ('smtp_host', 'mail_from', 'mail_to') if not channel.get(key)]
        if missing:
            raise ChannelError('channel %s (email): %s required' % (name, ', '.join(missing) + (
                ' is' if len(missing) == 1 else ' are')))
        if channel.get('smtp_password') and not channel.get('smtp_username'):
            raise ChannelError('channel %s (email): smtp_password given without smtp_username' % name)
    for severity in channel.get('severities') or []:
        if severity not in timers_mod.SEVERITIES:
            raise ChannelError('channel %s: severities: unknown severity %r (use %s)'
                               % (name, severity, ', '.join(timers_mod.SEVERITIES)))
    for template in channel.get('templates') or []:
        if known_templates and template not in known_templates:
            raise ChannelError('channel %s: templates: unknown template %r (use a kind: %s, or a template name)'
                               % (name, template, ', '.join(KINDS)))
    if channel.get('timeout') is not None and channel['timeout'] <= 0:
        raise ChannelError('channel %s: timeout must be a positive number of seconds' % name)


def routed(channel, severity, kind, template, system=None):
    """(True, reason) when this channel gets a message of ``kind`` for an incident of ``severity``."""
    audience = channel.get('audience') or DEFAULT_AUDIENCE[channel['type']]
    wanted = channel.get('templates')
    if wanted:
        if kind not in wanted and template not in wanted:
            return False, 'templates of the channel: %s' % ', '.join(wanted)
    elif (kind == 'status_page') != (audience == 'public'):
        return False, ('the status page goes to public channels only' if kind == 'status_page'
                       else 'a public channel gets the status page only')
    if channel['type'] == 'pagerduty' and kind == 'status_page':
        return False, 'PagerDuty gets no status page'
    if channel.get('severities'):
        if severity in channel['severities']:
            return True, 'severities of the channel'
        return False, '%s is not in the severities of the channel (%s)' % (severity, ', '.join(channel['severities']))
    if audience in timers_mod.audiences(severity, system):
        return True, '%s reaches the %s audience' % (severity, audience)
    if severity == 'SEV4':
        return False, 'SEV4: document only, no notification'
    return False, '%s does not reach the %s audience' % (severity, audience)


def pagerduty_action(kind, record, requested='auto'):
    if requested and requested != 'auto':
        return requested
    if kind == 'resolution' or record.get('status') in ('resolved', 'closed'):
        return 'resolve'
    if kind == 'update' and ((record.get('times') or {}).get('acknowledged')
                             or record.get('status') in ('identified', 'mitigating', 'monitoring')):
        return 'acknowledge'
    return 'trigger'


def _post_json(channel, payload, secrets):
    body = json.dumps(payload).encode('utf-8')
    headers = {'Content-Type': 'application/json'}
    headers.update(dict((str(k), str(v)) for k, v in (channel.get('headers') or {}).items()))
    url = channel.get('url')
    try:
        response = open_url(url, data=body, headers=headers, method='POST', timeout=channel.get('timeout') or 10,
                            validate_certs=channel.get('validate_certs', True), ca_path=channel.get('ca_path'),
                            use_proxy=True, follow_redirects='none')
        status = response.getcode()
        text = response.read(65536).decode('utf-8', 'replace')
    except HTTPError as exc:
        try:
            text = exc.read(2048).decode('utf-8', 'replace')
        except Exception:  # pylint: disable=broad-except
            text = ''
        raise ChannelError(scrub('HTTP %s %s%s' % (exc.code, exc.reason, (': ' + ' '.join(text.split())[:300])
                                                   if text else ''), secrets))
    except URLError as exc:
        raise ChannelError(scrub('cannot reach the endpoint: %s' % (exc.reason,), secrets))
    except (socket.timeout, TimeoutError):
        raise ChannelError('no answer within %s seconds' % (channel.get('timeout') or 10))
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise ChannelError(scrub('request failed: %s' % (exc,), secrets))
    return status, text


def send_slack(channel, message, record, secrets):
    payload = dict(text='*%s*\n%s' % (message['subject'], message['body']))
    for key, field in (('slack_channel', 'channel'), ('username', 'username'), ('icon_emoji', 'icon_emoji')):
        if channel.get(key):
            payload[field] = channel[key]
    status, text = _post_json(channel, payload, secrets)
    if status >= 300 or (text.strip() and text.strip() != 'ok' and not text.strip().startswith('{')):
        raise ChannelError(scrub('Slack answered HTTP %s: %s' % (status, text.strip()[:300]), secrets))
    return dict(http_status=status)


def send_webhook(channel, message, record, secrets):
    payload = dict(
        incident_id=record.get('id'), template=message['template'], kind=message['kind'],
        update_number=message['update_number'], severity=record.get('severity'), priority=record.get('priority'),
        status=record.get('status'), system=record.get('system'), title=record.get('title'),
        subject=message['subject'], text=message['body'], sent_at=timers_mod.iso(timers_mod.utcnow()),
    )
    status, text = _post_json(channel, payload, secrets)
    if status >= 300:
        raise ChannelError(scrub('the webhook answered HTTP %s: %s' % (status, text.strip()[:300]), secrets))
    return dict(http_status=status)


def send_pagerduty(channel, message, record, secrets, action='trigger'):
    if action not in PAGERDUTY_ACTIONS:
        raise ChannelError('pagerduty event_action must be one of %s' % ', '.join(PAGERDUTY_ACTIONS))
    channel = dict(channel, url=channel.get('url') or PAGERDUTY_URL)
    payload = dict(routing_key=channel['routing_key'], event_action=action, dedup_key=record.get('id'))
    if action == 'trigger':
        payload['payload'] = dict(
            summary=message['subject'][:1024], source=record.get('system') or 'incident.response',
            severity=PAGERDUTY_SEVERITY.get(record.get('severity'), 'error'), component=record.get('system'),
            custom_details=dict(incident_id=record.get('id'), status=record.get('status'),
                                severity=record.get('severity'), template=message['template'],
                                update_number=message['update_number'], text=message['body']))
        payload['client'] = 'incident.response'
    status, text = _post_json(channel, payload, secrets)
    try:
        answer = json.loads(text) if text.strip() else {}
    except ValueError:
        answer = {}
    if status >= 300 or (isinstance(answer, dict) and answer.get('status') not in (None, 'success')):
        raise ChannelError(scrub('PagerDuty answered HTTP %s: %s' % (status, text.strip()[:300]), secrets))
    return dict(http_status=status, event_action=action, dedup_key=record.get('id'))


def send_email(channel, message, record, secrets):
    msg = email.message.EmailMessage()
    msg['Subject'] = message['subject']
    msg['From'] = channel['mail_from']
    msg['To'] = ', '.join(channel['mail_to'])
    msg['Date'] = email.utils.formatdate(usegmt=True)
    msg['Message-ID'] = email.utils.make_msgid(domain='incident.response')
    msg['X-Incident-Id'] = str(record.get('id'))
    msg.set_content(message['body'])
    security = channel.get('smtp_security') or 'starttls'
    port = channel.get('smtp_port') or (465 if security == 'tls' else 587 if security == 'starttls' else 25)
    host = channel['smtp_host']
    timeout = channel.get('timeout') or 10
    if channel.get('validate_certs', True):
        context = ssl.create_default_context(cafile=channel.get('ca_path'))
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    where = 'SMTP %s:%s' % (host, port)
    client = None
    try:
        if security == 'tls':
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        client.ehlo()
        if security == 'starttls':
            if not client.has_extn('starttls'):
                raise ChannelError('%s does not offer STARTTLS (set smtp_security: none only on a trusted network)'
                                   % where)
            client.starttls(context=context)
            client.ehlo()
        if channel.get('smtp_username'):
            client.login(channel['smtp_username'], channel.get('smtp_password') or '')
        refused = client.send_message(msg)
    except ChannelError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise ChannelError(scrub('%s: authentication as %s failed (%s)' % (
            where, channel.get('smtp_username'), exc.smtp_code), secrets))
    except smtplib.SMTPException as exc:
        raise ChannelError(scrub('%s: %s' % (where, exc), secrets))
    except (socket.timeout, TimeoutError):
        raise ChannelError('%s: no answer within %s seconds' % (where, timeout))
    except (OSError, ssl.SSLError) as exc:
        raise ChannelError(scrub('%s: %s' % (where, exc.strerror or exc), secrets))
    finally:
        if client is not None:
            try:
                client.quit()
            except Exception:  # pylint: disable=broad-except
                pass
    if refused:
        raise ChannelError('%s refused %s' % (where, ', '.join(sorted(refused))))
    return dict(recipients=list(channel['mail_to']), message_id=msg['Message-ID'])


def send(channel, message, record, pagerduty_event_action='trigger'):
    """Deliver one rendered message; returns a detail dict or raises ChannelError (scrubbed)."""
    secrets = secrets_of(channel)
    kind = channel['type']
    try:
        if kind == 'slack':
            return send_slack(channel, message, record, secrets)
        if kind == 'webhook':
            return send_webhook(channel, message, record, secrets)
        if kind == 'pagerduty':
            return send_pagerduty(channel, message, record, secrets, pagerduty_event_action)
        return send_email(channel, message, record, secrets)
    except ChannelError as exc:
        raise ChannelError(scrub(str(exc), secrets))
    except Exception as exc:  # pylint: disable=broad-except
        raise ChannelError(scrub('%s: %s' % (exc.__class__.__name__, exc), secrets))
