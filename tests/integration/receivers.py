"""Receivers for the notification tests (issue 8).

* ``HttpReceiver`` is a STAND-IN for Slack's incoming webhooks, a generic JSON webhook and PagerDuty's Events
  API v2: none of them can run here. It answers the way each one does (Slack ``ok``, PagerDuty ``202`` with
  ``{"status": "success", "dedup_key": ...}``) and records every request, so the tests assert on what the
  services would have received. Paths:
  ``/slack/<token>`` (200 ``ok``), ``/webhook/<token>`` (200 JSON), ``/v2/enqueue`` (PagerDuty, 202),
  ``/fail/...`` (500), ``/slow/<seconds>/...`` (answers ``ok`` after that many seconds).
* ``SmtpServer`` is a REAL SMTP server (aiosmtpd) on loopback with STARTTLS (a self-signed certificate made
  with openssl for the test) and AUTH (PLAIN/LOGIN, only after STARTTLS).
"""
import json
import os
import socket
import subprocess
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class HttpReceiver(object):
    """STAND-IN for Slack, a generic webhook and PagerDuty: records what it is sent."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw.decode('utf-8'))
                except ValueError:
                    body = None
                with receiver.lock:
                    receiver.requests.append(dict(path=self.path, headers=dict(self.headers.items()), raw=raw,
                                                  json=body))
                if self.path.startswith('/fail'):
                    self._answer(500, b'internal error', 'text/plain')
                elif self.path.startswith('/slow/'):
                    time.sleep(float(self.path.split('/')[2]))
                    self._answer(200, b'ok', 'text/plain')
                elif self.path.startswith('/slack/'):
                    self._answer(200, b'ok', 'text/plain')
                elif self.path.startswith('/v2/enqueue'):
                    if not isinstance(body, dict) or not body.get('routing_key') or \
                            body.get('event_action') not in ('trigger', 'acknowledge', 'resolve'):
                        self._answer(400, json.dumps(dict(status='invalid event', message='Event object is invalid'))
                                     .encode(), 'application/json')
                        return
                    self._answer(202, json.dumps(dict(status='success', message='Event processed',
                                                      dedup_key=body.get('dedup_key'))).encode(), 'application/json')
                else:
                    self._answer(200, b'{"received": true}', 'application/json')

            def _answer(self, code, data, ctype):
                self.send_response(code)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = 'http://127.0.0.1:%d' % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self, prefix=''):
        with self.lock:
            return [dict(r) for r in self.requests if r['path'].startswith(prefix)]

    def snapshot(self):
        with self.lock:
            return [(r['path'], r['raw']) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1 / localhost (openssl), for the SMTP server's STARTTLS."""
    cert = os.path.join(directory, 'smtp-cert.pem')
    key = os.path.join(directory, 'smtp-key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class SmtpServer(object):
    """A real SMTP server (aiosmtpd) on loopback: STARTTLS required, AUTH required after it."""

    def __init__(self, directory, username='incident-bot', password='smtp-Secret-Pa55'):
        import ssl  # pylint: disable=import-outside-toplevel
        from aiosmtpd.controller import Controller  # pylint: disable=import-outside-toplevel
        from aiosmtpd.smtp import AuthResult, LoginPassword  # pylint: disable=import-outside-toplevel

        self.username = username
        self.password = password
        self.messages = []
        self.auth_attempts = []
        self.cert, self.key = make_certificate(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        server = self

        class Handler(object):
            async def handle_DATA(self, _smtp, _session, envelope):  # noqa: N802
                parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
                server.messages.append(dict(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                                            raw=envelope.original_content or envelope.content,
                                            subject=str(parsed['Subject']),
                                            headers=dict((k, str(v)) for k, v in parsed.items()),
                                            body=parsed.get_body(('plain',)).get_content().replace('\r\n', '\n')))
                return '250 Message accepted for delivery'

        def authenticator(_server, _session, _envelope, _mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == server.username and \
                auth_data.password.decode() == server.password
            server.auth_attempts.append(ok)
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(Handler(), hostname='127.0.0.1', port=self.port, tls_context=context,
                                     require_starttls=True, authenticator=authenticator, auth_required=True,
                                     auth_require_tls=True, ready_timeout=30)
        self.controller.start()

    def snapshot(self):
        return [m['raw'] for m in self.messages]

    def close(self):
        self.controller.stop()
