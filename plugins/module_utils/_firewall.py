# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""nftables for the lockdown of a port (private to the collection; used by firewall_block).

The collection keeps its rules in a table of its own (``inet incident_response`` by default), in a base chain on
the ``input`` hook, so that it never edits a table it did not make. Each rule carries the comment
``incident.response <incident id> block <proto>/<port>``: the module finds its rule by that comment and removes
it by its handle, which it records in a state file when it adds it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import subprocess

NAME_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_]{0,31}$')
NETNS_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
CHAIN_PRIORITY = -10


def _which(command):
    """shutil.which on PATH and the sbin directories: a job environment (AWX, cron) often has no /usr/sbin on PATH."""
    path = os.environ.get('PATH', os.defpath)
    return shutil.which(command, path=os.pathsep.join([path, '/usr/local/sbin', '/usr/sbin', '/sbin']))


class FirewallError(Exception):
    """One clear message, with the command that failed when there is one."""

    def __init__(self, msg, cmd=None, rc=None, stderr=None):
        super(FirewallError, self).__init__(msg)
        self.details = dict((k, v) for k, v in (('cmd', cmd), ('rc', rc), ('stderr', stderr)) if v is not None)


def rule_comment(incident_id, protocol, port):
    return 'incident.response %s block %s/%d' % (incident_id, protocol, port)


class Nft(object):
    """``nft`` (optionally inside ``ip netns exec NETNS``), with a timeout on every call."""

    def __init__(self, nft='nft', netns=None, timeout=30, family='inet', table='incident_response', chain='input'):
        self.netns = netns
        self.timeout = timeout
        self.family = family
        self.table = table
        self.chain = chain
        path = nft if os.path.isabs(nft) else _which(nft)
        if not path or not os.path.isfile(path):
            raise FirewallError('nft (nftables) not found%s: install the Debian package nftables'
                                % ('' if os.path.isabs(nft) else ' on PATH or in /usr/sbin, /sbin'))
        self.nft = path
        self.prefix = []
        if netns:
            ip = _which('ip')
            if not ip:
                raise FirewallError('netns %s given but the ip command (iproute2) is not installed' % netns)
            self.prefix = [ip, 'netns', 'exec', netns]

    def where(self):
        return 'table %s %s%s' % (self.family, self.table, (' in network namespace %s' % self.netns) if self.netns else '')

    def run(self, args, stdin=None, ok_rcs=(0,)):
        cmd = self.prefix + [self.nft] + list(args)
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise FirewallError('%s did not answer within %ss' % (' '.join(cmd), self.timeout), cmd=cmd)
        except OSError as exc:
            raise FirewallError('cannot run %s: %s' % (' '.join(cmd), exc.strerror or exc), cmd=cmd)
        if proc.returncode not in ok_rcs:
            text = ' '.join((proc.stderr or proc.stdout).split())[:400]
            if 'Cannot open network namespace' in text:
                raise FirewallError('network namespace %s does not exist (ip netns list)' % self.netns, cmd=cmd,
                                    rc=proc.returncode, stderr=text)
            if 'Operation not permitted' in text:
                raise FirewallError('nft needs CAP_NET_ADMIN (run as root, become: true): %s' % text, cmd=cmd,
                                    rc=proc.returncode, stderr=text)
            raise FirewallError('%s failed (rc %s): %s' % (' '.join(cmd), proc.returncode, text), cmd=cmd,
                                rc=proc.returncode, stderr=text)
        return proc

    def listing(self):
        """dict(table=bool, chain=bool, rules=[rule dicts of our chain]) of the table (read only)."""
        proc = self.run(['-j', 'list', 'table', self.family, self.table], ok_rcs=(0, 1))
        if proc.returncode == 1:
            if 'No such file or directory' in (proc.stderr or ''):
                return dict(table=False, chain=False, rules=[], other_chains=0)
            raise FirewallError('nft list table %s %s failed: %s'
                                % (self.family, self.table, ' '.join(proc.stderr.split())[:300]))
        try:
            data = json.loads(proc.stdout or '{}').get('nftables', [])
        except ValueError:
            raise FirewallError('nft -j list table %s %s did not print JSON' % (self.family, self.table))
        chain = False
        rules = []
        other_chains = 0
        for entry in data:
            if 'chain' in entry:
                if entry['chain'].get('name') == self.chain:
                    chain = True
                else:
                    other_chains += 1
            if 'rule' in entry:
                rule = entry['rule']
                if rule.get('chain') == self.chain:
                    rules.append(rule)
                else:
                    other_chains += 1  # a rule elsewhere in the table: the table is not only ours to delete
        return dict(table=True, chain=chain, rules=rules, other_chains=other_chains)

    def ensure_chain(self, listing):
        created = dict(table=False, chain=False)
        script = []
        if not listing['table']:
            script.append('add table %s %s' % (self.family, self.table))
            created['table'] = True
        if not listing['chain']:
            script.append('add chain %s %s %s { type filter hook input priority %d ; policy accept ; }'
                          % (self.family, self.table, self.chain, CHAIN_PRIORITY))
            created['chain'] = True
        if script:
            self.run(['-f', '-'], stdin='\n'.join(script) + '\n')
        return created

    def add_rule(self, protocol, port, comment):
        """Add the drop rule; returns (handle, rule text as nft echoed it)."""
        text = 'add rule %s %s %s %s dport %d counter drop comment "%s"' % (
            self.family, self.table, self.chain, protocol, port, comment)
        proc = self.run(['--echo', '--handle', '-f', '-'], stdin=text + '\n')
        match = re.search(r'# handle (\d+)', proc.stdout or '')
        if not match:
            raise FirewallError('nft added the rule but printed no handle: %s' % ' '.join((proc.stdout or '').split()))
        rule = (proc.stdout or '').splitlines()[0].split(' # handle')[0].strip()
        return int(match.group(1)), rule

    def delete_rule(self, handle):
        self.run(['delete', 'rule', self.family, self.table, self.chain, 'handle', str(int(handle))])

    def delete_table(self):
        self.run(['delete', 'table', self.family, self.table])
