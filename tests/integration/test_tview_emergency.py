"""playbooks/emergency_disable.yml on the lab's runbook catalog fixture, with real faults."""
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BIN, ROOT
from pgbouncer_helpers import Bouncer

from ansible_collections.incident.response.plugins.module_utils._incident import get_store

PLAYBOOK = 'playbooks/emergency_disable.yml'
LOCK_NAME = 'incident.response/tview_emergency'


@pytest.fixture
def incident_dir(tmp_path):
    return str(tmp_path / 'incidents')


@pytest.fixture
def emergency(gameday, tviews):
    """The three faults of the molecule scenario: 12 of 20 TVIEWs failing, 20,000 pending, 3 refresh backends."""
    gameday('refresh_backends', 'clear')  # a holder left by an earlier run would hold another number of sessions
    for fault, extra in (('tview_refresh_errors', {}), ('queue_backlog', {}), ('refresh_backends', dict(gameday_sessions=3))):
        run = gameday(fault, **extra)
        assert run.rc == 0, run
    return tviews


def play_vars(incident_dir, **extra):
    # the incident store of the test: each run records into an incident there, its evidence in <id>/evidence
    return dict(dict(pg_login_db='tviews_runbook', incident_store_path=incident_dir), **extra)


def activity(lab):
    """The client backends of the fixture database (the lab's cluster is shared with other tests)."""
    rows = lab.query("SELECT pid, state, backend_start, xact_start, query_start, state_change, application_name "
                     "FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = 'tviews_runbook' "
                     "AND application_name NOT IN ('pytest-observer', 'pytest') ORDER BY pid", ())
    return dict((row[0], row[1:]) for row in rows)


def refresh_sessions(lab):
    return lab.query("SELECT pid, state FROM pg_stat_activity WHERE application_name = 'gameday_refresh' "
                     "AND query LIKE '%%pg_tviews_refresh%%' AND state = 'active'", ())


def test_check_then_no_approval_then_approved_then_idempotent(ansible, emergency, lab, incident_dir):
    tviews = emergency
    before = dict(tviews.state(), activity=activity(lab))
    assert len(refresh_sessions(lab)) == 3

    # 1. --check: the plan, nothing changed (catalog, queue, archive, pg_stat_activity)
    run = ansible.playbook(PLAYBOOK, play_vars(incident_dir), check=True)
    assert run.rc == 0, run
    for text in ('DRY RUN (--check)', 'would cancel 3 backends', 'would archive 20005 pending refreshes',
                 'would disable 20 TVIEWs', 'CRITICAL: Majority of TVIEWs failing'):
        assert text in run.output, text
    assert dict(tviews.state(), activity=activity(lab)) == before
    assert not os.path.exists(incident_dir)

    # 2. neither a prompt answer nor approve=true: stops after the plan; the one change is the incident opened
    run = ansible.playbook(PLAYBOOK, play_vars(incident_dir))
    assert run.rc == 0 and run.changed == 1, run
    assert re.search(r'INC-\d{4}-\d{2}-\d{2}-\d{3}: opened pg_tviews emergency', run.output), run
    assert 'NOT APPROVED: stopped after the plan, nothing was changed' in run.output
    assert dict(tviews.state(), activity=activity(lab)) == before

    # 3. approved: acts
    run = ansible.playbook(PLAYBOOK, play_vars(incident_dir, approve=True, tview_emergency_incident_id='INC-E1'))
    assert run.rc == 0, run.output[-4000:]
    assert 'EMERGENCY PROTOCOL DONE for incident INC-E1' in run.output
    assert refresh_sessions(lab) == []
    assert tviews.pending() == 0
    assert tviews.query("SELECT count(*) FROM pg_tviews_queue_archive WHERE incident_id = 'INC-E1'")[0][0] == 20005
    disabled = tviews.query('SELECT count(*) FROM pg_tviews_metadata WHERE emergency_disabled AND '
                            "emergency_disable_reason = '[INC-E1] Critical incident response' "
                            'AND emergency_disable_time IS NOT NULL')[0][0]
    assert disabled == 20
    assert 'Exit criteria NOT MET: 8 of 20 TVIEWs healthy' in run.output
    assert 'Integrity check passed' in run.output
    evidence = os.path.join(incident_dir, 'INC-E1', 'evidence')  # the incident record's evidence_dir
    with open(os.path.join(incident_dir, 'INC-E1.json')) as handle:
        assert json.load(handle)['evidence_dir'] == evidence
    assert 'Evidence: %s' % evidence in run.output
    runs = os.listdir(evidence)  # one new directory per run: a re-run never overwrites evidence
    assert len(runs) == 1 and runs[0].startswith('emergency-'), runs
    evidence = os.path.join(evidence, runs[0])
    assert sorted(os.listdir(evidence)) == ['assessment.json', 'catalog.csv', 'plan.json', 'queue.csv', 'summary.json']
    with open(os.path.join(evidence, 'queue.csv'), newline='') as handle:
        queue = list(csv.DictReader(handle))
    assert len(queue) == 20005 and len(set(row['id'] for row in queue)) == 20005
    with open(os.path.join(evidence, 'catalog.csv'), newline='') as handle:
        catalog = list(csv.DictReader(handle))
    assert len(catalog) == 20 and all(row['emergency_disabled'] == 'f' for row in catalog)  # as it was
    with open(os.path.join(evidence, 'summary.json')) as handle:
        summary = json.load(handle)
    assert summary['archived'] == 20005 and len(summary['cancelled']) == 3 and summary['integrity_ok'] is True
    files = dict((entry['name'], entry) for entry in summary['evidence_files'])
    assert files['queue.csv']['rows'] == 20005 and files['catalog.csv']['rows'] == 20
    with open(os.path.join(evidence, 'queue.csv'), 'rb') as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == files['queue.csv']['sha256']
    assert all(oct(os.stat(os.path.join(evidence, name)).st_mode & 0o777) == '0o600' for name in os.listdir(evidence))

    # 4. approved again: nothing left to do
    after = tviews.state()
    run = ansible.playbook(PLAYBOOK, play_vars(incident_dir, approve=True, tview_emergency_incident_id='INC-E1'))
    assert run.rc == 0 and run.changed == 0, run
    assert tviews.state() == after


def test_not_an_emergency_changes_nothing(ansible, tviews, lab, incident_dir):
    get_store(dict(store='files', store_path=incident_dir)).create(dict(id='INC-CALM', title='pg_tviews alert'))
    before = dict(tviews.state(), activity=activity(lab))
    run = ansible.playbook(PLAYBOOK, play_vars(incident_dir, approve=True, incident_id='INC-CALM'))  # joins
    assert run.rc == 0 and run.changed == 0, run
    assert 'the runbook recommends NONE, not the emergency protocol' in run.output
    assert dict(tviews.state(), activity=activity(lab)) == before


def test_a_second_run_while_one_holds_the_lock_fails_clearly(ansible, emergency, lab, incident_dir):
    tviews = emergency
    holder = tviews.connect(application_name='other-emergency-run')
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(hashtext(%s)::bigint), pg_backend_pid()', (LOCK_NAME,))
            pid = cur.fetchone()[1]
        before = tviews.state()
        run = ansible.playbook(PLAYBOOK, play_vars(incident_dir, approve=True))
        assert run.rc != 0, run
        assert 'another emergency run holds the lock incident.response/tview_emergency' in run.output
        assert 'session pid %d' % pid in run.output and 'other-emergency-run' in run.output
        assert 'Traceback' not in run.output
        assert tviews.state() == before
    finally:
        holder.close()


def test_two_concurrent_runs_exactly_one_acts(ansible_env, emergency, incident_dir):
    tviews = emergency
    procs = []
    for incident in ('INC-A', 'INC-B'):
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
               os.path.join(ROOT, PLAYBOOK), '-e', json.dumps(play_vars(
                   incident_dir, approve=True, tview_emergency_incident_id=incident))]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=ansible_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True))
    outputs = [' '.join(proc.communicate(timeout=600)[0].split()) for proc in procs]
    archived = dict(tviews.query('SELECT incident_id, count(*) FROM pg_tviews_queue_archive GROUP BY 1'))
    assert sorted(archived.values()) == [20005], (archived, outputs)
    acted = [incident for incident in ('INC-A', 'INC-B') if incident in archived]
    assert len(acted) == 1
    other = 1 - ('INC-A', 'INC-B').index(acted[0])
    # The other run met the lock (refused, naming the holder), or planned before the first acted (refused: the state
    # changed since its plan), or planned after it and found nothing to do.
    assert ('another emergency run holds the lock' in outputs[other] and procs[other].returncode != 0) or \
        ('the state changed since the plan: run the plan again' in outputs[other] and procs[other].returncode != 0) or \
        ('no pending refresh: nothing to archive' in outputs[other] and procs[other].returncode == 0), outputs[other]
    assert not any('Traceback' in output for output in outputs)
    reasons = tviews.query('SELECT DISTINCT emergency_disable_reason FROM pg_tviews_metadata')
    assert reasons == [('[%s] Critical incident response' % acted[0],)]


MODULE_ARGS = dict(login_db='tviews_runbook')


def plan(ansible, **extra):
    rc, result, out = ansible.module('tview_emergency', dict(MODULE_ARGS, step='plan', integrity_check=False, **extra))
    assert rc == 0, out
    assert result['changed'] is False and result['plan_digest'].startswith('v1:')
    return result


def process_tree(root):
    """root and every descendant (the module process runs in a process group of its own, below ansible's worker)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as handle:
                    ppid = int(handle.read().rsplit(')', 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def xact_lock_holders(tviews):
    return tviews.query("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted "
                        "AND a.application_name LIKE 'incident.response tview_emergency%%'")[0][0]


def test_a_stale_approval_is_refused_and_changes_nothing(ansible, tviews, tmp_path):
    planned = plan(ansible)
    assert planned['plan']['pending']['count'] == 5 and len(planned['plan']['tviews']) == 20
    # meanwhile another run (here: an operator in psql) disables a TVIEW
    tviews.query("UPDATE pg_tviews_metadata SET emergency_disabled = true, emergency_disable_reason = 'other run' "
                 "WHERE entity_name = 'tv_order'")
    before = tviews.state()
    args = dict(MODULE_ARGS, step='act', plan_digest=planned['plan_digest'], incident_id='INC-STALE',
                evidence_dir=str(tmp_path / 'evidence'))
    # check: says that an act now would be refused, changes nothing
    rc, result, out = ansible.module('tview_emergency', args, check=True)
    assert rc == 0, out
    assert 'the state changed since the plan' in result['would_refuse'], result
    assert tviews.state() == before
    # apply: refused, nothing changed, no evidence written
    rc, result, out = ansible.module('tview_emergency', args)
    assert rc != 0 and 'the state changed since the plan: run the plan again' in result['msg'], out
    assert 'Traceback' not in out
    assert tviews.state() == before and not (tmp_path / 'evidence').exists()
    assert xact_lock_holders(tviews) == 0
    # a fresh plan is accepted: it acts, then an idempotent plan/act changes nothing
    replanned = plan(ansible)
    rc, result, out = ansible.module('tview_emergency', dict(args, plan_digest=replanned['plan_digest']))
    assert rc == 0 and result['changed'] is True and result['archived'] == 5 and result['tviews_changed'] == 19, out
    assert tviews.pending() == 0
    assert tviews.query('SELECT count(*) FROM pg_tviews_metadata WHERE emergency_disabled')[0][0] == 20
    after = tviews.state()
    again = plan(ansible)
    assert again['plan']['has_work'] is False
    rc, result, out = ansible.module('tview_emergency', dict(args, plan_digest=again['plan_digest']), check=True)
    assert rc == 0 and result['changed'] is False, out
    rc, result, out = ansible.module('tview_emergency', dict(args, plan_digest=again['plan_digest']))
    assert rc == 0 and result['changed'] is False and result['evidence']['dir'] is None, out
    assert tviews.state() == after


def test_a_held_lock_refuses_the_act_and_names_the_holder(ansible, tviews, tmp_path):
    planned = plan(ansible)
    holder = tviews.connect(application_name='other-emergency-run', autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_try_advisory_xact_lock(hashtext(%s)::bigint), pg_backend_pid()', (LOCK_NAME,))
            got, pid = cur.fetchone()
        assert got
        before = tviews.state()
        rc, result, out = ansible.module('tview_emergency', dict(
            MODULE_ARGS, step='act', plan_digest=planned['plan_digest'], incident_id='INC-HELD',
            evidence_dir=str(tmp_path / 'evidence')))
        assert rc != 0, out
        assert 'another emergency run holds the lock incident.response/tview_emergency' in result['msg']
        assert 'session pid %d' % pid in result['msg'] and 'other-emergency-run' in result['msg']
        assert result['lock']['holder']['pid'] == pid
        assert tviews.state() == before and not (tmp_path / 'evidence').exists()
    finally:
        holder.rollback()
        holder.close()


def test_a_run_killed_mid_way_leaves_no_lock_and_no_change(ansible, ansible_env, tviews, tmp_path):
    """The act blocks on a catalog row held by another session; killing it ends its transaction and its lock."""
    planned = plan(ansible)
    before = tviews.state()
    row_holder = tviews.connect(application_name='pytest-row-holder', autocommit=False)
    proc = None
    try:
        with row_holder.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_tviews_metadata WHERE entity_name = 'tv_order' FOR UPDATE")
        args = dict(MODULE_ARGS, step='act', plan_digest=planned['plan_digest'], incident_id='INC-KILLED',
                    evidence_dir=str(tmp_path / 'evidence'), lock_timeout='5m')
        proc = subprocess.Popen([os.path.join(BIN, 'ansible'), 'localhost', '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
                                 '-m', 'incident.response.tview_emergency', '-a', json.dumps(args)],
                                cwd=ROOT, env=ansible_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
        deadline = time.time() + 90
        waiting = 0
        while time.time() < deadline:  # the act holds the lock and waits on the row
            waiting = tviews.query("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                                   "'incident.response tview_emergency%%' AND wait_event_type = 'Lock'")[0][0]
            if waiting and xact_lock_holders(tviews):
                break
            time.sleep(0.3)
        assert waiting == 1 and xact_lock_holders(tviews) == 1
        # kill the run: ansible, its worker and the module process it started (by pid: the tree of our process)
        for pid in process_tree(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
        deadline = time.time() + 30  # well under the act's lock_timeout (5m): the lock went with the session
        while xact_lock_holders(tviews) and time.time() < deadline:
            time.sleep(0.3)
        assert xact_lock_holders(tviews) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        row_holder.rollback()
        row_holder.close()
    assert tviews.state() == before  # the transaction rolled back: queue, archive, catalog as they were
    # and a new plan can act at once
    replanned = plan(ansible)
    rc, result, out = ansible.module('tview_emergency', dict(
        MODULE_ARGS, step='act', plan_digest=replanned['plan_digest'], incident_id='INC-KILLED',
        evidence_dir=str(tmp_path / 'evidence')))
    assert rc == 0 and result['archived'] == 5, out
    # the killed run's directory (if any) is kept; this run wrote a new one
    assert result['evidence']['dir'].startswith(str(tmp_path / 'evidence'))


def test_check_mode_takes_no_row_lock_behind_a_running_refresh(ansible, tviews):
    """A refresh holds a catalog row (FOR UPDATE): a real disable waits on it, a --check never does."""
    refresh = tviews.connect(application_name='pytest-refresh-holding-row', autocommit=False)
    try:
        with refresh.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_tviews_metadata WHERE entity_name = 'tv_order' FOR UPDATE")
        before = tviews.state()
        args = dict(MODULE_ARGS, state='disabled', all=True)
        # the reproduction: the real run takes row locks and meets the refresh's (a short lock_timeout ends the wait)
        rc, result, out = ansible.module('tview_state', dict(args, lock_timeout='2s'))
        assert rc != 0 and 'lock timeout' in result['msg'] and 'another session holds the lock' in result['msg'], out
        assert tviews.state() == before
        # check mode: no row lock, so no wait (a wait would end in the 5 minute lock_timeout's failure, not rc 0)
        rc, result, out = ansible.module('tview_state', dict(args, lock_timeout='5m'), check=True)
        assert rc == 0 and result['changed'] is True and result['summary'] == 'would disable 20 TVIEWs', out
        assert not any('FOR UPDATE' in q for q in result['executed_queries'])
        # the emergency plan and a checked act: the same
        planned = plan(ansible, lock_timeout='5m')
        assert len(planned['plan']['tviews']) == 20
        rc, result, out = ansible.module('tview_emergency', dict(
            MODULE_ARGS, step='act', plan_digest=planned['plan_digest'], incident_id='INC-CHECK', lock_timeout='5m'),
            check=True)
        assert rc == 0 and result['summaries']['tviews'] == 'would disable 20 TVIEWs', out
        assert not any('FOR UPDATE' in q or 'pg_try_advisory' in q for q in result['executed_queries'])
        assert tviews.state() == before
    finally:
        refresh.rollback()
        refresh.close()


@pytest.mark.parametrize('bad', ['../../outside', 'INC/1', '..', 'INC\x00X', ''])
def test_an_invalid_incident_id_is_refused_before_anything_is_written(ansible, tviews, tmp_path, bad):
    planned = plan(ansible)
    before = tviews.state()
    evidence = tmp_path / 'store' / 'evidence'
    rc, result, out = ansible.module('tview_emergency', dict(
        MODULE_ARGS, step='act', plan_digest=planned['plan_digest'], incident_id=bad, evidence_dir=str(evidence)))
    assert rc != 0 and 'Traceback' not in out, out
    assert ('invalid incident id' in result['msg'] or 'needs incident_id' in result['msg']
            or 'NUL' in result['msg']), result['msg']
    assert tviews.state() == before and not (tmp_path / 'store').exists() and not (tmp_path / 'outside').exists()


def test_the_playbook_refuses_a_path_as_incident_id(ansible, tviews, tmp_path):
    before = tviews.state()
    run = ansible.playbook(PLAYBOOK, play_vars(str(tmp_path / 'incidents'), approve=True,
                                               tview_emergency_incident_id='../../escaped'))
    assert run.rc != 0 and 'invalid incident id' in run.output and 'Traceback' not in run.output, run
    assert tviews.state() == before
    assert not (tmp_path / 'escaped').exists() and not os.path.exists(os.path.join(str(tmp_path), '..', 'escaped'))


def test_a_rerun_with_the_same_incident_id_never_overwrites_evidence(ansible, tviews, tmp_path):
    evidence = tmp_path / 'evidence'
    args = dict(MODULE_ARGS, step='act', incident_id='INC-SAME', evidence_dir=str(evidence))
    rc, first, out = ansible.module('tview_emergency', dict(args, plan_digest=plan(ansible)['plan_digest']))
    assert rc == 0 and first['changed'] is True, out
    kept = dict((f['name'], f['sha256']) for f in first['evidence']['files'])
    tviews.reset()  # the same incident meets the same trouble again
    rc, second, out = ansible.module('tview_emergency', dict(args, plan_digest=plan(ansible)['plan_digest']))
    assert rc == 0 and second['changed'] is True, out
    assert second['evidence']['dir'] != first['evidence']['dir']
    assert sorted(os.listdir(str(evidence))) == sorted(os.path.basename(r['evidence']['dir']) for r in (first, second))
    for name, sha in kept.items():  # the first run's files are as it wrote them
        with open(os.path.join(first['evidence']['dir'], name), 'rb') as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == sha
    # (reset() dropped the archive of the first run: only the second run's rows are there)
    assert tviews.query("SELECT count(*) FROM pg_tviews_queue_archive WHERE incident_id = 'INC-SAME'")[0][0] == 5


def test_stabilise_resets_the_pgbouncer_pool_gently(ansible, emergency, lab_env, incident_dir):
    """The runbook's "Reset connection pool if using pgbouncer": RECONNECT of the named database after the act,
    never a restart of PgBouncer; --check shows the command and sends nothing; a re-run sends nothing."""
    bouncer = Bouncer(lab_env)
    bouncer.normal()
    try:
        conn = bouncer.client()
        conn.cursor().execute('SELECT 1')

        def servers():
            return [s for s in bouncer.show('SERVERS') if s['database'] == 'scheduler']
        assert bouncer.wait_for(servers)
        extra = dict(tview_emergency_pgbouncer_reset='reconnect', tview_emergency_pgbouncer_databases=['scheduler'],
                     pg_connections_pgbouncer_host=bouncer.host, pg_connections_pgbouncer_port=bouncer.port,
                     pg_connections_pgbouncer_user=bouncer.user, pg_connections_pgbouncer_password=bouncer.password)
        before = bouncer.state()
        run = ansible.playbook(PLAYBOOK, play_vars(incident_dir, **extra), check=True)
        assert run.rc == 0, run
        assert 'PgBouncer reset (reconnect): would send RECONNECT "scheduler"' in run.output, run
        assert bouncer.state() == before and not any(s['close_needed'] for s in servers())
        assert bouncer.password not in run.output

        extra = dict(extra, approve=True, tview_emergency_incident_id='INC-E-PGB')
        run = ansible.playbook(PLAYBOOK, play_vars(incident_dir, **extra))
        assert run.rc == 0, run.output[-4000:]
        assert 'EMERGENCY PROTOCOL DONE for incident INC-E-PGB' in run.output
        assert 'PgBouncer reset (reconnect): sent RECONNECT "scheduler"' in run.output, run.output[-4000:]
        assert all(s['close_needed'] for s in servers())
        conn.cursor().execute('SELECT 1')  # the client stays connected through a RECONNECT
        assert bouncer.password not in run.output

        run = ansible.playbook(PLAYBOOK, play_vars(incident_dir, **extra))  # nothing left to do: nothing sent
        assert run.rc == 0 and run.changed == 0, run
        assert 'sent RECONNECT' not in run.output
    finally:
        bouncer.close()
        bouncer.normal()
