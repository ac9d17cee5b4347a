"""service_pause on the lab's real containers (docker pause / unpause)."""
from conftest import assert_clean_failure


def pause(lab_env, state, service='scheduler'):
    return dict(project=lab_env['LAB_COMPOSE_PROJECT'], service=service, state=state)


def test_four_steps_pause_then_unpause(ansible, lab_env, lab_project):
    for state, engine_state in (('paused', 'paused'), ('unpaused', 'running')):
        before = lab_project.fingerprint()
        rc, result, out = ansible.module('service_pause', pause(lab_env, state), check=True)
        assert rc == 0, out
        assert result['changed'] is True and result['actions'][0]['done'] is False
        assert lab_project.fingerprint() == before
        rc, result, out = ansible.module('service_pause', pause(lab_env, state))
        assert rc == 0, out
        assert result['changed'] is True
        assert lab_project.states('scheduler') == [engine_state]
        after = lab_project.fingerprint()
        for check in (True, False):
            rc, result, out = ansible.module('service_pause', pause(lab_env, state), check=check)
            assert rc == 0, out
            assert result['changed'] is False
            assert lab_project.fingerprint() == after


def test_paused_api_does_not_answer_and_comes_back(ansible, lab_env, lab_project):
    rc, result, out = ansible.module('service_pause', pause(lab_env, 'paused', service='api'))
    assert rc == 0 and result['changed'], out
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=1,
                                                        request_timeout=2))
    assert rc == 0 and result['status'] == 'critical' and result['health'] == 'down', out
    rc, result, out = ansible.module('service_pause', pause(lab_env, 'unpaused', service='api'))
    assert rc == 0 and result['changed'], out
    rc, result, out = ansible.module('http_check', dict(url=lab_env['LAB_API_URL'] + '/health', count=2))
    assert rc == 0 and result['status'] == 'ok', out


def test_bad_input(ansible, lab_env, lab_project):
    rc, result, out = ansible.module('service_pause', pause(lab_env, 'paused', service='ghost'))
    assert_clean_failure(rc, result, out, 'service ghost not found')
    rc, result, out = ansible.module('service_pause', pause(lab_env, 'frozen'))
    assert_clean_failure(rc, result, out, 'value of state must be one of')
