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

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import excerpt
from ansible_collections.incident.response.plugins.module_utils._incident import SEVERITIES, SEVERITY
from ansible_collections.incident.response.plugins.module_utils._postgres import _first_line, describe_target

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # the PgClient reports the missing library
    psycopg2 = None
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


def no_catalog_message(params):
    return ('this database has no pg_tviews catalog: neither the runbook catalog (pg_tviews_metadata, '
            'pg_tviews_queue) nor the extension contract (tviews.registry) exists in %s'
            % describe_target(params))


def detect_contract(client, requested='auto'):
    """Which contract the connected database has: 'runbook' or 'extension'; fails clearly otherwise."""
    row = client.query_one("""
SELECT pg_catalog.to_regclass('pg_tviews_metadata') IS NOT NULL AS metadata,
       pg_catalog.to_regclass('pg_tviews_queue') IS NOT NULL AS queue,
       pg_catalog.to_regclass('tviews.registry') IS NOT NULL AS registry
""")
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


def try_query(client, statement, params=None, fetch=True):
    """Run a statement, returning (rows_or_rowcount, error_text) instead of failing the module."""
    cursor = client.conn.cursor()
    try:
        try:
            cursor.execute(statement, params)
        finally:
            if cursor.query is not None:
                client.executed_queries.append(excerpt(to_native(cursor.query), 0))
        if fetch and cursor.description is not None:
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r)) for r in cursor.fetchall()], None
        return cursor.rowcount, None
    except psycopg2.Error as exc:
        return None, _first_line(exc)
    finally:
        cursor.close()


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


def health_check_rows(client, contract):
    """The health check function's rows (status, component, message, severity), or an error text."""
    function = 'tviews.pg_tviews_health_check' if contract == EXTENSION else 'pg_tviews_health_check'
    exists = client.query_one('SELECT pg_catalog.to_regproc(%s) IS NOT NULL AS ok', (function,))
    if not exists['ok']:
        return None, '%s() does not exist' % function
    in_transaction = not client.conn.autocommit
    if in_transaction:
        try_query(client, 'SAVEPOINT tview_health', fetch=False)
    rows, error = try_query(client, 'SELECT * FROM %s()' % function)
    if error and in_transaction:
        try_query(client, 'ROLLBACK TO SAVEPOINT tview_health', fetch=False)
    return rows, error


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

def integrity_check(client, tviews, statement_timeout_ms, limit=None):
    """Read each TVIEW (count(*)) in a read-only transaction with a statement timeout.

    ``tviews`` is a list of (schema or None, name). Identifiers are quoted with psycopg2.sql.
    Returns a list of dicts: name, ok, rows or error.
    """
    results = []
    was_autocommit = client.conn.autocommit
    client.conn.autocommit = False
    try:
        try_query(client, 'SET TRANSACTION READ ONLY', fetch=False)
        try_query(client, 'SET LOCAL statement_timeout = %s', (int(statement_timeout_ms),), fetch=False)
        for schema, name in tviews[:limit] if limit else tviews:
            label = '%s.%s' % (schema, name) if schema else name
            try_query(client, 'SAVEPOINT tview_integrity', fetch=False)
            statement = pgsql.SQL('SELECT count(*) AS n FROM {}').format(relation_identifier(name, schema))
            rows, error = try_query(client, statement)
            if error:
                try_query(client, 'ROLLBACK TO SAVEPOINT tview_integrity', fetch=False)
                results.append(dict(name=label, ok=False, error=error))
            else:
                results.append(dict(name=label, ok=True, rows=rows[0]['n']))
        client.conn.rollback()
    finally:
        client.conn.autocommit = was_autocommit
    return results


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
