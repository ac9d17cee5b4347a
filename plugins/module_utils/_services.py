# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Dispatch of the service modules to their backend (Compose or Kubernetes), private.

``service_argument_spec()`` is ``platform`` plus the options of both backends;
``get_backend(module)`` returns the backend object of ``platform``. Every backend
has the same methods and return shapes (``service``, ``services``, ``scale``,
``restart``, ``pause``, ``unpause``, ``is_paused``, ``history``, ``rollback``,
``logs``, ``stats``) and raises ``BackendError`` with one clear message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.incident.response.plugins.module_utils._common import BackendError, wait_until
from ansible_collections.incident.response.plugins.module_utils._compose import (
    ComposeBackend,
    compose_argument_spec,
)

try:
    from ansible_collections.incident.response.plugins.module_utils._kubernetes import (
        KubernetesBackend,
        kubernetes_argument_spec,
    )
    HAS_KUBERNETES_BACKEND = True
except ImportError:
    HAS_KUBERNETES_BACKEND = False

    def kubernetes_argument_spec():
        return {}


PLATFORMS = ('compose', 'kubernetes')


def service_argument_spec():
    spec = dict(platform=dict(type='str', default='compose', choices=list(PLATFORMS)))
    spec.update(compose_argument_spec())
    spec.update(kubernetes_argument_spec())
    return spec


def get_backend(module):
    """The backend of ``platform``; BackendError when it cannot connect."""
    platform = module.params.get('platform') or 'compose'
    if platform == 'kubernetes':
        if not HAS_KUBERNETES_BACKEND:
            raise BackendError('platform=kubernetes is not available in this version of the collection')
        return KubernetesBackend(module)
    return ComposeBackend(module)


def backend_or_fail(module):
    try:
        return get_backend(module)
    except BackendError as exc:
        module.fail_json(msg=str(exc), **exc.details)


def fail_backend(module, exc, **result):
    """Turn a BackendError into the module's one failure message."""
    result.update(exc.details)
    module.fail_json(msg=str(exc), **result)


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

    satisfied, elapsed, _value = wait_until(check, module.params['wait_timeout'], module.params['wait_sleep'])
    return satisfied, elapsed, last.get('service')


def all_ready(replicas):
    """Predicate: exactly ``replicas`` instances, all running and ready."""
    def predicate(service):
        return (service['desired_replicas'] == replicas and service['running_replicas'] == replicas
                and service['ready_replicas'] == replicas)
    return predicate
