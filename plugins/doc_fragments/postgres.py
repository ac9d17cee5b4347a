# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every PostgreSQL module (postgres_common_argument_spec).
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Host running PostgreSQL.
      - Falls back to the E(PGHOST) environment variable; without either, libpq's default Unix socket is used.
    type: str
    aliases: [host]
  login_port:
    description:
      - Port PostgreSQL listens on. Falls back to E(PGPORT).
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - Role to connect as. Falls back to E(PGUSER).
      - Signalling other roles' backends needs a superuser or a member of C(pg_signal_backend);
        reading other roles' queries needs C(pg_read_all_stats) (granted by C(pg_monitor)).
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - Password of O(login_user). Falls back to E(PGPASSWORD). Never logged or returned.
    type: str
  login_db:
    description:
      - Database to connect to. Falls back to E(PGDATABASE).
    type: str
    default: postgres
    aliases: [db]
  login_unix_socket:
    description:
      - Directory of the Unix socket to connect through; takes precedence over O(login_host).
    type: path
  ssl_mode:
    description:
      - Whether and how to use TLS, as libpq's C(sslmode).
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File of certificate authorities to verify the server against (libpq's C(sslrootcert)).
    type: path
    aliases: [ssl_rootcert]
  connect_timeout:
    description:
      - Seconds to wait for the connection before failing with a message naming the server.
    type: int
    default: 10
  lock_timeout:
    description:
      - Longest wait for a lock by any statement of the module's session (PostgreSQL's C(lock_timeout)), as a
        duration (V(10s), V(500ms), V(1m)) or a number of seconds. A statement that waits longer fails with a
        message naming this option, instead of hanging behind another session.
      - Must be positive (at least V(1ms)) and at most 24 days (PostgreSQL keeps it in milliseconds).
    type: raw
    default: 10s
  statement_timeout:
    description:
      - Longest run of any statement of the module's session (PostgreSQL's C(statement_timeout)), as a duration
        or a number of seconds; same limits as O(lock_timeout).
    type: raw
    default: 2m
requirements:
  - psycopg2 (or psycopg2-binary) on the host that runs the module
notes:
  - PostgreSQL 13 and newer are supported; version-specific catalog columns are selected only where they exist.
  - The module's own session carries C(application_name=incident.response), O(lock_timeout) and
    O(statement_timeout), so that no statement of the module waits or runs without a bound.
  - Set these options once for all modules of the group with C(module_defaults) and C(group/incident.response.postgres).
'''
