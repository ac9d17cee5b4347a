#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: tview_lock
short_description: Hold a PostgreSQL advisory lock for the length of a pg_tviews emergency run
version_added: 0.1.0
deprecated:
  removed_in: 1.0.0
  why: >-
    Its background holder cannot find the run it belongs to over SSH or under AWX; the emergency and reset roles
    no longer use it. The lock of M(incident.response.tview_emergency) is the act's own transaction
    (pg_try_advisory_xact_lock) and ends however the run ends.
  alternative: Use M(incident.response.tview_emergency).
description:
  - "O(state=present) takes the session-level advisory lock C(pg_try_advisory_lock(hashtext(O(name)))) in the
    target database from a small background process that keeps its session open (C(application_name)
    C(incident.response.lock)) until O(state=absent) releases it, the watched process (by default the
    C(ansible-playbook) that runs the module) ends, or O(max_hold) passes. Only one emergency run can act at a
    time: when another session holds the lock, the module fails naming it."
  - O(state=absent) ends the holder, which releases the lock; idempotent.
  - Check mode takes nothing; it reports whether the lock is free.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
attributes:
  check_mode:
    support: full
    description: Reports who holds the lock; takes and releases nothing.
  diff_mode:
    support: none
    description: No diff.
  idempotent:
    support: full
    description: Taking a lock this run already holds, or releasing a lock not held, changes nothing.
options:
  state:
    description: V(present) takes the lock (or fails when another run holds it); V(absent) releases it.
    type: str
    default: present
    choices: [present, absent]
  name:
    description: The lock's name; its C(hashtext) is the advisory lock key.
    type: str
    default: incident.response/tview_emergency
  state_dir:
    description: Where the holder writes its pid file (on the host that runs the module).
    type: path
    default: /tmp/incident-response-locks
  max_hold:
    description: The holder releases the lock after this long at the latest (seconds or a duration).
    type: raw
    default: 2h
  watch_pid:
    description:
      - Release the lock when this process ends. Default, the nearest C(ansible-playbook) (or C(ansible))
        ancestor of the module, when there is one (a local connection).
    type: int
seealso:
  - module: incident.response.tview_state
notes:
  - The lock lives in the database of O(login_db); runs against another database do not contend for it.
'''

EXAMPLES = r'''
- name: Only one emergency run at a time
  incident.response.tview_lock:
    login_db: app
  register: lock

- name: Release it at the end (in an always section)
  incident.response.tview_lock:
    login_db: app
    state: absent
'''

RETURN = r'''
changed:
  description: Whether the lock was taken or released.
  returned: always
  type: bool
key:
  description: The advisory lock key (C(hashtext(name))).
  returned: always
  type: int
holder_pid:
  description: Pid of the background process holding the lock.
  returned: when the lock is held by this run
  type: int
backend_pid:
  description: PostgreSQL backend pid of the session holding the lock.
  returned: when the lock is held
  type: int
held_by:
  description: The session holding the lock (pid, usename, application_name, client_addr, backend_start), if any.
  returned: always
  type: dict
summary:
  description: One line.
  returned: always
  type: str
actions:
  description:
    - What was done (or, in check mode, would be done), as every remediation of the collection reports it.
    - One C(take_lock) or C(release_lock) entry (C(action), C(target) the lock's name, C(detail) with the key
      and the pids, C(done)); empty when nothing changes.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "take_lock", "target": "incident.response/tview_emergency", "detail": {"key": 1234}, "done": true}]
'''

import json
import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    duration_param,
    make_action,
    new_module,
    remediation_result,
)
from ansible_collections.incident.response.plugins.module_utils._postgres import (
    PgClient,
    connection_settings,
    describe_target,
    open_connection,
    postgres_common_argument_spec,
)

LOCK_APPLICATION = 'incident.response.lock'


def holder_sessions(client, key):
    return client.query("""
SELECT a.pid, a.usename, a.application_name, host(a.client_addr) AS client_addr,
       to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS backend_start
FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = (%s::bigint & x'FFFFFFFFFFFFFFFF'::bigint)
""", (key,))


def find_watch_pid():
    """The outermost ansible-playbook (or ansible) ancestor: its workers are forks with the same command line."""
    pid = os.getppid()
    found = None
    for dummy in range(20):
        if pid <= 1:
            break
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            with open('/proc/%d/stat' % pid) as handle:
                stat = handle.read()
        except (IOError, OSError):
            break
        if 'ansible-playbook' in cmdline or 'bin/ansible ' in cmdline:
            found = pid
        pid = int(stat[stat.rindex(')') + 2:].split()[1])
    return found


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open('/proc/%d/stat' % pid) as handle:
            stat = handle.read()
        return stat[stat.rindex(')') + 2] != 'Z'
    except (IOError, OSError):
        return True


def hold(settings, key, write_fd, watch_pid, max_hold):
    """The background holder: take the lock, tell the module, keep the session until told or orphaned."""
    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    answer = dict(ok=False)
    conn = None
    try:
        conn = open_connection(settings)
        cur = conn.cursor()
        cur.execute('SELECT pg_try_advisory_lock(%s), pg_backend_pid()', (key,))
        got, backend = cur.fetchone()
        answer = dict(ok=bool(got), backend_pid=backend)
    except Exception as exc:  # pylint: disable=broad-except
        answer = dict(ok=False, error=str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    os.write(write_fd, json.dumps(answer).encode('utf-8'))
    os.close(write_fd)
    if answer.get('ok'):
        deadline = time.time() + max_hold
        while not stop and time.time() < deadline and (watch_pid is None or alive(watch_pid)):
            time.sleep(0.5)
            try:
                conn.cursor().execute('SELECT 1')
            except Exception:  # pylint: disable=broad-except
                break
    if conn is not None:
        try:
            conn.close()
        except Exception:  # pylint: disable=broad-except
            pass


def start_holder(module, key, pid_file, watch_pid, max_hold):  # pylint: disable=too-many-locals
    p = module.params
    settings = connection_settings(module, application_name=LOCK_APPLICATION)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(pid_file, 'w') as handle:
            handle.write(json.dumps(dict(holder=os.getpid(), watch=watch_pid)))
        try:
            hold(settings, key, write_fd, watch_pid, max_hold)
        finally:
            if (read_holder(pid_file) or {}).get('holder') == os.getpid():
                try:
                    os.unlink(pid_file)
                except (IOError, OSError):
                    pass
            os._exit(0)
    os.close(write_fd)
    os.waitpid(child, 0)
    data = b''
    deadline = time.time() + p['connect_timeout'] + 10
    while time.time() < deadline:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    try:
        return json.loads(data.decode('utf-8'))
    except ValueError:
        return dict(ok=False, error='the lock holder did not answer')


def read_holder(pid_file):
    """The holder recorded in pid_file (dict holder, watch) when it still runs, else None."""
    try:
        with open(pid_file) as handle:
            data = json.loads(handle.read())
        pid = int(data['holder'])
    except (IOError, OSError, ValueError, KeyError, TypeError):
        return None
    return data if pid > 0 and alive(pid) else None


def main():
    spec = postgres_common_argument_spec()
    spec.update(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        name=dict(type='str', default='incident.response/tview_emergency'),
        state_dir=dict(type='path', default='/tmp/incident-response-locks'),
        max_hold=dict(type='raw', default='2h'),
        watch_pid=dict(type='int'),
    )
    module = new_module(AnsibleModule, argument_spec=spec, supports_check_mode=True)
    p = module.params
    max_hold = duration_param(module, 'max_hold')
    if not max_hold:
        module.fail_json(msg='max_hold must be a positive duration, got %r' % (p['max_hold'],))
    client = PgClient(module)
    key = client.query_one('SELECT hashtext(%s)::bigint AS k', (p['name'],))['k']
    database = client.query_one('SELECT current_database() AS d')['d']
    try:
        os.makedirs(p['state_dir'], 0o700)
    except OSError:
        if not os.path.isdir(p['state_dir']):
            client.fail('cannot create state_dir %s' % p['state_dir'])
    pid_file = os.path.join(p['state_dir'], '%s-%s-%s.pid' % (database, p['login_port'], key & 0xffffffff))
    watch = p['watch_pid'] if p['watch_pid'] is not None else find_watch_pid()
    recorded = read_holder(pid_file)
    mine = recorded['holder'] if recorded and recorded.get('watch') == watch else None
    holders = holder_sessions(client, key)
    held_by = holders[0] if holders else None

    def finish(changed, actions, summary, **facts):
        module.exit_json(**remediation_result(changed, actions, summary, check_mode=module.check_mode,
                                              want_diff=module._diff, key=key, **facts))

    if p['state'] == 'absent':
        if mine and not module.check_mode:
            os.kill(mine, signal.SIGTERM)
            deadline = time.time() + 15
            while alive(mine) and time.time() < deadline:
                time.sleep(0.2)
            deadline = time.time() + 15
            while holder_sessions(client, key) and time.time() < deadline:
                time.sleep(0.2)
        client.close()
        actions = [make_action('release_lock', p['name'], dict(key=key, holder_pid=mine), done=not module.check_mode)] \
            if mine else []
        if mine:
            summary = '%s the lock %s' % ('released' if not module.check_mode else 'would release', p['name'])
        else:
            summary = 'the lock %s is not held by this run' % p['name']
        finish(bool(mine), actions, summary, held_by=held_by)

    if mine and held_by and held_by['application_name'] == LOCK_APPLICATION:
        client.close()
        finish(False, [], 'the lock %s is already held by this run (holder pid %d)' % (p['name'], mine),
               held_by=held_by, holder_pid=mine, backend_pid=held_by['pid'])
    if held_by:
        client.fail('another emergency run holds the lock %s in %s: session pid %s of %s (application_name %s, '
                    'from %s, since %s). Only one emergency run may act at a time; wait for it to finish.'
                    % (p['name'], describe_target(p), held_by['pid'], held_by['usename'], held_by['application_name'],
                       held_by['client_addr'] or 'local socket', held_by['backend_start']), held_by=held_by)
    if module.check_mode:
        client.close()
        finish(True, [make_action('take_lock', p['name'], dict(key=key), done=False)],
               'the lock %s is free; would take it' % p['name'], held_by=None)
    client.close()
    answer = start_holder(module, key, pid_file, watch, max_hold)
    if not answer.get('ok'):
        if answer.get('error'):
            module.fail_json(msg='cannot take the lock %s at %s: %s' % (p['name'], describe_target(p), answer['error']))
        module.fail_json(msg='another emergency run took the lock %s in %s just now. Only one emergency run may act '
                             'at a time; wait for it to finish.' % (p['name'], describe_target(p)))
    holder = (read_holder(pid_file) or {}).get('holder')
    taken = make_action('take_lock', p['name'], dict(key=key, holder_pid=holder, backend_pid=answer['backend_pid']),
                        done=True)
    finish(True, [taken], 'took the lock %s (session pid %s)' % (p['name'], answer['backend_pid']),
           held_by=None, holder_pid=holder, backend_pid=answer['backend_pid'], watch_pid=watch)


if __name__ == '__main__':
    main()
