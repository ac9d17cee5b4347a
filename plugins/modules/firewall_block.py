#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: firewall_block
short_description: Block a port with an nftables rule of the incident, and remove exactly that rule
version_added: 0.3.0
description:
  - Adds a rule C(<proto> dport <port> counter drop) with the comment C(incident.response <incident_id> block
    <proto>/<port>) to the chain O(chain) (hook C(input), priority -10, policy accept) of the table O(family)
    O(table), which the module creates when missing. It never edits any other table.
  - Records exactly the rule it added (its handle, its text, whether it created the table and the chain) in a state
    file C(<state_dir>/<incident_id>-<proto>-<port>.json) (C(...@<netns>.json) with O(netns); mode 0600, directory 0700), with the history of the
    rule (added, removed).
  - V(absent) removes exactly that rule, by its handle, after checking that the rule with that handle still
    carries the incident's comment; then the chain and the table when the module created them and they hold
    nothing else. A rule carrying the comment that the state file does not know (the state file was lost) is
    removed too, since the comment names the incident and the port.
  - With O(netns), every C(nft) command runs inside that network namespace (C(ip netns exec)), as the tests do.
  - Check mode lists the rule (read only) and reports what would change; it changes nothing.
author:
  - incident.response developers (@incident-response)
attributes:
  check_mode:
    support: full
    description: Reads the ruleset; adds and removes nothing, writes no state file.
  diff_mode:
    support: full
    description: Blocked or not (and the handle), before and after.
  idempotent:
    support: full
    description: A blocked port stays blocked by the one rule; an unblocked one is left alone.
requirements:
  - nft (Debian package nftables) on the managed node, and root (CAP_NET_ADMIN)
options:
  incident_id:
    description: The incident whose rule it is (in the rule's comment and the state file's name).
    type: str
    required: true
  port:
    description: The port to block (1-65535).
    type: int
    required: true
  protocol:
    description: The transport protocol.
    type: str
    choices: [tcp, udp]
    default: tcp
  state:
    description: V(present) blocks the port, V(absent) removes the incident's rule.
    type: str
    choices: [present, absent]
    default: present
  family:
    description: The nftables family of the table.
    type: str
    choices: [inet, ip, ip6]
    default: inet
  table:
    description: The table of the collection's rules (letters, digits, _).
    type: str
    default: incident_response
  chain:
    description: The base chain, on the C(input) hook.
    type: str
    default: input
  state_dir:
    description: Where the state files are kept.
    type: path
    default: /var/tmp/incident-response/firewall
  netns:
    description: Run C(nft) inside this network namespace (C(ip netns exec NETNS nft ...)); the namespace must exist.
    type: str
  nft_path:
    description: The C(nft) command.
    type: str
    default: nft
  timeout:
    description: Seconds per C(nft) command (1 to 300).
    type: int
    default: 30
'''

EXAMPLES = r'''
- name: Block the API port
  incident.response.firewall_block:
    incident_id: "{{ incident_record.id }}"
    port: 8080

- name: Unblock it (removes exactly the rule added above)
  incident.response.firewall_block:
    incident_id: "{{ incident_record.id }}"
    port: 8080
    state: absent
'''

RETURN = r'''
changed:
  description: Whether the rule was (or would be) added or removed.
  returned: always
  type: bool
actions:
  description: C(add_rule), C(create_table), C(create_chain), C(delete_rule), C(delete_table) entries.
  returned: success
  type: list
  elements: dict
summary:
  description: One line.
  returned: success
  type: str
diff:
  description: C(blocked) and C(handles) before and after.
  returned: with --diff
  type: dict
blocked:
  description: Whether a rule of the incident blocks the port afterwards (in check mode, would).
  returned: success
  type: bool
rule:
  description: The rule (family, table, chain, handle, rule, comment) that blocks the port, or null.
  returned: success
  type: dict
state_file:
  description: The state file.
  returned: success
  type: str
undo:
  description: How to undo what was done.
  returned: success
  type: str
'''

import datetime
import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils import _incident
from ansible_collections.incident.response.plugins.module_utils._common import make_action, new_module, remediation_result
from ansible_collections.incident.response.plugins.module_utils._firewall import (
    NAME_RE,
    NETNS_RE,
    FirewallError,
    Nft,
    rule_comment,
)


def argument_spec():
    return dict(
        incident_id=dict(type='str', required=True),
        port=dict(type='int', required=True),
        protocol=dict(type='str', choices=['tcp', 'udp'], default='tcp'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        family=dict(type='str', choices=['inet', 'ip', 'ip6'], default='inet'),
        table=dict(type='str', default='incident_response'),
        chain=dict(type='str', default='input'),
        state_dir=dict(type='path', default='/var/tmp/incident-response/firewall'),
        netns=dict(type='str'),
        nft_path=dict(type='str', default='nft'),
        timeout=dict(type='int', default=30),
    )


def now():
    return _incident.iso(datetime.datetime.now(datetime.timezone.utc))


def read_state(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FirewallError('cannot read the state file %s: %s' % (path, exc))
    if not isinstance(data, dict):
        raise FirewallError('the state file %s is not a JSON object' % path)
    return data


def write_state(path, data):
    directory = os.path.dirname(path)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        os.chmod(directory, 0o700)
        tmp = '%s.%d.tmp' % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        raise FirewallError('cannot write the state file %s: %s' % (path, exc.strerror or exc))


def validate(module):
    p = module.params
    try:
        _incident.validate_incident_id(p['incident_id'])
    except _incident.IncidentError as exc:
        module.fail_json(msg=str(exc))
    if not 1 <= p['port'] <= 65535:
        module.fail_json(msg='port must be between 1 and 65535, got %s' % p['port'])
    for name in ('table', 'chain'):
        if not NAME_RE.match(p[name] or ''):
            module.fail_json(msg='%s %r: use 1-32 letters, digits or _, starting with a letter' % (name, p[name]))
    if p['netns'] is not None and not NETNS_RE.match(p['netns']):
        module.fail_json(msg='netns %r is not a network namespace name' % (p['netns'],))
    if not 1 <= p['timeout'] <= 300:
        module.fail_json(msg='timeout must be between 1 and 300 seconds, got %s' % p['timeout'])


def main():
    module = new_module(AnsibleModule, argument_spec(), supports_check_mode=True)
    validate(module)
    p = module.params
    comment = rule_comment(p['incident_id'], p['protocol'], p['port'])
    suffix = ('@' + p['netns']) if p['netns'] else ''
    state_file = os.path.join(p['state_dir'], '%s-%s-%d%s.json' % (p['incident_id'], p['protocol'], p['port'], suffix))
    result = dict(state_file=state_file)
    try:
        nft = Nft(p['nft_path'], p['netns'], p['timeout'], p['family'], p['table'], p['chain'])
        state = read_state(state_file) or dict(incident_id=p['incident_id'], port=p['port'], protocol=p['protocol'],
                                               family=p['family'], table=p['table'], chain=p['chain'],
                                               netns=p['netns'], comment=comment, active=None, history=[])
        listing = nft.listing()
        ours = [rule for rule in listing['rules'] if rule.get('comment') == comment]
        handles_before = sorted(rule['handle'] for rule in ours)
        actions = []
        changed = False
        if p['state'] == 'present':
            if ours:
                active = state.get('active') or {}
                rule = dict(family=p['family'], table=p['table'], chain=p['chain'], handle=ours[0]['handle'],
                            comment=comment, rule=active.get('rule'), added=active.get('added'),
                            created_table=active.get('created_table', False),
                            created_chain=active.get('created_chain', False), netns=p['netns'])
                if active.get('handle') != ours[0]['handle'] and not module.check_mode:
                    # The rule is there but the state file does not know it (lost): record what is there.
                    state['active'] = rule
                    state['history'].append(dict(action='adopted', handle=rule['handle'], time=now()))
                    write_state(state_file, state)
                summary = '%s/%d is already blocked by the rule of %s (handle %s, %s)' % (
                    p['protocol'], p['port'], p['incident_id'], rule['handle'], nft.where())
                handles_after = handles_before
            else:
                changed = True
                if not listing['table']:
                    actions.append(make_action('create_table', '%s %s' % (p['family'], p['table'])))
                if not listing['chain']:
                    actions.append(make_action('create_chain', '%s %s %s' % (p['family'], p['table'], p['chain']),
                                               dict(hook='input', priority=-10, policy='accept')))
                actions.append(make_action('add_rule', '%s/%d' % (p['protocol'], p['port']),
                                           dict(comment=comment, verdict='drop', where=nft.where())))
                rule = None
                handles_after = ['(new)']
                summary = 'would block %s/%d (%s)' % (p['protocol'], p['port'], nft.where())
                if not module.check_mode:
                    created = nft.ensure_chain(listing)
                    for action in actions[:-1]:
                        action['done'] = True
                    handle, text = nft.add_rule(p['protocol'], p['port'], comment)
                    actions[-1]['done'] = True
                    actions[-1]['detail']['handle'] = handle
                    rule = dict(family=p['family'], table=p['table'], chain=p['chain'], handle=handle, rule=text,
                                comment=comment, added=now(), created_table=created['table'],
                                created_chain=created['chain'], netns=p['netns'])
                    state['active'] = rule
                    state['history'].append(dict(action='added', handle=handle, rule=text, time=rule['added'],
                                                 actor=_incident.default_actor()))
                    write_state(state_file, state)
                    handles_after = [handle]
                    summary = 'blocked %s/%d with rule handle %d (%s)' % (p['protocol'], p['port'], handle, nft.where())
            result.update(blocked=True, rule=rule)
        else:
            active = state.get('active') or {}
            handles_after = []
            rule = None
            if not ours:
                summary = '%s/%d is not blocked by a rule of %s (%s)' % (p['protocol'], p['port'], p['incident_id'],
                                                                         nft.where())
                if active and not module.check_mode:
                    state['history'].append(dict(action='gone', handle=active.get('handle'), time=now()))
                    state['active'] = None
                    write_state(state_file, state)
            else:
                changed = True
                for found in ours:
                    actions.append(make_action('delete_rule', '%s/%d' % (p['protocol'], p['port']),
                                               dict(handle=found['handle'], comment=comment, where=nft.where(),
                                                    recorded=found['handle'] == active.get('handle'))))
                other_rules = [rule for rule in listing['rules'] if rule.get('comment') != comment]
                drop_table = (active.get('created_table') and not other_rules and not listing['other_chains'])
                if drop_table:
                    actions.append(make_action('delete_table', '%s %s' % (p['family'], p['table']),
                                               dict(reason='created by this rule and empty now')))
                summary = 'would unblock %s/%d (handle %s, %s)' % (p['protocol'], p['port'],
                                                                   ', '.join(str(h) for h in handles_before),
                                                                   nft.where())
                if not module.check_mode:
                    for action in actions:
                        if action['action'] == 'delete_rule':
                            nft.delete_rule(action['detail']['handle'])
                        else:
                            again = nft.listing()
                            if not again['rules'] and not again['other_chains']:
                                nft.delete_table()
                        action['done'] = True
                    state['history'].append(dict(action='removed', handle=handles_before, time=now(),
                                                 actor=_incident.default_actor(), table_deleted=bool(drop_table)))
                    state['active'] = None
                    write_state(state_file, state)
                    summary = 'unblocked %s/%d (removed rule handle %s, %s)' % (
                        p['protocol'], p['port'], ', '.join(str(h) for h in handles_before), nft.where())
            result.update(blocked=False, rule=rule)
    except FirewallError as exc:
        module.fail_json(msg=str(exc), **dict(exc.details, state_file=state_file))
    undo = ('firewall_block incident_id=%s port=%d protocol=%s state=%s%s' % (
        p['incident_id'], p['port'], p['protocol'], 'absent' if p['state'] == 'present' else 'present',
        (' netns=%s' % p['netns']) if p['netns'] else ''))
    diff = dict(before=dict(blocked=bool(handles_before), handles=handles_before),
                after=dict(blocked=p['state'] == 'present', handles=handles_after))
    module.exit_json(**remediation_result(changed, actions, summary, diff=diff, check_mode=module.check_mode,
                                          want_diff=module._diff, undo=undo, **result))


if __name__ == '__main__':
    main()
