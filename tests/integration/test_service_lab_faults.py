"""The lab's real worker heartbeats and the service gameday faults (api_down, api_unhealthy, workers_down,
memory_hog, db_down): caused, caused again (changed=0), cleared, state back."""
import time

import psycopg2
import pytest


def fresh_heartbeats(lab, seconds=20):
    rows = lab.query("SELECT worker_id FROM worker_heartbeat WHERE last_seen > now() - make_interval(secs => %s) "
                     "AND status = 'running'", (seconds,))
    return sorted(row[0] for row in rows)


def wait_for(predicate, timeout=60, sleep=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(sleep)
    return predicate()


def test_each_running_worker_sends_real_heartbeats(lab, lab_project):
    ids = sorted('worker-%s' % c.id[:12] for c in lab_project.containers('worker'))
    assert wait_for(lambda: fresh_heartbeats(lab) == ids, timeout=20), (fresh_heartbeats(lab), ids)

    def counts():
        return dict(lab.query('SELECT worker_id, processed_count FROM worker_heartbeat WHERE worker_id = ANY(%s)',
                              (ids,)))
    before = counts()
    # every worker beats each LOOP_INTERVAL (5 s): polled, not a fixed sleep of one interval and a margin
    assert wait_for(lambda: all(counts()[i] > before[i] for i in ids), timeout=20), (before, counts())


def test_workers_down_stops_heartbeats_and_clear_brings_them_back(gameday, lab, lab_project):
    ids = sorted('worker-%s' % c.id[:12] for c in lab_project.containers('worker'))
    run = gameday('workers_down')
    assert run.rc == 0 and run.changed == 1, run
    assert lab_project.states('worker') == ['exited', 'exited']
    # A stopped worker says so on its way out.
    assert wait_for(lambda: fresh_heartbeats(lab) == [], timeout=10)
    stopped = dict(lab.query('SELECT worker_id, status FROM worker_heartbeat WHERE worker_id = ANY(%s)', (ids,)))
    assert set(stopped.values()) == {'stopped'}, stopped
    run = gameday('workers_down')
    assert run.rc == 0 and run.changed == 0, run
    run = gameday('workers_down', 'clear')
    assert run.rc == 0 and run.changed == 1, run
    assert lab_project.states('worker') == ['running', 'running']
    assert wait_for(lambda: fresh_heartbeats(lab, 10) == ids, timeout=20)
    run = gameday('workers_down', 'clear')
    assert run.rc == 0 and run.changed == 0, run


def test_api_down(gameday, lab_project, ansible, lab_env):
    run = gameday('api_down')
    assert run.rc == 0 and run.changed == 1, run
    assert lab_project.states('api') == ['exited']
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=1))
    assert result['status'] == 'critical' and result['health'] == 'down', out
    assert gameday('api_down').changed == 0
    run = gameday('api_down', 'clear')
    assert run.rc == 0 and run.changed == 1, run
    assert lab_project.api_healthy()
    assert gameday('api_down', 'clear').changed == 0


def test_api_unhealthy(gameday, lab_project, ansible, lab_env):
    run = gameday('api_unhealthy')
    assert run.rc == 0 and run.changed == 1, run
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=1))
    assert result['endpoints'][0]['status_codes'] == [500], out
    # The docker healthcheck follows after three failed checks.
    api = lab_project.containers('api')[0]

    def unhealthy():
        api.reload()
        return api.attrs['State']['Health']['Status'] == 'unhealthy'
    assert wait_for(unhealthy, timeout=40)
    assert gameday('api_unhealthy').changed == 0
    run = gameday('api_unhealthy', 'clear')
    assert run.rc == 0 and run.changed == 1, run
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=1))
    assert result['status'] == 'ok', out
    assert gameday('api_unhealthy', 'clear').changed == 0


def test_memory_hog_grows_one_worker(gameday, lab_project, ansible, lab_env):
    run = gameday('memory_hog', gameday_memory_hog_mb=24)
    assert run.rc == 0 and run.changed == 1, run

    def grown():
        rc, result, out = ansible.module('service_info', dict(project=lab_env['LAB_COMPOSE_PROJECT'],
                                                              services=['worker'], log_pattern=''))
        used = sorted(i['stats']['mem_bytes'] for i in result['services'][0]['instances'])
        return used if used[-1] > 20 * 1024 * 1024 else None
    used = wait_for(grown, timeout=30)
    assert used and used[0] < 8 * 1024 * 1024, used
    assert gameday('memory_hog').changed == 0
    run = gameday('memory_hog', 'clear')
    assert run.rc == 0 and run.changed == 1, run
    assert gameday('memory_hog', 'clear').changed == 0
    stats = [c.stats(stream=False)['memory_stats']['usage'] for c in lab_project.containers('worker')]
    assert max(stats) < 16 * 1024 * 1024, stats


def test_db_down(gameday, lab, lab_env):
    run = gameday('db_down')
    assert run.rc == 0 and run.changed == 1, run
    with pytest.raises(psycopg2.OperationalError):
        lab.query('SELECT 1')
    assert gameday('db_down').changed == 0
    run = gameday('db_down', 'clear')
    assert run.rc == 0 and run.changed == 1, run
    assert lab.query('SELECT 1') == [(1,)]
    assert gameday('db_down', 'clear').changed == 0
