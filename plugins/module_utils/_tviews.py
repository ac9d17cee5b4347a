# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""pg_tviews: contract detection, catalog queries and the runbooks' decisions.

Two contracts exist (see docs/tviews.md):

* the **runbook catalog** the runbooks query: ``pg_tviews_metadata``, ``pg_tviews_queue``,
  ``pg_tviews_health_check()``, ``pg_tviews_refresh(name)``;
* the **extension contract** of the public pg_tviews extension: schema ``tviews``, view
  ``tviews.registry``, ``tviews.contract_version()``, ``tviews.pg_tviews_health_check()``,
  the setting ``pg_tviews.suspend_triggers`` and ``pg_tviews_is_suspended()``. It keeps no
  error state and no queue.

The pure functions (``emergency_level``, ``sev_class``, ``exit_criteria``, ``overall_status``)
take plain dicts so that they are unit tested without a database. Private to the collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.incident.response.plugins.module_utils._common import duration_param
from ansible_collections.incident.response.plugins.module_utils._incident_core import SEVERITIES, SEVERITY
from ansible_collections.incident.response.plugins.module_utils._postgres import MAX_PG_TIMEOUT, describe_target

try:
    from psycopg2 import sql as pgsql
except ImportError:  # the PgClient reports the missing library
    pgsql = None

RUNBOOK = 'runbook'
EXTENSION = 'extension'
CONTRACT_CHOICES = ['auto', RUNBOOK, EXTENSION]
SUSPEND_SETTING = 'pg_tviews.suspend_triggers'
ARCHIVE_TABLE = 'pg_tviews_queue_archive'

# What the extension contract does not have: reported instead of invented.
EXTENSION_MISSING_FIELDS = [
    'with_errors', 'errors', 'healthy', 'healthy_share', 'disabled', 'pending', 'oldest_pending_seconds',
    'stale', 'max_refresh_ms', 'avg_refresh_ms',
]
EXTENSION_MISSING_NOTE = ('the pg_tviews extension keeps no error state (last_error), no refresh times '
                          '(last_refreshed, last_refresh_duration_ms), no per-TVIEW emergency flags and no '
                          'refresh queue (pg_tviews_queue); these fields are null here, not zero')

THRESHOLD_DEFAULTS = dict(
    failing_share=0.5,
    max_pending=10000,
    connection_share=0.8,
    stale_after=4 * 3600,
    exit_healthy_share=0.95,
)

LEVEL_STATUS = dict(CRITICAL='critical', HIGH='warning', MONITOR='warning', OK='ok')
SEV_PRIORITY = dict((sev, SEVERITY[sev]['priority']) for sev in SEVERITIES)  # the one mapping (_incident)
SEV_RESPONSE = dict(SEV1='immediate (15 min), executive notification',
                    SEV2='1 hour, management notification',
                    SEV3='4 hours, team notification',
                    SEV4='24 hours, document only')


def assessment_argument_spec():
    """The assessment options of tview_info and tview_emergency (doc fragment ``incident.response.tviews``)."""
    return dict(
        contract=dict(type='str', default='auto', choices=CONTRACT_CHOICES),
        stale_after=dict(type='raw', default='4h'),
        failing_share=dict(type='float', default=0.5),
        max_pending=dict(type='int', default=10000),
        connection_share=dict(type='float', default=0.8),
        exit_healthy_share=dict(type='float', default=0.95),
        integrity_limit=dict(type='int', default=0),
        error_limit=dict(type='int', default=50),
    )


def no_catalog_message(params):
    return ('this database has no pg_tviews catalog: neither the runbook catalog (pg_tviews_metadata, '
            'pg_tviews_queue) nor the extension contract (tviews.registry) exists in %s'
            % describe_target(params))


DETECT_QUERY = """
SELECT pg_catalog.to_regclass('pg_tviews_metadata') IS NOT NULL AS metadata,
       pg_catalog.to_regclass('pg_tviews_queue') IS NOT NULL AS queue,
       pg_catalog.to_regclass('tviews.registry') IS NOT NULL AS registry,
       pg_catalog.to_regproc('pg_tviews_health_check') IS NOT NULL AS runbook_health,
       pg_catalog.to_regproc('tviews.pg_tviews_health_check') IS NOT NULL AS extension_health,
       current_database() AS database, current_setting('server_version') AS server_version
"""


def detect_contract(client, requested='auto', row=None):
    """Which contract the connected database has: 'runbook' or 'extension'; fails clearly otherwise.

    ``row``: the result of DETECT_QUERY when the caller already read it (one round trip for the assessment).
    """
    if row is None:
        row = client.query_one(DETECT_QUERY)
    has_runbook = bool(row['metadata'] and row['queue'])
    has_extension = bool(row['registry'])
    if requested == RUNBOOK:
        if not has_runbook:
            missing = [n for n, ok in (('pg_tviews_metadata', row['metadata']), ('pg_tviews_queue', row['queue']))
                       if not ok]
            client.fail('contract=runbook but %s does not exist in %s%s'
                        % (' and '.join(missing), describe_target(client.params),
                           ' (this database has the extension contract: use contract=extension)'
                           if has_extension else ''))
        return RUNBOOK
    if requested == EXTENSION:
        if not has_extension:
            client.fail('contract=extension but tviews.registry does not exist in %s%s'
                        % (describe_target(client.params),
                           ' (this database has the runbook catalog: use contract=runbook)' if has_runbook else ''))
        return EXTENSION
    if has_runbook:
        return RUNBOOK
    if has_extension:
        return EXTENSION
    client.fail(no_catalog_message(client.params))
    return None


def relation_identifier(name, schema=None):
    """A psycopg2.sql.Identifier for a TVIEW name ('tv_x', 'schema.tv_x' or schema given)."""
    if schema:
        return pgsql.Identifier(schema, name)
    if '.' in name:
        left, right = name.split('.', 1)
        return pgsql.Identifier(left, right)
    return pgsql.Identifier(name)


# --- the runbook catalog ------------------------------------------------------------------

def runbook_assessment(client, recent_window=3600):
    """The counts of the runbooks' assessment, investigation and validation queries, in one statement."""
    return client.query_one("""
SELECT (SELECT count(*) FROM pg_tviews_metadata) AS total,
       (SELECT count(*) FROM pg_tviews_metadata WHERE last_error IS NOT NULL) AS with_errors,
       (SELECT count(*) FROM pg_tviews_metadata WHERE emergency_disabled) AS disabled,
       (SELECT count(*) FROM pg_tviews_queue WHERE processed_at IS NULL) AS pending,
       (SELECT EXTRACT(EPOCH FROM (now() - min(created_at)))::float8
          FROM pg_tviews_queue WHERE processed_at IS NULL) AS oldest_pending_seconds,
       (SELECT max(last_refresh_duration_ms) FROM pg_tviews_metadata
          WHERE last_refreshed > now() - make_interval(secs => %(recent)s)) AS max_refresh_ms,
       (SELECT avg(last_refresh_duration_ms)::float8 FROM pg_tviews_metadata
          WHERE last_refreshed > now() - make_interval(secs => %(recent)s)) AS avg_refresh_ms,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE state = 'active') AS active_connections,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE wait_event_type = 'Lock') AS lock_waiting_connections,
       current_setting('max_connections')::int AS max_connections
""", dict(recent=recent_window))


def runbook_tviews(client, stale_after):
    return client.query("""
SELECT entity_name AS name, last_error, emergency_disabled,
       to_char(emergency_disable_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS emergency_disable_time,
       emergency_disable_reason,
       to_char(last_refreshed AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_refreshed,
       EXTRACT(EPOCH FROM (now() - last_refreshed))::float8 AS refresh_age_seconds,
       last_refresh_duration_ms,
       (last_refreshed IS NULL OR last_refreshed < now() - make_interval(secs => %s)) AS stale
FROM pg_tviews_metadata ORDER BY entity_name
""", (stale_after,))


def health_check_rows(client, contract, exists=None):
    """The health check function's rows (status, component, message, severity), or an error text.

    ``exists``: whether the function exists, when the caller already knows (DETECT_QUERY).
    """
    function = 'tviews.pg_tviews_health_check' if contract == EXTENSION else 'pg_tviews_health_check'
    if exists is None:
        exists = client.query_one('SELECT pg_catalog.to_regproc(%s) IS NOT NULL AS ok', (function,))['ok']
    if not exists:
        return None, '%s() does not exist' % function
    in_transaction = client.in_transaction
    if in_transaction:
        client.try_query('SAVEPOINT tview_health', fetch=False)
    rows, error = client.try_query('SELECT * FROM %s()' % function)
    if error and in_transaction:
        client.try_query('ROLLBACK TO SAVEPOINT tview_health', fetch=False)
    return rows, error


# --- the runbook queue and its archive ---------------------------------------------------

class Queue(object):
    def __init__(self, client, names):
        self.client = client
        self.names = names
        info = client.query_one("""
SELECT n.nspname AS schema, c.relname AS name,
       pg_catalog.to_regclass(pg_catalog.quote_ident(n.nspname) || '.' || %s) IS NOT NULL AS archive_exists
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass('pg_tviews_queue')
""", (ARCHIVE_TABLE,))
        self.schema = info['schema']
        self.archive_exists = info['archive_exists']
        self.queue = pgsql.Identifier(info['schema'], info['name'])
        self.archive = pgsql.Identifier(info['schema'], ARCHIVE_TABLE)
        self.archive_name = '%s.%s' % (info['schema'], ARCHIVE_TABLE)
        self.columns = [r['attname'] for r in client.query("""
SELECT attname FROM pg_catalog.pg_attribute
WHERE attrelid = pg_catalog.to_regclass('pg_tviews_queue') AND attnum > 0 AND NOT attisdropped
  AND attgenerated = '' ORDER BY attnum
""")]

    def filter(self, prefix='WHERE'):
        if self.names:
            return pgsql.SQL(' %s entity_name = ANY(%%s)' % prefix), [self.names]
        return pgsql.SQL(''), []

    def pending(self, top):
        where, params = self.filter('AND')
        row = self.client.query_one(pgsql.SQL(
            'SELECT count(*) AS pending, EXTRACT(EPOCH FROM (now() - min(created_at)))::float8 AS oldest '
            'FROM {} WHERE processed_at IS NULL').format(self.queue) + where, params)
        by_tview = self.client.query(pgsql.SQL(
            'SELECT entity_name AS name, count(*) AS pending FROM {} WHERE processed_at IS NULL').format(self.queue)
            + where + pgsql.SQL(' GROUP BY entity_name ORDER BY 2 DESC, 1 LIMIT %s'), params + [top])
        return row['pending'], row['oldest'], by_tview

    def rows(self, limit):
        where, params = self.filter('AND')
        found = self.client.query(pgsql.SQL(
            'SELECT row_to_json(q)::text AS j FROM {} q WHERE processed_at IS NULL').format(self.queue) + where
            + pgsql.SQL(' ORDER BY created_at, 1 LIMIT %s'), params + [limit])
        return [json.loads(r['j']) for r in found]

    def archive_counts(self):
        if not self.archive_exists:
            return []
        readable = self.client.query_one("SELECT has_table_privilege(%s, 'SELECT') AS ok", (self.archive_name,))
        if not readable['ok']:
            return None
        return self.client.query(pgsql.SQL(
            'SELECT incident_id, count(*) AS rows, count(restored_at) AS restored, '
            "to_char(max(archived_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_archived_at "
            'FROM {} GROUP BY incident_id ORDER BY max(archived_at) DESC').format(self.archive))

    def unrestored(self, incident_id):
        if not self.archive_exists:
            return 0
        where, params = self.filter('AND')
        return self.client.query_one(pgsql.SQL(
            'SELECT count(*) AS n FROM {} WHERE incident_id = %s AND restored_at IS NULL').format(self.archive)
            + where, [incident_id] + params)['n']

    def ensure_archive(self):
        if self.archive_exists:
            return False
        self.client.execute(pgsql.SQL('CREATE TABLE IF NOT EXISTS {} (LIKE {})').format(self.archive, self.queue))
        self.client.execute(pgsql.SQL(
            'ALTER TABLE {} ADD COLUMN incident_id text NOT NULL, ADD COLUMN archived_at timestamptz NOT NULL, '
            'ADD COLUMN restored_at timestamptz').format(self.archive))
        self.client.execute(pgsql.SQL('CREATE INDEX ON {} (incident_id)').format(self.archive))
        self.archive_exists = True
        return True

    def column_list(self):
        return pgsql.SQL(', ').join(pgsql.Identifier(c) for c in self.columns)

    def move_to_archive(self, incident_id):
        where, params = self.filter('AND')
        cols = self.column_list()
        statement = pgsql.SQL(
            'WITH moved AS (DELETE FROM {queue} WHERE processed_at IS NULL').format(queue=self.queue) + where + pgsql.SQL(
            ' RETURNING {cols}) INSERT INTO {archive} ({cols}, incident_id, archived_at) '
            'SELECT {cols}, %s, now() FROM moved').format(cols=cols, archive=self.archive)
        return self.client.execute(statement, params + [incident_id])

    def move_to_archive_copy(self, incident_id):
        """The archive-then-clear as one ``COPY (...) TO STDOUT`` statement and its parameters: the rows moved are
        streamed out as they are moved (CSV with a header, in the order they were moved), in one pass over the queue
        (no second scan of the archive, no sort). The COPY's row count is the number of rows moved."""
        where, params = self.filter('AND')
        cols = self.column_list()
        statement = pgsql.SQL(
            'COPY (WITH moved AS (DELETE FROM {queue} WHERE processed_at IS NULL').format(queue=self.queue) + where + \
            pgsql.SQL(' RETURNING {cols}) INSERT INTO {archive} ({cols}, incident_id, archived_at) '
                      'SELECT {cols}, %s, now() FROM moved RETURNING {cols}) TO STDOUT WITH (FORMAT csv, HEADER)'
                      ).format(cols=cols, archive=self.archive)
        return statement, params + [incident_id]

    def move_back(self, incident_id):
        where, params = self.filter('AND')
        cols = self.column_list()
        statement = pgsql.SQL(
            'WITH back AS (UPDATE {archive} SET restored_at = now() WHERE incident_id = %s AND restored_at IS NULL'
        ).format(archive=self.archive) + where + pgsql.SQL(
            ' RETURNING {cols}) INSERT INTO {queue} ({cols}) SELECT {cols} FROM back').format(cols=cols, queue=self.queue)
        return self.client.execute(statement, [incident_id] + params)

    def privilege_problem(self, action):
        needed = []
        if action == 'archive':
            needed = [('pg_tviews_queue', 'DELETE')]
            if self.archive_exists:
                needed.append((self.archive_name, 'INSERT'))
        elif action == 'restore' and self.archive_exists:
            needed = [('pg_tviews_queue', 'INSERT'), (self.archive_name, 'UPDATE')]
        missing = []
        for table, privilege in needed:
            row = self.client.query_one('SELECT has_table_privilege(%s, %s) AS ok', (table, privilege))
            if not row['ok']:
                missing.append('%s on %s' % (privilege, table))
        if action == 'archive' and not self.archive_exists:
            row = self.client.query_one("SELECT has_schema_privilege(%s, 'CREATE') AS ok", (self.schema,))
            if not row['ok']:
                missing.append('CREATE on schema %s (to create %s)' % (self.schema, self.archive_name))
        return missing


# --- the extension contract ------------------------------------------------------------------

def extension_registry(client):
    return client.query("""
SELECT schema::text AS schema, name::text AS name, entity, base_tables, logged, needs_reregister
FROM tviews.registry ORDER BY schema, name
""")


def extension_suspension(client):
    """Where pg_tviews.suspend_triggers is set: this session, the database, roles."""
    session = client.query_one("SELECT current_setting(%s, true) AS value", (SUSPEND_SETTING,))
    rows = client.query("""
SELECT COALESCE(d.datname, '') AS datname, COALESCE(r.rolname, '') AS rolname, s.setconfig
FROM pg_catalog.pg_db_role_setting s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
WHERE (s.setdatabase = 0 OR d.datname = current_database())
""")
    database, roles = None, {}
    for row in rows:
        for item in row['setconfig'] or []:
            key, _sep, value = item.partition('=')
            if key != SUSPEND_SETTING:
                continue
            if row['rolname'] and not row['datname']:
                roles[row['rolname']] = value
            elif row['datname'] and not row['rolname']:
                database = value
            else:
                roles['%s in %s' % (row['rolname'], row['datname'])] = value
    return dict(session=is_on(session['value']), session_value=session['value'], database=database, roles=roles)


def is_on(value):
    return (value or '').strip().lower() in ('on', 'true', 'yes', '1')


# --- integrity check -------------------------------------------------------------------------

INTEGRITY_BATCH = 100


def integrity_check(client, tviews, statement_timeout_ms, limit=None, batch=INTEGRITY_BATCH):
    """Read each TVIEW (count(*)) in a read-only transaction with a statement timeout.

    ``tviews`` is a list of (schema or None, name). Identifiers are quoted with psycopg2.sql.
    Many TVIEWs are read per statement (``batch``; the statement's timeout is the per-TVIEW timeout
    times the TVIEWs it reads); a batch that fails is read again one TVIEW at a time (each with the
    per-TVIEW timeout), so that every failure is named with its own error.
    Returns a list of dicts: name, ok, rows or error.
    """
    chosen = tviews[:limit] if limit else tviews
    results = []
    with client.transaction(commit=False):
        client.try_query('SET TRANSACTION READ ONLY', fetch=False)
        for start in range(0, len(chosen), max(1, batch)):
            part = chosen[start:start + max(1, batch)]
            labels = ['%s.%s' % (schema, name) if schema else name for schema, name in part]
            client.try_query('SAVEPOINT tview_integrity', fetch=False)
            client.try_query('SET LOCAL statement_timeout = %s', (int(statement_timeout_ms) * len(part),), fetch=False)
            statement = pgsql.SQL('SELECT ') + pgsql.SQL(', ').join(
                pgsql.SQL('(SELECT count(*) FROM {}) AS {}').format(
                    relation_identifier(name, schema), pgsql.Identifier('c%d' % index))
                for index, (schema, name) in enumerate(part))
            rows, error = client.try_query(statement)
            if not error:
                counts = rows[0]
                results.extend(dict(name=label, ok=True, rows=counts['c%d' % index]) for index, label in enumerate(labels))
                continue
            client.try_query('ROLLBACK TO SAVEPOINT tview_integrity', fetch=False)
            client.try_query('SET LOCAL statement_timeout = %s', (int(statement_timeout_ms),), fetch=False)
            for (schema, name), label in zip(part, labels):
                client.try_query('SAVEPOINT tview_integrity_one', fetch=False)
                rows, error = client.try_query(
                    pgsql.SQL('SELECT count(*) AS n FROM {}').format(relation_identifier(name, schema)))
                if error:
                    client.try_query('ROLLBACK TO SAVEPOINT tview_integrity_one', fetch=False)
                    results.append(dict(name=label, ok=False, error=error))
                else:
                    results.append(dict(name=label, ok=True, rows=rows[0]['n']))
    return results


# --- the assessment (tview_info, tview_emergency) ---------------------------------------

def validate_assessment(module, timeout_name='statement_timeout'):
    """Check and convert the thresholds; returns (thresholds, statement_timeout_ms) or fails the module."""
    params = module.params
    stale_after = duration_param(module, 'stale_after')
    timeout = duration_param(module, timeout_name, resolution=0.001, maximum=MAX_PG_TIMEOUT)
    if stale_after is None or stale_after <= 0:
        module.fail_json(msg='stale_after must be a positive duration, got %r' % (params['stale_after'],))
    if timeout is None or timeout <= 0:
        module.fail_json(msg='%s must be a positive duration, got %r' % (timeout_name, params[timeout_name]))
    for name in ('failing_share', 'connection_share', 'exit_healthy_share'):
        if not 0 <= params[name] <= 1:
            module.fail_json(msg='%s must be between 0 and 1, got %s' % (name, params[name]))
    for name in ('max_pending', 'integrity_limit', 'error_limit'):
        if params.get(name) is not None and params[name] < 0:
            module.fail_json(msg='%s must not be negative, got %s' % (name, params[name]))
    thresholds = dict(failing_share=params['failing_share'], max_pending=params['max_pending'],
                      connection_share=params['connection_share'], stale_after=stale_after,
                      exit_healthy_share=params['exit_healthy_share'])
    return thresholds, int(timeout * 1000)


def assess_runbook(client, thresholds, error_limit):
    counts = runbook_assessment(client)
    rows = runbook_tviews(client, thresholds['stale_after'])
    total = counts['total']
    healthy = total - counts['with_errors']
    stale = [r['name'] for r in rows if r['stale']]
    totals = dict(
        total=total,
        with_errors=counts['with_errors'],
        healthy=healthy,
        healthy_share=round(float(healthy) / total, 4) if total else None,
        disabled=counts['disabled'],
        pending=counts['pending'],
        oldest_pending_seconds=None if counts['oldest_pending_seconds'] is None
        else round(counts['oldest_pending_seconds'], 1),
        stale=len(stale),
        max_refresh_ms=counts['max_refresh_ms'],
        avg_refresh_ms=None if counts['avg_refresh_ms'] is None else round(counts['avg_refresh_ms'], 1),
        active_connections=counts['active_connections'],
        lock_waiting_connections=counts['lock_waiting_connections'],
        max_connections=counts['max_connections'],
    )
    for row in rows:
        row['refresh_age_seconds'] = None if row['refresh_age_seconds'] is None else round(row['refresh_age_seconds'], 1)
    errors = [dict(name=r['name'], last_error=r['last_error'], emergency_disabled=r['emergency_disabled'])
              for r in rows if r['last_error'] is not None]
    facts = dict(totals, stale_count=len(stale))
    targets = [(None, r['name']) for r in rows]
    return dict(totals=totals, tviews=rows, errors=errors[:error_limit] if error_limit else errors,
                stale=stale[:error_limit] if error_limit else stale,
                unavailable=dict(fields=[], note=None)), facts, targets


def assess_extension(client, result_extra):
    registry = extension_registry(client)
    suspension = extension_suspension(client)
    version = client.query_one('SELECT tviews.contract_version()::text AS v')
    counts = client.query_one("""
SELECT (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE state = 'active') AS active_connections,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE wait_event_type = 'Lock') AS lock_waiting_connections,
       current_setting('max_connections')::int AS max_connections
""")
    totals = dict((name, None) for name in EXTENSION_MISSING_FIELDS if name not in ('errors',))
    totals.update(total=len(registry), needs_reregister=sum(1 for r in registry if r['needs_reregister']), **counts)
    result_extra.update(suspension=suspension, contract_version=version['v'])
    suspended = bool(suspension['session'] or any(
        v is not None and v.strip().lower() in ('on', 'true', 'yes', '1')
        for v in [suspension['database']] + list(suspension['roles'].values())))
    facts = dict(totals, stale_count=None, suspended=suspended)
    targets = [(r['schema'], r['name']) for r in registry]
    return dict(totals=totals, tviews=registry, errors=[], stale=[],
                unavailable=dict(fields=list(EXTENSION_MISSING_FIELDS), note=EXTENSION_MISSING_NOTE)), facts, targets


def assess(client, requested_contract, thresholds, error_limit=50, integrity=False, integrity_timeout_ms=5000,
           integrity_limit=0):
    """The assessment of tview_info (emergency level, SEV, exit criteria) on an open PgClient.

    Returns (status, reasons, result, context): ``result`` holds every fact tview_info returns (but
    executed_queries), ``context`` the contract, the TVIEW targets (schema, name) and the raw facts.
    """
    found = client.query_one(DETECT_QUERY)
    contract = detect_contract(client, requested_contract, row=found)
    extra = dict(database=found['database'], server_version=found['server_version'])
    if contract == EXTENSION:
        result, facts, targets = assess_extension(client, extra)
    else:
        result, facts, targets = assess_runbook(client, thresholds, error_limit)
    health, health_error = health_check_rows(
        client, contract, exists=found['extension_health' if contract == EXTENSION else 'runbook_health'])
    result['health_check'] = health or []
    if health_error:
        result['health_check_error'] = health_error
    facts['health_problems'] = None if health is None else sum(1 for r in health if r.get('status') != 'ok')
    checked = None
    if integrity:
        checked = integrity_check(client, targets, integrity_timeout_ms, integrity_limit or None)
        result['integrity'] = checked
        result['integrity_ok'] = all(r['ok'] for r in checked)
    level = emergency_level(facts, thresholds)
    failures = sum(1 for r in checked or [] if not r['ok'])
    sev = sev_class(facts, level, failures)
    reasons = list(level['reasons'])
    if failures:
        reasons.append('%d TVIEWs cannot be read (integrity check)' % failures)
    if health_error:
        reasons.append('the health check failed: %s' % health_error)
    result.update(extra)
    result.update(
        contract=contract,
        emergency_level=level['level'],
        emergency_label=level['label'],
        recommended_action=level['recommended_action'],
        unevaluated=level['unevaluated'],
        severity=sev['severity'],
        priority=sev['priority'],
        response=sev['response'],
        exit_criteria=exit_criteria(facts, thresholds, checked),
    )
    return overall_status(level, checked), reasons, result, dict(contract=contract, targets=targets, facts=facts)


# --- the runbooks' decisions (pure) -------------------------------------------------------

def emergency_level(facts, thresholds=None):
    """The emergency runbook's Step 2, in its order. Returns a dict: level, label, recommended_action, reasons.

    ``facts``: total, with_errors, pending, lock_waiting_connections, max_connections, stale_count,
    disabled (None where the contract cannot tell). The runbook's ``state = 'waiting'`` does not
    exist in pg_stat_activity since PostgreSQL 9.6; lock waits (``wait_event_type = 'Lock'``) stand in.
    """
    t = dict(THRESHOLD_DEFAULTS, **(thresholds or {}))
    total = facts.get('total') or 0
    errors = facts.get('with_errors')
    pending = facts.get('pending')
    waiting = facts.get('lock_waiting_connections') or 0
    max_conn = facts.get('max_connections') or 0
    stale = facts.get('stale_count')
    reasons = []
    unevaluated = []
    critical = None
    if errors is None:
        unevaluated.append('failing share (no last_error in this contract)')
    elif total and errors > total * t['failing_share']:
        critical = critical or 'CRITICAL: Majority of TVIEWs failing'
        reasons.append('%d of %d TVIEWs have errors (more than %d%%)' % (errors, total, round(t['failing_share'] * 100)))
    if pending is None:
        unevaluated.append('refresh backlog (no pg_tviews_queue in this contract)')
    elif pending > t['max_pending']:
        critical = critical or 'CRITICAL: Massive refresh backlog'
        reasons.append('%d pending refreshes (more than %d)' % (pending, t['max_pending']))
    if max_conn and waiting > max_conn * t['connection_share']:
        critical = critical or 'CRITICAL: Connection exhaustion'
        reasons.append('%d sessions waiting on locks (more than %d%% of max_connections %d)'
                       % (waiting, round(t['connection_share'] * 100), max_conn))
    if critical:
        return dict(level='CRITICAL', label=critical, recommended_action='EXECUTE_EMERGENCY_PROTOCOL',
                    reasons=reasons, unevaluated=unevaluated)
    if stale is None:
        unevaluated.append('staleness (no last_refreshed in this contract)')
    elif stale > 0:
        reasons.append('%d TVIEWs not refreshed for more than %ds' % (stale, t['stale_after']))
        return dict(level='HIGH', label='HIGH: TVIEWs stale', recommended_action='FOLLOW_STANDARD_INCIDENTS',
                    reasons=reasons, unevaluated=unevaluated)
    issues = []
    if errors:
        issues.append('%d TVIEWs have errors' % errors)
    if facts.get('disabled'):
        issues.append('%d TVIEWs are emergency disabled' % facts['disabled'])
    if facts.get('health_problems'):
        issues.append('%d health check rows are not ok' % facts['health_problems'])
    if facts.get('suspended'):
        issues.append('TVIEW triggers are suspended')
    if issues:
        return dict(level='MONITOR', label='MONITOR: Issues detected but not critical',
                    recommended_action='FOLLOW_STANDARD_INCIDENTS', reasons=issues, unevaluated=unevaluated)
    return dict(level='OK', label='OK: no issue detected', recommended_action='NONE', reasons=[],
                unevaluated=unevaluated)


def sev_class(facts, level, integrity_failures=0):
    """The checklist's SEV 1-4 severity matrix mapped onto what the database shows.

    SEV1: TVIEWs unavailable (a majority failing) or integrity failures (data not readable).
    SEV2: another critical condition (backlog, connection exhaustion) or stale TVIEWs.
    SEV3: some TVIEWs failing, disabled or suspended, health check not ok.
    SEV4: nothing functional.
    """
    label = level['label']
    if integrity_failures or label == 'CRITICAL: Majority of TVIEWs failing':
        sev = 'SEV1'
    elif level['level'] in ('CRITICAL', 'HIGH'):
        sev = 'SEV2'
    elif level['level'] == 'MONITOR':
        sev = 'SEV3'
    else:
        sev = 'SEV4'
    return dict(severity=sev, priority=SEV_PRIORITY[sev], response=SEV_RESPONSE[sev])


def exit_criteria(facts, thresholds=None, integrity=None):
    """The emergency exit criteria the database can prove: more than 95% healthy, data readable.

    Returns dict(met, criteria=[{name, met, detail}]). ``met`` is None when a criterion
    cannot be evaluated on this contract.
    """
    t = dict(THRESHOLD_DEFAULTS, **(thresholds or {}))
    criteria = []
    total = facts.get('total') or 0
    healthy = facts.get('healthy')
    if healthy is None:
        problems = facts.get('health_problems')
        if problems is None:
            criteria.append(dict(name='tviews_healthy', met=None,
                                 detail='cannot be evaluated: this contract has no per-TVIEW health'))
        else:
            criteria.append(dict(name='tviews_healthy', met=problems == 0 and not facts.get('suspended'),
                                 detail='health check: %d rows not ok%s'
                                 % (problems, ', triggers suspended' if facts.get('suspended') else '')))
    else:
        share = (float(healthy) / total) if total else 1.0
        criteria.append(dict(name='tviews_healthy', met=share > t['exit_healthy_share'],
                             detail='%d of %d TVIEWs healthy (%.1f%%, needs more than %.0f%%)'
                             % (healthy, total, share * 100, t['exit_healthy_share'] * 100)))
    if integrity is not None:
        failed = [r['name'] for r in integrity if not r['ok']]
        criteria.append(dict(name='tviews_readable', met=not failed,
                             detail=('%d TVIEWs cannot be read: %s' % (len(failed), ', '.join(failed[:10])))
                             if failed else 'every TVIEW checked is readable'))
    values = [c['met'] for c in criteria]
    met = None if None in values else all(values)
    return dict(met=met, criteria=criteria)


def overall_status(level, integrity=None):
    status = LEVEL_STATUS[level['level']]
    if integrity and any(not r['ok'] for r in integrity):
        status = 'critical'
    return status
