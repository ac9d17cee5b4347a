"""A private, throwaway PostgreSQL server for the unit tests that must run a module to its real result.

Real PostgreSQL (the Debian server binaries that ``make setup`` installs), never a mock: a cluster in a
temporary directory, reachable only through a Unix socket in it (no TCP port), trust authentication,
``fsync=off``; the lab's pg_tviews runbook FIXTURE (roles/lab/files/tviews_runbook.sql) loaded into a database
``tviews_runbook``. It does not need the lab (``make unit`` runs before ``make lab-up``) and never touches it.
Started once per test session (about 2 s), stopped and removed at the end.
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
FIXTURE = os.path.join(ROOT, 'roles', 'lab', 'files', 'tviews_runbook.sql')
PORT = 5432


def _bindir():
    for path in sorted(glob.glob('/usr/lib/postgresql/*/bin'), reverse=True):
        if os.path.exists(os.path.join(path, 'initdb')):
            return path
    raise RuntimeError('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run make setup '
                       '(Debian package postgresql)')


class PrivatePostgres(object):
    def __init__(self):
        self.bindir = _bindir()
        self.base = tempfile.mkdtemp(prefix='ir-unit-pg-')
        self.data = os.path.join(self.base, 'data')
        self.socket_dir = os.path.join(self.base, 'run')
        os.mkdir(self.socket_dir)
        # initdb refuses to run as root: the cluster then belongs to the postgres system user.
        self.user = None
        if os.geteuid() == 0:
            self.user = 'postgres'
            entry = pwd.getpwnam(self.user)
            os.chmod(self.base, 0o755)
            for path in (self.base, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, *argv, **kwargs):
        cmd = list(argv)
        if self.user:
            cmd = ['runuser', '-u', self.user, '--'] + cmd
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd=self.base, **kwargs)
        if proc.returncode:
            raise RuntimeError('%s failed (rc %s): %s' % (' '.join(cmd), proc.returncode, proc.stderr.strip()))
        return proc

    def start(self):
        self._run(os.path.join(self.bindir, 'initdb'), '-D', self.data, '-U', 'postgres', '-A', 'trust',
                  '--no-sync', '-E', 'UTF8', '--locale=C')
        options = "-c listen_addresses='' -c unix_socket_directories='%s' -p %d -c fsync=off " \
                  "-c full_page_writes=off -c max_connections=30 -c shared_buffers=16MB" % (self.socket_dir, PORT)
        self._run(os.path.join(self.bindir, 'pg_ctl'), '-D', self.data, '-o', options, '-w', '-t', '60',
                  '-l', os.path.join(self.base, 'server.log'), 'start')
        self.psql('postgres', 'CREATE ROLE app LOGIN')
        self.psql('postgres', 'CREATE ROLE monitoring LOGIN IN ROLE pg_monitor')
        self.psql('postgres', 'CREATE DATABASE tviews_runbook')
        self._run(os.path.join(self.bindir, 'psql'), '-X', '-q', '-At', '-h', self.socket_dir, '-p', str(PORT),
                  '-U', 'postgres', '-d', 'tviews_runbook', '-v', 'ON_ERROR_STOP=1', '-v', 'app_user=app',
                  '-v', 'monitor_user=monitoring', '-f', FIXTURE)
        return self

    def psql(self, dbname, sql):
        return self._run(os.path.join(self.bindir, 'psql'), '-X', '-q', '-At', '-h', self.socket_dir,
                         '-p', str(PORT), '-U', 'postgres', '-d', dbname, '-v', 'ON_ERROR_STOP=1', '-c', sql).stdout

    def connection(self, dbname='postgres'):
        """Module options that reach this server."""
        return dict(login_unix_socket=self.socket_dir, login_port=PORT, login_user='postgres', login_db=dbname,
                    ssl_mode='disable')

    def stop(self):
        try:
            self._run(os.path.join(self.bindir, 'pg_ctl'), '-D', self.data, '-m', 'immediate', '-w', 'stop')
        except (RuntimeError, subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.base, ignore_errors=True)
