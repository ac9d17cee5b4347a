# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The targets option (module_utils/_pg_targets.py targets_argument_spec), once for every module that has it.
    # Doc fragments merge options shallowly (a module's own `targets` would replace the whole option) and must be
    # string literals, so each module takes the section with its own per-target filter: ACTIVITY
    # (incident.response.postgres_targets.activity, pg_activity_info) or BACKENDS (.backends, pg_backends). Their
    # shared part (DOCUMENTATION: the option and the connection overrides) is the same text in each section;
    # tests/unit/plugins/test_pg_targets.py checks that it is, and that every section matches the argspec.

    # The option and the connection overrides, shared by every module with targets.
    DOCUMENTATION = r'''
options:
  targets:
    description:
      - Do the module's work on every one of these PostgreSQL targets in one run, concurrently (at most 16 at
        once, each with its own connection, O(connect_timeout) and O(statement_timeout)), instead of on the one
        server of the connection options. One module run costs the host that runs it about a second of CPU, so
        one run for many targets is much cheaper than one run per target (the role C(pg_connections) does this
        for many inventory hosts, its C(pg_connections_batch)).
      - Each target's result is the full result a run on that target alone would return, in RV(targets) under
        the target's O(targets[].name). A target that fails (cannot be reached, a cap refused) has C(failed=true)
        and C(msg) in its own entry and the others still run; the task itself does not fail for it (see
        RV(failed_targets)). Guardrails, caps and check mode apply to each target as to a run on it alone.
      - Not given (the default), the module works on the server of its connection options, as without it.
    type: list
    elements: dict
    suboptions:
      name:
        description: The target's name (the inventory host it stands for); the key of its entry in RV(targets).
        type: str
        required: true
      login_host:
        description: This target's host; not given, O(login_host).
        type: str
      login_port:
        description: This target's port; not given, O(login_port).
        type: int
      login_db:
        description: The database to connect to on this target; not given, O(login_db).
        type: str
      login_user:
        description: The role to connect as on this target; not given, O(login_user).
        type: str
      login_password:
        description: The password of this target's role; not given, O(login_password). Never logged or returned.
        type: str
'''

    # pg_activity_info: the per-target database filter is `databases`.
    ACTIVITY = r'''
options:
  targets:
    description:
      - Do the module's work on every one of these PostgreSQL targets in one run, concurrently (at most 16 at
        once, each with its own connection, O(connect_timeout) and O(statement_timeout)), instead of on the one
        server of the connection options. One module run costs the host that runs it about a second of CPU, so
        one run for many targets is much cheaper than one run per target (the role C(pg_connections) does this
        for many inventory hosts, its C(pg_connections_batch)).
      - Each target's result is the full result a run on that target alone would return, in RV(targets) under
        the target's O(targets[].name). A target that fails (cannot be reached, a cap refused) has C(failed=true)
        and C(msg) in its own entry and the others still run; the task itself does not fail for it (see
        RV(failed_targets)). Guardrails, caps and check mode apply to each target as to a run on it alone.
      - Not given (the default), the module works on the server of its connection options, as without it.
    type: list
    elements: dict
    suboptions:
      name:
        description: The target's name (the inventory host it stands for); the key of its entry in RV(targets).
        type: str
        required: true
      login_host:
        description: This target's host; not given, O(login_host).
        type: str
      login_port:
        description: This target's port; not given, O(login_port).
        type: int
      login_db:
        description: The database to connect to on this target; not given, O(login_db).
        type: str
      login_user:
        description: The role to connect as on this target; not given, O(login_user).
        type: str
      login_password:
        description: The password of this target's role; not given, O(login_password). Never logged or returned.
        type: str

      databases:
        description: Only count this target's sessions of these databases; not given, O(databases).
        type: list
        elements: str
'''

    # pg_backends: the per-target database filter is `datnames`, and each target may have its own cap.
    BACKENDS = r'''
options:
  targets:
    description:
      - Do the module's work on every one of these PostgreSQL targets in one run, concurrently (at most 16 at
        once, each with its own connection, O(connect_timeout) and O(statement_timeout)), instead of on the one
        server of the connection options. One module run costs the host that runs it about a second of CPU, so
        one run for many targets is much cheaper than one run per target (the role C(pg_connections) does this
        for many inventory hosts, its C(pg_connections_batch)).
      - Each target's result is the full result a run on that target alone would return, in RV(targets) under
        the target's O(targets[].name). A target that fails (cannot be reached, a cap refused) has C(failed=true)
        and C(msg) in its own entry and the others still run; the task itself does not fail for it (see
        RV(failed_targets)). Guardrails, caps and check mode apply to each target as to a run on it alone.
      - Not given (the default), the module works on the server of its connection options, as without it.
    type: list
    elements: dict
    suboptions:
      name:
        description: The target's name (the inventory host it stands for); the key of its entry in RV(targets).
        type: str
        required: true
      login_host:
        description: This target's host; not given, O(login_host).
        type: str
      login_port:
        description: This target's port; not given, O(login_port).
        type: int
      login_db:
        description: The database to connect to on this target; not given, O(login_db).
        type: str
      login_user:
        description: The role to connect as on this target; not given, O(login_user).
        type: str
      login_password:
        description: The password of this target's role; not given, O(login_password). Never logged or returned.
        type: str

      datnames:
        description: Only this target's backends connected to one of these databases; not given, O(datnames).
        type: list
        elements: str
      max_backends:
        description: The cap of this target (refuse to act on it when more match); not given, O(max_backends).
        type: int
'''
