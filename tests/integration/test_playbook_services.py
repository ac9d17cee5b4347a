"""The service incident playbooks on the lab, each after its gameday fault: --check changes nothing, a real run
heals the fault, a second run changes nothing."""
import glob
import os
import time

import psycopg2
import pytest


def fresh_ids(lab, seconds=15):
    rows = lab.query("SELECT worker_id FROM worker_heartbeat WHERE status = 'running' "
                     "AND last_seen > now() - make_interval(secs => %s)", (seconds,))
    return sorted(row[0] for row in rows)


def test_no_active_workers(ansible, gameday, lab, lab_project):
    assert gameday('workers_down').rc == 0
    before = lab_project.fingerprint()
    run = ansible.playbook('playbooks/no_active_workers.yml', check=True)
    assert run.rc == 0, run
    assert 'DRY RUN (--check)' in run.output and '0 fresh heartbeats' in run.output
    assert 'worker: would restart' in run.output and 'worker would be scaled from 2 to 4 replicas' in run.output
    assert lab_project.fingerprint() == before
    incident = dict(incident_id='INC-T-NO-WORKERS')  # the second run joins the incident of the first
    run = ansible.playbook('playbooks/no_active_workers.yml', incident)
    assert run.rc == 0, run
    assert lab_project.states('worker') == ['running'] * 4
    ids = sorted('worker-%s' % c.id[:12] for c in lab_project.containers('worker'))
    assert set(ids) <= set(fresh_ids(lab)), (ids, fresh_ids(lab))
    run = ansible.playbook('playbooks/no_active_workers.yml', incident)
    assert run.rc == 0 and run.changed == 0, run


def test_scale_workers_with_cap_and_precondition(ansible, lab_project):
    run = ansible.playbook('playbooks/scale_workers.yml', dict(workers_down_replicas=30))
    assert run.rc != 0 and 'replicas 30 is above max_replicas 10 for service worker: nothing changed' in run.output
    run = ansible.playbook('playbooks/scale_workers.yml', dict(workers_down_replicas=3, workers_down_current_replicas=5))
    assert run.rc != 0 and 'precondition failed: service worker has 2 replicas' in run.output
    assert lab_project.states('worker') == ['running'] * 2
    run = ansible.playbook('playbooks/scale_workers.yml', dict(workers_down_replicas=3, workers_down_current_replicas=2))
    assert run.rc == 0, run
    assert lab_project.states('worker') == ['running'] * 3


def test_api_down(ansible, gameday, lab_project, lab_env):
    assert gameday('api_down').rc == 0
    before = lab_project.fingerprint()
    run = ansible.playbook('playbooks/api_down.yml', check=True)
    assert run.rc == 0, run
    assert "postgres'': ''answers''" in run.output and "redis'': ''answers PONG''" in run.output
    assert 'api: would restart' in run.output and 'complete outage (SEV1)' in run.output
    assert lab_project.fingerprint() == before
    incident = dict(incident_id='INC-T-API-DOWN')  # the second run joins the incident of the first
    run = ansible.playbook('playbooks/api_down.yml', incident)
    assert run.rc == 0, run
    assert lab_project.api_healthy()
    rc, result, out = ansible.module('http_check', dict(urls=[lab_env['LAB_API_URL'] + '/health',
                                                              lab_env['LAB_API_URL'] + '/health/ready']))
    assert result['status'] == 'ok', out
    run = ansible.playbook('playbooks/api_down.yml', incident)
    assert run.rc == 0 and run.changed == 0, run


def test_api_unhealthy_is_not_fixed_by_a_restart_and_says_so(ansible, gameday, lab_project):
    assert gameday('api_unhealthy').rc == 0
    # the api never gets healthy: the restart's wait and the verification are waited out, so keep them short
    fast = dict(service_down_restart_all=True, service_down_verify_timeout=3, service_down_wait_timeout=4)
    run = ansible.playbook('playbooks/api_down.yml', fast)
    assert run.rc != 0, run
    assert 'api: restarted 1 instance' in run.output or 'restarted but is not ready' in run.output, run
    assert 'health' in run.output and 'down' in run.output
    # Cleared here: the lab_project fixture restores (and waits for a healthy api) before gameday's teardown.
    assert gameday('api_unhealthy', 'clear').rc == 0


def test_service_down_any_service(ansible, lab_project):
    lab_project.containers('scheduler')[0].stop(timeout=5)
    args = dict(service_down_service='scheduler', incident_id='INC-T-SERVICE-DOWN')  # the second run joins
    run = ansible.playbook('playbooks/service_down.yml', args)
    assert run.rc == 0, run
    assert lab_project.states('scheduler') == ['running']
    run = ansible.playbook('playbooks/service_down.yml', args)
    assert run.rc == 0 and run.changed == 0, run


def test_high_resource_restarts_the_top_consumer(ansible, gameday, lab_project):
    assert gameday('memory_hog', gameday_memory_hog_mb=24).rc == 0
    time.sleep(7)
    hog_vars = dict(high_resource_mem_threshold_mb=12, incident_id='INC-T-HIGH-RESOURCE')  # the re-run joins
    before = lab_project.fingerprint()
    run = ansible.playbook('playbooks/high_resource.yml', hog_vars, check=True)
    assert run.rc == 0, run
    assert 'worker: would restart' in run.output and 'not confirmed' in run.output
    assert lab_project.fingerprint() == before
    run = ansible.playbook('playbooks/high_resource.yml', hog_vars)
    assert run.rc == 0, run
    used = [c.stats(stream=False)['memory_stats']['usage'] for c in lab_project.containers('worker')]
    assert max(used) < 12 * 1024 * 1024, used
    run = ansible.playbook('playbooks/high_resource.yml', hog_vars)
    assert run.rc == 0 and run.changed == 0, run


def test_database_down(ansible, gameday, lab, lab_env):
    assert gameday('db_down').rc == 0
    run = ansible.playbook('playbooks/database_down.yml', check=True)
    assert run.rc == 0 and 'Action: start' in run.output, run
    with pytest.raises(psycopg2.OperationalError):
        lab.query('SELECT 1')
    incident = dict(incident_id='INC-T-DATABASE-DOWN')  # the second run joins the incident of the first
    run = ansible.playbook('playbooks/database_down.yml', incident)
    assert run.rc == 0 and 'After: answers' in run.output, run
    assert lab.query('SELECT 1') == [(1,)]
    run = ansible.playbook('playbooks/database_down.yml', incident)
    assert run.rc == 0 and run.changed == 0, run


def test_database_down_dumps_before_a_restart(ansible, lab, lab_env):
    started = lab.query('SELECT pg_postmaster_start_time()')[0][0]
    dumps = set(glob.glob(os.path.join(lab_env['LAB_DIR'], 'dumps', '*.dump')))
    run = ansible.playbook('playbooks/database_down.yml', dict(database_down_restart_when_answering=True))
    assert run.rc == 0, run
    new = set(glob.glob(os.path.join(lab_env['LAB_DIR'], 'dumps', '*.dump'))) - dumps
    assert len(new) == 1, new
    dump = new.pop()
    restarted = lab.query('SELECT pg_postmaster_start_time()')[0][0]
    assert restarted > started
    assert os.path.getsize(dump) > 1000 and os.path.getmtime(dump) <= restarted.timestamp()
    os.remove(dump)
