"""The tests' own superuser connection to the lab's PostgreSQL (lab.env's PG* variables), for fixtures that make and
drop databases of their own; application_name pytest-observer, which the playbooks' session filters leave alone."""
import psycopg2


def admin(env, dbname=None):
    conn = psycopg2.connect(host=env['PGHOST'], port=int(env['PGPORT']), user=env['PGUSER'],
                            password=env['PGPASSWORD'], dbname=dbname or env['PGDATABASE'],
                            application_name='pytest-observer', connect_timeout=10)
    conn.autocommit = True
    return conn


def drop_databases(env, names):
    """DROP DATABASE ... WITH (FORCE) of each name (sessions of the test's own databases ended)."""
    conn = admin(env)
    with conn.cursor() as cur:
        for name in names:
            cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    conn.close()
