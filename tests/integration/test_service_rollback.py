"""deployment_rollback on Compose: a recorded deploy history, a bad deploy of the scheduler, roll back."""
import pytest

from conftest import assert_clean_failure

BAD_TAG = 'incident-lab/busybox:rollback-test'


@pytest.fixture
def history(lab_env, engine, tmp_path):
    image = engine.client.images.get('incident-lab/busybox:latest')
    image.tag(BAD_TAG)
    yield str(tmp_path / 'history.json')
    # Back to the lab's own compose file for the scheduler.
    engine.compose('up', '--detach', '--no-deps', '--force-recreate', 'scheduler')
    engine.client.images.remove(BAD_TAG)


def images(engine, service):
    return [c.attrs['Config']['Image'] for c in engine.containers(service)]


def test_record_deploy_rollback_four_steps(ansible, lab_env, lab_project, history, tmp_path):
    base = dict(project=lab_env['LAB_COMPOSE_PROJECT'], service='scheduler', history_file=history)
    rc, result, out = ansible.module('deployment_rollback', base)
    assert_clean_failure(rc, result, out, 'service scheduler has no earlier revision to roll back to: 0 recorded',
                         'state=recorded')
    rc, result, out = ansible.module('deployment_rollback', dict(base, state='recorded'))
    assert rc == 0 and result['changed'] and result['history'][0]['revision'] == 1, out
    rc, result, out = ansible.module('deployment_rollback', dict(base, state='recorded'))
    assert rc == 0 and not result['changed'], out
    # A bad deploy: the scheduler now runs another image; the deploy is recorded as revision 2.
    bad = tmp_path / 'bad.yml'
    bad.write_text('version: "2.4"\nservices:\n  scheduler:\n    image: %s\n' % BAD_TAG)
    proc = lab_project.compose('-f', str(bad), 'up', '--detach', '--no-deps', 'scheduler')
    assert proc.returncode == 0, proc.stderr
    assert images(lab_project, 'scheduler') == [BAD_TAG]
    rc, result, out = ansible.module('deployment_rollback', dict(base, state='recorded'))
    assert rc == 0 and [e['image'] for e in result['history']] == ['incident-lab/busybox:latest', BAD_TAG], out

    suspect = dict(base, current_image=BAD_TAG, wait_timeout=60)
    before = lab_project.fingerprint()
    rc, result, out = ansible.module('deployment_rollback', suspect, check=True)
    assert rc == 0 and result['changed'], out
    assert result['actions'][0]['detail']['to'] == {'revision': 1, 'image': 'incident-lab/busybox:latest'}
    assert lab_project.fingerprint() == before
    rc, result, out = ansible.module('deployment_rollback', suspect)
    assert rc == 0 and result['changed'], out
    assert images(lab_project, 'scheduler') == ['incident-lab/busybox:latest']
    assert result['service']['revision'] == 1 and lab_project.states('scheduler') == ['running']
    after = lab_project.fingerprint()
    for check in (True, False):
        rc, result, out = ansible.module('deployment_rollback', suspect, check=check)
        assert rc == 0 and not result['changed'], out
        assert lab_project.fingerprint() == after
    rc, result, out = ansible.module('deployment_rollback', dict(base, revision=1))
    assert rc == 0 and not result['changed'], out
    rc, result, out = ansible.module('deployment_rollback', dict(base, revision=7))
    assert_clean_failure(rc, result, out, 'service scheduler has no revision 7 (recorded: 1, 2)')


def test_rollback_with_unknown_compose_files_is_refused(ansible, lab_env, lab_project, history, tmp_path):
    """issue 9: without the project's compose files a rollback recreated the service from an override holding only
    ``image:`` (environment, ports, volumes lost). Refused, in check mode too, and nothing is recreated."""
    base = dict(project=lab_env['LAB_COMPOSE_PROJECT'], service='scheduler', history_file=history)
    rc, result, out = ansible.module('deployment_rollback', dict(base, state='recorded'))
    assert rc == 0 and result['changed'], out
    bad = tmp_path / 'bad.yml'
    bad.write_text('version: "2.4"\nservices:\n  scheduler:\n    image: %s\n' % BAD_TAG)
    proc = lab_project.compose('-f', str(bad), 'up', '--detach', '--no-deps', 'scheduler')
    assert proc.returncode == 0, proc.stderr
    rc, result, out = ansible.module('deployment_rollback', dict(base, state='recorded'))
    assert rc == 0 and result['changed'], out
    before = lab_project.fingerprint()
    gone = str(tmp_path / 'moved-away' / 'docker-compose.yml')
    for check in (True, False):
        rc, result, out = ansible.module('deployment_rollback', dict(base, files=[gone]), check=check)
        assert_clean_failure(rc, result, out, 'the compose files of project %s are not known' % base['project'],
                             'missing: %s' % gone, 'nothing changed')
    assert lab_project.fingerprint() == before
    assert images(lab_project, 'scheduler') == [BAD_TAG]
    assert not list(tmp_path.glob('*rollback.override*'))
