#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end of `make demo`: what the incident record kept of the demo's incidents.

Prints the incidents opened by the demo and the timeline of the emergency incident, sends the initial notification
to a local HTTP receiver (a STAND-IN for Slack, started here on loopback: Slack cannot run on this machine) and
prints what it received, then writes the post-incident review and prints the paths of review.md and review.html.

usage: demo_incident.py STORE_PATH EMERGENCY_INCIDENT_ID [OTHER_INCIDENT_ID ...]
"""
from __future__ import print_function

import http.server
import json
import os
import subprocess
import sys
import threading

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(ROOT, 'build', 'collections'))

from ansible_collections.incident.response.plugins.module_utils._incident import get_store  # noqa: E402 pylint: disable=wrong-import-position


class StandInSlack(http.server.BaseHTTPRequestHandler):
    """A STAND-IN for a Slack incoming webhook: keeps what it was sent, answers 'ok' as Slack does."""
    received = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        self.received.append(json.loads(body.decode('utf-8') or '{}'))
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.end_headers()
        self.wfile.write(b'ok')

    def log_message(self, *args):  # quiet
        pass


def step(text):
    print('\n\033[1m==> %s\033[0m' % text)


def ansible_module(name, args):
    cmd = ['ansible', 'localhost', '-m', 'incident.response.' + name, '-a', json.dumps(args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    store_path, emergency, others = argv[0], argv[1], argv[2:]
    store = get_store(dict(store='files', store_path=store_path))

    step('The incidents of this demo (store: %s)' % store_path)
    for incident_id in [emergency] + others:
        record = store.get(incident_id)
        if record is None:
            print('  %s: not found' % incident_id)
            continue
        print('  %-28s %-5s %-12s %s' % (record['id'], record.get('severity') or '-', record.get('status'),
                                         record.get('title') or ''))

    step('Timeline of %s (recorded by the timeline callback)' % emergency)
    events = sorted(store.events(emergency), key=lambda e: e.get('time') or '')
    for event in events:
        what = event.get('task') or event.get('message') or event.get('play') or ''
        detail = event.get('summary') or event.get('outcome') or ''
        print('  %s  %-10s %-60.60s %s' % ((event.get('time') or '')[11:19], event.get('type'), what, detail))
    print('  (%d events)' % len(events))

    step('Initial notification to a local STAND-IN for Slack')
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), StandInSlack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = 'http://127.0.0.1:%d/services/T000/B000/demo' % server.server_address[1]
    result = ansible_module('incident_notify', dict(
        incident_id=emergency, template='initial', store='files', store_path=store_path,
        channels=[dict(name='slack-demo', type='slack', url=url, severities=['SEV1', 'SEV2', 'SEV3', 'SEV4'])]))
    server.shutdown()
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-2000:])
    for message in StandInSlack.received:
        print('  received on the stand-in receiver:')
        for line in (message.get('text') or json.dumps(message)).splitlines():
            print('    | ' + line)
    if not StandInSlack.received:
        print('  nothing was received (see the output above)')

    step('Post-incident review of %s' % emergency)
    review = subprocess.run(['ansible-playbook', 'playbooks/post_incident_review.yml', '-e', 'incident_id=' + emergency,
                             '-e', 'incident_store_path=' + store_path], cwd=ROOT, capture_output=True, text=True,
                            check=False, timeout=300)
    if review.returncode != 0:
        print(review.stdout[-3000:], review.stderr[-2000:])
        return 1
    folder = os.path.join(store_path, emergency)
    print('  Markdown (with a Mermaid gantt): %s' % os.path.join(folder, 'review.md'))
    print('  HTML report (timeline as SVG):   %s' % os.path.join(folder, 'review.html'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
