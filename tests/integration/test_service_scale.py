"""service_scale on the lab's real worker service: four steps, check mode proven on the engine."""
from conftest import assert_clean_failure


def scale(lab_env, replicas, **extra):
    return dict(dict(project=lab_env['LAB_COMPOSE_PROJECT'], service='worker', replicas=replicas,
                     wait_timeout=60), **extra)


def test_four_steps(ansible, lab_env, lab_project):
    before = lab_project.fingerprint()
    # 1. check: reports the change, the engine's containers and states are untouched.
    rc, result, out = ansible.module('service_scale', scale(lab_env, 4, current_replicas=2), check=True, diff=True)
    assert rc == 0, out
    assert result['changed'] is True
    assert result['actions'][0]['detail']['from'] == 2 and result['actions'][0]['detail']['to'] == 4
    assert result['actions'][0]['done'] is False
    # --diff shows the replicas before and after
    assert '-replicas:2' in out.replace(' ', '') and '+replicas:4' in out.replace(' ', ''), out
    assert lab_project.fingerprint() == before
    # 2. apply: four workers run; the two that ran are the same containers (not recreated).
    rc, result, out = ansible.module('service_scale', scale(lab_env, 4, current_replicas=2))
    assert rc == 0, out
    assert result['changed'] is True and result['actions'][0]['done'] is True
    assert lab_project.states('worker') == ['running'] * 4
    old_ids = set(row[0] for row in before if row[1] == 'worker')
    assert old_ids < set(c.id for c in lab_project.containers('worker'))
    assert result['service']['ready_replicas'] == 4
    after = lab_project.fingerprint()
    # 3. idempotent check and 4. idempotent apply: nothing to do (the precondition no longer matters).
    for check in (True, False):
        rc, result, out = ansible.module('service_scale', scale(lab_env, 4, current_replicas=2), check=check)
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []
        assert lab_project.fingerprint() == after
    # Back down to 2.
    rc, result, out = ansible.module('service_scale', scale(lab_env, 2))
    assert rc == 0 and result['changed'] is True, out
    assert lab_project.states('worker') == ['running'] * 2


def test_guards_fail_closed_and_change_nothing(ansible, lab_env, lab_project):
    before = lab_project.fingerprint()
    rc, result, out = ansible.module('service_scale', scale(lab_env, 11, max_replicas=10))
    assert_clean_failure(rc, result, out, 'replicas 11 is above max_replicas 10 for service worker: nothing changed')
    rc, result, out = ansible.module('service_scale', scale(lab_env, -1))
    assert_clean_failure(rc, result, out, 'replicas must not be negative')
    rc, result, out = ansible.module('service_scale', scale(lab_env, 3, current_replicas=5))
    assert_clean_failure(rc, result, out, 'precondition failed: service worker has 2 replicas, current_replicas says 5')
    rc, result, out = ansible.module('service_scale', dict(scale(lab_env, 3), service='nope'))
    assert_clean_failure(rc, result, out, 'service nope not found in compose project %s' % lab_env['LAB_COMPOSE_PROJECT'])
    rc, result, out = ansible.module('service_scale', dict(scale(lab_env, 3), project='no_such_project'))
    assert_clean_failure(rc, result, out, 'compose project no_such_project not found')
    rc, result, out = ansible.module('service_scale', dict(scale(lab_env, 3), docker_host='unix:///nonexistent.sock'))
    assert_clean_failure(rc, result, out, 'cannot reach the Docker daemon at unix:///nonexistent.sock')
    assert lab_project.fingerprint() == before


def test_compose_cli_failure_carries_cmd_rc_stdout_stderr(ansible, lab_env, lab_project, tmp_path):
    broken = tmp_path / 'docker-compose.yml'
    broken.write_text('services: [this is not a compose file\n')
    rc, result, out = ansible.module('service_scale', dict(scale(lab_env, 3), files=[str(broken)]))
    assert_clean_failure(rc, result, out, 'failed (rc=')
    assert result['rc'] != 0 and 'docker-compose' in result['cmd'][0] and result['stderr']
    assert lab_project.states('worker') == ['running'] * 2


def test_engine_scaled_containers_are_compose_s_own(ansible, lab_env, lab_project):
    """service_scale creates the new workers through the engine API in parallel (issue 9, speed): they are the
    containers compose would have made (same config hash): a later compose up without --no-recreate keeps them."""
    rc, result, out = ansible.module('service_scale', scale(lab_env, 5))
    assert rc == 0 and result['changed'] is True, out
    ids = sorted(c.id for c in lab_project.containers('worker'))
    assert len(ids) == 5 and lab_project.states('worker') == ['running'] * 5
    numbers = sorted(int(c.labels['com.docker.compose.container-number']) for c in lab_project.containers('worker'))
    assert numbers == list(range(1, 6)), numbers
    lab_project.compose('up', '--detach', '--no-deps', '--scale', 'worker=5', 'worker')
    assert sorted(c.id for c in lab_project.containers('worker')) == ids
    rc, result, out = ansible.module('service_scale', scale(lab_env, 2))
    assert rc == 0 and result['changed'] is True, out
    left = lab_project.containers('worker')
    assert sorted(int(c.labels['com.docker.compose.container-number']) for c in left) == [1, 2]
    assert lab_project.states('worker') == ['running'] * 2
