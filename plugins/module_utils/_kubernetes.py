# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Kubernetes backend of the service modules (private to the collection).

A "service" is an apps/v1 Deployment of one namespace. Everything goes through the official
``kubernetes`` Python client, on the same objects and subresources kubectl uses:

- scale: a merge patch of the deployment's ``scale`` subresource (``kubectl scale``);
- restart: the ``kubectl.kubernetes.io/restartedAt`` annotation on the pod template
  (``kubectl rollout restart``); chosen pods are deleted so their ReplicaSet replaces them;
- pause: the replica count is recorded in the ``incident.response/paused-replicas``
  annotation and the deployment scaled to 0 in the same patch; unpause restores it;
- history and rollback: the deployment's ReplicaSets carry ``deployment.kubernetes.io/revision``;
  apps/v1 has no rollback API, so a rollback replaces the deployment's pod template with the
  template of the chosen ReplicaSet (less its ``pod-template-hash`` label), which is what
  ``kubectl rollout undo`` does.

The approach follows kubernetes.core (``k8s_scale``, ``k8s_rollback``; its split into client, service and
waiter), written again for this collection's backend interface (see ``_services.py``), in three files:
``_k8s_views.py`` (pure views of the objects), ``_k8s_client.py`` (configuration and the API client) and this
one, the backend. The waiter is the shared one (``_services.wait_for_service``);
:meth:`KubernetesBackend.service` reports ``rollout_complete`` for it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from ansible_collections.incident.response.plugins.module_utils._common import BackendError, parse_duration, redact
from ansible_collections.incident.response.plugins.module_utils._k8s_client import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    KubeClient,
    ensure_kubernetes,
    kubernetes_argument_spec,
)
from ansible_collections.incident.response.plugins.module_utils._k8s_views import (
    PAUSED_ANNOTATION,
    RESTARTED_AT_ANNOTATION,
    deployment_view,
    first_image,
    history_entries,
    int_or_none,
    owned_by,
    pick_rollback_target,
    revision_of,
    rfc3339,
    same_template,
    selector_string,
    template_without_hash,
)
from ansible_collections.incident.response.plugins.module_utils._services import ServiceBackend, compile_pattern

# Object names (RFC 1123 subdomains) and namespaces (RFC 1123 labels) as the API server accepts them: anything else
# would address another path (an empty name is the list of deployments).
NAME = re.compile(r'^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')
NAMESPACE = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')
STATS_NOTE = ('CPU and memory use are not read on Kubernetes: the backend uses no metrics API '
              '(use kubectl top with a metrics server)')


class KubernetesBackend(ServiceBackend):
    """The backend interface (see _services.py) on apps/v1 Deployments, their ReplicaSets and pods."""

    platform = 'kubernetes'
    argument_spec = staticmethod(kubernetes_argument_spec)
    # Restarting a whole Deployment is kubectl rollout restart: one rollout, not a restart per pod.
    rollout_restart = True
    records_deploys = False
    record_refusal = 'state=recorded is for platform=compose; Kubernetes keeps its own revisions'

    def __init__(self, module):
        super(KubernetesBackend, self).__init__(module)
        ensure_kubernetes(module)
        self.client = KubeClient(module.params)
        self.namespace = self.client.namespace
        if not isinstance(self.namespace, str) or not NAMESPACE.match(self.namespace):
            raise BackendError('namespace %r is not a Kubernetes namespace name (lowercase letters, digits and "-", '
                               'at most 63)' % (self.namespace,))
        info = self.client.call('reading the server version', self.client.version.get_code)
        self.server_version = info.get('gitVersion')

    # ---------------------------------------------------------------- reads
    def _where(self):
        return 'namespace %s' % self.namespace

    def deployment_names(self):
        data = self.client.call('listing the deployments of namespace %s' % self.namespace,
                                self.client.apps.list_namespaced_deployment, self.namespace)
        return sorted(item['metadata']['name'] for item in data.get('items') or [])

    def _not_found(self, name):
        msg = 'deployment %s not found in namespace %s' % (name, self.namespace)
        try:
            names = self.deployment_names()
        except BackendError:
            return msg
        return '%s (deployments there: %s)' % (msg, ', '.join(names) or 'none')

    def service_names(self):
        return self.deployment_names()

    def deployment(self, name):
        if not isinstance(name, str) or not NAME.match(name):
            raise BackendError('%r is not a Kubernetes Deployment name (lowercase letters, digits, "-" and ".", at '
                               'most 253): no deployment of namespace %s has it' % (name, self.namespace))
        try:
            return self.client.call('reading deployment %s in namespace %s' % (name, self.namespace),
                                    self.client.apps.read_namespaced_deployment, name, self.namespace,
                                    not_found='deployment %s not found in namespace %s' % (name, self.namespace))
        except BackendError as exc:
            if exc.details.get('status') == 404:
                raise BackendError(self._not_found(name), status=404)
            raise

    def replicasets(self, deployment):
        selector = selector_string((deployment.get('spec') or {}).get('selector'))
        name = deployment['metadata']['name']
        data = self.client.call('listing the replicasets of deployment %s in namespace %s' % (name, self.namespace),
                                self.client.apps.list_namespaced_replica_set, self.namespace,
                                label_selector=selector)
        uid = deployment['metadata'].get('uid')
        return [rs for rs in data.get('items') or [] if owned_by(rs, uid)]

    def pods(self, deployment, replicasets):
        selector = selector_string((deployment.get('spec') or {}).get('selector'))
        name = deployment['metadata']['name']
        data = self.client.call('listing the pods of deployment %s in namespace %s' % (name, self.namespace),
                                self.client.core.list_namespaced_pod, self.namespace, label_selector=selector)
        uids = set(rs['metadata'].get('uid') for rs in replicasets)
        return [pod for pod in data.get('items') or []
                if any(ref.get('uid') in uids for ref in pod['metadata'].get('ownerReferences') or [])]

    def _objects(self, name):
        deployment = self.deployment(name)
        replicasets = self.replicasets(deployment)
        return deployment, replicasets, self.pods(deployment, replicasets)

    # ---------------------------------------------------------------- interface
    def service(self, name):
        deployment, replicasets, pods = self._objects(name)
        return deployment_view(deployment, replicasets, pods)

    def _patch(self, name, body, content_type, what):
        return self.client.call('%s (deployment %s in namespace %s)' % (what, name, self.namespace),
                                self.client.apps.patch_namespaced_deployment, name, self.namespace, body,
                                _content_type=content_type,
                                not_found='deployment %s not found in namespace %s' % (name, self.namespace))

    def scale(self, name, replicas):
        if replicas is None or int(replicas) < 0:
            raise BackendError('replicas must not be negative, got %s' % replicas)
        self.deployment(name)
        self.client.call('scaling deployment %s in namespace %s to %d' % (name, self.namespace, replicas),
                         self.client.apps.patch_namespaced_deployment_scale, name, self.namespace,
                         {'spec': {'replicas': int(replicas)}}, _content_type=MERGE_PATCH,
                         not_found='deployment %s not found in namespace %s' % (name, self.namespace))

    def restart(self, name, instance_ids=None):
        """Roll the deployment (restartedAt annotation) -> []; or delete the chosen pods -> their names."""
        deployment, replicasets, pods = self._objects(name)
        if instance_ids is None:
            body = {'spec': {'template': {'metadata': {'annotations': {RESTARTED_AT_ANNOTATION: rfc3339()}}}}}
            self._patch(name, body, STRATEGIC_MERGE_PATCH, 'restarting')
            return []
        names = dict((pod['metadata']['name'], pod) for pod in pods)
        unknown = [i for i in instance_ids if i not in names]
        if unknown:
            raise BackendError('pods %s do not belong to deployment %s in namespace %s (its pods: %s)' % (
                ', '.join(unknown), name, self.namespace, ', '.join(sorted(names)) or 'none'))
        deleted = []
        for pod_name in instance_ids:
            self.client.call('deleting pod %s of deployment %s in namespace %s' % (pod_name, name, self.namespace),
                             self.client.core.delete_namespaced_pod, pod_name, self.namespace,
                             not_found='pod %s not found in namespace %s' % (pod_name, self.namespace))
            deleted.append(pod_name)
        return deleted

    def pause(self, name):
        """Record the replicas in the annotation and scale to 0. Paused means both: an annotation left on a
        deployment whose replicas came back (an autoscaler, kubectl scale) is no pause, and the count that
        runs now is recorded in its place."""
        deployment = self.deployment(name)
        annotations = deployment['metadata'].get('annotations') or {}
        replicas = (deployment.get('spec') or {}).get('replicas')
        if PAUSED_ANNOTATION in annotations and replicas == 0:
            return
        body = {'metadata': {'annotations': {PAUSED_ANNOTATION: str(1 if replicas is None else replicas)}},
                'spec': {'replicas': 0}}
        self._patch(name, body, STRATEGIC_MERGE_PATCH, 'pausing (scaling to 0)')

    def unpause(self, name):
        deployment = self.deployment(name)
        recorded = (deployment['metadata'].get('annotations') or {}).get(PAUSED_ANNOTATION)
        if recorded is None:
            return
        replicas = int_or_none(recorded)
        if replicas is None or replicas < 0:
            raise BackendError('deployment %s in namespace %s: annotation %s holds %r, not a replica count; set '
                               'the replicas by hand and remove the annotation' % (
                                   name, self.namespace, PAUSED_ANNOTATION, recorded))
        body = {'metadata': {'annotations': {PAUSED_ANNOTATION: None}}, 'spec': {'replicas': replicas}}
        self._patch(name, body, STRATEGIC_MERGE_PATCH, 'unpausing (scaling back to %d)' % replicas)

    def pause_state(self, service):
        # The annotation alone is not a pause: the replica count must be 0 as well (issue 9).
        marked = bool(service.get('paused'))
        return dict(paused=marked and service['desired_replicas'] == 0, partly=marked)

    def history(self, name):
        deployment = self.deployment(name)
        return history_entries(deployment, self.replicasets(deployment))

    def _refuse_paused_rollout(self, name, deployment):
        if (deployment.get('spec') or {}).get('paused'):
            raise BackendError('deployment %s in namespace %s is paused (kubectl rollout pause): resume it before '
                               'rolling back' % (name, self.namespace))

    def check_rollback(self, name):
        self._refuse_paused_rollout(name, self.deployment(name))

    def rollback_target(self, name, revision=None):
        """What :meth:`rollback` would do, without doing it (check mode).

        ``{'from', 'to', 'template', 'noop'}``; ``noop`` when the deployment already runs that template
        (asked again for a revision it was rolled back to). BackendError when there is nothing to roll back to.
        """
        deployment = self.deployment(name)
        spec = deployment.get('spec') or {}
        self._refuse_paused_rollout(name, deployment)
        current = revision_of(deployment)
        replicasets = self.replicasets(deployment)
        target = pick_rollback_target(name, self.namespace, current, replicasets, revision)
        template = template_without_hash((target.get('spec') or {}).get('template'))
        return {
            'from': dict(revision=current, image=first_image(spec.get('template'))),
            'to': dict(revision=revision_of(target), image=first_image(template),
                       replicaset=target['metadata']['name']),
            'template': template,
            'noop': same_template(spec.get('template'), template),
        }

    def rollback(self, name, revision=None):
        """Put the chosen ReplicaSet's pod template back on the deployment (kubectl rollout undo)."""
        plan = self.rollback_target(name, revision)
        if not plan['noop']:
            body = [{'op': 'replace', 'path': '/spec/template', 'value': plan['template']}]
            self._patch(name, body, JSON_PATCH, 'rolling back to revision %s' % plan['to']['revision'])
        return {'from': plan['from'], 'to': plan['to'], 'changed': not plan['noop']}

    def logs(self, name, since=None, pattern=None, lines=200):
        regex = compile_pattern(pattern)
        since_seconds = parse_duration(since, 'since') if since is not None else None
        deployment, replicasets, pods = self._objects(name)
        found = []
        if lines is not None and int(lines) <= 0:
            return found
        for pod in sorted(pods, key=lambda p: p['metadata']['name']):
            pod_name = pod['metadata']['name']
            if (pod.get('status') or {}).get('phase') == 'Pending':
                continue
            containers = [c.get('name') for c in (pod.get('spec') or {}).get('containers') or []]
            restarts = dict((c.get('name'), c.get('restartCount') or 0)
                            for c in (pod.get('status') or {}).get('containerStatuses') or [])
            for container in containers:
                label = pod_name if len(containers) == 1 else '%s/%s' % (pod_name, container)
                passes = [(label, False)]
                if restarts.get(container):
                    passes.insert(0, ('%s (previous)' % label, True))
                for instance, previous in passes:
                    kwargs = dict(container=container, tail_lines=int(lines) if lines is not None else None)
                    if since_seconds is not None:
                        kwargs['since_seconds'] = max(int(math.ceil(since_seconds)), 1)
                    if previous:
                        kwargs['previous'] = True
                    try:
                        text = self.client.call('reading the logs of pod %s in namespace %s' % (pod_name, self.namespace),
                                                self.client.core.read_namespaced_pod_log, pod_name, self.namespace,
                                                raw=True, **kwargs)
                    except BackendError as exc:
                        # A container that is starting or gone has no log to read: note it, go on.
                        if exc.details.get('status') in (400, 404):
                            self.notes.append(str(exc))
                            continue
                        raise
                    for line in text.splitlines():
                        if regex is None or regex.search(line):
                            found.append(dict(instance=instance, line=redact(line)))
        return found

    def stats(self, name):
        self.deployment(name)
        if STATS_NOTE not in self.notes:
            self.notes.append(STATS_NOTE)
        return {}
