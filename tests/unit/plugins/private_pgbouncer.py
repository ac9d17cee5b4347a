"""A private, throwaway PgBouncer for the unit tests that run the PgBouncer modules to their real result.

Real PgBouncer (Debian's pgbouncer, which ``make setup`` installs), never a mock: its ini, auth file and Unix
socket in a temporary directory (no TCP port), trust authentication, one database entry ``appdb`` (pointed at
127.0.0.1:1: no server connection is ever needed by the admin console). Run as the postgres system user when the
tests run as root (PgBouncer refuses root). It does not need the lab and never touches it.
"""
import os
import pwd
import shutil
import subprocess
import tempfile
import time

PORT = 6432
ADMIN = 'ir_admin'
BINARIES = ('/usr/sbin/pgbouncer', '/usr/bin/pgbouncer')


def binary():
    for path in BINARIES:
        if os.path.exists(path):
            return path
    return shutil.which('pgbouncer')


class PrivatePgBouncer(object):
    def __init__(self):
        self.binary = binary()
        if not self.binary:
            raise RuntimeError('pgbouncer is not installed: run make setup (Debian package pgbouncer)')
        self.base = tempfile.mkdtemp(prefix='ir-unit-pgbouncer-')
        self.user = 'postgres' if os.geteuid() == 0 else None
        self.proc = None

    def start(self):
        ini = os.path.join(self.base, 'pgbouncer.ini')
        with open(os.path.join(self.base, 'userlist.txt'), 'w') as handle:
            handle.write('"%s" ""\n' % ADMIN)
        with open(ini, 'w') as handle:
            handle.write('[databases]\nappdb = host=127.0.0.1 port=1 dbname=appdb\n\n[pgbouncer]\n'
                         'listen_addr =\nlisten_port = %d\nunix_socket_dir = %s\nauth_type = trust\n'
                         'auth_file = %s/userlist.txt\nadmin_users = %s\npool_mode = transaction\n'
                         'default_pool_size = 2\nlogfile = %s/pgbouncer.log\npidfile = %s/pgbouncer.pid\n'
                         % (PORT, self.base, self.base, ADMIN, self.base, self.base))
        cmd = [self.binary, ini]
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chmod(self.base, 0o755)
            for name in [''] + os.listdir(self.base):
                os.chown(os.path.join(self.base, name), entry.pw_uid, entry.pw_gid)
            cmd = ['runuser', '-u', self.user, '--'] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.base)
        sock = os.path.join(self.base, '.s.PGSQL.%d' % PORT)
        deadline = time.time() + 20
        while not os.path.exists(sock) and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        if not os.path.exists(sock):
            self.stop()
            raise RuntimeError('the private PgBouncer did not start')
        return self

    def connection(self):
        """Module options that reach this PgBouncer's admin console."""
        return dict(host=self.base, port=PORT, user=ADMIN)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)
