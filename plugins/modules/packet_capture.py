#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: packet_capture
short_description: A bounded packet capture (tcpdump) into the incident's evidence, never left running
version_added: 0.3.0
description:
  - Runs C(tcpdump -i <interface> -nn -U -w - <proto> port <port>) synchronously and writes what it captures into
    a new capture directory of the incident's evidence (C(<evidence_dir>/NNN-<label>/capture.pcap), mode 0600),
    with a manifest and C(SHA256SUMS) like M(incident.response.evidence_capture); the manifest's sha256 is recorded
    in the incident's timeline.
  - Both bounds are required, there is no unbounded capture. It stops after O(duration) seconds or when O(max_mb)
    MiB are written, whichever comes first (the file never exceeds O(max_mb)).
  - tcpdump is never left running. It runs in a session of its own, is stopped (SIGTERM, then SIGKILL after 5 s)
    on every path out of the module, and is killed by the kernel if the module itself dies (C(PR_SET_PDEATHSIG)).
  - Check mode validates the interface and the bounds and captures nothing.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
attributes:
  check_mode:
    support: full
    description: Validates; captures and writes nothing.
  diff_mode:
    support: none
    description: A capture is a new file.
  idempotent:
    support: partial
    description: Each run is a new capture (evidence is never overwritten), unless O(once=true) finds one.
requirements:
  - tcpdump (Debian package tcpdump) on the managed node, and root (CAP_NET_RAW)
options:
  incident_id:
    description: The incident the capture belongs to.
    type: str
    required: true
  evidence_dir:
    description: The incident's evidence directory. Default, the store's C(<store_path>/<incident_id>/evidence).
    type: path
  label:
    description: The name of the capture (its directory is C(NNN-<label>)).
    type: str
    default: pcap
  once:
    description:
      - When a capture with this O(label) exists already, capture nothing and return it (C(changed=false)).
    type: bool
    default: false
  record_event:
    description: Record the manifest's sha256 in the incident's timeline. The incident must exist.
    type: bool
    default: true
  interface:
    description: The network interface (as in C(/sys/class/net)), or V(any).
    type: str
    required: true
  port:
    description: Capture only this port (1-65535).
    type: int
    required: true
  protocol:
    description: The transport protocol of O(port).
    type: str
    choices: [tcp, udp]
    default: tcp
  duration:
    description: Required bound, seconds (1 to 3600).
    type: int
  max_mb:
    description: Required bound, MiB written at most (1 to 1024).
    type: int
  tcpdump_path:
    description: The C(tcpdump) command.
    type: str
    default: tcpdump
'''

EXAMPLES = r'''
- name: Capture the API port for 60 s or 50 MiB
  incident.response.packet_capture:
    incident_id: "{{ incident_record.id }}"
    interface: any
    port: 8080
    duration: 60
    max_mb: 50
'''

RETURN = r'''
changed:
  description: A capture was written.
  returned: always
  type: bool
actions:
  description: One C(capture) entry.
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
  description: The sha256 of the manifest, recorded in the incident.
  returned: success
  type: str
checksums:
  description: The C(SHA256SUMS) file.
  returned: success
  type: str
item:
  description: The manifest entry of the pcap (command, bounds, stopped_by, packets, size, sha256).
  returned: success
  type: dict
running:
  description: Whether tcpdump still runs after the module (always false).
  returned: success
  type: bool
event:
  description: The incident event that records the manifest's sha256.
  returned: when recorded
  type: dict
'''

import os
import re
import select
import shutil
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils import _evidence
from ansible_collections.incident.response.plugins.module_utils import _incident
from ansible_collections.incident.response.plugins.module_utils._common import make_action, new_module, remediation_result

IFACE_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$')


def argument_spec():
    spec = _incident.store_argument_spec()
    spec.update(
        incident_id=dict(type='str', required=True),
        evidence_dir=dict(type='path'),
        label=dict(type='str', default='pcap'),
        once=dict(type='bool', default=False),
        record_event=dict(type='bool', default=True),
        interface=dict(type='str', required=True),
        port=dict(type='int', required=True),
        protocol=dict(type='str', choices=['tcp', 'udp'], default='tcp'),
        duration=dict(type='int'),
        max_mb=dict(type='int'),
        tcpdump_path=dict(type='str', default='tcpdump'),
    )
    return spec


def stop(proc):
    """SIGTERM, then SIGKILL, to tcpdump's whole session; True when it is gone."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return True
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll() is not None


def validate(module):
    p = module.params
    try:
        _incident.validate_incident_id(p['incident_id'])
        _evidence.validate_label(p['label'])
    except (_incident.IncidentError, _evidence.EvidenceError) as exc:
        module.fail_json(msg=str(exc))
    if p['duration'] is None or p['max_mb'] is None:
        module.fail_json(msg='a packet capture needs both bounds: duration (seconds, 1-3600) and max_mb (MiB, 1-1024); '
                         'missing: %s' % ', '.join(n for n in ('duration', 'max_mb') if p[n] is None))
    if not 1 <= p['duration'] <= 3600:
        module.fail_json(msg='duration must be between 1 and 3600 seconds, got %s' % p['duration'])
    if not 1 <= p['max_mb'] <= 1024:
        module.fail_json(msg='max_mb must be between 1 and 1024 MiB, got %s' % p['max_mb'])
    if not 1 <= p['port'] <= 65535:
        module.fail_json(msg='port must be between 1 and 65535, got %s' % p['port'])
    iface = p['interface']
    if not IFACE_RE.match(iface or '') or (iface != 'any' and not os.path.isdir(os.path.join('/sys/class/net', iface))):
        known = sorted(os.listdir('/sys/class/net')) if os.path.isdir('/sys/class/net') else []
        module.fail_json(msg='interface %r does not exist on this host (interfaces: %s, or any); nothing was captured'
                         % (iface, ', '.join(known) or 'none'))
    tcpdump = p['tcpdump_path'] if os.path.isabs(p['tcpdump_path']) else shutil.which(p['tcpdump_path'])
    if not tcpdump or not os.path.isfile(tcpdump):
        module.fail_json(msg='tcpdump not found (%s): install the Debian package tcpdump' % p['tcpdump_path'])
    return tcpdump


def main():
    module = new_module(AnsibleModule, argument_spec(), supports_check_mode=True)
    tcpdump = validate(module)
    p = module.params
    max_bytes = p['max_mb'] * 1024 * 1024
    cmd = [tcpdump, '-i', p['interface'], '-nn', '-U', '-s', '262144', '-w', '-', p['protocol'], 'port', str(p['port'])]
    bounds = dict(duration_seconds=p['duration'], max_bytes=max_bytes)
    try:
        store = _incident.get_store(p, secrets=module.no_log_values)
        evidence_dir = p['evidence_dir'] or store.evidence_dir(p['incident_id'])
    except _incident.IncidentError as exc:
        module.fail_json(msg=str(exc))
    what = 'packets on %s %s port %d' % (p['interface'], p['protocol'], p['port'])
    existing = [c for c in _evidence.list_captures(evidence_dir) if c[1] == p['label']]
    if p['once'] and existing:
        path = existing[-1][2]
        try:
            items = _evidence.read_manifest(path).get('items') or [None]
        except _evidence.EvidenceError as exc:
            module.fail_json(msg=str(exc))
        manifest_path = os.path.join(path, _evidence.MANIFEST)
        module.exit_json(**remediation_result(
            False, [], 'capture %s exists already (once=true): nothing captured' % os.path.basename(path),
            capture_dir=path, manifest=manifest_path, manifest_sha256=_evidence.sha256_file(manifest_path),
            checksums=os.path.join(path, _evidence.CHECKSUMS), item=items[0], running=False))
    if module.check_mode:
        module.exit_json(**remediation_result(
            True, [make_action('capture', what, dict(command=cmd, bounds=bounds))],
            'would capture %s for at most %ss / %s MiB into %s/NNN-%s'
            % (what, p['duration'], p['max_mb'], evidence_dir, p['label']),
            check_mode=True, capture_dir=None, manifest=None, manifest_sha256=None, checksums=None, item=None,
            running=False))
    try:
        if p['record_event'] and store.get(p['incident_id']) is None:
            module.fail_json(msg='incident %s does not exist in %s: open it first (or record_event=false); nothing '
                             'was captured' % (p['incident_id'], store.describe()))
        capture = _evidence.Capture(evidence_dir, p['label'], meta=dict(
            incident_id=p['incident_id'], actor=_incident.default_actor(), host=os.uname()[1],
            tool='incident.response.packet_capture'))
        name, handle = capture.open_item('capture.pcap')
    except (_incident.IncidentError, _evidence.EvidenceError) as exc:
        module.fail_json(msg=str(exc))
    started = _evidence.iso()
    writer = _evidence.BoundedWriter(handle, max_bytes)
    stopped_by = 'exit'
    proc = None
    previous = {}

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        previous[sig] = signal.signal(sig, on_signal)
    stderr = b''
    gone = True
    try:
        try:
            proc = _evidence.start_process(cmd, die_with_parent=True)
        except OSError as exc:
            module.fail_json(msg='cannot start %s: %s' % (' '.join(cmd), exc.strerror or exc))
        deadline = time.monotonic() + p['duration']
        streams = [proc.stdout, proc.stderr]
        while streams:
            left = deadline - time.monotonic()
            if left <= 0:
                stopped_by = 'duration'
                break
            ready, _w, _x = select.select(streams, [], [], min(left, 1.0))
            for stream in ready:
                chunk = os.read(stream.fileno(), 1024 * 1024)
                if not chunk:
                    streams.remove(stream)
                elif stream is proc.stderr:
                    stderr = (stderr + chunk)[-8192:]
                else:
                    try:
                        writer.write(chunk)
                    except _evidence.BoundReached:
                        stopped_by = 'max_mb'
                        streams = []
                        break
            if proc.poll() is not None and not ready:
                break
    except KeyboardInterrupt:
        stopped_by = 'signal'
    finally:
        if proc is not None:
            gone = stop(proc)
            try:
                rest = proc.stderr.read()
                stderr = (stderr + (rest or b''))[-8192:]
            except (OSError, ValueError):
                pass
            proc.stdout.close()
            proc.stderr.close()
        handle.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
    text = stderr.decode('utf-8', 'replace')
    if stopped_by == 'exit' and proc.returncode not in (0, None) and writer.written == 0:
        module.fail_json(msg='tcpdump failed (rc %s): %s' % (proc.returncode, ' '.join(text.split())[:400]),
                         cmd=cmd, capture_dir=capture.path, running=not gone)
    match = re.search(r'(\d+) packets? captured', text)
    entry = dict(kind='pcap', what=what, source='interface %s' % p['interface'], started=started,
                 finished=_evidence.iso(), command=cmd, bounds=bounds, stopped_by=stopped_by,
                 truncated=stopped_by == 'max_mb', packets=int(match.group(1)) if match else None, rc=proc.returncode)
    try:
        item = capture.add(entry, name)
        _manifest, digest = capture.finish()
        manifest_path = os.path.join(capture.path, _evidence.MANIFEST)
        event = None
        if p['record_event']:
            event = store.append_event(p['incident_id'], dict(
                type='note', key='evidence:%s:%s' % (capture.name, digest), actor='incident.response.packet_capture',
                message='packet capture %s: %s, %s bytes, stopped by %s, manifest sha256 %s' % (
                    capture.name, what, item['size'], stopped_by, digest),
                evidence=dict(capture=capture.name, directory=capture.path, manifest=manifest_path,
                              manifest_sha256=digest, items=1)))
    except (_incident.IncidentError, _evidence.EvidenceError, OSError) as exc:
        module.fail_json(msg='the capture is in %s but recording it failed: %s' % (capture.path, exc), running=not gone)
    finally:
        store.close()
    if not gone:
        module.fail_json(msg='tcpdump (pid %s) could not be stopped: kill it by hand' % proc.pid, running=True)
    summary = 'captured %s: %d bytes, %s packets, stopped by %s, into %s' % (
        what, item['size'], entry['packets'] if entry['packets'] is not None else 'unknown', stopped_by, capture.path)
    module.exit_json(**remediation_result(
        True, [make_action('capture', what, dict(file=item['file'], size=item['size'], sha256=item['sha256'],
                                                 stopped_by=stopped_by), done=True)],
        summary, capture_dir=capture.path, manifest=manifest_path, manifest_sha256=digest,
        checksums=os.path.join(capture.path, _evidence.CHECKSUMS), item=item, running=False, event=event))


if __name__ == '__main__':
    main()
