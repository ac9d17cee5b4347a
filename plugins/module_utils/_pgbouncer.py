# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared PgBouncer code: the admin console's argspec, a client for it, and the pure views of its SHOW output.

Private to the collection: the API may change without notice. The admin console is PgBouncer's virtual
database ``pgbouncer``: it speaks the PostgreSQL protocol (simple queries only, no transactions, no SET), so
it is reached through the collection's PostgreSQL client (``_postgres.PgClient``) with no session settings,
no version check, autocommit, and a client-side deadline on every command. Options documented once in the
``incident.response.pgbouncer`` doc fragment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import decimal

from ansible.module_utils.basic import env_fallback

from ansible_collections.incident.response.plugins.module_utils._common import duration_param
from ansible_collections.incident.response.plugins.module_utils._postgres import (
    APPLICATION_NAME,
    NUL_MESSAGE,
    PgClient,
    _nul_option,
)

ADMIN_DB = 'pgbouncer'
# The longest client-side bound of one admin command (a day); PAUSE/WAIT_CLOSE have their own wait_timeout.
MAX_COMMAND_TIMEOUT = 86400.0
POOL_COUNTERS = ('cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active',
                 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login')


def pgbouncer_argument_spec():
    """The admin console connection options (doc fragment ``incident.response.pgbouncer``)."""
    return dict(
        host=dict(type='str', default='127.0.0.1', fallback=(env_fallback, ['PGBOUNCER_HOST'])),
        port=dict(type='int', default=6432, fallback=(env_fallback, ['PGBOUNCER_PORT'])),
        user=dict(type='str', default='pgbouncer', fallback=(env_fallback, ['PGBOUNCER_USER'])),
        password=dict(type='str', no_log=True, fallback=(env_fallback, ['PGBOUNCER_PASSWORD'])),
        connect_timeout=dict(type='int', default=10),
        command_timeout=dict(type='raw', default='30s'),
    )


def describe_admin(params):
    """'127.0.0.1:6432 as pgbouncer (admin console)': where, never the password."""
    return '%s:%s as %s (admin console)' % (params.get('host') or 'local socket', params.get('port'),
                                            params.get('user'))


def admin_settings(module):
    """The connection settings of the admin console for PgClient, or fail the module with one message."""
    p = module.params
    for name in sorted(p):
        found = _nul_option(p[name], name)
        if found:
            module.fail_json(msg=NUL_MESSAGE % found)
    if p['connect_timeout'] is None or p['connect_timeout'] < 1:
        module.fail_json(msg='connect_timeout must be at least 1 second, got %s' % p['connect_timeout'])
    if p['port'] is None or not 0 < p['port'] < 65536:
        module.fail_json(msg='port must be between 1 and 65535, got %s' % p['port'])
    if not p['host'] or not p['host'].strip():
        module.fail_json(msg='host must not be empty: a host name, an address or a Unix socket directory')
    if not p['user'] or not p['user'].strip():
        module.fail_json(msg='user must not be empty: an admin_users (or stats_users) role of PgBouncer')
    connect = dict(host=p['host'], port=p['port'], user=p['user'], dbname=ADMIN_DB,
                   connect_timeout=p['connect_timeout'], application_name=APPLICATION_NAME)
    if p['password'] is not None:
        connect['password'] = p['password']
    return dict(connect=connect, session={}, given=dict(lock_timeout=None, statement_timeout=None))


def command_timeout(module):
    return duration_param(module, 'command_timeout', minimum=0.1, maximum=MAX_COMMAND_TIMEOUT, required=True)


def quote_name(name):
    """A database name as the admin console reads it: a double-quoted identifier."""
    return '"%s"' % name.replace('"', '""')


def _plain(value):
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class PgBouncerAdmin(object):
    """PgBouncer's admin console through PgClient: ``show('POOLS')``, ``command('PAUSE', db)``.

    Every command has the client-side bound ``deadline`` (seconds, default the module's command_timeout);
    a failure ends the module with one message naming the console (``try_command`` returns it instead).
    """

    def __init__(self, module, deadline=None):
        self.module = module
        self.target = describe_admin(module.params)
        settings = admin_settings(module)
        self.deadline = deadline if deadline is not None else command_timeout(module)
        self.client = PgClient(module, settings=settings, target=self.target, product='PgBouncer',
                               min_version=None, deadline=self.deadline)

    @property
    def queries(self):
        return self.client.queries

    def show(self, what):
        rows = self.client.query('SHOW %s' % what)
        return [dict((key, _plain(value)) for key, value in row.items()) for row in rows]

    def version(self):
        rows = self.show('VERSION')
        return rows[0].get('version') if rows else None

    def command(self, verb, database):
        return self.client.execute('%s %s' % (verb, quote_name(database)))

    def try_command(self, verb, database, deadline=None):
        """(None, None) when done, else (None, error text); ``deadline`` overrides the bound for this command."""
        previous = self.client.deadline
        if deadline is not None:
            self.client.deadline = deadline
        try:
            return self.client.try_query('%s %s' % (verb, quote_name(database)), fetch=False)
        finally:
            self.client.deadline = previous

    @property
    def timed_out(self):
        return self.client.timed_out

    def fail(self, msg, **kwargs):
        self.client.fail(msg, **kwargs)

    def close(self):
        self.client.close()


# --- pure views of SHOW output (unit tested without a PgBouncer) --------------------------------


def database_views(rows):
    """SHOW DATABASES -> {name: view}; the admin console's own database is left out."""
    views = {}
    for row in rows:
        if row.get('name') == ADMIN_DB:
            continue
        views[row['name']] = dict(
            name=row['name'], host=row.get('host'), port=row.get('port'), database=row.get('database'),
            pool_size=int(row.get('pool_size') or 0), reserve_pool=int(row.get('reserve_pool') or 0),
            pool_mode=row.get('pool_mode'), max_connections=int(row.get('max_connections') or 0),
            current_connections=int(row.get('current_connections') or 0),
            paused=bool(row.get('paused')), disabled=bool(row.get('disabled')))
    return views


def pool_views(pools, databases, default_pool_mode=None):
    """SHOW POOLS + database views -> one view per pool (database, user) with utilisation."""
    views = []
    for row in pools:
        if row.get('database') == ADMIN_DB:
            continue
        db = databases.get(row['database'], {})
        counters = dict((name, int(row.get(name) or 0)) for name in POOL_COUNTERS)
        pool_size = db.get('pool_size', 0)
        maxwait = float(row.get('maxwait') or 0) + float(row.get('maxwait_us') or 0) / 1e6
        servers = counters['sv_active'] + counters['sv_idle'] + counters['sv_used'] + counters['sv_tested'] \
            + counters['sv_login']
        utilisation = round(100.0 * counters['sv_active'] / pool_size, 1) if pool_size else 0.0
        view = dict(database=row['database'], user=row.get('user'), pool_mode=row.get('pool_mode') or
                    db.get('pool_mode') or default_pool_mode, pool_size=pool_size,
                    maxwait_seconds=round(maxwait, 3), servers=servers, utilisation_pct=utilisation,
                    paused=db.get('paused', False), disabled=db.get('disabled', False),
                    exhausted=bool(counters['cl_waiting'] and pool_size and counters['sv_active'] >= pool_size))
        view.update(counters)
        views.append(view)
    return sorted(views, key=lambda v: (v['database'], v['user'] or ''))


def connection_summary(rows, own_application=APPLICATION_NAME):
    """SHOW CLIENTS / SHOW SERVERS -> {(database): {states, users, applications, close_needed}}."""
    summary = {}
    for row in rows:
        if row.get('database') == ADMIN_DB:
            continue
        entry = summary.setdefault(row['database'], dict(total=0, by_state={}, by_user={}, by_application={},
                                                         close_needed=0))
        entry['total'] += 1
        for key, field in (('by_state', 'state'), ('by_user', 'user'), ('by_application', 'application_name')):
            name = row.get(field) or ''
            entry[key][name] = entry[key].get(name, 0) + 1
        if row.get('close_needed'):
            entry['close_needed'] += 1
    return summary


def stats_views(rows):
    """SHOW STATS -> {database: the counters, as numbers}."""
    return dict((row['database'], dict((k, v) for k, v in row.items() if k != 'database'))
                for row in rows if row.get('database') != ADMIN_DB)
