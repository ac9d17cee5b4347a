"""The lab's real PgBouncer (roles/lab/tasks/up_pgbouncer.yml) seen through its admin console, as a DBA would."""
import os
import time

import psycopg2

from conftest import LAB_DIR

DEFAULTS = dict(LAB_PGBOUNCER_HOST='127.0.0.1', LAB_PGBOUNCER_PORT='56432', LAB_PGBOUNCER_USER='pgbouncer_admin')


def pgbouncer_env(lab_env):
    """LAB_PGBOUNCER_* from lab.env, else the lab's defaults (a lab.env written before PgBouncer joined the lab)."""
    env = dict(DEFAULTS)
    env.update(dict((k, v) for k, v in lab_env.items() if k.startswith('LAB_PGBOUNCER_')))
    if 'LAB_PGBOUNCER_PASSWORD' not in env:
        with open(os.path.join(LAB_DIR, 'secrets', 'pgbouncer_admin')) as handle:
            env['LAB_PGBOUNCER_PASSWORD'] = handle.read().split()[0]
    return env


class Bouncer(object):
    def __init__(self, lab_env):
        self.env = pgbouncer_env(lab_env)
        self.lab_env = lab_env
        self.host = self.env['LAB_PGBOUNCER_HOST']
        self.port = int(self.env['LAB_PGBOUNCER_PORT'])
        self.user = self.env['LAB_PGBOUNCER_USER']
        self.password = self.env['LAB_PGBOUNCER_PASSWORD']
        self.conns = []

    def args(self, **extra):
        """Module options that reach the lab's PgBouncer."""
        return dict(extra, host=self.host, port=self.port, user=self.user, password=self.password)

    def show(self, what):
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname='pgbouncer', connect_timeout=10)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute('SHOW %s' % what)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
        finally:
            conn.close()

    def command(self, text):
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname='pgbouncer', connect_timeout=10)
        conn.autocommit = True
        try:
            conn.cursor().execute(text)
        finally:
            conn.close()

    def pool(self, database='scheduler', user=None):
        user = user or self.lab_env['LAB_PG_APP_USER']
        for row in self.show('POOLS'):
            if row['database'] == database and row['user'] == user:
                return row
        return {}

    def state(self):
        """What a check run must not change: SHOW POOLS counters (not the wait times, which grow by themselves)
        and SHOW DATABASES, without the admin console's own rows (our observer connection is one of them)."""
        # A released server moves from sv_used to sv_idle by itself (PgBouncer tests it): count the servers.
        pools = sorted((r['database'], r['user'], r['cl_active'], r['cl_waiting'], r['sv_active'],
                        r['sv_idle'] + r['sv_used'] + r['sv_tested'], r['pool_mode'])
                       for r in self.show('POOLS') if r['database'] != 'pgbouncer')
        databases = sorted((r['name'], r['pool_size'], r['paused'], r['disabled'], r['current_connections'])
                           for r in self.show('DATABASES') if r['name'] != 'pgbouncer')
        return dict(pools=pools, databases=databases)

    def paused(self, database='scheduler'):
        return [r['paused'] for r in self.show('DATABASES') if r['name'] == database][0]

    def client(self, role='app', application_name='pytest-pgbouncer', autocommit=True):
        users = dict(app=('LAB_PG_APP_USER', 'LAB_PG_APP_PASSWORD'),
                     monitoring=('LAB_PG_MONITOR_USER', 'LAB_PG_MONITOR_PASSWORD'))
        user, password = (self.lab_env[name] for name in users[role])
        conn = psycopg2.connect(host=self.host, port=self.port, user=user, password=password, dbname='scheduler',
                                application_name=application_name, connect_timeout=10)
        conn.autocommit = autocommit
        self.conns.append(conn)
        return conn

    def wait_for(self, predicate, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError('condition not reached within %ss' % timeout)

    def close(self):
        for conn in self.conns:
            try:
                conn.close()
            except psycopg2.Error:
                pass
        self.conns = []

    def normal(self):
        """Back to the lab's normal: no database paused."""
        for row in self.show('DATABASES'):
            if row['name'] != 'pgbouncer' and row['paused']:
                self.command('RESUME "%s"' % row['name'])
