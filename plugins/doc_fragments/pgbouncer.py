# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The admin console options of every PgBouncer module (module_utils/_pgbouncer.py pgbouncer_argument_spec()).
    DOCUMENTATION = r'''
options:
  host:
    description:
      - Host of PgBouncer's admin console (its C(listen_addr)), or the directory of its Unix socket
        (C(unix_socket_dir)). Falls back to E(PGBOUNCER_HOST).
    type: str
    default: 127.0.0.1
  port:
    description:
      - Port PgBouncer listens on (C(listen_port)). Falls back to E(PGBOUNCER_PORT).
    type: int
    default: 6432
  user:
    description:
      - Role to log in to the admin console as. Falls back to E(PGBOUNCER_USER).
      - Reading (C(SHOW)) needs one of PgBouncer's C(admin_users) or C(stats_users); C(PAUSE), C(RESUME),
        C(RECONNECT), C(KILL) and C(WAIT_CLOSE) need one of its C(admin_users).
    type: str
    default: pgbouncer
  password:
    description:
      - Password of O(user) (as in PgBouncer's C(auth_file)). Falls back to E(PGBOUNCER_PASSWORD).
        Never logged or returned.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the connection before failing with a message naming the console.
    type: int
    default: 10
  command_timeout:
    description:
      - Client-side bound on every admin command, as a duration (V(30s), V(500ms), V(1m)) or seconds. The admin
        console takes no C(SET), so no server-side timeout can be set; past this bound the module closes the
        connection and fails with a message naming the bound.
    type: raw
    default: 30s
requirements:
  - psycopg2 (or psycopg2-binary) on the host that runs the module
notes:
  - The admin console is PgBouncer's virtual database C(pgbouncer); the module speaks to it through the
    collection's PostgreSQL client, with simple queries only, in autocommit, and never sends C(SET).
  - Set these options once for all PgBouncer modules with C(module_defaults) and C(group/incident.response.pgbouncer).
'''
