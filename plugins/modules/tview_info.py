#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: tview_info
short_description: Assess pg_tviews the way the runbooks do (emergency level, SEV class, exit criteria)
version_added: 0.1.0
description:
  - One read-only call returns what the pg_tviews runbooks' assessment, investigation and validation queries
    return (totals, TVIEWs with errors, pending queue, oldest pending age, stale TVIEWs, maximum and average
    refresh time, healthy share), the emergency level and recommended action of the emergency runbook, the
    SEV 1-4 class of the incident checklist and whether the emergency exit criteria hold.
  - Detects the contract of the database (O(contract=auto)); the B(runbook catalog) (C(pg_tviews_metadata),
    C(pg_tviews_queue)) or the B(extension contract) (C(tviews.registry), C(pg_tviews.suspend_triggers)).
    On the extension contract it reports what that contract can tell (registry, health check rows, suspension
    state) and lists in RV(unavailable) the fields that do not exist there; they are null, never invented.
  - The runbook's C(state = 'waiting') does not exist in C(pg_stat_activity) (since PostgreSQL 9.6); sessions
    waiting on locks (C(wait_event_type = 'Lock')) stand in for it.
  - With O(integrity_check=true), reads each TVIEW (C(SELECT count(*))) in a read-only transaction with
    O(statement_timeout), identifiers quoted with C(psycopg2.sql), and reports which fail and why.
  - Fails with C(this database has no pg_tviews catalog) when neither contract exists.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
  - incident.response.tviews
  - incident.response.attributes.info_module
options:
  integrity_check:
    description: Read every TVIEW and report those that cannot be read.
    type: bool
    default: false
  statement_timeout:
    description:
      - Statement timeout of each integrity read (seconds or a duration such as V(5s), V(500ms)), and of every
        other statement of the module's session (it replaces the default of the connection options).
    type: raw
    default: 5s
  unreachable:
    description:
      - What a server that cannot be reached is. V(fail) fails the task with a message naming the server;
        V(unknown) reports RV(status=unknown) with the reason in RV(reasons) and RV(msg), and succeeds.
      - Keep V(fail) where a later step must not run without the assessment (the emergency path).
    type: str
    default: fail
    choices: [fail, unknown]
seealso:
  - module: incident.response.tview_state
  - module: incident.response.tview_queue
  - module: incident.response.pg_activity_info
notes:
  - A role with C(SELECT) on the catalog is enough (the lab's C(monitoring) role).
'''

EXAMPLES = r'''
- name: Assess pg_tviews the way the emergency runbook does
  incident.response.tview_info:
    login_db: app
  register: tviews

- name: Stop unless the emergency protocol is recommended
  ansible.builtin.assert:
    that: tviews.recommended_action == 'EXECUTE_EMERGENCY_PROTOCOL'

- name: Check that every TVIEW can be read, 2 seconds each
  incident.response.tview_info:
    login_db: app
    integrity_check: true
    statement_timeout: 2s
  register: integrity
'''

RETURN = r'''
contract:
  description: The contract found, V(runbook) or V(extension).
  returned: always
  type: str
database:
  description: The database assessed (C(current_database())).
  returned: always
  type: str
server_version:
  description: The server's version, such as C(15.8).
  returned: always
  type: str
status:
  description:
    - V(ok), V(warning) (HIGH or MONITOR) or V(critical) (CRITICAL, or integrity failures).
    - V(unknown) when the server could not be reached and O(unreachable=unknown); only RV(status), RV(reasons),
      RV(msg) and RV(changed) are returned then.
  returned: always
  type: str
reasons:
  description: The thresholds crossed, as short sentences (or why the server could not be reached).
  returned: always
  type: list
  elements: str
msg:
  description: Why the server could not be reached.
  returned: when RV(status) is V(unknown)
  type: str
changed:
  description: Always false (reads only).
  returned: always
  type: bool
emergency_level:
  description: V(CRITICAL), V(HIGH), V(MONITOR) or V(OK) (the emergency runbook's Step 2).
  returned: always
  type: str
emergency_label:
  description: "The runbook's own words, such as C(CRITICAL: Majority of TVIEWs failing)."
  returned: always
  type: str
recommended_action:
  description: V(EXECUTE_EMERGENCY_PROTOCOL), V(FOLLOW_STANDARD_INCIDENTS) or V(NONE).
  returned: always
  type: str
severity:
  description: The checklist's class, V(SEV1) to V(SEV4).
  returned: always
  type: str
priority:
  description: V(P0) to V(P3), from RV(severity).
  returned: always
  type: str
response:
  description: The checklist's response time and communication for RV(severity).
  returned: always
  type: str
exit_criteria:
  description: C(met) (true, false, or null when this contract cannot tell) and the C(criteria) checked.
  returned: always
  type: dict
  sample: {"met": false, "criteria": [{"name": "tviews_healthy", "met": false,
           "detail": "12 of 20 TVIEWs healthy (60.0%, needs more than 95%)"}]}
unevaluated:
  description: Emergency criteria this contract cannot evaluate.
  returned: always
  type: list
  elements: str
totals:
  description:
    - C(total), C(with_errors), C(healthy), C(healthy_share), C(disabled), C(pending),
      C(oldest_pending_seconds), C(stale), C(max_refresh_ms), C(avg_refresh_ms) (last hour),
      C(active_connections), C(lock_waiting_connections), C(max_connections).
    - Null on the extension contract for the fields listed in RV(unavailable).
  returned: always
  type: dict
errors:
  description: TVIEWs with a C(last_error) (name, last_error, emergency_disabled), at most O(error_limit).
  returned: always
  type: list
  elements: dict
stale:
  description: Names of stale TVIEWs, at most O(error_limit).
  returned: always
  type: list
  elements: str
tviews:
  description: Every TVIEW with its state (runbook) or its registry row (extension).
  returned: always
  type: list
  elements: dict
health_check:
  description: The rows of the contract's health check function (status, component, message, severity).
  returned: always
  type: list
  elements: dict
health_check_error:
  description: Why the health check could not run, when it could not.
  returned: when the health check failed
  type: str
suspension:
  description: Extension contract only; C(session), C(database) and C(roles) values of C(pg_tviews.suspend_triggers).
  returned: when contract is extension
  type: dict
contract_version:
  description: Extension contract only; C(tviews.contract_version()).
  returned: when contract is extension
  type: str
unavailable:
  description: Fields that do not exist on this contract, and why.
  returned: always
  type: dict
  sample: {"fields": ["with_errors", "pending"], "note": "the pg_tviews extension keeps no error state ..."}
integrity:
  description: One entry per TVIEW read (name, ok, rows or error).
  returned: when O(integrity_check=true)
  type: list
  elements: dict
integrity_ok:
  description: Whether every TVIEW checked could be read.
  returned: when O(integrity_check=true)
  type: bool
executed_queries:
  description: The statements run.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import diagnosis_result, new_module
from ansible_collections.incident.response.plugins.module_utils._postgres import PgClient, postgres_common_argument_spec
from ansible_collections.incident.response.plugins.module_utils._tviews import (
    assess,
    assessment_argument_spec,
    validate_assessment,
)


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(assessment_argument_spec())
    spec.update(
        integrity_check=dict(type='bool', default=False),
        statement_timeout=dict(type='raw', default='5s'),
        unreachable=dict(type='str', default='fail', choices=['fail', 'unknown']),
    )
    return spec


def main():
    module = new_module(AnsibleModule, argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    thresholds, timeout_ms = validate_assessment(module)
    client = PgClient(module)
    status, reasons, result, dummy = assess(client, p['contract'], thresholds, error_limit=p['error_limit'],
                                            integrity=p['integrity_check'], integrity_timeout_ms=timeout_ms,
                                            integrity_limit=p['integrity_limit'])
    client.close()
    result['executed_queries'] = client.queries
    module.exit_json(**diagnosis_result(status, reasons, **result))


if __name__ == '__main__':
    main()
