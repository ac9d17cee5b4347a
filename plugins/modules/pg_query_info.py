#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_query_info
short_description: Run one read-only query on PostgreSQL and return its rows
version_added: 0.1.0
description:
  - Runs one statement that reads (C(SELECT), C(WITH), C(VALUES) or C(TABLE)) in a C(READ ONLY) transaction that
    is rolled back afterwards, and returns its rows as dicts, at most O(max_rows) of them.
  - The questions of the runbooks that no other module asks (worker heartbeats, the work backlog, the counts of a
    health check) are asked with it, on the same connection options and C(module_defaults) as every other
    PostgreSQL module of the collection.
  - It cannot write, even when the statement tries to; the transaction is made read only by its first statement
    (which also takes the snapshot, so that nothing can make it read-write again), a second statement after a
    C(;) is refused before anything is sent, and the statement runs through a server-side cursor (C(DECLARE ...
    CURSOR FOR)), which takes only a query. PostgreSQL refuses every write in such a transaction (C(INSERT),
    C(UPDATE), C(DELETE), C(MERGE), DDL, C(nextval()), C(SELECT ... FOR UPDATE)) with an error, which is the
    module's one message.
  - Read only means the database's data. A function that acts elsewhere (C(pg_terminate_backend()),
    C(pg_reload_conf()), C(dblink)) is not a write to PostgreSQL; connect with a role that may only read (for
    example a member of C(pg_monitor) or C(pg_read_all_data)) when the statement comes from elsewhere.
  - Runs in check mode too (it changes nothing).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.postgres
  - incident.response.attributes.info_module
options:
  query:
    description:
      - One statement that returns rows; it must begin with C(SELECT), C(WITH), C(VALUES) or C(TABLE) (after
        comments and opening parentheses). A trailing C(;) is allowed, a second statement is not.
      - Placeholders as psycopg2 writes them; C(%s) bound from O(positional_args), or a name in parentheses
        between C(%) and C(s) (as in the examples) bound from O(named_args). With arguments, a literal C(%) is
        written C(%%).
      - C(SHOW name) is C(SELECT pg_catalog.current_setting('name')) here.
    type: str
    required: true
  positional_args:
    description:
      - Values bound to the C(%s) placeholders of O(query), in order. A list becomes an array, a dict C(json).
    type: list
    elements: raw
  named_args:
    description:
      - Values bound to the named placeholders of O(query). A list becomes an array, a dict C(json).
    type: dict
  max_rows:
    description:
      - At most this many rows are returned (0 to 100000); RV(truncated) says whether the query had more.
      - Only one row more than this is ever fetched from the server.
    type: int
    default: 1000
  unreachable:
    description:
      - What a server that cannot be reached (refused, timed out, authentication failed) is.
      - V(fail), a failure with a message naming the server; V(unknown), a result with RV(status) C(unknown),
        the reason in RV(msg) and RV(reasons), and no rows.
      - A statement that fails on a server that answered is always a failure.
    type: str
    default: fail
    choices: [fail, unknown]
seealso:
  - module: incident.response.pg_activity_info
notes:
  - The statement's own C(statement_timeout) is O(statement_timeout) (2 minutes by default); a statement that runs
    longer fails with a message naming the option.
  - Values are returned as JSON takes them; C(numeric) as an integer when it has no decimals, else a float;
    timestamps, dates and times in ISO 8601; C(interval) in seconds (a float); C(bytea) in PostgreSQL's hex format;
    C(json) and arrays as they are; C(uuid), C(inet) and anything else as text.
'''

EXAMPLES = r'''
- name: Worker heartbeats (task scheduler runbook, No Active Workers)
  incident.response.pg_query_info:
    query: >-
      SELECT worker_id, status, last_seen, round(extract(epoch FROM now() - last_seen)) AS age_seconds
      FROM worker_heartbeat ORDER BY last_seen DESC
  register: heartbeats

- name: Work due now, with a bound parameter
  incident.response.pg_query_info:
    query: SELECT count(*) AS due FROM due_work WHERE run_at <= now() - make_interval(secs => %s)
    positional_args: [60]
  register: backlog

- name: One row per worker given by name, and at most 10
  incident.response.pg_query_info:
    query: SELECT worker_id, last_seen FROM worker_heartbeat WHERE worker_id = ANY(%(ids)s)
    named_args:
      ids: [worker-1, worker-2]
    max_rows: 10
    statement_timeout: 5s
'''

RETURN = r'''
status:
  description:
    - C(ok) when the statement ran.
    - C(unknown) when the server could not be reached and O(unreachable=unknown).
  returned: always
  type: str
  sample: ok
reasons:
  description: Empty when the statement ran; why the server could not be reached otherwise.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: Why the server could not be reached.
  returned: when RV(status) is C(unknown)
  type: str
  sample: "Unable to connect to PostgreSQL at 127.0.0.1:5432 as monitoring (database postgres): Connection refused"
changed:
  description: Always false (reads only).
  returned: always
  type: bool
  sample: false
rows:
  description: The rows, each a dict of column name to value, in the order of the statement.
  returned: when the statement ran
  type: list
  elements: dict
  sample: [{"worker_id": "worker-3f2a1b", "status": "running", "last_seen": "2026-12-02T07:46:33.123456+00:00",
            "age_seconds": 4}]
columns:
  description: The column names, in order (also when no row came back).
  returned: when the statement ran
  type: list
  elements: str
  sample: ["worker_id", "status", "last_seen", "age_seconds"]
row_count:
  description: How many rows RV(rows) holds.
  returned: when the statement ran
  type: int
  sample: 1
truncated:
  description: True when the statement had more than O(max_rows) rows (RV(rows) holds the first O(max_rows)).
  returned: when the statement ran
  type: bool
  sample: false
server_version:
  description: Server version, major.minor.
  returned: when the server answered
  type: str
  sample: "15.8"
executed_queries:
  description: The statements run, parameters bound (passwords masked).
  returned: always
  type: list
  elements: str
'''

import binascii
import datetime
import decimal
import math
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import diagnosis_result, new_module
from ansible_collections.incident.response.plugins.module_utils._postgres import (
    PgClient,
    postgres_common_argument_spec,
)

try:
    from psycopg2.extras import Json
except ImportError:  # reported by PgClient (ensure_psycopg2)
    Json = None

MAX_ROWS_LIMIT = 100000

# A bound dict becomes json; a list an array (of its items, adapted the same way).


def bind_value(value):
    if isinstance(value, dict):
        return Json(value)
    if isinstance(value, (list, tuple)):
        return [bind_value(item) for item in value]
    return value


def result_value(value):
    """A value of a row as JSON takes it (see the notes of DOCUMENTATION)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        if value.as_tuple().exponent >= 0:
            return int(value)
        return float(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return '\\x' + binascii.hexlify(bytes(value)).decode('ascii')
    if isinstance(value, dict):
        return dict((str(key), result_value(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [result_value(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        query=dict(type='str', required=True),
        positional_args=dict(type='list', elements='raw'),
        named_args=dict(type='dict'),
        max_rows=dict(type='int', default=1000),
        unreachable=dict(type='str', default='fail', choices=['fail', 'unknown']),
    )
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True,
                        mutually_exclusive=[['positional_args', 'named_args']])
    p = module.params
    if not 0 <= p['max_rows'] <= MAX_ROWS_LIMIT:
        module.fail_json(msg='max_rows must be between 0 and %d, got %s' % (MAX_ROWS_LIMIT, p['max_rows']))
    params = None
    if p['positional_args'] is not None:
        params = tuple(bind_value(value) for value in p['positional_args'])
    elif p['named_args'] is not None:
        params = dict((key, bind_value(value)) for key, value in p['named_args'].items())

    client = PgClient(module)
    columns, rows, truncated = client.read_only_rows(p['query'], params, p['max_rows'])
    client.close()
    rows = [dict((name, result_value(value)) for name, value in row.items()) for row in rows]
    module.exit_json(**diagnosis_result('ok', [], rows=rows, columns=columns, row_count=len(rows), truncated=truncated,
                                        server_version=client.version_string, executed_queries=client.queries))


if __name__ == '__main__':
    main()
