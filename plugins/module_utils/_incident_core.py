# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The part of the incident record that the pg_tviews modules need: the severity mapping, the id rule, the error.

Small on purpose: every module start compiles the module_utils it imports (from the AnsiballZ zip, no cached
bytecode), and tview_emergency/tview_info need only these few names, not the stores of ``_incident`` (which
imports and re-exports them: code against either).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')

# Per level: the canonical values (the strictest of the runbooks, used when the runbook is unknown),
# each runbook's own name for the level and its own values, and the escalation rules.
# Times are minutes; None = the runbook sets none. `audience`: executive | management | team | document.
# Escalation rule `when`: 'declared' (at once), 'unmitigated' (times.mitigated still null),
# 'unresolved' (times.resolved still null), 'root_cause_unknown' (root_cause still empty).
SEVERITY = {
    'SEV1': dict(
        name='critical', priority='P0', response_minutes=5, resolution_minutes=30, update_minutes=15,
        audience='executive',
        runbooks=dict(
            pg_tviews=dict(label='SEV 1', response_minutes=15, resolution_minutes=None, update_minutes=15,
                           audience='executive',
                           escalation=[dict(when='unresolved', after_minutes=15, to='team lead', level=1),
                                       dict(when='unresolved', after_minutes=60, to='department manager', level=2),
                                       dict(when='unresolved', after_minutes=240, to='executive leadership',
                                            level=3)]),
            schedule_generator=dict(label='SEV-1', priority='P1', response_minutes=5, resolution_minutes=60,
                                    update_minutes=15, audience='executive',
                                    escalation=[dict(when='declared', after_minutes=0,
                                                     to='engineering lead and product owner', level=1),
                                                dict(when='root_cause_unknown', after_minutes=15,
                                                     to='engineering lead', level=1)]),
            task_scheduler=dict(label='P0', priority='P0', response_minutes=5, resolution_minutes=30,
                                update_minutes=15, audience='executive',
                                escalation=[dict(when='unmitigated', after_minutes=15, to='all hands', level=1),
                                            dict(when='root_cause_unknown', after_minutes=15, to='all hands',
                                                 level=1)]),
            insights=dict(label='P1', priority='P1', response_minutes=15, resolution_minutes=None,
                          update_minutes=30, audience='management', escalation=[]),
        )),
    'SEV2': dict(
        name='high', priority='P1', response_minutes=15, resolution_minutes=120, update_minutes=30,
        audience='management',
        runbooks=dict(
            pg_tviews=dict(label='SEV 2', response_minutes=60, resolution_minutes=None, update_minutes=30,
                           audience='management',
                           escalation=[dict(when='unresolved', after_minutes=60, to='team lead', level=1),
                                       dict(when='unresolved', after_minutes=240, to='department manager',
                                            level=2)]),
            schedule_generator=dict(label='SEV-2', priority='P2', response_minutes=15, resolution_minutes=240,
                                    update_minutes=30, audience='management',
                                    escalation=[dict(when='unresolved', after_minutes=30, to='engineering lead',
                                                     level=1),
                                                dict(when='root_cause_unknown', after_minutes=15,
                                                     to='engineering lead', level=1)]),
            task_scheduler=dict(label='P1', priority='P1', response_minutes=15, resolution_minutes=120,
                                update_minutes=30, audience='management',
                                escalation=[dict(when='unresolved', after_minutes=30, to='technical leads',
                                                 level=1)]),
            insights=dict(label='P2', priority='P2', response_minutes=60, resolution_minutes=None,
                          update_minutes=30, audience='team', escalation=[]),
        )),
    'SEV3': dict(
        name='medium', priority='P2', response_minutes=30, resolution_minutes=480, update_minutes=60,
        audience='team',
        runbooks=dict(
            pg_tviews=dict(label='SEV 3', response_minutes=240, resolution_minutes=None, update_minutes=60,
                           audience='team',
                           escalation=[dict(when='unresolved', after_minutes=240, to='team lead', level=1)]),
            schedule_generator=dict(label='SEV-3', priority='P3', response_minutes=60, resolution_minutes=1440,
                                    update_minutes=120, audience='team',
                                    escalation=[dict(when='root_cause_unknown', after_minutes=15,
                                                     to='engineering lead', level=1)]),
            task_scheduler=dict(label='P2', priority='P2', response_minutes=30, resolution_minutes=480,
                                update_minutes=None, audience='team',
                                escalation=[dict(when='unresolved', after_minutes=120, to='operations team',
                                                 level=1)]),
            insights=dict(label='P3', priority='P3', response_minutes=240, resolution_minutes=None,
                          update_minutes=None, audience='document', escalation=[]),
        )),
    'SEV4': dict(
        name='low', priority='P3', response_minutes=120, resolution_minutes=1440, update_minutes=None,
        audience='document',
        runbooks=dict(
            pg_tviews=dict(label='SEV 4', response_minutes=1440, resolution_minutes=None, update_minutes=None,
                           audience='document',
                           escalation=[dict(when='unresolved', after_minutes=1440, to='team lead', level=1)]),
            schedule_generator=dict(label='SEV-4', priority='P4', response_minutes=1440, resolution_minutes=10080,
                                    update_minutes=None, audience='document', escalation=[]),
            task_scheduler=dict(label='P3', priority='P3', response_minutes=120, resolution_minutes=1440,
                                update_minutes=None, audience='document', escalation=[]),
        )),
}
SEVERITIES = ('SEV1', 'SEV2', 'SEV3', 'SEV4')
SEVERITIES = ('SEV1', 'SEV2', 'SEV3', 'SEV4')


class IncidentError(Exception):
    """What an operator can cause: one clear message, never a traceback."""


def validate_incident_id(value):
    """Return the id unchanged, or raise IncidentError: 1-64 of [A-Za-z0-9._-], first alphanumeric, no '..'."""
    if value is None or not isinstance(value, str) or value == '':
        raise IncidentError('incident id must be a non-empty string, got %r' % (value,))
    if '..' in value or '/' in value or '\\' in value or not ID_RE.match(value):
        shown = value if len(value) <= 80 else value[:77] + '...'
        raise IncidentError('invalid incident id %r: use 1-64 characters of A-Z a-z 0-9 . _ -, starting with a '
                            'letter or digit, without "/" or ".."' % shown)
    return value
