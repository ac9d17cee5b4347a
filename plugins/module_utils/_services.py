# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The service modules' platforms and their one control flow (private to the collection).

Three things live here:

- :class:`ServiceBackend`, the interface every platform implements (``_compose.py``: Docker Compose,
  ``_kubernetes.py``: Kubernetes Deployments). The modules only ever talk to it; what differs between
  platforms is in the backends, never in a module (a module does not test ``backend.platform``).
- the dispatch: ``service_argument_spec()`` (``platform`` plus the options of every backend) and
  ``get_backend(module)`` (the backend object of ``platform``).
- :class:`ServiceRemediation`, the driver of the remediation modules (``service_scale``, ``service_pause``,
  ``service_restart``, ``deployment_rollback``), which hold their flow in one place as community.docker's
  ``BaseComposeManager`` and kubernetes.core's runner do: validate the arguments (no connection yet),
  connect, read and plan (actions, diff, summary), return in check mode or when there is nothing to do,
  act, wait with the shared waiter, fail when not ready, return through ``remediation_result``.

Every backend error is a ``BackendError`` with one message naming the target; the driver turns it into the
module's one failure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import abc
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.incident.response.plugins.module_utils._common import (
    WAIT_ARGUMENT_SPEC,
    BackendError,
    new_module,
    remediation_result,
    validate_wait_args,
    wait_until,
)


# ---------------------------------------------------------------- the interface
class ServiceBackend(abc.ABC):
    """What a platform implements for the service modules. One subclass per platform, in its own file.

    The shapes (what the modules and roles read):

    - a *service* (``service()``): ``name``, ``platform``, ``desired_replicas``, ``running_replicas``,
      ``ready_replicas`` (running and healthy, or running without a health check), ``paused_replicas``,
      ``image``, ``revision`` (or None) and ``instances``; a platform may add its own keys (Kubernetes:
      ``namespace``, ``rollout_complete``...).
    - an *instance*: ``id``, ``name``, ``state`` (``running``, ``paused``, ``exited``, ``restarting``,
      ``created``, ``pending``, ``terminating``, ``unknown``), ``health`` (``healthy``, ``unhealthy``,
      ``starting``, ``none``), ``restart_count``, ``exit_code``, ``oom_killed``, ``started_at``,
      ``uptime_seconds``, ``image``.
    - a *history entry*: ``revision``, ``image``, ``deployed_at`` (oldest first).

    Every method raises ``BackendError`` (one message naming the target) when it cannot do what was asked,
    and nothing else: no traceback reaches the operator.
    """

    #: The value of the ``platform`` option that selects this backend.
    platform = None
    #: True when restarting a whole service is one rollout of the platform (``kubectl rollout restart``)
    #: rather than a restart of each instance.
    rollout_restart = False
    #: False when the platform keeps its own revisions (Kubernetes' ReplicaSets): ``record_deploy`` is then
    #: refused before connecting.
    records_deploys = True
    #: Appended to the "no earlier revision" message: how to get a deploy history on this platform.
    history_hint = ''
    #: The message when a deploy is recorded on a platform with ``records_deploys = False``.
    record_refusal = None

    def __init__(self, module):
        self.module = module
        #: What the platform could not tell, in words (returned by service_info as ``notes``).
        self.notes = []

    @staticmethod
    @abc.abstractmethod
    def argument_spec():
        """The options of this backend (documented in ``doc_fragments/<platform>.py``)."""

    # ------------------------------------------------------------ reads
    @abc.abstractmethod
    def service_names(self):
        """The names of every service of the project (Compose) or namespace (Kubernetes), sorted."""

    @abc.abstractmethod
    def service(self, name):
        """One service in the shape above; BackendError naming what exists when ``name`` does not."""

    def services(self, names=None):
        return [self.service(name) for name in (names or self.service_names())]

    @abc.abstractmethod
    def pause_state(self, service):
        """``{'paused': bool, 'partly': bool}`` of a service dict.

        ``paused``: the service is paused for real (nothing of it runs and the platform holds it there);
        ``partly``: something of a pause is left (a paused instance, a recorded replica count), so that
        unpausing has work to do.
        """

    def wait_for_change(self, name, seconds):
        """The waiter's pause between two reads of ``name``: ``seconds`` at most. A platform that can hear of a
        change of the service (Docker's events) returns as soon as one happens; this default just sleeps."""
        time.sleep(seconds)

    def is_paused(self, name):
        return self.pause_state(self.service(name))['paused']

    @abc.abstractmethod
    def history(self, name):
        """The deploy history of ``name``, oldest first."""

    @abc.abstractmethod
    def logs(self, name, since=None, pattern=None, lines=200):
        """Log lines (``instance``, ``line``, redacted) of the last ``since`` seconds matching ``pattern``."""

    @abc.abstractmethod
    def stats(self, name):
        """``{instance id: {cpu_pct, mem_bytes, mem_limit, mem_pct}}``; ``{}`` and a note when not available."""

    # ------------------------------------------------------------ changes
    @abc.abstractmethod
    def scale(self, name, replicas):
        """Run ``replicas`` instances of ``name``."""

    @abc.abstractmethod
    def restart(self, name, instance_ids=None):
        """Restart the instances ``instance_ids`` (ids of ``service()``), or the whole service with None.

        Returns the ids restarted ([] for a rollout of the whole service).
        """

    @abc.abstractmethod
    def pause(self, name):
        """Pause ``name`` (nothing of it runs until unpause); nothing when already paused."""

    @abc.abstractmethod
    def unpause(self, name):
        """Undo :meth:`pause`; nothing when nothing of a pause is left."""

    @abc.abstractmethod
    def rollback(self, name, revision=None):
        """Deploy the previous (or the given) revision of ``name`` again.

        ``{'from': {revision, image}, 'to': {revision, image}}``; BackendError when there is none.
        """

    def check_rollback(self, name):
        """Raise BackendError when a rollback of ``name`` cannot be done safely (called in check mode too)."""

    def record_deploy(self, name, image, image_id=None):
        """Append ``image`` to the deploy history of ``name``; the new entry, or None when already last.

        Only platforms that keep no revisions of their own implement it.
        """
        raise BackendError(self.record_refusal or 'platform=%s keeps no deploy history' % self.platform)


def compile_pattern(pattern):
    """A log pattern as the backends take it: None, a string, or a compiled (or bounded) regex with ``search``."""
    if not pattern:
        return None
    if isinstance(pattern, str):
        return re.compile(pattern)
    return pattern


# ---------------------------------------------------------------- the platforms
def backend_classes():
    """The backends, one per platform. A new platform is one more import here.

    Imported inside the function: the backends import :class:`ServiceBackend` from this file, and Ansible's
    module packager finds these imports all the same (it reads every import statement of the file).
    """
    from ansible_collections.incident.response.plugins.module_utils._compose import ComposeBackend
    from ansible_collections.incident.response.plugins.module_utils._kubernetes import KubernetesBackend
    return (ComposeBackend, KubernetesBackend)


def backend_class(platform):
    for cls in backend_classes():
        if cls.platform == platform:
            return cls
    raise BackendError('platform=%s is not available in this version of the collection' % platform)


def service_argument_spec():
    """``platform`` (the first backend is the default) plus the options of every backend."""
    classes = backend_classes()
    spec = dict(platform=dict(type='str', default=classes[0].platform, choices=[cls.platform for cls in classes]))
    for cls in classes:
        spec.update(cls.argument_spec())
    return spec


def get_backend(module):
    """The backend of ``platform``; BackendError when it cannot connect."""
    return backend_class(module.params.get('platform') or backend_classes()[0].platform)(module)


def backend_or_fail(module):
    try:
        return get_backend(module)
    except BackendError as exc:
        return fail_backend(module, exc)


def fail_backend(module, exc, **result):
    """Turn a BackendError into the module's one failure message."""
    result.update(exc.details)
    module.fail_json(msg=str(exc), **result)


# ---------------------------------------------------------------- shared pieces of the modules
class DifferenceTracker(object):
    """Before/after of the few facts a remediation changes, for ``diff`` and ``changed``.

    Modelled on community.docker's tracker: add(name, before, after); ``has_changes``;
    ``diff`` -> {'before': {...}, 'after': {...}} with only the facts that differ.
    """

    def __init__(self):
        self._items = []

    def add(self, name, before, after):
        self._items.append((name, before, after))

    @property
    def has_changes(self):
        return any(before != after for _name, before, after in self._items)

    @property
    def diff(self):
        before = dict((name, b) for name, b, a in self._items if b != a)
        after = dict((name, a) for name, b, a in self._items if b != a)
        return dict(before=before, after=after)


def instance_summary(service):
    """'2/2 running, 2 ready' for a service dict of the interface."""
    return '%s/%s running, %s ready' % (
        service['running_replicas'], service['desired_replicas'], service['ready_replicas'])


def wait_for_service(module, backend, name, predicate):
    """The shared waiter on one service: (satisfied, elapsed, last service dict)."""
    last = {}

    def check():
        last['service'] = backend.service(name)
        return predicate(last['service'])

    satisfied, elapsed, _value = wait_until(check, module.params['wait_timeout'], module.params['wait_sleep'],
                                            pause=lambda seconds: backend.wait_for_change(name, seconds))
    return satisfied, elapsed, last.get('service')


def all_ready(replicas):
    """Predicate: exactly ``replicas`` instances, all running and ready."""
    def predicate(service):
        return (service['desired_replicas'] == replicas and service['running_replicas'] == replicas
                and service['ready_replicas'] == replicas)
    return predicate


# ---------------------------------------------------------------- the driver of the remediation modules
class Refused(BackendError):
    """A guardrail of a remediation said no (a cap, a precondition, an ambiguous target): nothing changed."""


class Plan(object):
    """What a remediation found and will do.

    ``before``: the service as read; ``actions``: make_action() entries (changed when there is one);
    ``diff``: before/after; ``summary``: the line of check mode or of "nothing to do"; ``ready``: the
    predicate on the service that ends the wait after acting (None: no wait); ``result``: the module's own
    keys, returned with every result (``restarted``, ``history``).
    """

    def __init__(self, before, actions, diff, summary, ready=None, **result):
        self.before = before
        self.actions = actions
        self.diff = diff
        self.summary = summary
        self.ready = ready
        self.result = result

    @property
    def changed(self):
        return bool(self.actions)


class ServiceRemediation(object):
    """The one flow of the service remediation modules. A module subclasses it and fills in the steps.

    ``options``: the module's own options (beside ``platform``, the backends' options and the wait options);
    :meth:`validate`: checks of the arguments alone, before connecting; :meth:`plan`: read and decide;
    :meth:`act`: do it; :meth:`finish`: read what the result needs after acting; :meth:`done_summary` and
    :meth:`not_ready` word the outcome. :meth:`run` is the flow; the module's ``main()`` calls it.
    """

    options = {}

    def __init__(self):
        spec = service_argument_spec()
        spec.update(WAIT_ARGUMENT_SPEC)
        spec.update(self.options)
        # new_module: a value ansible-core's own conversion chokes on ('inf' for an int) is one message.
        self.module = new_module(AnsibleModule, spec, supports_check_mode=True)
        self.params = self.module.params

    # ------------------------------------------------------------ the steps a module fills in
    def validate(self):
        """Refuse bad arguments (raise Refused) before any connection."""

    def plan(self, backend, name):
        """Read the service and decide: a :class:`Plan`. Raise Refused when a guardrail says no."""
        raise NotImplementedError

    def act(self, backend, name, plan):
        """Do what the plan says (not called in check mode or when there is nothing to do)."""
        raise NotImplementedError

    def finish(self, backend, name, plan, after):
        """After acting and waiting: update ``plan.diff``/``plan.result`` from ``after`` where needed."""

    def done_summary(self, plan, after):
        """The summary line after acting (the wait's duration is appended)."""
        raise NotImplementedError

    def not_ready(self, plan):
        """The start of the failure message when the wait timed out ('service api was restarted but is not
        ready'); the timeout and the instances are appended."""
        raise NotImplementedError

    # ------------------------------------------------------------ the flow
    def _result(self, plan, changed, summary, service, waited):
        return remediation_result(changed, plan.actions, summary, diff=plan.diff, check_mode=self.module.check_mode,
                                  want_diff=self.module._diff, service=service, waited=waited, **plan.result)

    def run(self):
        module, params = self.module, self.params
        validate_wait_args(module)
        try:
            self.validate()
        except BackendError as exc:
            fail_backend(module, exc)
        backend = backend_or_fail(module)
        name = params['service']
        try:
            plan = self.plan(backend, name)
        except BackendError as exc:
            fail_backend(module, exc)
        if module.check_mode or not plan.changed:
            module.exit_json(**self._result(plan, plan.changed, plan.summary, plan.before, 0))

        satisfied, waited, after = True, 0, None
        waits = bool(params['wait'] and plan.ready is not None)
        try:
            self.act(backend, name, plan)
            for action in plan.actions:
                action['done'] = True
            if waits:
                satisfied, waited, after = wait_for_service(module, backend, name, plan.ready)
            if after is None:
                after = backend.service(name)
            self.finish(backend, name, plan, after)
        except BackendError as exc:
            changed = any(action['done'] for action in plan.actions)
            result = self._result(plan, changed, plan.summary, plan.before, waited)
            result.pop('summary')
            fail_backend(module, exc, **result)
        summary = self.done_summary(plan, after)
        if not satisfied:
            module.fail_json(msg='%s after %ss: %s' % (
                self.not_ready(plan), params['wait_timeout'], instance_summary(after)),
                **self._result(plan, True, summary, after, waited))
        if waits:
            summary += ' in %ss' % waited
        module.exit_json(**self._result(plan, True, summary, after, waited))
