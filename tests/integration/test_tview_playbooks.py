"""playbooks/tview_incident.yml and playbooks/tview_reset.yml on the lab's runbook catalog fixture."""
import csv
import os
import re

RUNBOOK = dict(pg_login_db='tviews_runbook')


def test_tview_incident_pauses_matching_tviews(ansible, gameday, tviews, lab):
    assert gameday('tview_refresh_errors').rc == 0
    args = dict(RUNBOOK, tview_incident_error_pattern='permission denied', tview_incident_incident_id='INC-C')
    before = dict(tviews.state(), activity=lab.activity())
    run = ansible.playbook('playbooks/tview_incident.yml', args, check=True)
    assert run.rc == 0, run
    assert 'SEV1' in run.output and 'would disable 3 TVIEWs' in run.output
    assert 'EMERGENCY: run playbooks/emergency_disable.yml' in run.output
    assert dict(tviews.state(), activity=lab.activity()) == before

    run = ansible.playbook('playbooks/tview_incident.yml', args)
    assert run.rc == 0 and 'disabled 3 TVIEWs' in run.output, run
    paused = tviews.query("SELECT last_error FROM pg_tviews_metadata WHERE emergency_disabled AND "
                          "emergency_disable_reason = '[INC-C] Paused by the incident checklist'")
    assert len(paused) == 3 and all('permission denied' in row[0] for row in paused)
    run = ansible.playbook('playbooks/tview_incident.yml', args)
    assert run.rc == 0 and run.changed == 0, run


def disabled_with_errors(gameday, tviews):
    assert gameday('tview_refresh_errors').rc == 0
    tviews.query("UPDATE pg_tviews_metadata SET emergency_disabled = true, emergency_disable_time = now(), "
                 "emergency_disable_reason = 'x'")


def test_tview_reset_archives_resets_and_keeps_the_catalog(ansible, gameday, tviews, lab, tmp_path):
    disabled_with_errors(gameday, tviews)
    catalog_before = tviews.query('SELECT entity_name, last_error FROM pg_tviews_metadata ORDER BY 1')
    args = dict(RUNBOOK, tview_reset_incident_id='RESET-1', tview_reset_incident_dir=str(tmp_path))
    before = dict(tviews.state(), activity=lab.activity())
    run = ansible.playbook('playbooks/tview_reset.yml', args, check=True)
    assert run.rc == 0 and 'would archive 5 pending refreshes' in run.output and 'would enable 20 TVIEWs' in run.output, run.output[-6000:]
    assert dict(tviews.state(), activity=before['activity']) == before

    # the same gate as the emergency path: without approval it stops after the plan
    run = ansible.playbook('playbooks/tview_reset.yml', args)
    assert run.rc == 0 and 'NOT APPROVED: stopped after the plan, nothing was changed' in run.output, run
    assert dict(tviews.state(), activity=before['activity']) == before

    run = ansible.playbook('playbooks/tview_reset.yml', dict(args, approve=True))
    assert run.rc == 0, run
    assert 'Exit criteria MET: 20 of 20 TVIEWs healthy' in run.output
    assert tviews.query('SELECT count(*) FROM pg_tviews_metadata WHERE emergency_disabled OR last_error IS NOT NULL '
                        'OR emergency_disable_time IS NOT NULL')[0][0] == 0
    assert tviews.pending() == 0
    assert tviews.query("SELECT count(*) FROM pg_tviews_queue_archive WHERE incident_id = 'RESET-1'")[0][0] == 5
    runs = os.listdir(os.path.join(str(tmp_path), 'RESET-1'))
    assert len(runs) == 1 and runs[0].startswith('reset-'), runs
    with open(os.path.join(str(tmp_path), 'RESET-1', runs[0], 'catalog.csv'), newline='') as handle:
        saved = list(csv.DictReader(handle))
    assert sorted((row['entity_name'], row['last_error'] or None) for row in saved) == catalog_before

    after = tviews.state()
    run = ansible.playbook('playbooks/tview_reset.yml', dict(args, approve=True), check=True)
    assert run.rc == 0 and run.changed == 0, run
    run = ansible.playbook('playbooks/tview_reset.yml', dict(args, approve=True))
    assert run.rc == 0 and run.changed == 0, re.findall(r'changed: \[localhost\].{0,200}', run.output)
    assert tviews.state() == after


def test_tview_reset_is_refused_while_an_emergency_run_holds_the_lock(ansible, gameday, tviews, tmp_path):
    disabled_with_errors(gameday, tviews)
    holder = tviews.connect(application_name='running-emergency', autocommit=False)
    try:
        with holder.cursor() as cur:  # what a running emergency act holds: the transaction-level lock
            cur.execute("SELECT pg_try_advisory_xact_lock(hashtext('incident.response/tview_emergency')::bigint), "
                        "pg_backend_pid()")
            got, pid = cur.fetchone()
        assert got
        before = tviews.state()
        run = ansible.playbook('playbooks/tview_reset.yml', dict(RUNBOOK, approve=True, tview_reset_incident_id='RESET-L',
                                                                 tview_reset_incident_dir=str(tmp_path)))
        assert run.rc != 0, run
        assert 'another emergency run holds the lock incident.response/tview_emergency' in run.output
        assert 'session pid %d' % pid in run.output and 'running-emergency' in run.output
        assert 'Traceback' not in run.output
        assert tviews.state() == before  # the emergency's disable stays
        assert not os.path.exists(os.path.join(str(tmp_path), 'RESET-L'))
    finally:
        holder.rollback()
        holder.close()
