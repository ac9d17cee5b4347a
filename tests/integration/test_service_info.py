"""service_info on the lab's real compose project (Docker engine, docker-compose 1.29)."""
import time

from conftest import assert_clean_failure


def args(lab_env, **extra):
    return dict(dict(project=lab_env['LAB_COMPOSE_PROJECT']), **extra)


def test_reports_every_service_as_the_engine_sees_it(ansible, lab_env, lab_project):
    before = lab_project.fingerprint()
    rc, result, out = ansible.module('service_info', args(lab_env, log_pattern='heartbeat', log_since='10m'))
    assert rc == 0, out
    assert result['changed'] is False
    by_name = dict((s['name'], s) for s in result['services'])
    assert sorted(by_name) == ['api', 'scheduler', 'worker']
    for name, service in by_name.items():
        engine_ids = sorted(c.id[:12] for c in lab_project.containers(name))
        assert sorted(i['id'] for i in service['instances']) == engine_ids
    assert by_name['worker']['desired_replicas'] == 2
    assert by_name['worker']['running_replicas'] == 2
    api = by_name['api']['instances'][0]
    assert api['health'] == 'healthy' and api['state'] == 'running'
    assert api['uptime_seconds'] >= 0 and api['exit_code'] is None and api['oom_killed'] is False
    # One stats snapshot per running container: memory in use is real and below the limit.
    assert 0 < api['stats']['mem_bytes'] < api['stats']['mem_limit']
    # The workers log heartbeats: the pattern finds them (the default pattern finds no error).
    assert by_name['worker']['log_lines'] and all('heartbeat' in x['line'] for x in by_name['worker']['log_lines'])
    # Read only: the engine's containers and their states are unchanged.
    assert lab_project.fingerprint() == before


def test_healthy_lab_is_ok_and_a_stopped_worker_is_reported(ansible, lab_env, lab_project):
    rc, result, out = ansible.module('service_info', args(lab_env, services=['worker', 'api'], stats=False))
    assert rc == 0, out
    assert result['status'] == 'ok', result['reasons']
    victim = lab_project.containers('worker')[0]
    victim.stop(timeout=5)
    rc, result, out = ansible.module('service_info', args(lab_env, services=['worker'], stats=False))
    assert rc == 0, out
    worker = result['services'][0]
    assert worker['running_replicas'] == 1 and worker['desired_replicas'] == 2
    stopped = [i for i in worker['instances'] if i['id'] == victim.id[:12]][0]
    assert stopped['state'] == 'exited' and stopped['exit_code'] is not None
    assert result['status'] == 'warning'
    assert any('1 of 2 instances ready' in r for r in result['reasons'])


def test_error_lines_since(ansible, lab_env, lab_project):
    # The api logs each request; a request to an unknown path logs "-> 404". Only lines since 'now' count.
    rc, result, out = ansible.module('service_info', args(lab_env, services=['api'], stats=False,
                                                          log_pattern='GET /no-such-page-%d' % int(time.time())))
    assert rc == 0, out
    assert result['services'][0]['log_lines'] == []


def test_bad_input_ends_in_one_clear_message(ansible, lab_env):
    rc, result, out = ansible.module('service_info', args(lab_env, services=['nope']))
    assert_clean_failure(rc, result, out, 'service nope not found in compose project taskscheduler',
                         'api, scheduler, worker')
    rc, result, out = ansible.module('service_info', dict(project='no_such_project'))
    assert_clean_failure(rc, result, out, 'compose project no_such_project not found')
    rc, result, out = ansible.module('service_info', args(lab_env, docker_host='tcp://127.0.0.1:1'))
    assert_clean_failure(rc, result, out, 'cannot reach the Docker daemon at tcp://127.0.0.1:1', 'Connection refused')
    rc, result, out = ansible.module('service_info', dict(services=['api']))
    assert_clean_failure(rc, result, out, 'project is required with platform=compose')
    rc, result, out = ansible.module('service_info', args(lab_env, log_since='yesterday'))
    assert_clean_failure(rc, result, out, "log_since: 'yesterday' is not a duration")
