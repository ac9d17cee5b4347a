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

import contextlib
import os
import re
import socket
import threading
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import diagnosis_result, duration_param, excerpt

PSYCOPG2_IMPORT_ERROR = None
try:
    import psycopg2
    import psycopg2.extensions
    import psycopg2.extras
    import psycopg2.sql
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
# PostgreSQL keeps timeouts in milliseconds, in an int: above 2147483647 ms (24.8 days) it refuses them.
MAX_PG_TIMEOUT = 2147483.647
TIMEOUT_OPTIONS = ('lock_timeout', 'statement_timeout')
WAIT_EVENT_TYPES = ('Activity', 'BufferPin', 'Client', 'Extension', 'InjectionPoint', 'IO', 'IPC', 'Lock',
                    'LWLock', 'Timeout')


BIND_MESSAGE = ('the arguments do not fit the query\'s placeholders, nothing was run (%%s for positional_args, '
                '%%(name)s for named_args; with arguments a literal %% is written %%%%): %s')
# What DECLARE ... CURSOR FOR takes: a query that returns rows and writes nothing.
READ_STATEMENTS = ('select', 'with', 'values', 'table')
_IDENT_CHAR = re.compile(r'[A-Za-z0-9_$\u0080-\U0010ffff]')
_DOLLAR_TAG = re.compile(r'\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$')
_WORD = re.compile(r'[A-Za-z_]+')


def _is_ident_char(char):
    return bool(char) and _IDENT_CHAR.match(char) is not None


def single_statement(text):
    """The one statement of ``text`` (a trailing ``;`` and comments after it removed), or ValueError.

    A lexer of PostgreSQL's quoting: '...' ('' inside; backslash escapes only in E'...'), "...", $tag$...$tag$,
    -- and nested /* */ comments. A ``;`` outside them followed by anything but comments is a second statement
    and is refused (psycopg2 sends the simple query protocol, where ``COMMIT; ...`` would end the read-only
    transaction). Where it could misread, it reads less as quoted than PostgreSQL does (an E after an identifier
    character is not a prefix, a $ after one does not open a tag), so a doubt refuses rather than lets through.
    The statement must begin (after comments and opening parentheses) with SELECT, WITH, VALUES or TABLE.
    """
    i, n = 0, len(text)
    end = None          # index of the first top-level ';'
    first = None        # index of the first significant character
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if text.startswith('--', i):
            newline = text.find('\n', i)
            i = n if newline < 0 else newline + 1
            continue
        if text.startswith('/*', i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith('/*', i):
                    depth, i = depth + 1, i + 2
                elif text.startswith('*/', i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise ValueError('a /* comment is not closed')
            continue
        if end is not None:
            if char == ';':
                i += 1
                continue
            raise ValueError('more than one statement (a ; followed by more): give one statement')
        if first is None:
            first = i
        if char == ';':
            end = i
            i += 1
        elif char in ("'", '"'):
            # E'...' only when the E is a token of its own (not the end of an identifier such as xe'...')
            escapes = (char == "'" and i >= 1 and text[i - 1] in 'eE'
                       and not _is_ident_char(text[i - 2] if i >= 2 else ''))
            i += 1
            while True:
                if i >= n:
                    raise ValueError('a %s is not closed' % ('string' if char == "'" else 'quoted identifier'))
                if escapes and text[i] == '\\':
                    i += 2
                elif text[i] == char:
                    if text.startswith(char * 2, i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif char == '$' and not _is_ident_char(text[i - 1] if i else ''):
            tag = _DOLLAR_TAG.match(text, i)
            if tag:
                close = text.find(tag.group(0), tag.end())
                if close < 0:
                    raise ValueError('a %s quoted string is not closed' % tag.group(0))
                i = close + len(tag.group(0))
            else:
                i += 1
        else:
            i += 1
    if first is None or first == end:
        raise ValueError('the query is empty')
    statement = text[:end] if end is not None else text
    start = first
    while start < len(statement) and (statement[start] == '(' or statement[start].isspace()):
        start += 1
        # comments between opening parentheses are rare; a word is looked for right after them
    word = _WORD.match(statement, start)
    keyword = word.group(0).lower() if word else statement[start:start + 10]
    if keyword not in READ_STATEMENTS:
        raise ValueError('the statement must be a read that returns rows (%s), got %r'
                         % (', '.join(k.upper() for k in READ_STATEMENTS), keyword))
    return statement.rstrip()


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
        lock_timeout=dict(type='raw', default='10s'),
        statement_timeout=dict(type='raw', default='2m'),
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


def _nul_option(value, name):
    """The name of the first option (or list item, dict key) holding a NUL character, or None."""
    if isinstance(value, str):
        return name if '\x00' in value else None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _nul_option(item, '%s[%d]' % (name, index))
            if found:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_option(key, name) or _nul_option(item, '%s.%s' % (name, key))
            if found:
                return found
    return None


NUL_MESSAGE = '%s contains a NUL (0x00) character, which PostgreSQL cannot take: nothing was sent'


def connection_settings(module, application_name=APPLICATION_NAME):
    """Everything needed to open a session, from the module's options, built in one place.

    Returns ``dict(connect=<psycopg2.connect() keyword arguments>, session=<settings set on every
    session>)``; fails the module with one message on a bad value (a NUL in any option, a
    connect_timeout below 1 s, a lock_timeout or statement_timeout that is not a positive duration
    PostgreSQL can hold). Used by PgClient and by anything that must open a session of its own
    (the lock holder of tview_lock).
    """
    p = module.params
    for name in sorted(p):
        found = _nul_option(p[name], name)
        if found:
            module.fail_json(msg=NUL_MESSAGE % found)
    if p['connect_timeout'] is not None and p['connect_timeout'] < 1:
        module.fail_json(msg='connect_timeout must be at least 1 second, got %s' % p['connect_timeout'])
    session = {}
    for name in TIMEOUT_OPTIONS:
        seconds = duration_param(module, name, minimum=0.001, maximum=MAX_PG_TIMEOUT, resolution=0.001,
                                 allow_empty=False)
        if seconds is None:
            module.fail_json(msg='%s must be a positive duration such as 10s, got %r' % (name, p.get(name)))
        session[name] = '%dms' % int(round(seconds * 1000))
    kwargs = dict(
        port=p['login_port'],
        user=p['login_user'],
        dbname=p['login_db'],
        sslmode=p['ssl_mode'],
        connect_timeout=p['connect_timeout'],
        application_name=application_name,
    )
    host = p['login_unix_socket'] or p['login_host']
    if host:
        kwargs['host'] = host
    if p['login_password'] is not None:
        kwargs['password'] = p['login_password']
    if p['ca_cert']:
        kwargs['sslrootcert'] = p['ca_cert']
    return dict(connect=kwargs, session=session, given=dict((name, p[name]) for name in TIMEOUT_OPTIONS))


def open_connection(settings, autocommit=True):
    """A psycopg2 connection with the session settings applied (lock_timeout, statement_timeout).

    Raises psycopg2.Error; PgClient turns it into one message, a forked helper reports it its own way.
    """
    conn = psycopg2.connect(**settings['connect'])
    if not settings['session']:
        # No session settings (PgBouncer's admin console takes no SET and no SELECT): nothing to send.
        conn.autocommit = autocommit
        return conn
    try:
        conn.autocommit = True
        cursor = conn.cursor()
        try:
            names = sorted(settings['session'])
            cursor.execute('SELECT ' + ', '.join('pg_catalog.set_config(%s, %s, false)' for dummy in names),
                           [item for name in names for item in (name, settings['session'][name])])
        finally:
            cursor.close()
        conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn


class PgClient(object):
    """The only way into PostgreSQL: one psycopg2 connection, every statement through it.

    Every statement goes through :meth:`query`/:meth:`execute` (which fail the module with one
    clear message on a database error) or :meth:`try_query` (which returns the error instead); all
    record it (parameters bound, secrets redacted) in :attr:`queries`. psycopg2.sql compositions are
    rendered to text (:meth:`render`). :meth:`transaction` groups statements; the session carries
    the ``lock_timeout`` and ``statement_timeout`` options.
    """

    def __init__(self, module, autocommit=True, settings=None, target=None, product='PostgreSQL',
                 min_version=MIN_SERVER_VERSION, deadline=None):
        """``settings``/``target``/``product``/``min_version``/``deadline`` serve another server that speaks
        the PostgreSQL protocol (PgBouncer's admin console, ``_pgbouncer.py``): prebuilt connection settings
        (``session`` empty: nothing is SET), the text naming the target in messages, the product's name, no
        version check (None), and a client-side bound in seconds on every statement (the socket is shut down
        when a statement runs longer, and the statement fails with a message naming the bound)."""
        self.module = module
        self.params = module.params
        self._executed = []
        self._conn = None
        self.product = product
        self.deadline = deadline
        self._timed_out = False
        ensure_psycopg2(module)
        self._settings = settings or connection_settings(module)
        self.target = target or describe_target(self.params)
        self._connect(autocommit, min_version)

    def _connect(self, autocommit, min_version=MIN_SERVER_VERSION):
        p = self.params
        try:
            self._conn = open_connection(self._settings, autocommit)
        except psycopg2.Error as exc:
            msg = 'Unable to connect to %s at %s: %s' % (self.product, self.target, _first_line(exc))
            if p.get('unreachable') == 'unknown':
                # A diagnosis reports a server it cannot reach (status unknown), as postgresql_ping does.
                self.module.exit_json(**diagnosis_result('unknown', [msg], msg=msg, executed_queries=[]))
            self.module.fail_json(msg=msg)
        self.server_version = self._conn.server_version
        if min_version is not None and self.server_version < min_version:
            self.fail('PostgreSQL %s at %s is not supported: this collection needs PostgreSQL 13 or newer'
                      % (self.version_string, self.target))

    @property
    def version_string(self):
        v = self.server_version
        return '%d.%d' % (v // 10000, v % 10000)

    def version_at_least(self, major):
        return self.server_version >= major * 10000

    @property
    def queries(self):
        """The statements run so far (bound, redacted), for the ``executed_queries`` of a result."""
        return list(self._executed)

    @property
    def in_transaction(self):
        return self._conn is not None and not self._conn.autocommit

    def fail(self, msg, **kwargs):
        self.close()
        self.module.fail_json(msg=msg, executed_queries=self.queries, **kwargs)

    def render(self, statement):
        """Text of a statement: psycopg2.sql compositions rendered with this connection's quoting."""
        if hasattr(statement, 'as_string'):
            return statement.as_string(self._conn)
        return statement

    def _error_message(self, exc):
        text = _first_line(exc)
        if self._timed_out:
            return 'no answer within %gs (the client-side deadline): the connection was closed' % self.deadline
        code = getattr(exc, 'pgcode', None)
        if code == '55P03' or 'lock timeout' in text:
            text += ' (lock_timeout %s: another session holds the lock; raise lock_timeout to wait longer)' \
                % self._settings['given']['lock_timeout']
        elif code == '57014' and 'statement timeout' in text:
            text += ' (statement_timeout %s)' % self._settings['given']['statement_timeout']
        return text

    def _run(self, sql, params, fetch, fail=True):
        """Run one statement: rows (fetch) or rowcount; with fail=False, (result, error text) instead."""
        sql = self.render(sql)
        cursor = self._conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        watchdog = self._watchdog()
        try:
            try:
                cursor.execute(sql, params)
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                if cursor.query is not None:
                    self._executed.append(excerpt(to_native(cursor.query), 0))
            if fetch and cursor.description is not None:
                rows = [dict(row) for row in cursor.fetchall()]
            else:
                rows = cursor.rowcount
            return rows if fail else (rows, None)
        except ValueError as exc:  # psycopg2 refuses a NUL in a bound string before sending anything
            if 'NUL' not in str(exc):
                raise
            self.fail(NUL_MESSAGE % 'a value bound to the query', query=excerpt(sql, 0))
        except psycopg2.Error as exc:
            if fail:
                if not self._conn.autocommit and not self._conn.closed:
                    self._conn.rollback()
                self.fail('Query failed on %s at %s: %s'
                          % (self.product, self.target, self._error_message(exc)), query=excerpt(sql, 0))
            return None, self._error_message(exc)
        finally:
            cursor.close()
        return None  # not reached: fail() exits

    def _watchdog(self):
        """With a ``deadline``: a timer that shuts the socket down when the statement outlives it (psycopg2
        releases the GIL while it waits, so the timer runs; libpq then reports a closed connection)."""
        if not self.deadline:
            return None
        self._timed_out = False
        fd = self._conn.fileno()

        def expire():
            self._timed_out = True
            try:
                sock = socket.socket(fileno=os.dup(fd))
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.close()
            except OSError:
                pass
        timer = threading.Timer(self.deadline, expire)
        timer.daemon = True
        timer.start()
        return timer

    @property
    def timed_out(self):
        """True when the last statement ran into the client-side ``deadline``."""
        return self._timed_out

    def query(self, sql, params=None):
        """Run a statement and return its rows as a list of dicts."""
        return self._run(sql, params, fetch=True)

    def query_one(self, sql, params=None):
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql, params=None):
        """Run a statement and return the affected row count."""
        return self._run(sql, params, fetch=False)

    def try_query(self, sql, params=None, fetch=True):
        """Run a statement without failing the module: returns ``(rows or rowcount, None)`` or ``(None, error)``.

        Inside a transaction, the caller keeps the transaction usable with a savepoint.
        """
        return self._run(sql, params, fetch, fail=False)

    def copy_to(self, sql, params, handle):
        """``COPY (<sql>) TO STDOUT`` streamed into ``handle`` (a binary file object): the rows never sit in memory.

        ``sql`` is a complete COPY statement (text or psycopg2.sql composition) whose %s placeholders are bound
        with ``params``. Returns the number of rows copied. A database error fails the module with one message
        (rolling back an open transaction); an OSError from the file is raised to the caller.
        """
        cursor = self._conn.cursor()
        try:
            statement = cursor.mogrify(self.render(sql), params)
            self._executed.append(excerpt(to_native(statement), 0))
            cursor.copy_expert(statement, handle)
            return cursor.rowcount
        except ValueError as exc:
            if 'NUL' not in str(exc):
                raise
            self.fail(NUL_MESSAGE % 'a value bound to the query')
        except psycopg2.Error as exc:
            if not self._conn.autocommit:
                self._conn.rollback()
            self.fail('COPY failed on PostgreSQL at %s: %s' % (describe_target(self.params), self._error_message(exc)))
        finally:
            cursor.close()
        return None  # not reached: fail() exits

    @contextlib.contextmanager
    def transaction(self, commit=True):
        """Statements of the block in one transaction: committed at the end (rolled back with
        ``commit=False``, e.g. a read-only check), rolled back on any error; autocommit restored after.
        Nested use joins the outer transaction."""
        if self.in_transaction:
            yield self
            return
        self._conn.autocommit = False
        try:
            yield self
        except BaseException:
            if self._conn is not None:
                try:
                    self._conn.rollback()
                except psycopg2.Error:
                    pass
            raise
        else:
            try:
                if commit:
                    self._conn.commit()
                else:
                    self._conn.rollback()
            except psycopg2.Error as exc:
                self.fail('Could not %s the transaction on %s at %s: %s'
                          % ('commit' if commit else 'end', self.product, self.target, self._error_message(exc)))
        finally:
            if self._conn is not None:
                self._conn.autocommit = True

    def rollback(self):
        """Roll back the open transaction (inside :meth:`transaction`), keeping the session."""
        if self.in_transaction:
            self._conn.rollback()

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self._conn = None

    def read_only_rows(self, sql, params=None, max_rows=1000, cursor_name='incident_response_query'):
        """One statement (see :func:`single_statement`), its parameters bound, in a READ ONLY transaction that is
        rolled back: ``(columns, rows, truncated)``, at most ``max_rows`` rows (one more is fetched to know).

        The transaction is made read only (``SET TRANSACTION READ ONLY``) and its snapshot taken (a first query
        that checks it) before the statement runs: after that no statement can make it read-write again. The
        rows come through a server-side cursor (``DECLARE ... FOR``), so at most ``max_rows + 1`` rows ever reach
        the client. A bad statement, a binding that does not fit, a write refused, a timeout: the module fails
        with one message (:meth:`fail`).
        """
        cursor = self._conn.cursor()
        try:
            try:
                bound = cursor.mogrify(sql, params)
            except ValueError as exc:
                if 'NUL' in str(exc):
                    self.fail(NUL_MESSAGE % 'a value bound to the query')
                self.fail(BIND_MESSAGE % to_native(exc))
            except (IndexError, KeyError, TypeError) as exc:
                self.fail(BIND_MESSAGE % ('%s: %s' % (exc.__class__.__name__, to_native(exc))))
            except psycopg2.Error as exc:
                self.fail(BIND_MESSAGE % _first_line(exc))
        finally:
            cursor.close()
        codec = psycopg2.extensions.encodings.get(self._conn.encoding, 'utf-8')
        text = bound.decode(codec, 'replace') if isinstance(bound, bytes) else bound
        try:
            text = single_statement(text)
        except ValueError as exc:
            self.fail('query refused, nothing was run: %s' % to_native(exc))
        with self.transaction(commit=False):
            self.execute('SET TRANSACTION READ ONLY')
            # The first query of the transaction takes its snapshot: from here on nothing can make it read-write.
            read_only = self.query_one("SELECT pg_catalog.current_setting('transaction_read_only') AS read_only")
            if not read_only or read_only.get('read_only') != 'on':
                self.fail('could not make the transaction read only on %s at %s: nothing was run'
                          % (self.product, self.target))
            named = self._conn.cursor(name=cursor_name, cursor_factory=psycopg2.extras.RealDictCursor)
            self._executed.append(excerpt(text, 0))
            try:
                named.execute(text)
                fetched = named.fetchmany(max_rows + 1)
                columns = [column.name for column in named.description or []]
            except UnicodeDecodeError as exc:
                self.fail('Query failed on %s at %s: a value is not valid text in the client encoding %s (%s)'
                          % (self.product, self.target, self._conn.encoding, to_native(exc)), query=excerpt(text, 0))
            except psycopg2.Error as exc:
                self.fail('Query failed on %s at %s: %s' % (self.product, self.target, self._error_message(exc)),
                          query=excerpt(text, 0))
            finally:
                try:
                    named.close()
                except psycopg2.Error:
                    pass
        seen = set()
        for name in columns:
            if name in seen:
                self.fail('the query returns two columns named %r: give each a name of its own (AS ...)' % name,
                          query=excerpt(text, 0))
            seen.add(name)
        rows = [dict(row) for row in fetched[:max_rows]]
        return columns, rows, len(fetched) > max_rows

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


def permission_problems(role, targets):
    """Backends this role may not signal: PostgreSQL would refuse them one by one, so refuse up front.

    ``role``: PgClient.current_role(); ``targets``: activity rows (pid, usename, is_superuser). Used by
    pg_backends and tview_emergency.
    """
    if role['superuser']:
        return []
    problems = []
    for row in targets:
        if row.get('is_superuser'):
            problems.append('pid %s belongs to superuser %s' % (row['pid'], row['usename']))
        elif row['usename'] != role['name'] and not role['signal_backend']:
            problems.append('pid %s belongs to %s' % (row['pid'], row['usename']))
    return problems


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
