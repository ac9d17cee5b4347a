"""Records for the tests of the review, the metrics and the monitoring period (issue 8, sections 5 and 6).

Records are written through the store's own API (``_incident.get_store``), with times in the past: the tests
move the clock by writing times, never by sleeping.
"""
import datetime
import hashlib
import os

from ansible_collections.incident.response.plugins.module_utils import _incident


def iso(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (moment.microsecond // 1000)


def ago(**delta):
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(**delta)


def files_store(path):
    return _incident.get_store(dict(store='files', store_path=str(path), store_dsn=None,
                                    store_schema='incident_response'))


def tree_digest(path):
    """Every file under path: name, mode and an md5 of its bytes (any change shows)."""
    rows = []
    for root, _dirs, names in os.walk(str(path)):
        for name in sorted(names):
            full = os.path.join(root, name)
            with open(full, 'rb') as handle:
                rows.append((os.path.relpath(full, str(path)), oct(os.stat(full).st_mode & 0o7777),
                             hashlib.md5(handle.read()).hexdigest()))
    return sorted(rows)


def make_incident(store, incident_id=None, started=None, system='pg_tviews', severity='SEV2', status='resolved',
                  detected=180, acknowledged=300, mitigated=900, resolved=1800, alert=None, root_cause=None,
                  title=None, events=(), **fields):
    """An incident whose times are ``started`` plus the given seconds (None: not reached)."""
    started = started or ago(days=3)
    incident_id = incident_id or store.allocate_id(day=started.date())
    times = dict(started=iso(started), closed=None)
    for key, seconds in (('detected', detected), ('acknowledged', acknowledged), ('mitigated', mitigated),
                         ('resolved', resolved)):
        times[key] = None if seconds is None else iso(started + datetime.timedelta(seconds=seconds))
    record = dict(id=incident_id, title=title or '%s incident' % system, system=system, runbook=None, alert=alert,
                  severity=severity, priority=None, severity_confirmed_by=None, status=status, commander='alice',
                  responders=['bob'], impact=None, root_cause=root_cause, summary=None, created_by='pytest',
                  times=times, updates_sent=0, escalation_level=0)
    record.update(fields)
    created = store.create(record)
    for event in events:
        store.append_event(incident_id, dict(event))
    return created


def pg_dsn(lab_env):
    return 'host=%s port=%s dbname=%s user=%s password=%s' % (
        lab_env['PGHOST'], lab_env['PGPORT'], lab_env['PGDATABASE'], lab_env['PGUSER'], lab_env['PGPASSWORD'])


def pg_store(lab_env, schema):
    return _incident.get_store(dict(store='postgres', store_path=None, store_dsn=pg_dsn(lab_env),
                                    store_schema=schema))


def drop_schema(lab_env, schema):
    import psycopg2  # pylint: disable=import-outside-toplevel
    conn = psycopg2.connect(pg_dsn(lab_env), application_name='pytest-observer', connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % schema)
    finally:
        conn.close()
