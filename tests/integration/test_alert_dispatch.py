"""playbooks/alert_dispatch.yml: from an alert (webhook payload or one alert) to the mapped playbook, for real.

The payloads are written as Alertmanager's webhook (version 4) sends them; the mapped playbooks run against the
lab (the triage, the pg_tviews emergency disable in check mode, no_active_workers after a real workers_down).
"""
import json
import os
import subprocess
import uuid

import pytest

from conftest import BIN, ROOT, PlaybookRun, parse_recap
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


@pytest.mark.xfail(strict=False, reason='known issue: since the playbooks record into the incident, the dispatched '
                   'emergency_disable.yml --check no longer prints the expected DRY RUN line here; to fix (issue 10)')
def test_check_mapped_alert_changes_nothing(ansible, tmp_path, tviews):
    before = what_emergency_disable_changes(tviews)
    run = dispatch(ansible, tmp_path, webhook(alert('PgTviewsRefreshFailures', severity='critical',
                                                    database='tviews_runbook')), incident_id='INC-T-2')
    assert run.rc == 0, run
    assert 'PgTviewsRefreshFailures -> emergency_disable.yml (check)' in run.output
    assert 'DRY RUN (--check): nothing was changed.' in run.output and 'would disable 20 TVIEWs' in run.output
    assert what_emergency_disable_changes(tviews) == before


def test_duplicates_run_once_and_resolved_run_nothing(ansible, tmp_path):
    first = alert('SomethingNobodyMapped', fingerprint='1111111111111111')
    resolved = alert('ServiceDown', fingerprint='2222222222222222', status='resolved', service='api')
    run = dispatch(ansible, tmp_path, webhook(first, dict(first), resolved))
    assert run.rc == 0, run
    assert run.output.count('(item=SomethingNobodyMapped -> alert_triage.yml (act))') == 1
    assert 'ServiceDown ->' not in run.output


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
    it (fingerprint, startsAt) dispatched: no_active_workers.yml runs (act) and the workers are back."""
    assert gameday('workers_down').rc == 0
    manager = Alertmanager(lab_env['LAB_ALERTMANAGER_URL'])
    tag = 'ir-' + uuid.uuid4().hex[:12]
    try:
        manager.fire(dict(alertname='NoActiveWorkers', service='worker', severity='critical', irtest=tag),
                     dict(summary='All workers offline'))
        held, = manager.alerts(tag)
        payload = webhook(dict(status='firing', labels=held['labels'], annotations=held['annotations'],
                               startsAt=held['startsAt'], endsAt=held['endsAt'], fingerprint=held['fingerprint']))
        run = dispatch(ansible, tmp_path, payload, incident_id='INC-T-WORKERS')
        assert run.rc == 0, run
        assert 'NoActiveWorkers -> no_active_workers.yml (act)' in run.output
        assert lab_project.states('worker') == ['running'] * 4
        ids = sorted('worker-%s' % c.id[:12] for c in lab_project.containers('worker'))
        assert set(ids) <= set(fresh_ids(lab)), (ids, fresh_ids(lab))
        # the same payload again: nothing left to do
        run = dispatch(ansible, tmp_path, payload, incident_id='INC-T-WORKERS')
        assert run.rc == 0 and 'changed=0' in run.output.split('Outcome of each playbook')[1], run
    finally:
        manager.resolve_all()
    assert manager.alerts(tag) == []


def fresh_ids(lab, seconds=15):
    rows = lab.query("SELECT worker_id FROM worker_heartbeat WHERE status = 'running' "
                     "AND last_seen > now() - make_interval(secs => %s)", (seconds,))
    return sorted(row[0] for row in rows)
