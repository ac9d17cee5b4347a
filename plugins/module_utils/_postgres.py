# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared PostgreSQL code: one connection argspec, one client, version-aware queries.

Private to the collection: the API may change without notice. Modeled on
community.postgresql's ``postgres_common_argument_spec``; the options are documented
once in the ``incident.response.postgres`` doc fragment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import excerpt

PSYCOPG2_IMPORT_ERROR = None
try:
    import psycopg2
    import psycopg2.extras
    HAS_PSYCOPG2 = True
except ImportError:
    psycopg2 = None
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()
    HAS_PSYCOPG2 = False

MIN_SERVER_VERSION = 130000
APPLICATION_NAME = 'incident.response'

CLIENT_STATES = (
    'active',
    'idle',
    'idle in transaction',
    'idle in transaction (aborted)',
    'fastpath function call',
    'disabled',
)
IDLE_IN_TRANSACTION_STATES = ('idle in transaction', 'idle in transaction (aborted)')
WAIT_EVENT_TYPES = ('Activity', 'BufferPin', 'Client', 'Extension', 'InjectionPoint', 'IO', 'IPC', 'Lock',
                    'LWLock', 'Timeout')


def postgres_common_argument_spec():
    """The connection options every PostgreSQL module accepts (doc fragment ``incident.response.postgres``)."""
    return dict(
        login_host=dict(type='str', aliases=['host'], fallback=(env_fallback, ['PGHOST'])),
        login_port=dict(type='int', default=5432, aliases=['port'], fallback=(env_fallback, ['PGPORT'])),
        login_user=dict(type='str', default='postgres', aliases=['login'], fallback=(env_fallback, ['PGUSER'])),
        login_password=dict(type='str', no_log=True, fallback=(env_fallback, ['PGPASSWORD'])),
        login_db=dict(type='str', default='postgres', aliases=['db'], fallback=(env_fallback, ['PGDATABASE'])),
        login_unix_socket=dict(type='path'),
        ssl_mode=dict(type='str', default='prefer',
                      choices=['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ca_cert=dict(type='path', aliases=['ssl_rootcert']),
        connect_timeout=dict(type='int', default=10),
    )


def ensure_psycopg2(module):
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib('psycopg2 (or psycopg2-binary)')
                         + ' It is needed on the host that runs the module (the target), not only on the controller.',
                         exception=PSYCOPG2_IMPORT_ERROR)


def describe_target(params):
    """'127.0.0.1:5432 as app (database scheduler)': where we tried to connect, never the password."""
    if params.get('login_unix_socket'):
        where = 'socket %s port %s' % (params['login_unix_socket'], params['login_port'])
    else:
        where = '%s:%s' % (params.get('login_host') or 'local socket', params['login_port'])
    return '%s as %s (database %s)' % (where, params['login_user'], params['login_db'])


def _first_line(exc):
    text = to_native(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ' '.join(lines[:2]) if lines else exc.__class__.__name__


class PgClient(object):
    """A small wrapper over one psycopg2 connection.

    Every statement goes through :meth:`query`/:meth:`execute`, which record it in
    ``executed_queries`` (with parameters bound, secrets redacted) and turn any database
    error into ``module.fail_json`` with one clear message.
    """

    def __init__(self, module, autocommit=True):
        self.module = module
        self.params = module.params
        self.executed_queries = []
        self.conn = None
        ensure_psycopg2(module)
        self._connect(autocommit)

    def _connect(self, autocommit):
        p = self.params
        if p['connect_timeout'] is not None and p['connect_timeout'] < 1:
            self.module.fail_json(msg='connect_timeout must be at least 1 second, got %s' % p['connect_timeout'])
        kwargs = dict(
            port=p['login_port'],
            user=p['login_user'],
            dbname=p['login_db'],
            sslmode=p['ssl_mode'],
            connect_timeout=p['connect_timeout'],
            application_name=APPLICATION_NAME,
        )
        host = p['login_unix_socket'] or p['login_host']
        if host:
            kwargs['host'] = host
        if p['login_password'] is not None:
            kwargs['password'] = p['login_password']
        if p['ca_cert']:
            kwargs['sslrootcert'] = p['ca_cert']
        try:
            self.conn = psycopg2.connect(**kwargs)
            self.conn.autocommit = autocommit
        except psycopg2.Error as exc:
            self.module.fail_json(msg='Unable to connect to PostgreSQL at %s: %s' % (describe_target(p), _first_line(exc)))
        self.server_version = self.conn.server_version
        if self.server_version < MIN_SERVER_VERSION:
            self.fail('PostgreSQL %s at %s is not supported: this collection needs PostgreSQL 13 or newer'
                      % (self.version_string, describe_target(p)))

    @property
    def version_string(self):
        v = self.server_version
        return '%d.%d' % (v // 10000, v % 10000)

    def version_at_least(self, major):
        return self.server_version >= major * 10000

    def fail(self, msg, **kwargs):
        self.close()
        self.module.fail_json(msg=msg, executed_queries=self.executed_queries, **kwargs)

    def _run(self, sql, params, fetch):
        cursor = self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        try:
            try:
                cursor.execute(sql, params)
            finally:
                if cursor.query is not None:
                    self.executed_queries.append(excerpt(to_native(cursor.query), 0))
            if fetch and cursor.description is not None:
                return [dict(row) for row in cursor.fetchall()]
            return cursor.rowcount
        except psycopg2.Error as exc:
            if not self.conn.autocommit:
                self.conn.rollback()
            self.fail('Query failed on PostgreSQL at %s: %s' % (describe_target(self.params), _first_line(exc)),
                      query=excerpt(sql if isinstance(sql, str) else to_native(sql), 0))
        finally:
            cursor.close()

    def query(self, sql, params=None):
        """Run a statement and return its rows as a list of dicts."""
        return self._run(sql, params, fetch=True)

    def query_one(self, sql, params=None):
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql, params=None):
        """Run a statement and return the affected row count."""
        return self._run(sql, params, fetch=False)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self.conn = None

    # --- version-aware catalog queries -------------------------------------------------

    def settings(self, names):
        rows = self.query('SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s)', (list(names),))
        return dict((row['name'], row['setting']) for row in rows)

    def connection_limits(self):
        """max_connections and the slots reserved for superusers (and, on 16+, for pg_use_reserved_connections)."""
        names = ['max_connections', 'superuser_reserved_connections']
        if self.version_at_least(16):
            names.append('reserved_connections')
        settings = self.settings(names)
        return dict(
            max_connections=int(settings['max_connections']),
            superuser_reserved_connections=int(settings.get('superuser_reserved_connections', 0)),
            reserved_connections=int(settings.get('reserved_connections', 0)),
        )

    def activity(self, protected_roles=()):
        """Every backend of pg_stat_activity with its ages in seconds and its blockers.

        Columns that appeared in PostgreSQL 13 (``leader_pid``) and 14 (``query_id``) are
        selected only where they exist; earlier versions are refused at connect time.
        ``pg_has_role()`` is true for a superuser and any role, so a superuser counts as
        protected only when it is itself one of the protected roles.
        """
        extra = ['a.leader_pid']
        if self.version_at_least(14):
            extra.append('a.query_id')
        sql = """
SELECT a.pid, a.datname, a.usename, a.application_name,
       host(a.client_addr) AS client_addr, a.backend_type, a.state,
       a.wait_event_type, a.wait_event, a.query,
       EXTRACT(EPOCH FROM (now() - a.backend_start))::float8 AS backend_age,
       EXTRACT(EPOCH FROM (now() - a.xact_start))::float8 AS xact_age,
       EXTRACT(EPOCH FROM (now() - a.query_start))::float8 AS query_age,
       EXTRACT(EPOCH FROM (now() - a.state_change))::float8 AS state_age,
       pg_catalog.pg_blocking_pids(a.pid) AS blocked_by,
       (a.pid = pg_catalog.pg_backend_pid()) AS is_self,
       COALESCE(r.rolsuper, false) AS is_superuser,
       COALESCE(r.rolreplication AND NOT r.rolsuper, false) AS is_replication_role,
       ARRAY(SELECT p.rolname FROM pg_catalog.pg_roles p
             WHERE p.rolname = ANY(%(protected)s) AND a.usesysid IS NOT NULL
               AND (p.oid = a.usesysid
                    OR (NOT COALESCE(r.rolsuper, false)
                        AND pg_catalog.pg_has_role(a.usesysid, p.oid, 'MEMBER')))) AS protected_by_roles,
       {extra}
FROM pg_catalog.pg_stat_activity a
LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
ORDER BY a.pid
""".format(extra=', '.join(extra))
        return self.query(sql, dict(protected=list(protected_roles)))

    def current_role(self):
        return self.query_one("""
SELECT current_user AS name, r.rolsuper AS superuser,
       pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS signal_backend
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
""")


def session_view(row, excerpt_length=200):
    """The public shape of one session in every result (the same keys in every module)."""
    def age(key):
        value = row.get(key)
        return None if value is None else round(value, 1)
    return dict(
        pid=row['pid'],
        datname=row['datname'],
        usename=row['usename'],
        application_name=row['application_name'],
        client_addr=row['client_addr'],
        backend_type=row['backend_type'],
        state=row['state'],
        wait_event_type=row['wait_event_type'],
        wait_event=row['wait_event'],
        state_age_seconds=age('state_age'),
        xact_age_seconds=age('xact_age'),
        query_age_seconds=age('query_age'),
        blocked_by=list(row.get('blocked_by') or []),
        query_id=row.get('query_id'),
        query=excerpt(row['query'], excerpt_length),
    )


def hidden_sessions_warning(rows, login_user):
    """A warning when the role cannot see other roles' session details (no pg_read_all_stats).

    PostgreSQL hides state and query of other roles' sessions from such a role: those sessions
    can match no state, age or query filter, so the operator must know they were not considered.
    """
    hidden = [r for r in rows if is_hidden(r)]
    if not hidden:
        return None
    return ('role %s cannot see the state and query of %d sessions of other roles (grant it pg_read_all_stats '
            'or pg_monitor); they were not considered' % (login_user, len(hidden)))


def is_client_backend(row):
    return row['backend_type'] == 'client backend'


def is_hidden(row):
    """A session of another role whose details PostgreSQL hides from us (backend_type reads NULL)."""
    return row['backend_type'] is None and row['datname'] is not None and not row.get('is_self')


class BackendCriteria(object):
    """Which client backends an operation is about: every filter given must match (AND).

    Ages are in seconds (already parsed); ``query_pattern`` is a compiled regular expression.
    """

    FILTERS = ('states', 'min_state_age', 'min_xact_age', 'min_query_age', 'datnames', 'usenames',
               'application_names', 'query_pattern', 'wait_event_types', 'pids')

    def __init__(self, states=None, min_state_age=None, min_xact_age=None, min_query_age=None,
                 datnames=None, usenames=None, application_names=None, query_pattern=None,
                 wait_event_types=None, pids=None):
        self.states = states or None
        self.min_state_age = min_state_age
        self.min_xact_age = min_xact_age
        self.min_query_age = min_query_age
        self.datnames = datnames or None
        self.usenames = usenames or None
        self.application_names = application_names or None
        self.query_pattern = query_pattern
        self.wait_event_types = wait_event_types or None
        self.pids = pids or None

    def is_empty(self):
        return all(getattr(self, name) is None for name in self.FILTERS)

    @staticmethod
    def _old_enough(value, minimum):
        return minimum is None or (value is not None and value >= minimum)

    def matches(self, row):
        if self.states is not None and row['state'] not in self.states:
            return False
        if not (self._old_enough(row.get('state_age'), self.min_state_age)
                and self._old_enough(row.get('xact_age'), self.min_xact_age)
                and self._old_enough(row.get('query_age'), self.min_query_age)):
            return False
        if self.datnames is not None and row['datname'] not in self.datnames:
            return False
        if self.usenames is not None and row['usename'] not in self.usenames:
            return False
        if self.application_names is not None and row['application_name'] not in self.application_names:
            return False
        if self.wait_event_types is not None and row['wait_event_type'] not in self.wait_event_types:
            return False
        if self.pids is not None and row['pid'] not in self.pids:
            return False
        if self.query_pattern is not None and not self.query_pattern.search(row['query'] or ''):
            return False
        return True


def protection_reason(row, protected_applications=(), protect_replication=True):
    """Why a backend must never be signalled, or None when it may be.

    The module's own session, non-client backends (autovacuum, walsender, background
    workers, parallel workers), members of a protected role (``protected_by_roles``
    computed by :meth:`PgClient.activity`), replication roles and protected applications.
    """
    if row.get('is_self'):
        return 'own session'
    if is_hidden(row):
        return 'details hidden from this role (it needs pg_read_all_stats)'
    if not is_client_backend(row):
        return 'not a client backend (%s)' % row['backend_type']
    if row.get('protected_by_roles'):
        return 'protected role (member of %s)' % ', '.join(row['protected_by_roles'])
    if protect_replication and row.get('is_replication_role'):
        return 'replication role %s' % row['usename']
    if row.get('application_name') and row['application_name'] in protected_applications:
        return 'protected application %s' % row['application_name']
    return None
