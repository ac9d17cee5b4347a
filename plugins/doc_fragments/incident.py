# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The incident record's store options (module_utils/_incident.py store_argument_spec()); docs/incident-record.md.
    DOCUMENTATION = r'''
options:
  store:
    description:
      - Where the incident records are kept.
      - V(files) is a directory on the host that runs the module (the controller with C(delegate_to=localhost)),
        one C(<id>.json) per incident, written atomically, and an append-only C(<id>.events.jsonl) timeline, mode
        0600 in a 0700 directory.
      - V(postgres) is a set of tables in the schema O(store_schema) of a PostgreSQL database (for AWX, whose job
        containers are thrown away, and for several controllers), created and migrated by the collection.
      - Set it once for a play with C(module_defaults) and the group C(group/incident.response.incident), or with
        the environment variable E(INCIDENT_STORE).
    type: str
    choices: [files, postgres]
    default: files
  store_path:
    description:
      - The directory of the V(files) store. Falls back to E(INCIDENT_STORE_PATH).
    type: path
    default: /var/tmp/incident-response/incidents
  store_dsn:
    description:
      - The libpq connection string or URI of the V(postgres) store, for example
        C(host=db port=5432 dbname=incidents user=incident). Falls back to E(INCIDENT_STORE_DSN); when empty,
        libpq's E(PGHOST), E(PGPORT), E(PGUSER), E(PGPASSWORD) and E(PGDATABASE) apply.
      - A password in it never reaches a result or the record.
    type: str
  store_schema:
    description:
      - The schema of the V(postgres) store's tables, a plain lower-case identifier. Created with the tables on the
        first write. Falls back to E(INCIDENT_STORE_SCHEMA).
    type: str
    default: incident_response
  store_timeout:
    description:
      - Seconds to wait for the store's lock (V(files)), or for the connection, a lock and each statement
        (V(postgres)), before failing with a message. Falls back to E(INCIDENT_STORE_TIMEOUT).
    type: int
    default: 10
'''
