"""The committed AWX job templates and workflows, run as AWX runs them (tests/integration/awx_stand_in.py: a
STAND-IN for the controller's job launch; the jobs themselves run in the real ansible-runner 2.4.3 against the lab).

* every job template in check mode (one job each, a fresh private data dir each): successful, and nothing changed
  (the incident store is byte-identical, the lab's sessions are the same);
* the run job of connection_pool_exhausted remediates a gameday fault (idle_in_transaction) that its check job left;
* the gated workflow of emergency_disable: check job -> approval denied -> nothing changes; check -> approval given
  -> run job (the workflow sets the approve variable) -> post-incident review of the same incident;
* the job events of the runner feed the incident timeline (scripts/job_events_to_timeline.py).
"""
import concurrent.futures
import json
import os
import re
import subprocess
import time

import pytest

from awx_stand_in import BIN, ROOT, Controller, LaunchRefused
from test_incident_timeline import snapshot

from ansible_collections.incident.response.plugins.module_utils._incident import get_store

pytestmark = pytest.mark.integration

CONVERTER = os.path.join(ROOT, 'scripts', 'job_events_to_timeline.py')


@pytest.fixture
def store_dir(tmp_path):
    return str(tmp_path / 'incidents')


@pytest.fixture
def controller(tmp_path, lab_env, store_dir):
    """The stand-in controller with the credentials an admin would create, pointing at the lab."""
    env = lab_env
    credentials = {
        'incident.response PostgreSQL': dict(host=env['PGHOST'], port=env['PGPORT'], username=env['PGUSER'],
                                             password=env['PGPASSWORD'], database=env['PGDATABASE'], sslmode='disable'),
        'incident.response incident store': dict(store='files', path=store_dir),
        'incident.response Docker host': dict(docker_host=env['DOCKER_HOST']),
        'incident.response kubeconfig': dict(kubeconfig='apiVersion: v1\nkind: Config\n'),
        'incident.response Alertmanager': dict(url=env['LAB_ALERTMANAGER_URL']),
        'incident.response Redis': dict(url=env['LAB_REDIS_URL']),
        # stand-in receivers: nothing listens there, and no check job sends anything
        'incident.response notification webhooks': dict(slack_webhook_url='http://127.0.0.1:9/stand-in-slack'),
        'incident.response SMTP': dict(host='127.0.0.1', port='9'),
    }
    return Controller(tmp_path / 'jobs', credentials, os.path.join(ROOT, 'build', 'collections'))


def tviews_db(lab_env):
    return {'incident.response PostgreSQL': dict(
        host=lab_env['PGHOST'], port=lab_env['PGPORT'], username=lab_env['PGUSER'], password=lab_env['PGPASSWORD'],
        database='tviews_runbook', sslmode='disable')}


# what an operator answers in this lab (the rest: the survey defaults); None: the template is launched as it is
def lab_launch(lab_env, store_dir):
    tviews = dict(inputs=tviews_db(lab_env))
    return {
        'alert_dispatch': dict(launch_vars=dict(alert_payload=dict(
            labels=dict(alertname='AwxStandInUnknownAlert', severity='warning'), annotations={}, status='firing'))),
        'api_down': dict(answers=dict(service_down_project=lab_env['LAB_COMPOSE_PROJECT'])),
        'emergency_disable': tviews,
        'high_resource': dict(answers=dict(high_resource_project=lab_env['LAB_COMPOSE_PROJECT'])),
        'incident_monitor': dict(answers=dict(incident_id='INC-2026-12-01-990', incident_monitor_window='2s',
                                              incident_monitor_interval='1s')),
        'no_active_workers': dict(answers=dict(workers_down_project=lab_env['LAB_COMPOSE_PROJECT'])),
        'post_incident_review': dict(answers=dict(incident_id='INC-2026-12-01-990')),
        'queue_backlog': dict(answers=dict(queue_backlog_worker_platform='compose')),
        'rollback': dict(answers=dict(service_down_project=lab_env['LAB_COMPOSE_PROJECT'], service_down_service='api')),
        'scale_workers': dict(answers=dict(workers_down_project=lab_env['LAB_COMPOSE_PROJECT'])),
        'service_down': dict(answers=dict(service_down_project=lab_env['LAB_COMPOSE_PROJECT'],
                                          service_down_service='api')),
        'tview_incident': tviews,
        'tview_reset': tviews,
        'tview_restart': dict(tviews, answers=dict(tview_restart_backup='/nonexistent/stand-in.dump')),
        'tview_restore_check': dict(tviews, answers=dict(tview_restore_check_backup='/nonexistent/stand-in.dump',
                                                         tview_restore_check_database='tviews_restore_probe')),
    }


# check jobs that end in a clear failure in this lab, and why (their check still changes nothing)
EXPECTED_FAILURES = {
    'rollback': 'the lab records one deploy of api: "no earlier revision to roll back to"',
    'queue_backlog': 'the lab\'s Redis has no Bull queue pdf-processing: the role says so and stops',
    'tview_restart': 'no backup in this lab: the role refuses to plan a restart without a fresh backup',
    'tview_restore_check': 'no backup in this lab to restore',
}


def test_every_job_template_in_check_mode_changes_nothing(controller, lab, lab_env, store_dir):
    store = get_store(dict(store='files', store_path=store_dir))
    store.create(dict(id='INC-2026-12-01-990', title='AWX stand-in incident', system='pg_tviews'))
    launch = lab_launch(lab_env, store_dir)
    checks = sorted(name for name in controller.templates if name.endswith('(check)'))
    only = os.environ.get('AWX_TEST_ONLY')
    checks = [name for name in checks if not only or only in name] if only else checks
    # a check template for every incident playbook (scripts/awx_config.py: all of playbooks/ but awx/source.yml's skip)
    assert len(checks) == len([n for n in controller.templates if n.endswith('(run)')]) >= 19 or only
    started = time.time()
    before_store = snapshot(store_dir)

    def one(name):
        return name.split()[1], controller.launch(name, **(launch.get(name.split()[1]) or {}))

    # four jobs at a time, as a controller with forks of capacity would: each still in its own private data dir
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(one, checks))
    for playbook, job in sorted(results.items()):
        assert 'Traceback' not in job.stdout, job
        if playbook in EXPECTED_FAILURES:
            assert job.status == 'failed', job
        else:
            assert job.status == 'successful' and job.rc == 0, job
        with open(os.path.join(job.pdd, 'env', 'cmdline')) as handle:
            assert handle.read().split() == ['--check', '--diff']
    assert snapshot(store_dir) == before_store, 'a check job wrote to the incident store'
    assert len(set(job.pdd for job in results.values())) == len(results)
    # the secrets of the credentials never reach a job's output or events
    for job in results.values():
        for path in (os.path.join(job.artifacts, 'stdout'), os.path.join(job.artifacts, 'job_events')):
            text = open(path).read() if os.path.isfile(path) else ''.join(
                open(os.path.join(path, f)).read() for f in os.listdir(path))
            assert lab_env['PGPASSWORD'] not in text, job.ident
    print('%d check jobs in %.0fs' % (len(checks), time.time() - started))


@pytest.fixture
def idle_fault(ansible):
    run = ansible.playbook('playbooks/gameday.yml', dict(fault='idle_in_transaction', gameday_sessions=3))
    assert run.rc == 0, run
    yield
    ansible.playbook('playbooks/gameday.yml', dict(fault='idle_in_transaction', gameday_action='clear'))


def convert(job, store_dir, *args):
    env = dict(os.environ, INCIDENT_STORE='files', INCIDENT_STORE_PATH=store_dir)
    proc = subprocess.run([os.path.join(BIN, 'python'), CONVERTER, job.artifacts] + list(args), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_check_then_run_job_remediates_and_feeds_the_timeline(controller, lab, idle_fault, store_dir):
    time.sleep(4)
    # the lab is shared: the victims are the fault's sessions old enough for the threshold (3s) right now
    victims = [row[0] for row in lab.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'gameday_idle_tx' "
        "AND state = 'idle in transaction' AND now() - state_change > interval '3.5 seconds' ORDER BY pid")]
    assert len(victims) >= 3
    answers = dict(incident_id='INC-2026-12-01-991', pg_connections_idle_in_transaction_age='3s')
    store = get_store(dict(store='files', store_path=store_dir))
    store.create(dict(id='INC-2026-12-01-991', title='pool exhausted (AWX)', system='schedule_generator'))
    before = snapshot(store_dir)

    check = controller.launch('incident.response connection_pool_exhausted (check)', answers)
    assert check.status == 'successful', check
    for pid in victims:
        assert 'WOULD TERMINATE pid %d' % pid in check.output
    assert set(victims) <= set(lab.pids('gameday_idle_tx')), 'the check job ended sessions'
    assert snapshot(store_dir) == before

    run = controller.launch('incident.response connection_pool_exhausted (run)', answers)
    assert run.status == 'successful', run
    assert not os.path.exists(os.path.join(run.pdd, 'env', 'cmdline')), 'the run job inherited a --check'
    assert not set(victims) & set(lab.pids('gameday_idle_tx'))
    # the lab is shared: other idle transactions older than 3s may be ended too; ours are among them
    assert re.search(r'terminated (\d+) backends', run.output) and \
        int(re.search(r'terminated (\d+) backends', run.output).group(1)) >= len(victims), run
    # the job events of the runner feed the incident's timeline
    # the project's ansible.cfg has no timeline callback: the store has the incident role's own events, no task yet
    assert [e for e in store.events('INC-2026-12-01-991') if e['type'] == 'task'] == []
    result = convert(run, store_dir)
    assert result['incident_id'] == 'INC-2026-12-01-991' and result['written'] > 5, result
    timeline = [e for e in store.events('INC-2026-12-01-991') if e['type'] in ('play_start', 'task', 'play_end', 'stats')]
    assert timeline[0]['type'] == 'play_start' and timeline[-1]['type'] == 'stats'
    assert any(e.get('module') == 'incident.response.pg_backends' and e.get('outcome') == 'changed' for e in timeline)
    assert convert(run, store_dir)['written'] == 0  # a second conversion adds nothing
    assert convert(check, store_dir)['written'] == 0  # a check job records nothing


def test_launches_awx_would_refuse(controller):
    with pytest.raises(LaunchRefused, match='not a choice'):
        controller.launch('incident.response emergency_disable (run)', dict(tview_emergency_contract='other'))
    with pytest.raises(LaunchRefused, match='takes an integer'):
        controller.launch('incident.response connection_pool_exhausted (run)', dict(pg_connections_max_backends='x'))
    with pytest.raises(LaunchRefused, match='required'):
        controller.launch('incident.response post_incident_review (run)')
    with pytest.raises(LaunchRefused, match='does not ask for variables'):
        controller.launch('incident.response emergency_disable (run)', launch_vars=dict(approve=True))


@pytest.fixture
def emergency(gameday, tviews):
    gameday('refresh_backends', 'clear')
    for fault, extra in (('tview_refresh_errors', {}), ('queue_backlog', {}), ('refresh_backends', dict(gameday_sessions=3))):
        run = gameday(fault, **extra)
        assert run.rc == 0, run
    return tviews


def test_emergency_workflow_denied_changes_nothing_approved_acts_then_review(controller, emergency, lab, lab_env,
                                                                             store_dir):
    tviews = emergency
    controller.credentials.update(tviews_db(lab_env))
    workflow = 'incident.response emergency_disable (gated)'

    def answers(incident):
        # force: the lab is shared, another test may reset the faults meanwhile; the run acts whatever the level
        return dict(incident_id=incident, tview_emergency_force='true')

    def mine(incident):
        disabled = tviews.query('SELECT count(*) FROM pg_tviews_metadata WHERE emergency_disable_reason LIKE %s',
                                ('[%s]%%' % incident,))[0][0]
        archived = 0
        if tviews.query("SELECT to_regclass('pg_tviews_queue_archive') IS NOT NULL")[0][0]:
            archived = tviews.query('SELECT count(*) FROM pg_tviews_queue_archive WHERE incident_id = %s',
                                    (incident,))[0][0]
        return archived, disabled

    denied = controller.launch_workflow(workflow, answers('INC-2026-12-01-992'), approve=False)
    assert list(denied) == ['check', 'approval'] and denied['approval'] == 'denied'
    assert denied['check'].status == 'successful', denied['check']
    assert 'DRY RUN (--check)' in denied['check'].output, denied['check']
    # the lab is shared with other tests: what THIS incident would have done (archive, disable) did not happen
    assert mine('INC-2026-12-01-992') == (0, 0)
    assert not os.path.exists(os.path.join(store_dir, 'INC-2026-12-01-992.json'))

    approved = controller.launch_workflow(workflow, answers('INC-2026-12-01-993'), approve=True)
    assert list(approved) == ['check', 'approval', 'run', 'review'], approved
    assert approved['run'].status == 'successful', approved['run']
    with open(os.path.join(approved['run'].pdd, 'env', 'extravars')) as handle:
        assert json.load(handle)['tview_emergency_approve'] is True  # the workflow's approval, not a survey default
    assert 'EMERGENCY PROTOCOL DONE for incident INC-2026-12-01-993' in approved['run'].output
    # what the run job did, from its own task results (another test on the shared lab may reset the catalog later)
    assert re.search(r'disabled \d+ TVIEWs', approved['run'].output), approved['run']
    assert approved['review'].status == 'successful', approved['review']
    assert os.path.isfile(os.path.join(store_dir, 'INC-2026-12-01-993', 'review.md'))
