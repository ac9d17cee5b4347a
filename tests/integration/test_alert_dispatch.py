"""playbooks/alert_dispatch.yml: from an alert (webhook payload or one alert) to the mapped playbook, for real.

The payloads are written as Alertmanager's webhook (version 4) sends them; the mapped playbooks run against the
lab (the triage, the pg_tviews emergency disable in check mode, no_active_workers after a real workers_down).
"""
import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import BIN, ROOT, PlaybookRun, parse_recap
from incident_helpers import files_store, tree_digest
from test_alertmanager import Alertmanager

DISPATCH = 'playbooks/alert_dispatch.yml'


def webhook(*alerts):
    return dict(version='4', status='firing', receiver='incident-response', groupKey='{}:{alertname="x"}',
                groupLabels={}, commonLabels={}, commonAnnotations={}, externalURL='http://127.0.0.1:59093',
                truncatedAlerts=0, alerts=list(alerts))


def alert(name, fingerprint='0123456789abcdef', status='firing', **labels):
    return dict(status=status, labels=dict(labels, alertname=name), annotations=dict(summary='%s fired' % name),
                startsAt='2026-12-01T21:00:00Z', endsAt='0001-01-01T00:00:00Z', fingerprint=fingerprint,
                generatorURL='http://prometheus/graph')


def dispatch(ansible, tmp_path, payload, check=False, **extra):
    path = tmp_path / 'alert.json'
    path.write_text(json.dumps(payload) if not isinstance(payload, str) else payload)
    # -e @alert.json, as the operator runs it (conftest's playbook() passes each var as JSON, not a file)
    return _run(ansible, path, check, extra)


def _run(ansible, path, check, extra):
    cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
           os.path.join(ROOT, DISPATCH), '-e', '@%s' % path]
    for key, value in extra.items():
        cmd.extend(['-e', json.dumps({key: value})])
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible.env, capture_output=True, text=True, timeout=900, check=False,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    return PlaybookRun(proc.returncode, ' '.join(out.split()), parse_recap(out))


def test_unknown_alert_runs_triage_only(ansible, tmp_path):
    run = dispatch(ansible, tmp_path, alert('SomethingNobodyMapped', severity='warning'), incident_id='INC-T-1')
    assert run.rc == 0, run
    assert 'not in the map, triage only: SomethingNobodyMapped' in run.output
    assert 'SomethingNobodyMapped -> alert_triage.yml (act)' in run.output
    # the triage ran with the alert and the incident id, and changed nothing
    assert 'alert: SomethingNobodyMapped' in run.output and 'incident_id: INC-T-1' in run.output
    assert 'changed=0' in run.output.split('Outcome of each playbook')[1]


def what_emergency_disable_changes(tviews):
    # The disabled flags, the pending queue and the archive: what an act run changes. (Not the timestamps: the
    # shared tviews_runbook fixture may be reset by another developer's test meanwhile, with new times.)
    return ([(row[0], row[4], row[6]) for row in tviews.catalog()], tviews.pending(), len(tviews.archive() or []),
            tviews.suspension())


def assert_dry_run(tviews, before):
    """Nothing the emergency disable would do happened: no TVIEW disabled, nothing archived, no suspension, and
    the pending queue not drained. (Other developers' gameday faults may add refreshes to the shared fixture's
    queue meanwhile: pending may grow, never shrink to what an archive leaves.)"""
    after = what_emergency_disable_changes(tviews)
    assert (after[0], after[2], after[3]) == (before[0], before[2], before[3])
    assert after[1] >= before[1], (after[1], before[1])


def test_check_mapped_alert_changes_nothing(ansible, tmp_path, tviews):
    """PgTviewsRefreshFailures maps to the emergency disable in check mode: the TVIEWs, their queue and archive are
    the same after the run; the dry run's plan is printed and recorded in the alert's incident (one record, joined
    by fingerprint); a redelivery records the plan once.

    (Since the playbooks record into the incident, the playbook's summary is no longer in the last lines of its
    output: the dispatcher prints the playbook's Summary task instead of its last 30 lines.)"""
    incident = 'INC-T-CHECK-' + uuid.uuid4().hex[:6]
    store = files_store(ansible.env['INCIDENT_STORE_PATH'])
    before = what_emergency_disable_changes(tviews)
    payload = webhook(alert('PgTviewsRefreshFailures', severity='critical', database='tviews_runbook',
                            fingerprint=uuid.uuid4().hex[:16]))
    run = dispatch(ansible, tmp_path, payload, incident_id=incident)
    assert run.rc == 0, run
    assert 'PgTviewsRefreshFailures -> emergency_disable.yml (check)' in run.output
    summary = run.output.split('Summary of each playbook')[1]
    assert 'DRY RUN (--check): nothing was changed.' in summary and 'would disable 20 TVIEWs' in summary, run
    assert_dry_run(tviews, before)
    record = store.get(incident)
    assert record['alert']['fingerprint'] == payload['alerts'][0]['fingerprint']
    assert record['system'] == 'pg_tviews' and record['status'] == 'investigating'
    plans = [e for e in store.events(incident) if (e.get('key') or '').startswith('plan:')]
    assert len(plans) == 1 and plans[0]['type'] == 'check', plans
    assert 'would disable 20 TVIEWs' in plans[0]['message'] and plans[0]['playbook'] == 'emergency_disable.yml'
    # Alertmanager redelivers: the same incident, the plan recorded once, still nothing changed
    run = dispatch(ansible, tmp_path, payload, incident_id=incident)
    assert run.rc == 0, run
    assert len([e for e in store.events(incident) if (e.get('key') or '').startswith('plan:')]) == 1
    assert_dry_run(tviews, before)


def test_duplicates_run_once_and_resolved_run_nothing(ansible, tmp_path):
    first = alert('SomethingNobodyMapped', fingerprint='1111111111111111')
    resolved = alert('ServiceDown', fingerprint='2222222222222222', status='resolved', service='api')
    run = dispatch(ansible, tmp_path, webhook(first, dict(first), resolved))
    assert run.rc == 0, run
    assert run.output.count('(item=SomethingNobodyMapped -> alert_triage.yml (act))') == 1
    assert 'ServiceDown -> service_down.yml' not in run.output


def test_resolved_alert_updates_its_incident(ansible, tmp_path):
    """A firing alert opens its incident; the same alert resolved starts no playbook and records "alert resolved" in
    that incident: check (the store's bytes unchanged), apply, idempotent check, idempotent apply."""
    store_path = ansible.env['INCIDENT_STORE_PATH']
    store = files_store(store_path)
    fired = alert('SomethingNobodyMapped', fingerprint=uuid.uuid4().hex[:16], irtest='resolved')
    run = dispatch(ansible, tmp_path, webhook(fired))
    assert run.rc == 0, run
    incident, = [r for r in store.list() if (r.get('alert') or {}).get('fingerprint') == fired['fingerprint']]
    assert incident['alert']['status'] == 'firing'
    resolved = dict(fired, status='resolved', endsAt='2026-12-01T21:05:00Z')
    steps = []
    for check in (True, False, True, False):
        before = tree_digest(store_path)
        run = dispatch(ansible, tmp_path, webhook(resolved), check=check)
        assert run.rc == 0, run
        assert 'alert_triage.yml' not in run.output.split('Routes')[1], run  # no playbook started
        if check:
            assert tree_digest(store_path) == before
        steps.append(run.recap['changed'])
    assert steps[0] > 0 and steps[1] > 0 and steps[2] == 0 and steps[3] == 0, steps
    record = store.get(incident['id'])
    assert record['alert']['status'] == 'resolved' and record['alert_resolved_at'] == '2026-12-01T21:05:00Z'
    assert record['status'] == 'investigating'  # the verification / the monitoring period / a person resolve it
    done = [e for e in store.events(incident['id']) if (e.get('message') or '').startswith('alert resolved')]
    assert len(done) == 1 and done[0]['fingerprint'] == fired['fingerprint'], done


def test_resolved_alert_without_incident_changes_nothing(ansible, tmp_path):
    store_path = ansible.env['INCIDENT_STORE_PATH']
    before = tree_digest(store_path)
    resolved = alert('SomethingNobodyMapped', fingerprint=uuid.uuid4().hex[:16], status='resolved')
    run = dispatch(ansible, tmp_path, webhook(resolved))
    assert run.rc == 0 and run.recap['changed'] == 0, run
    assert 'no open incident has it; nothing to update' in run.output
    assert tree_digest(store_path) == before


def test_dispatcher_in_check_mode_runs_children_in_check(ansible, tmp_path, lab):
    # a real session idle in transaction, that an act run (idle age 1s via alert_dispatch_map_extra) would end
    conn = lab.connect(role='app', autocommit=False, application_name='pytest-dispatch-idle')
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT 1')
        pid = conn.get_backend_pid()
        lab.query("SELECT pg_sleep(1.5)")
        entry = dict(playbook='connection_pool_exhausted.yml', mode='act',
                     vars=dict(pg_connections_idle_in_transaction_age='1s'))
        run = dispatch(ansible, tmp_path, alert('DatabaseConnectionPoolExhausted', severity='critical'), check=True,
                       alert_dispatch_map_extra=dict(DatabaseConnectionPoolExhausted=entry))
        assert run.rc == 0, run
        assert 'DatabaseConnectionPoolExhausted -> connection_pool_exhausted.yml (check)' in run.output
        assert pid in lab.pids('pytest-dispatch-idle')
        assert lab.query('SELECT state FROM pg_stat_activity WHERE pid = %s', (pid,)) == [('idle in transaction',)]
    finally:
        conn.close()


@pytest.mark.parametrize('payload, message', [
    ('{"alerts": [', 'YAML parsing failed'),  # -e @file: Ansible itself refuses a broken file, one line
    (dict(version='4', alerts='nope'), 'payload.alerts must be a list of alerts'),
    (dict(version='3', alerts=[alert('NoActiveWorkers')]), 'is not the Alertmanager webhook version 4'),
    (dict(version='4', alerts=[]), 'payload has no alerts'),
    (dict(something='else'), 'payload is neither an Alertmanager webhook'),
    (webhook(dict(labels=dict(severity='critical'))), 'alerts[0] has no alertname label'),
    (webhook(alert('ServiceDown', severity='critical')),
     'alert ServiceDown (fingerprint 0123456789abcdef) lacks the label(s) service that service_down.yml needs: '
     'no playbook started'),
])
def test_bad_payload_starts_nothing(ansible, tmp_path, payload, message):
    run = dispatch(ansible, tmp_path, payload)
    assert run.rc != 0
    assert message in run.output, run
    assert 'Traceback' not in run.output
    assert 'Run the mapped playbook' not in run.output


def test_no_active_workers_alert_cures_the_fault(ansible, gameday, lab, lab_project, lab_env, tmp_path):
    """gameday workers_down; NoActiveWorkers fired into the lab's real Alertmanager; the alert as Alertmanager holds
    it (fingerprint, startsAt) dispatched in four steps. Check: the workers stay down, no silence, the incident store
    unchanged. Apply: no_active_workers.yml runs (act) in the alert's incident, the workers are back, the alert is
    silenced for 30 minutes naming the incident, the alerts still firing are recorded. Then nothing left to do."""
    assert gameday('workers_down').rc == 0
    manager = Alertmanager(lab_env['LAB_ALERTMANAGER_URL'])
    store_path = ansible.env['INCIDENT_STORE_PATH']
    tag = 'ir-' + uuid.uuid4().hex[:12]
    incident = 'INC-T-WORKERS-' + tag[3:9]
    try:
        manager.fire(dict(alertname='NoActiveWorkers', service='worker', severity='critical', irtest=tag),
                     dict(summary='All workers offline'))
        held, = manager.alerts(tag)
        payload = webhook(dict(status='firing', labels=held['labels'], annotations=held['annotations'],
                               startsAt=held['startsAt'], endsAt=held['endsAt'], fingerprint=held['fingerprint']))
        # 1. check
        before = (tree_digest(store_path), manager.silences(tag))
        run = dispatch(ansible, tmp_path, payload, check=True, incident_id=incident)
        assert run.rc == 0, run
        assert 'NoActiveWorkers -> no_active_workers.yml (check)' in run.output
        assert (tree_digest(store_path), manager.silences(tag)) == before
        assert lab_project.states('worker') == ['exited'] * len(lab_project.states('worker'))
        # 2. apply
        run = dispatch(ansible, tmp_path, payload, incident_id=incident)
        assert run.rc == 0, run
        assert 'NoActiveWorkers -> no_active_workers.yml (act)' in run.output
        assert lab_project.states('worker') == ['running'] * 4
        ids = sorted('worker-%s' % c.id[:12] for c in lab_project.containers('worker'))
        assert set(ids) <= set(fresh_ids(lab)), (ids, fresh_ids(lab))
        silences = manager.silences(tag)
        assert len(silences) == 1 and incident in silences[0][3], silences
        record = files_store(store_path).get(incident)
        assert record['alert']['fingerprint'] == held['fingerprint'] and record['status'] == 'monitoring'
        after = [e for e in files_store(store_path).events(incident) if (e.get('key') or '').startswith('alerts-after')]
        assert len(after) == 1 and held['fingerprint'] + ':suppressed' in after[0]['alerts'], after
        # 3. idempotent check, 4. idempotent apply: nothing left to do, the same silence
        for check in (True, False):
            before = (tree_digest(store_path), manager.silences(tag))
            run = dispatch(ansible, tmp_path, payload, check=check, incident_id=incident)
            assert run.rc == 0 and 'changed=0' in run.output.split('Outcome of each playbook')[1], run
            assert manager.silences(tag) == before[1]
            if check:
                assert tree_digest(store_path) == before[0]
    finally:
        manager.expire_all(tag)
        manager.resolve_all()
    assert manager.alerts(tag) == []


def fresh_ids(lab, seconds=15):
    rows = lab.query("SELECT worker_id FROM worker_heartbeat WHERE status = 'running' "
                     "AND last_seen > now() - make_interval(secs => %s)", (seconds,))
    return sorted(row[0] for row in rows)


def test_monitor_sees_the_alert(ansible, lab_env, tmp_path):
    """incident_monitor_alert_check: the monitoring period asks the lab's Alertmanager for the incident's alert
    (fingerprint): still firing is a regression (the run fails, the check 'alert' failed); resolved passes."""
    from incident_helpers import ago, make_incident  # pylint: disable=import-outside-toplevel
    manager = Alertmanager(lab_env['LAB_ALERTMANAGER_URL'])
    tag = 'ir-' + uuid.uuid4().hex[:12]
    store_dir = tmp_path / 'store'
    store = files_store(store_dir)
    try:
        manager.fire(dict(alertname='MonitorAlertCheck', irtest=tag), dict(summary='monitor test'))
        held, = manager.alerts(tag)
        alert_record = dict(name='MonitorAlertCheck', labels=held['labels'], fingerprint=held['fingerprint'],
                            status='firing')

        def monitor(incident_id):
            return ansible.playbook('playbooks/incident_monitor.yml', dict(
                incident_id=incident_id, incident_monitor_window='2s', incident_monitor_interval='1s',
                incident_monitor_alert_check=True, incident_monitor_checks=[
                    dict(name='noop', module='alertmanager_alert_info', args=dict(url=lab_env['LAB_ALERTMANAGER_URL'], labels=dict(irtest=tag + '-none')))],
                incident_monitor_alertmanager_url=lab_env['LAB_ALERTMANAGER_URL']),
                env=dict(INCIDENT_STORE='files', INCIDENT_STORE_PATH=str(store_dir),
                         ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.default'))
        firing = make_incident(store, started=ago(minutes=20), status='monitoring', resolved=None, alert=alert_record,
                               system='task_scheduler')
        run = monitor(firing['id'])
        assert run.rc != 0 and 'period of %s: alert failed.' % firing['id'] in run.output, run
        assert 'Traceback' not in run.output
        manager.resolve_all()
        assert manager.alerts(tag) == []
        cleared = make_incident(store, started=ago(minutes=20), status='monitoring', resolved=None, alert=alert_record,
                                system='task_scheduler')
        run = monitor(cleared['id'])
        assert run.rc == 0, run.output[-12000:]
        checks = [e for e in store.events(cleared['id']) if e['type'] == 'check']
        assert checks and 'alert' in json.dumps(checks), checks
    finally:
        time.sleep(1)  # endsAt must not precede startsAt (a failure before the first run)
        manager.resolve_all()
