"""The lab's own Alertmanager routes to a real ansible-rulebook, end to end (issue 10).

The fixture writes the lab's Alertmanager configuration from roles/lab (its route to the rulebook: alerts labelled
dispatch=incident-response, group_wait 1s) with the lab role's own task files, and reloads it through POST
/-/reload only (the shared Alertmanager is never restarted; every other alert keeps the lab's null receiver). It
then starts ansible-rulebook 1.3.2 (build/eda-venv) on the lab's rulebook port with the lab's token. Alerts are
posted to the lab's Alertmanager (v2 API); Alertmanager delivers them; the rulebook runs the dispatcher, which runs
the mapped playbook inside the alert's incident. Every wait polls with a deadline.
"""
import datetime
import json
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

from conftest import BIN, ROOT, stop_process_group
from incident_helpers import files_store
from test_alertmanager import Alertmanager

RULEBOOK_BIN = os.path.join(ROOT, 'build', 'eda-venv', 'bin', 'ansible-rulebook')
ROUTE_LABEL = ('dispatch', 'incident-response')


def poll(predicate, timeout, what, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail('timed out after %ss waiting for %s' % (timeout, what))
    return None


def lab_setting(lab_env, name, default):
    """LAB_* from lab.env, else the lab role's default (lab.env not yet regenerated)."""
    return lab_env.get(name) or os.environ.get(name) or default


@pytest.fixture(scope='module')
def rulebook(ansible, lab_env):
    if not os.path.exists(RULEBOOK_BIN):
        pytest.skip('ansible-rulebook not installed: python3.11 -m venv build/eda-venv && '
                    'build/eda-venv/bin/pip install -r requirements-eda.txt')
    port = int(lab_setting(lab_env, 'LAB_EDA_WEBHOOK_PORT', '59095'))
    token_file = lab_setting(lab_env, 'LAB_EDA_WEBHOOK_TOKEN_FILE',
                             os.path.join(lab_env.get('LAB_DIR', '/var/lib/incident-response-lab'), 'secrets',
                                          'eda_webhook_token'))
    manager = Alertmanager(lab_env['LAB_ALERTMANAGER_URL'])
    # the lab's configuration with the rulebook's route: written, then reloaded (never a restart)
    run = ansible.playbook('tests/integration/files/lab_alertmanager_rulebook.yml')
    assert run.rc == 0, run
    config = manager.call('GET', '/status')['config']['original']
    assert 'incident-response' in config and '127.0.0.1:%d/alerts' % port in config, config
    with open(token_file) as handle:
        token = handle.read().strip()
    work = tempfile.mkdtemp(prefix='ir-lab-eda-')
    log_path = os.path.join(work, 'rulebook.log')
    env = dict(ansible.env, ALERT_WEBHOOK_PORT=str(port), ALERT_WEBHOOK_TOKEN=token,
               PATH=BIN + os.pathsep + ansible.env['PATH'])
    log = open(log_path, 'w')
    proc = subprocess.Popen([RULEBOOK_BIN, '-r', os.path.join(ROOT, 'extensions/eda/rulebooks/alertmanager.yml'),
                             '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
                             '-E', 'ALERT_WEBHOOK_PORT,ALERT_WEBHOOK_TOKEN', '--print-events'],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: stopped with its playbooks

    def output():
        with open(log_path) as handle:
            return handle.read()

    def listening():
        if proc.poll() is not None:
            pytest.fail('ansible-rulebook exited (%s): %s' % (proc.returncode, output()[-3000:]))
        req = urllib.request.Request('http://127.0.0.1:%d/alerts' % port, data=json.dumps(dict(ping=True)).encode(),
                                     headers={'Content-Type': 'application/json',
                                              'Authorization': 'Bearer %s' % token}, method='POST')
        try:
            with urllib.request.urlopen(req, timeout=5):
                return True
        except Exception:  # pylint: disable=broad-except
            return False
    try:
        poll(listening, 120, 'the rulebook webhook on 127.0.0.1:%d (%s)' % (port, log_path))
        yield dict(output=output, manager=manager, token=token, store=files_store(ansible.env['INCIDENT_STORE_PATH']),
                   store_path=ansible.env['INCIDENT_STORE_PATH'])
    finally:
        stop_process_group(proc)
        log.close()


def incident_of(store, **labels):
    for record in store.list():
        alert_labels = (record.get('alert') or {}).get('labels') or {}
        if all(alert_labels.get(k) == v for k, v in labels.items()):
            return record
    return None


def play_ended(store, incident_id, play):
    return any(e['type'] == 'play_end' and e.get('play') == play for e in store.events(incident_id))


def resolved_event(store, incident_id):
    return [e for e in store.events(incident_id) if (e.get('message') or '').startswith('alert resolved')]


def receivers(manager, tag):
    return dict((a['labels']['alertname'], [r['name'] for r in a['receivers']]) for a in manager.alerts(tag))


def test_alert_posted_to_the_lab_runs_its_playbook_in_its_incident(rulebook):
    """An unknown alert labelled for the rulebook: Alertmanager delivers it, the rulebook dispatches it, the triage
    runs inside a new incident that has the alert (fingerprint as Alertmanager computed it); an alert without the
    label stays with the lab's null receiver and starts nothing. Resolving the alert in Alertmanager records
    "alert resolved" in the incident, and starts no playbook."""
    manager, store = rulebook['manager'], rulebook['store']
    tag = 'ir-' + uuid.uuid4().hex[:12]
    routed = dict(alertname='SomethingNobodyMapped', irtest=tag, severity='warning')
    routed[ROUTE_LABEL[0]] = ROUTE_LABEL[1]
    try:
        manager.fire(routed, dict(summary='lab rulebook test'))
        manager.fire(dict(alertname='NotForTheRulebook', irtest=tag), dict(summary='stays with null'))
        assert poll(lambda: receivers(manager, tag) if len(receivers(manager, tag)) == 2 else None, 30,
                    'both alerts in Alertmanager') == dict(SomethingNobodyMapped=['incident-response'],
                                                           NotForTheRulebook=['null'])
        record = poll(lambda: incident_of(store, irtest=tag), 120, 'the incident of the alert (%s)' % tag)
        held, = [a for a in manager.alerts(tag) if a['labels']['alertname'] == 'SomethingNobodyMapped']
        assert record['alert']['fingerprint'] == held['fingerprint'] and record['alert']['status'] == 'firing'
        poll(lambda: play_ended(store, record['id'], 'Triage (read only)'), 240, 'the triage run in %s' % record['id'])
        poll(lambda: 'SomethingNobodyMapped -> alert_triage.yml (act): localhost' in rulebook['output'](), 60,
             'the dispatcher to report the triage')
        assert 'NotForTheRulebook ->' not in rulebook['output']()  # (the triage lists it among the alerts firing)
        assert [r for r in store.list() if ((r.get('alert') or {}).get('labels') or {}).get('alertname')
                == 'NotForTheRulebook'] == []
    finally:
        manager.resolve_all()
    poll(lambda: resolved_event(store, record['id']), 120, 'the alert resolved in %s' % record['id'])
    record = store.get(record['id'])
    assert record['alert']['status'] == 'resolved' and record['alert_resolved_at']
    assert len(resolved_event(store, record['id'])) == 1
    # one incident, one triage run: a resolved alert starts no playbook
    out = rulebook['output']()
    assert out.count('SomethingNobodyMapped -> alert_triage.yml (act): localhost') == 1, out[-4000:]
    assert len([r for r in store.list() if ((r.get('alert') or {}).get('labels') or {}).get('irtest') == tag]) == 1
    assert rulebook['token'] not in out


def test_gameday_alert_cures_workers_down_through_the_lab(rulebook, ansible, gameday, lab, lab_project):
    """The drill from an alert: gameday workers_down with gameday_alert fires NoActiveWorkers into the lab's
    Alertmanager; Alertmanager delivers it to the rulebook; no_active_workers.yml runs (act) in the alert's incident;
    the workers are back and sending heartbeats. Clearing the fault resolves the alert: recorded in the incident."""
    store = rulebook['store']
    tag = 'ir-' + uuid.uuid4().hex[:12]
    labels = dict(gameday_alert=True, gameday_alert_labels=dict(irtest=tag, dispatch='incident-response'))
    started = time.monotonic()
    assert gameday('workers_down', **labels).rc == 0
    record = poll(lambda: incident_of(store, irtest=tag, alertname='NoActiveWorkers'), 120,
                  'the incident of NoActiveWorkers (%s)' % tag)
    assert record['alert']['labels']['gameday'] == 'workers_down'
    poll(lambda: play_ended(store, record['id'], 'No active workers'), 600, 'no_active_workers.yml in %s' % record['id'],
         interval=2)
    cured = time.monotonic() - started
    poll(lambda: 'NoActiveWorkers -> no_active_workers.yml (act): localhost' in rulebook['output'](), 60,
         'the dispatcher to report no_active_workers.yml')
    assert lab_project.states('worker') == ['running'] * 4
    poll(lambda: len(fresh_ids(lab)) >= 4, 60, 'heartbeats of the restarted workers')
    record = store.get(record['id'])
    assert record['status'] == 'monitoring', record
    # after the cure the playbook silenced exactly this alert for 30 minutes, naming the incident, and recorded
    # which alerts still fire
    manager = rulebook['manager']
    silences = [s for s in manager.call('GET', '/silences') if s['status']['state'] == 'active'
                and any(m['name'] == 'irtest' and m['value'] == tag for m in s['matchers'])]
    try:
        assert len(silences) == 1, silences
        silence, = silences
        assert record['id'] in silence['comment']
        assert sorted((m['name'], m['value']) for m in silence['matchers']) == sorted(record['alert']['labels'].items())
        length = (parse_time(silence['endsAt']) - parse_time(silence['startsAt'])).total_seconds()
        assert 29 * 60 <= length <= 31 * 60, silence
        after = [e for e in store.events(record['id']) if (e.get('key') or '').startswith('alerts-after:')]
        assert len(after) == 1 and after[0]['silence_id'] == silence['id'], after
        # clear the fault with the alert: the alert no longer fires. (Alertmanager does not deliver the resolution
        # of an alert it silences: the incident learns it from the alert check, docs/alerts.md.)
        run = ansible.playbook('playbooks/gameday.yml', dict(fault='workers_down', gameday_action='clear', **labels))
        assert run.rc == 0 and 'NoActiveWorkers' in run.output and 'resolved in' in run.output, run
        assert manager.alerts(tag) == []
        assert rulebook['output']().count('NoActiveWorkers -> no_active_workers.yml (act): localhost') == 1
        print('NoActiveWorkers: alert fired to workers cured in %.1fs' % cured)
    finally:
        manager.expire_all(tag)


def parse_time(value):
    return datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))


def fresh_ids(lab, seconds=15):
    rows = lab.query("SELECT worker_id FROM worker_heartbeat WHERE status = 'running' "
                     "AND last_seen > now() - make_interval(secs => %s)", (seconds,))
    return sorted(row[0] for row in rows)
