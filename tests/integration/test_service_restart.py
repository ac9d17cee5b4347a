"""service_restart on the lab's real containers."""
from conftest import assert_clean_failure


def restart(lab_env, service, **extra):
    return dict(dict(project=lab_env['LAB_COMPOSE_PROJECT'], service=service, wait_timeout=60), **extra)


def test_four_steps_only_exited(ansible, lab_env, lab_project):
    victim, other = lab_project.containers('worker')[:2]
    victim.stop(timeout=5)
    before = lab_project.fingerprint()
    # 1. check: names the exited worker only; nothing changes on the engine.
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', only=['exited']), check=True)
    assert rc == 0, out
    assert result['changed'] is True and result['restarted'] == [victim.id[:12]]
    assert [a['done'] for a in result['actions']] == [False]
    assert lab_project.fingerprint() == before
    # 2. apply: the exited one runs again, the other one was not touched.
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', only=['exited']))
    assert rc == 0, out
    assert result['changed'] is True and result['restarted'] == [victim.id[:12]]
    assert lab_project.states('worker') == ['running', 'running']
    other.reload()
    assert other.attrs['State']['StartedAt'] == [r for r in before if r[0] == other.id][0][4]
    after = lab_project.fingerprint()
    # 3. + 4.: nothing exited any more.
    for check in (True, False):
        rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', only=['exited']), check=check)
        assert rc == 0, out
        assert result['changed'] is False and result['restarted'] == []
        assert lab_project.fingerprint() == after


def test_restart_api_waits_until_healthy(ansible, lab_env, lab_project):
    api = lab_project.containers('api')[0]
    started = api.attrs['State']['StartedAt']
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'api'))
    assert rc == 0, out
    assert result['changed'] is True
    api.reload()
    assert api.attrs['State']['StartedAt'] != started
    assert api.attrs['State']['Health']['Status'] == 'healthy'
    assert result['service']['ready_replicas'] == 1
    # min_uptime: right after a restart there is nothing old enough to restart.
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'api', min_uptime='10m'))
    assert rc == 0 and result['changed'] is False, out


def test_chosen_instance_only(ansible, lab_env, lab_project):
    first, second = sorted(lab_project.containers('worker'), key=lambda c: c.name)
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', instances=[second.name]))
    assert rc == 0, out
    assert result['restarted'] == [second.id[:12]]
    first_started = first.attrs['State']['StartedAt']
    first.reload()
    assert first.attrs['State']['StartedAt'] == first_started


def test_bad_input(ansible, lab_env, lab_project):
    before = lab_project.fingerprint()
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', instances=['no_such_container']))
    assert_clean_failure(rc, result, out, 'service worker has no instance no_such_container')
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'ghost'))
    assert_clean_failure(rc, result, out, 'service ghost not found')
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', only=['sad']))
    assert_clean_failure(rc, result, out, 'value of only must be one or more of')
    assert lab_project.fingerprint() == before


def test_empty_and_ambiguous_instance_names_are_refused(ansible, lab_env, lab_project):
    """issue 9: instances [""] matched every instance (startswith('')), a short prefix several: refused, with one
    message, before anything is restarted (check mode too)."""
    before = lab_project.fingerprint()
    ids = sorted(c.id for c in lab_project.containers('worker'))
    common = ''
    while len(common) < 12 and all(i.startswith(ids[0][:len(common) + 1]) for i in ids):
        common = ids[0][:len(common) + 1]
    cases = [([''], 'instances: an empty name matches every instance'),
             (['  '], 'instances: an empty name matches every instance')]
    if common:
        cases.append(([common], "instances: '%s' matches %d instances of service worker" % (common, len(ids))))
    for instances, fragment in cases:
        for check in (True, False):
            rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', instances=instances),
                                             check=check)
            assert_clean_failure(rc, result, out, fragment, 'nothing restarted')
    # A name prefix is not a name: refused too, never a guess.
    rc, result, out = ansible.module('service_restart', restart(lab_env, 'worker', instances=['taskscheduler_worker']))
    assert_clean_failure(rc, result, out, 'service worker has no instance taskscheduler_worker', 'nothing restarted')
    assert lab_project.fingerprint() == before
