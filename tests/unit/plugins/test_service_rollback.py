"""deployment_rollback: which revision a rollback goes to, and when there is none."""
from ansible_collections.incident.response.plugins.module_utils._compose import ComposeBackend
from ansible_collections.incident.response.plugins.module_utils._kubernetes import KubernetesBackend
from ansible_collections.incident.response.plugins.modules.deployment_rollback import choose_target

HISTORY = [dict(revision=1, image='app:1'), dict(revision=2, image='app:2'), dict(revision=3, image='app:3')]


def service(revision, image, platform='compose'):
    return dict(name='api', revision=revision, image=image, platform=platform)


def test_previous_of_the_running_revision():
    assert choose_target(service(3, 'app:3'), HISTORY, None) == (HISTORY[1], None)
    assert choose_target(service(2, 'app:2'), HISTORY, None) == (HISTORY[0], None)


def test_explicit_revision_and_unknown_revision():
    assert choose_target(service(3, 'app:3'), HISTORY, 1) == (HISTORY[0], None)
    target, problem = choose_target(service(3, 'app:3'), HISTORY, 9)
    assert target is None and problem == 'service api has no revision 9 (recorded: 1, 2, 3)'


def test_no_history_says_what_is_missing():
    target, problem = choose_target(service(None, 'app:3'), [], None, ComposeBackend.history_hint)
    assert target is None and 'no earlier revision to roll back to: 0 recorded' in problem
    assert 'state=recorded' in problem
    target, problem = choose_target(service(1, 'app:1', 'kubernetes'), HISTORY[:1], None,
                                    KubernetesBackend.history_hint)
    assert 'state=recorded' not in problem


def test_oldest_running_and_unrecorded_image():
    assert choose_target(service(1, 'app:1'), HISTORY, None)[1] == 'service api runs revision 1, the oldest recorded'
    # An image that was never recorded: the newest recorded image that differs.
    assert choose_target(service(None, 'app:9'), HISTORY, None) == (HISTORY[2], None)
