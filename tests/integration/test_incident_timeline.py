"""The timeline, recorded by itself (issue 8 section 2): the callback incident.response.timeline on real runs, the
converter of ansible-runner job events (a real ansible-runner 2.4 run, as AWX runs a job), check mode, secrets and
an unwritable store. The store is the real files store, in a directory of the test."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import BIN, ROOT

from ansible_collections.incident.response.plugins.module_utils._incident import get_store

PROBE = 'tests/integration/files/timeline_probe.yml'
CONVERTER = os.path.join(ROOT, 'scripts', 'job_events_to_timeline.py')
WEBHOOK = 'https://hooks.slack.com/services/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789'
PROBE_TASKS = [
    ('Probe ok', 'ok', 'ansible.builtin.debug'),
    ('Probe changed', 'changed', 'ansible.builtin.command'),
    ('Probe skipped', 'skipped', 'ansible.builtin.debug'),
    ('Probe no_log with the password', 'ok', 'ansible.builtin.debug'),
    ('Probe failed and ignored, with secrets in the message', 'failed', 'ansible.builtin.fail'),
    ('Probe diagnosis', 'ok', 'incident.response.pg_activity_info'),
    ('Probe remediation plan', 'ok', 'incident.response.pg_backends'),
    ('Probe failed in a block', 'failed', 'ansible.builtin.fail'),
    ('Probe rescue', 'ok', 'ansible.builtin.debug'),
]


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / 'incidents')


def open_incident(store_path, incident_id):
    store = get_store(dict(store='files', store_path=store_path))
    return store.create(dict(id=incident_id, title='timeline test', system='pg_tviews'))


def events(store_path, incident_id):
    return get_store(dict(store='files', store_path=store_path)).events(incident_id)


def snapshot(path):
    """Every file and directory under path: mode and bytes. Any write shows."""
    found = {}
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(top, name)
            data = None
            if os.path.isfile(full):
                with open(full, 'rb') as handle:
                    data = handle.read()
            found[os.path.relpath(full, path)] = (os.stat(full).st_mode, data)
    return found


def secrets_of(lab_env):
    values = [lab_env[k] for k in lab_env if 'PASSWORD' in k and lab_env[k]]
    assert values, 'the lab has passwords'
    return values + ['probeWebhookToken0123456789']


def assert_no_secret(path, lab_env):
    for top, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(top, name), 'rb') as handle:
                data = handle.read()
            for secret in secrets_of(lab_env):
                assert secret.encode() not in data, 'a secret reached %s' % os.path.join(top, name)


def probe(ansible, store_path, extra=None, check=False, env=None, verbose=False):
    run_env = dict(INCIDENT_STORE_PATH=store_path, PROBE_WEBHOOK_URL=WEBHOOK, **(env or {}))
    if verbose:
        run_env['ANSIBLE_VERBOSITY'] = '1'
    return ansible.playbook(PROBE, extra or {}, check=check, env=run_env)


def signature(timeline):
    """What must be the same whichever way the run went: types, plays, tasks, hosts, modules, outcomes."""
    return [(e['type'], e.get('play'), e.get('task'), e.get('host'), e.get('module'), e.get('outcome'),
             bool(e.get('censored')), e.get('ignored', False), json.dumps(e.get('hosts'), sort_keys=True))
            for e in timeline]


def test_the_callback_records_every_task_play_and_stats(ansible, store_path, lab_env):
    open_incident(store_path, 'INC-TL-1')
    run = probe(ansible, store_path, dict(incident_id='INC-TL-1'))
    assert run.rc == 0, run
    assert 'incident.response.timeline: 12 events recorded in incident INC-TL-1' in run.output, run
    timeline = events(store_path, 'INC-TL-1')
    assert [e['type'] for e in timeline] == ['play_start'] + ['task'] * len(PROBE_TASKS) + ['play_end', 'stats']
    assert [e['seq'] for e in timeline] == list(range(1, len(timeline) + 1))
    tasks = [e for e in timeline if e['type'] == 'task']
    assert [(e['task'], e['outcome'], e['module']) for e in tasks] == PROBE_TASKS
    for event in tasks:
        assert event['host'] == 'localhost' and event['play'] == 'Timeline probe', event
        assert event['start'] <= event['end'], event
        assert event['start'].endswith('Z') and event['end'].endswith('Z')
    by_name = dict((e['task'], e) for e in tasks)
    assert by_name['Probe failed and ignored, with secrets in the message']['ignored'] is True
    assert 'could not post to' in by_name['Probe failed and ignored, with secrets in the message']['message']
    censored = by_name['Probe no_log with the password']
    assert censored['censored'] is True and 'summary' not in censored
    assert by_name['Probe diagnosis']['status'] in ('ok', 'warning', 'critical')
    plan = by_name['Probe remediation plan']
    assert plan['check_mode'] is True and plan['summary'] and plan['actions'] == []
    assert by_name['Probe ok']['check_mode'] is False and 'summary' not in by_name['Probe ok']
    stats = timeline[-1]
    assert stats['hosts']['localhost'] == dict(ok=7, changed=1, failures=0, unreachable=0, skipped=1, rescued=1,
                                               ignored=1), stats
    assert_no_secret(store_path, lab_env)
    assert oct(os.stat(os.path.join(store_path, 'INC-TL-1.events.jsonl')).st_mode & 0o777) == '0o600'


def test_a_run_without_an_incident_id_records_nothing(ansible, store_path):
    open_incident(store_path, 'INC-TL-2')
    before = snapshot(store_path)
    run = probe(ansible, store_path)
    assert run.rc == 0, run
    assert 'incident.response.timeline' not in run.output
    assert snapshot(store_path) == before


def test_the_environment_names_the_incident(ansible, store_path):
    open_incident(store_path, 'INC-TL-3')
    run = probe(ansible, store_path, env=dict(INCIDENT_ID='INC-TL-3'))
    assert run.rc == 0, run
    assert len([e for e in events(store_path, 'INC-TL-3') if e['type'] == 'task']) == len(PROBE_TASKS)


def test_check_mode_leaves_the_store_byte_identical_and_shows_what_it_would_record(ansible, store_path):
    open_incident(store_path, 'INC-TL-4')
    before = snapshot(store_path)
    run = probe(ansible, store_path, dict(incident_id='INC-TL-4'), check=True, verbose=True)
    assert run.rc == 0, run
    assert snapshot(store_path) == before
    assert 'check mode, nothing recorded in incident INC-TL-4 (12 events would be' in run.output, run
    for shown in ('skipped localhost [ansible.builtin.command] Probe changed',
                  'ok localhost [incident.response.pg_backends] Probe remediation plan: no backend matches',
                  'play_start Timeline probe', 'stats localhost ok='):
        assert 'incident.response.timeline (check mode, not recorded in INC-TL-4): ' + shown in run.output, shown


def test_an_unwritable_store_warns_once_and_never_fails_the_play(ansible, tmp_path):
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('a file where the store directory should be\n')
    run = probe(ansible, str(blocker / 'incidents'), dict(incident_id='INC-TL-5'))
    assert run.rc == 0, run
    assert run.recap == dict(ok=7, changed=1, unreachable=0, failed=0, skipped=1, rescued=1, ignored=1), run
    assert run.output.count('incident.response.timeline: cannot record the timeline of incident INC-TL-5') == 1, run
    assert 'the play goes on' in run.output.lower()
    assert 'Traceback' not in run.output


def test_an_unreachable_postgres_store_warns_once_without_its_password(ansible, tmp_path):
    dsn = 'host=127.0.0.1 port=1 user=nobody password=dsnSecret0123 dbname=incidents connect_timeout=2'
    run = probe(ansible, str(tmp_path / 'unused'), dict(incident_id='INC-TL-PG'),
                env=dict(INCIDENT_STORE='postgres', INCIDENT_STORE_DSN=dsn, INCIDENT_STORE_TIMEOUT='3'))
    assert run.rc == 0, run
    assert run.recap == dict(ok=7, changed=1, unreachable=0, failed=0, skipped=1, rescued=1, ignored=1), run
    assert run.output.count('incident.response.timeline: cannot record the timeline of incident INC-TL-PG') == 1, run
    assert 'dsnSecret0123' not in run.output and 'Traceback' not in run.output


def test_an_incident_missing_from_the_store_warns_and_writes_nothing(ansible, store_path):
    open_incident(store_path, 'INC-TL-OTHER')
    before = snapshot(store_path)
    run = probe(ansible, store_path, dict(incident_id='INC-TL-6'))
    assert run.rc == 0, run
    assert 'incident INC-TL-6 is not in the files store' in run.output, run
    assert snapshot(store_path) == before


# ------------------------------------------------------------------ ansible-runner job events (AWX)
def runner_job(tmp_path, name, playbook, extravars, env, whole_dir=None):
    """A FRESH private data dir per job; the project's ansible.cfg does not enable the callback (a job whose
    events are converted afterwards). Returns artifacts/<ident>."""
    pdd = tmp_path / ('pdd-' + name)
    for sub in ('project', 'inventory', 'env'):
        (pdd / sub).mkdir(parents=True)
    if whole_dir:  # a playbook of the collection, with its vars/ and tasks/
        shutil.rmtree(str(pdd / 'project'))
        shutil.copytree(os.path.join(ROOT, whole_dir), str(pdd / 'project'))
    else:
        shutil.copy(os.path.join(ROOT, playbook), str(pdd / 'project' / os.path.basename(playbook)))
    shutil.copy(os.path.join(ROOT, 'inventory', 'lab.yml'), str(pdd / 'inventory' / 'lab.yml'))
    (pdd / 'project' / 'ansible.cfg').write_text(
        '[defaults]\ncollections_path = %s\ninterpreter_python = auto_silent\n' % os.path.join(ROOT, 'build', 'collections'))
    (pdd / 'env' / 'extravars').write_text(json.dumps(extravars))
    run_env = dict(env)
    run_env.pop('ANSIBLE_CONFIG', None)
    proc = subprocess.run([os.path.join(BIN, 'ansible-runner'), 'run', str(pdd), '-p', os.path.basename(playbook),
                           '--ident', name], cwd=str(pdd / 'project'), env=run_env, capture_output=True, text=True,
                          timeout=600, check=False)
    artifacts = pdd / 'artifacts' / name
    assert (artifacts / 'job_events').is_dir(), proc.stdout + proc.stderr
    stdout = (artifacts / 'stdout').read_text()
    assert 'incident.response.timeline' not in stdout  # the callback was not enabled in this job
    return str(artifacts), int((artifacts / 'rc').read_text().strip())


def convert(artifacts, env, *args):
    proc = subprocess.run([os.path.join(BIN, 'python'), CONVERTER, artifacts] + list(args), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_ansible_runner_job_events_give_the_same_timeline(ansible, ansible_env, tmp_path, store_path, lab_env):
    open_incident(store_path, 'INC-TL-CLI')
    open_incident(store_path, 'INC-TL-AWX')
    run = probe(ansible, store_path, dict(incident_id='INC-TL-CLI'))
    assert run.rc == 0, run

    env = dict(ansible_env, INCIDENT_STORE_PATH=store_path, PROBE_WEBHOOK_URL=WEBHOOK)
    artifacts, rc = runner_job(tmp_path, 'job-probe', PROBE, dict(incident_id='INC-TL-AWX'), env)
    assert rc == 0
    assert events(store_path, 'INC-TL-AWX') == []

    # --check of the converter: shows, writes nothing
    before = snapshot(store_path)
    code, out, err = convert(artifacts, env, '--check')
    assert code == 0, err
    assert json.loads(out)['written'] == 0 and snapshot(store_path) == before

    code, out, err = convert(artifacts, env)  # the incident id comes from the job's extra vars
    assert code == 0, err
    result = json.loads(out)
    assert result['incident_id'] == 'INC-TL-AWX' and result['written'] == 12, result
    cli, awx = events(store_path, 'INC-TL-CLI'), events(store_path, 'INC-TL-AWX')
    assert signature(awx) == signature(cli)
    for one, other in zip(cli, awx):
        for key in ('summary', 'actions', 'message'):
            assert (key in one) == (key in other), (one, other)
    assert all(e['key'].startswith('job:job-probe:') for e in awx)

    # converting the same job again adds nothing
    code, out, err = convert(artifacts, env)
    assert code == 0 and json.loads(out)['written'] == 0, out + err
    assert len(events(store_path, 'INC-TL-AWX')) == 12
    assert_no_secret(store_path, lab_env)


def test_the_converter_fails_clearly(ansible_env, tmp_path, store_path):
    env = dict(ansible_env, INCIDENT_STORE_PATH=store_path)
    code, out, err = convert(str(tmp_path / 'nothing-here'), env)
    assert code == 1 and 'does not exist' in err and 'Traceback' not in err
    empty = tmp_path / 'empty' / 'job_events'
    empty.mkdir(parents=True)
    code, out, err = convert(str(empty.parent), env, '--incident-id', 'INC-X')
    assert code == 1 and 'no job events' in err and 'Traceback' not in err
    (empty / '1-x.json').write_text(json.dumps(dict(event='playbook_on_stats', counter=1, event_data={})))
    code, out, err = convert(str(empty.parent), env, '--incident-id', '../etc/passwd')
    assert code == 1 and 'invalid incident id' in err and 'Traceback' not in err
    code, out, err = convert(str(empty.parent), env, '--incident-id', 'INC-NOT-OPEN')
    assert code == 1 and 'does not exist' in err and 'Traceback' not in err
    assert not os.path.exists(os.path.join(store_path, 'INC-NOT-OPEN.events.jsonl'))


# ------------------------------------------------------------------ a game day: fault -> incident playbook -> record
POOL = 'playbooks/connection_pool_exhausted.yml'
POOL_VARS = dict(pg_connections_idle_in_transaction_age='3s', pg_connections_databases=['scheduler'])
SESSIONS = 4


def cause_idle_sessions(ansible, lab):
    run = ansible.playbook('playbooks/gameday.yml', dict(fault='idle_in_transaction', gameday_sessions=SESSIONS))
    assert run.rc == 0, run
    assert len(lab.pids('gameday_idle_tx')) == SESSIONS
    time.sleep(4)  # older than the playbook's 3s threshold


@pytest.fixture
def idle_sessions(ansible, lab):
    yield lambda: cause_idle_sessions(ansible, lab)
    ansible.playbook('playbooks/gameday.yml', dict(fault='idle_in_transaction', gameday_action='clear'))


def run_timeline(timeline, incident_id):
    """The events of the run itself (not those the incident module writes), the incident id made neutral."""
    kept = [e for e in timeline if e['type'] in ('play_start', 'task', 'play_end', 'stats')]
    return json.loads(json.dumps(signature(kept)).replace(incident_id, 'ID'))


def test_gameday_fault_then_playbook_records_the_incident_and_its_timeline(ansible, ansible_env, lab, lab_env,
                                                                           idle_sessions, tmp_path, store_path):
    env = dict(INCIDENT_STORE_PATH=store_path)
    idle_sessions()

    # --check: the plan, the store untouched (not even created)
    run = ansible.playbook(POOL, dict(POOL_VARS, incident_id='INC-GD-1'), check=True, env=env)
    assert run.rc == 0, run
    assert 'check mode, nothing recorded in incident INC-GD-1' in run.output
    assert not os.path.exists(store_path)

    # the real run: opens INC-GD-1, acts, records severity and end state; the callback records every task
    run = ansible.playbook(POOL, dict(POOL_VARS, incident_id='INC-GD-1'), env=env)
    assert run.rc == 0, run
    assert lab.pids('gameday_idle_tx') == []
    record = get_store(dict(store='files', store_path=store_path)).get('INC-GD-1')
    assert record['status'] == 'monitoring' and record['severity'] == 'SEV2', record
    assert record['system'] == 'schedule_generator' and record['times']['mitigated'], record
    timeline = events(store_path, 'INC-GD-1')
    types = [e['type'] for e in timeline]
    # 'opened' comes first: the incident exists from then on; the play start and the tasks before the open were
    # kept by the callback and follow it, with their own times
    assert types[:2] == ['opened', 'play_start'] and types[-2:] == ['play_end', 'stats'], types
    assert {'severity', 'status'} <= set(types), types
    by_time = sorted(timeline, key=lambda e: e['time'])
    assert by_time[0]['type'] == 'play_start' and by_time[-1]['type'] == 'stats'
    tasks = dict((e['task'], e) for e in timeline if e['type'] == 'task')
    acted = tasks['End sessions idle in transaction for at least the threshold']
    assert acted['outcome'] == 'changed' and acted['module'] == 'incident.response.pg_backends', acted
    assert 'terminated %d backends' % SESSIONS in acted['summary'] and len(acted['actions']) == SESSIONS, acted
    assert all(a['done'] for a in acted['actions'])
    assert tasks['Assess connections']['status'] in ('ok', 'warning', 'critical')
    assert timeline[-1]['hosts']['localhost']['failures'] == 0 and timeline[-1]['hosts']['localhost']['changed'] >= 1
    assert_no_secret(store_path, lab_env)

    # idempotent: a re-run joins the incident and changes nothing (the timeline grows by the run's events)
    before = len(timeline)
    run = ansible.playbook(POOL, dict(POOL_VARS, incident_id='INC-GD-1'), env=env)
    assert run.rc == 0 and run.changed == 0, run
    assert get_store(dict(store='files', store_path=store_path)).get('INC-GD-1')['revision'] == record['revision']
    assert len(events(store_path, 'INC-GD-1')) > before

    # the same game day as an AWX job: ansible-runner without the callback, then its job events converted
    idle_sessions()
    job_env = dict(ansible_env, INCIDENT_STORE_PATH=store_path)
    artifacts, rc = runner_job(tmp_path, 'job-pool', POOL, dict(POOL_VARS, incident_id='INC-GD-2'), job_env,
                               whole_dir='playbooks')
    assert rc == 0
    assert lab.pids('gameday_idle_tx') == []
    code, out, err = convert(artifacts, job_env)
    assert code == 0, err
    assert json.loads(out)['incident_id'] == 'INC-GD-2'
    awx_record = get_store(dict(store='files', store_path=store_path)).get('INC-GD-2')
    assert (awx_record['status'], awx_record['severity']) == ('monitoring', 'SEV2')
    assert run_timeline(events(store_path, 'INC-GD-2'), 'INC-GD-2') == run_timeline(timeline, 'INC-GD-1')
    assert_no_secret(store_path, lab_env)


def test_a_failed_run_records_the_failure_and_still_fails(ansible, lab, idle_sessions, store_path):
    idle_sessions()
    # the gameday sessions only: the lab is shared, other sessions come and go
    before = lab.pids('gameday_idle_tx')
    run = ansible.playbook(POOL, dict(POOL_VARS, incident_id='INC-GD-FAIL', pg_connections_max_backends=2),
                           env=dict(INCIDENT_STORE_PATH=store_path))
    assert run.rc != 0, run
    assert 'refusing to terminate %d backends: more than max_backends=2 match' % SESSIONS in run.output
    assert 'Incident INC-GD-FAIL: the run failed at End sessions idle in transaction' in run.output
    assert lab.pids('gameday_idle_tx') == before and len(before) == SESSIONS
    timeline = events(store_path, 'INC-GD-FAIL')
    failed = [e for e in timeline if e['type'] == 'task' and e['outcome'] == 'failed']
    assert failed and failed[0]['task'] == 'End sessions idle in transaction for at least the threshold', failed
    notes = [e for e in timeline if e['type'] == 'note' and 'the run ended failed' in e.get('message', '')]
    assert len(notes) == 1, timeline
    assert timeline[-1]['type'] == 'stats' and timeline[-1]['outcome'] == 'failed'
    assert timeline[-1]['hosts']['localhost']['rescued'] == 1
