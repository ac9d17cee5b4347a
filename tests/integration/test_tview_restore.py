"""tview_restart.yml (restoration option 1) and tview_restore_check.yml (option 3).

The restart runs against a throwaway PostgreSQL 15 cluster of the test's own (port 55491), never the shared lab
cluster; the restore check restores into a temporary database of the lab cluster and drops it.
"""
import os
import shutil
import subprocess
import tempfile
import time

import psycopg2
import pytest

from conftest import ROOT

BINDIR = '/usr/lib/postgresql/15/bin'
PORT = 55491


def run(*argv):
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, timeout=120)


@pytest.fixture
def throwaway_cluster():
    base = tempfile.mkdtemp(prefix='ir-restart-', dir='/var/tmp')
    os.chmod(base, 0o755)
    shutil.chown(base, 'postgres')
    data = os.path.join(base, 'data')
    options = '-p %d -c listen_addresses=127.0.0.1 -k %s' % (PORT, base)
    ctl = ['runuser', '-u', 'postgres', '--', os.path.join(BINDIR, 'pg_ctl')]
    run('runuser', '-u', 'postgres', '--', os.path.join(BINDIR, 'initdb'), '-D', data, '--auth=trust', '-U', 'postgres')
    run(*(ctl + ['start', '-D', data, '-o', options, '-l', os.path.join(base, 'log'), '-w']))
    psql = [os.path.join(BINDIR, 'psql'), '-X', '-q', '-h', '127.0.0.1', '-p', str(PORT), '-U', 'postgres']
    run(*(psql + ['-d', 'postgres', '-c', 'CREATE DATABASE tviews_runbook']))
    run(*(psql + ['-d', 'tviews_runbook', '-v', 'app_user=postgres', '-v', 'monitor_user=postgres',
                  '-f', os.path.join(ROOT, 'roles/lab/files/tviews_runbook.sql')]))
    backup = os.path.join(base, 'backup.dump')
    run(os.path.join(BINDIR, 'pg_dump'), '-h', '127.0.0.1', '-p', str(PORT), '-U', 'postgres', '-Fc',
        '-d', 'tviews_runbook', '-f', backup)
    play_vars = dict(pg_login_host='127.0.0.1', pg_login_port=PORT, pg_login_user='postgres', pg_login_password='unused',
                     pg_login_db='tviews_runbook', tview_restart_backup=backup,
                     tview_restart_command=ctl + ['restart', '-D', data, '-m', 'fast', '-w', '-l',
                                                  os.path.join(base, 'log'), '-o', options])
    yield base, play_vars
    subprocess.run(ctl + ['stop', '-D', data, '-m', 'immediate'], capture_output=True, check=False, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


def connect(dbname='tviews_runbook'):
    conn = psycopg2.connect(host='127.0.0.1', port=PORT, user='postgres', dbname=dbname, application_name='held')
    conn.autocommit = True
    return conn


def start_time():
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_postmaster_start_time()')
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_tview_restart(ansible, throwaway_cluster):
    base, play_vars = throwaway_cluster
    # one incident for every run: a second run joins it (changed=0) instead of opening another
    play_vars = dict(play_vars, incident_id='INC-TVIEW-RESTART-%d' % os.getpid())
    held = connect()
    started = start_time()
    run_ = ansible.playbook('playbooks/tview_restart.yml', play_vars, check=True)
    assert run_.rc == 0 and 'DRY RUN (--check)' in run_.output and 'would terminate 1 backend' in run_.output, run_
    assert start_time() == started and not held.closed
    with held.cursor() as cur:
        cur.execute('SELECT 1')

    run_ = ansible.playbook('playbooks/tview_restart.yml', play_vars)
    # not approved: nothing restarted; the one change is the incident this first real run opens
    assert run_.rc == 0 and 'NOT APPROVED' in run_.output and run_.changed <= 1, run_
    assert start_time() == started

    run_ = ansible.playbook('playbooks/tview_restart.yml', dict(play_vars, approve=True))
    assert run_.rc == 0, run_
    assert 'RESTART DONE' in run_.output and '20 TVIEWs (before: 20)' in run_.output
    assert start_time() > started
    with pytest.raises(psycopg2.Error):
        with held.cursor() as cur:
            cur.execute('SELECT 1')


def test_tview_restart_refuses_without_a_readable_recent_backup(ansible, throwaway_cluster):
    base, play_vars = throwaway_cluster
    started = start_time()
    missing = dict(play_vars, approve=True, tview_restart_backup=base + '/missing.dump')
    run_ = ansible.playbook('playbooks/tview_restart.yml', missing)
    assert run_.rc != 0 and 'Refusing to restart: the backup' in run_.output and 'does not exist' in run_.output, run_
    bad = os.path.join(base, 'bad.dump')
    with open(bad, 'w') as handle:
        handle.write('not a dump')
    run_ = ansible.playbook('playbooks/tview_restart.yml', dict(play_vars, approve=True, tview_restart_backup=bad))
    assert run_.rc != 0 and 'Refusing to restart: pg_restore cannot read' in run_.output, run_
    old = play_vars['tview_restart_backup']
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    run_ = ansible.playbook('playbooks/tview_restart.yml', dict(play_vars, approve=True))
    assert run_.rc != 0 and 'is older than 86400 seconds' in run_.output, run_
    assert 'Traceback' not in run_.output
    assert start_time() == started


def test_tview_restore_check(ansible, tviews, tmp_path):
    backup = str(tmp_path / 'runbook.dump')
    os.chmod(str(tmp_path), 0o755)
    env = tviews.env
    subprocess.run([os.path.join(BINDIR, 'pg_dump'), '-h', env['PGHOST'], '-p', env['PGPORT'], '-U', env['PGUSER'],
                    '-Fc', '-d', 'tviews_runbook', '-f', backup], env=dict(os.environ, PGPASSWORD=env['PGPASSWORD']),
                   check=True, capture_output=True, timeout=120)
    play_vars = dict(tview_restore_check_backup=backup, tview_restore_check_database='tview_restore_check_pytest')

    def exists():
        return tviews.query("SELECT count(*) FROM pg_database WHERE datname = 'tview_restore_check_pytest'")[0][0]

    run_ = ansible.playbook('playbooks/tview_restore_check.yml', play_vars, check=True)
    assert run_.rc == 0 and 'would restore it into tview_restore_check_pytest' in run_.output, run_
    assert exists() == 0
    run_ = ansible.playbook('playbooks/tview_restore_check.yml', play_vars)
    assert run_.rc == 0, run_
    assert 'runbook contract, 20 TVIEWs, 0 with errors, 5 pending' in run_.output
    assert 'Integrity: every TVIEW readable' in run_.output
    assert exists() == 0  # dropped

    bad = str(tmp_path / 'bad.dump')
    with open(bad, 'w') as handle:
        handle.write('not a dump')
    run_ = ansible.playbook('playbooks/tview_restore_check.yml', dict(play_vars, tview_restore_check_backup=bad))
    assert run_.rc != 0 and 'cannot be read by pg_restore' in run_.output, run_
    assert exists() == 0
