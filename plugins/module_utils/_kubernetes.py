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

The approach follows kubernetes.core (``k8s_scale``, ``k8s_rollback``, its client and waiter), written
again for this collection's backend interface (see ``_services.py``). The waiter stays in the modules
(``_common.wait_until``); :meth:`KubernetesBackend.service` reports ``rollout_complete`` for it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import json
import math
import os
import re
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import (
    BackendError,
    parse_duration,
    parse_time,
    redact,
)

KUBERNETES_IMPORT_ERROR = None
try:
    import kubernetes
    import kubernetes.client
    import kubernetes.config
    from kubernetes.client.rest import ApiException
    import urllib3
    HAS_KUBERNETES = True
except ImportError:
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()
    HAS_KUBERNETES = False

    class ApiException(Exception):  # pylint: disable=function-redefined
        status = None

REVISION_ANNOTATION = 'deployment.kubernetes.io/revision'
REVISION_HISTORY_ANNOTATION = 'deployment.kubernetes.io/revision-history'
RESTARTED_AT_ANNOTATION = 'kubectl.kubernetes.io/restartedAt'
PAUSED_ANNOTATION = 'incident.response/paused-replicas'
CHANGE_CAUSE_ANNOTATION = 'kubernetes.io/change-cause'
TEMPLATE_HASH_LABEL = 'pod-template-hash'
SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
# Seconds one API request may take before it fails with a message naming the server.
REQUEST_TIMEOUT = 30
STATS_NOTE = ('CPU and memory use are not read on Kubernetes: the backend uses no metrics API '
              '(use kubectl top with a metrics server)')

MERGE_PATCH = 'application/merge-patch+json'
STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json'
JSON_PATCH = 'application/json-patch+json'


def kubernetes_argument_spec():
    """The options of the Kubernetes backend (documented in doc_fragments/kubernetes.py)."""
    return dict(
        kubeconfig=dict(type='path', fallback=(env_fallback, ['K8S_AUTH_KUBECONFIG', 'KUBECONFIG'])),
        context=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_CONTEXT'])),
        host=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_HOST'])),
        api_key=dict(type='str', no_log=True, fallback=(env_fallback, ['K8S_AUTH_API_KEY'])),
        validate_certs=dict(type='bool', aliases=['verify_ssl']),
        ca_cert=dict(type='path', aliases=['ssl_ca_cert']),
        # Not given: the namespace of the kubeconfig context (or of the in-cluster service account), else default.
        namespace=dict(type='str'),
    )


def ensure_kubernetes(module):
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib('kubernetes (the Kubernetes Python client)')
                         + ' It is needed on the host that runs the module (the target), not only on the controller.',
                         exception=KUBERNETES_IMPORT_ERROR)


# ---------------------------------------------------------------- pure helpers (unit tested)
def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(moment=None):
    """Kubernetes timestamps: 2026-11-25T09:40:00Z (microseconds kept, so two restarts in one second differ)."""
    moment = moment or now_utc()
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def selector_string(selector):
    """A LabelSelector (matchLabels/matchExpressions) as the ``labelSelector`` query kubectl sends."""
    selector = selector or {}
    parts = ['%s=%s' % (key, value) for key, value in sorted((selector.get('matchLabels') or {}).items())]
    for expr in selector.get('matchExpressions') or []:
        key, operator, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        if operator == 'In':
            parts.append('%s in (%s)' % (key, ','.join(values)))
        elif operator == 'NotIn':
            parts.append('%s notin (%s)' % (key, ','.join(values)))
        elif operator == 'Exists':
            parts.append(key)
        elif operator == 'DoesNotExist':
            parts.append('!%s' % key)
    return ','.join(parts)


def revision_of(obj):
    """The ``deployment.kubernetes.io/revision`` annotation as an int (None when absent or garbled)."""
    value = ((obj.get('metadata') or {}).get('annotations') or {}).get(REVISION_ANNOTATION)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def template_without_hash(template):
    """A ReplicaSet's pod template as it was on the deployment: without the ``pod-template-hash`` label."""
    template = copy.deepcopy(template or {})
    labels = (template.get('metadata') or {}).get('labels')
    if labels and TEMPLATE_HASH_LABEL in labels:
        del labels[TEMPLATE_HASH_LABEL]
    return template


def same_template(deployment_template, replicaset_template):
    """kubectl's EqualIgnoreHash: does this ReplicaSet run the deployment's current template?"""
    return template_without_hash(deployment_template) == template_without_hash(replicaset_template)


def owned_by(obj, owner_uid):
    return any(ref.get('uid') == owner_uid for ref in (obj.get('metadata') or {}).get('ownerReferences') or [])


def first_image(template):
    containers = ((template or {}).get('spec') or {}).get('containers') or []
    return containers[0].get('image') if containers else None


def _condition(pod, kind):
    for cond in (pod.get('status') or {}).get('conditions') or []:
        if cond.get('type') == kind:
            return cond.get('status') == 'True'
    return None


def pod_view(pod, revisions=None, now=None):
    """One pod -> an entry of ``instances`` (the interface's shape, plus ``revision`` and ``node``)."""
    meta = pod.get('metadata') or {}
    status = pod.get('status') or {}
    spec = pod.get('spec') or {}
    containers = status.get('containerStatuses') or []
    phase = status.get('phase') or 'Unknown'
    waiting_reasons = [((c.get('state') or {}).get('waiting') or {}).get('reason') for c in containers]
    if meta.get('deletionTimestamp'):
        state = 'terminating'
    elif phase == 'Pending':
        state = 'pending'
    elif phase == 'Running':
        state = 'restarting' if 'CrashLoopBackOff' in waiting_reasons else 'running'
    elif phase in ('Succeeded', 'Failed'):
        state = 'exited'
    else:
        state = 'unknown'
    ready = _condition(pod, 'Ready')
    if state in ('terminating', 'exited', 'unknown'):
        health = 'none'
    elif state == 'pending':
        health = 'starting'
    else:
        health = 'healthy' if ready else 'unhealthy'
    exit_code = None
    oom = False
    started = None
    for cont in containers:
        current = cont.get('state') or {}
        last = cont.get('lastState') or {}
        for term in (current.get('terminated'), last.get('terminated')):
            if term and term.get('reason') == 'OOMKilled':
                oom = True
        if exit_code is None and state != 'running':
            term = current.get('terminated') or last.get('terminated')
            if term and term.get('exitCode') is not None:
                exit_code = term.get('exitCode')
        running = current.get('running')
        if started is None and running and running.get('startedAt'):
            started = running['startedAt']
    started_dt = parse_time(started)
    now = now or now_utc()
    uptime = max(int((now - started_dt).total_seconds()), 0) if started_dt and state == 'running' else None
    owner = [ref.get('name') for ref in meta.get('ownerReferences') or [] if ref.get('kind') == 'ReplicaSet']
    return dict(
        id=meta.get('name'),
        name=meta.get('name'),
        state=state,
        health=health,
        ready=bool(ready) and state == 'running',
        restart_count=sum(int(c.get('restartCount') or 0) for c in containers),
        exit_code=exit_code,
        oom_killed=oom,
        started_at=started if started_dt else None,
        uptime_seconds=uptime,
        image=first_image(dict(spec=spec)),
        node=spec.get('nodeName'),
        replicaset=owner[0] if owner else None,
        revision=(revisions or {}).get(owner[0]) if owner else None,
    )


def deployment_view(deployment, replicasets, pods, now=None):
    """A deployment, its ReplicaSets and pods -> the interface's service dict (plus Kubernetes details)."""
    meta = deployment.get('metadata') or {}
    spec = deployment.get('spec') or {}
    status = deployment.get('status') or {}
    template = spec.get('template') or {}
    revisions = dict(((rs.get('metadata') or {}).get('name'), revision_of(rs)) for rs in replicasets)
    current_rs = [rs['metadata']['name'] for rs in replicasets
                  if same_template(template, (rs.get('spec') or {}).get('template'))]
    instances = sorted((pod_view(pod, revisions, now) for pod in pods),
                       key=lambda i: (i['state'] == 'terminating', i['name'] or ''))
    active = [i for i in instances if i['state'] != 'terminating']
    updated = [i for i in active if i['replicaset'] in current_rs]
    ready = [i for i in updated if i['ready']]
    desired = spec.get('replicas')
    desired = 1 if desired is None else desired
    observed = (status.get('observedGeneration') or 0) >= (meta.get('generation') or 0)
    annotations = meta.get('annotations') or {}
    return dict(
        name=meta.get('name'),
        platform='kubernetes',
        namespace=meta.get('namespace'),
        desired_replicas=desired,
        running_replicas=len([i for i in active if i['state'] == 'running']),
        ready_replicas=len(ready),
        updated_replicas=len(updated),
        available_replicas=status.get('availableReplicas') or 0,
        image=first_image(template),
        revision=revision_of(deployment),
        paused=PAUSED_ANNOTATION in annotations,
        paused_replicas=_int_or_none(annotations.get(PAUSED_ANNOTATION)),
        rollout_complete=bool(observed and len(updated) == desired and len(ready) == desired
                              and len(active) == desired),
        instances=instances,
    )


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def pick_rollback_target(deployment_name, namespace, current_revision, replicasets, revision=None):
    """The ReplicaSet to roll back to: the previous revision, or the one asked for. BackendError otherwise."""
    known = sorted((revision_of(rs), rs) for rs in replicasets if revision_of(rs) is not None)
    numbers = [number for number, _rs in known]
    if revision is None:
        older = [(number, rs) for number, rs in known if current_revision is None or number < current_revision]
        if not older:
            raise BackendError('deployment %s has no previous revision in namespace %s (revisions kept: %s)' % (
                deployment_name, namespace, ', '.join(str(n) for n in numbers) or 'none'))
        return older[-1][1]
    for number, rs in known:
        if number == revision:
            return rs
    # A rollback gives the old ReplicaSet a new number and keeps the old ones in revision-history:
    # asking again for revision N finds the ReplicaSet that now runs it (and nothing to do).
    for number, rs in known:
        history = ((rs.get('metadata') or {}).get('annotations') or {}).get(REVISION_HISTORY_ANNOTATION) or ''
        if str(revision) in [h.strip() for h in history.split(',')]:
            return rs
    raise BackendError('deployment %s has no revision %s in namespace %s (revisions kept: %s)' % (
        deployment_name, revision, namespace, ', '.join(str(n) for n in numbers) or 'none'))


def status_message(exc):
    """The ``message`` of a Kubernetes Status body, else the reason of the HTTP error."""
    body = getattr(exc, 'body', None)
    if body:
        try:
            data = json.loads(to_native(body))
            if isinstance(data, dict) and data.get('message'):
                return to_native(data['message'])
        except ValueError:
            return ' '.join(to_native(body).split())[:300]
    return to_native(getattr(exc, 'reason', None) or exc)


def short_error(exc):
    """One line for a connection error, without urllib3's object reprs."""
    text = to_native(exc)
    match = re.search(r'(Connection refused|Name or service not known|No route to host|timed out|'
                      r'certificate verify failed[^)\'"]*|Temporary failure in name resolution|'
                      r'Network is unreachable|Connection reset by peer|Remote end closed connection)', text)
    if match:
        return match.group(1)
    return redact(' '.join(text.split()))[:300]


# ---------------------------------------------------------------- client
def build_configuration(params):
    """A client Configuration from the module options (kubeconfig, host/api_key, or in-cluster)."""
    cfg = kubernetes.client.Configuration()
    kubeconfig, context = params.get('kubeconfig'), params.get('context')
    host, api_key = params.get('host'), params.get('api_key')
    source = None
    try:
        if host and api_key and not kubeconfig and not context:
            source = 'host and api_key'
        elif kubeconfig or context:
            if kubeconfig and not any(os.path.exists(p) for p in kubeconfig.split(os.pathsep)):
                raise BackendError('kubeconfig %s does not exist' % kubeconfig)
            source = 'kubeconfig %s' % (kubeconfig or '~/.kube/config')
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                               persist_config=False)
        elif host:
            source = 'host'
        elif os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, 'token')) and os.environ.get('KUBERNETES_SERVICE_HOST'):
            source = 'in-cluster service account'
            kubernetes.config.load_incluster_config(client_configuration=cfg)
        elif os.path.exists(os.path.expanduser('~/.kube/config')):
            source = 'kubeconfig ~/.kube/config'
            kubernetes.config.load_kube_config(client_configuration=cfg, persist_config=False)
        else:
            raise BackendError('no Kubernetes API server configured: give kubeconfig (or set K8S_AUTH_KUBECONFIG or '
                               'KUBECONFIG), host and api_key, or run in a pod with a service account')
        namespace = params.get('namespace') or default_namespace(source, kubeconfig, context)
    except kubernetes.config.ConfigException as exc:
        raise BackendError('cannot use %s%s: %s' % (source, ' (context %s)' % context if context else '',
                                                    redact(to_native(exc))))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BackendError('cannot read %s: %s' % (source, redact(to_native(exc))))
    if host:
        cfg.host = host.rstrip('/')
    if api_key:
        cfg.api_key = {'authorization': 'Bearer %s' % api_key}
    if params.get('validate_certs') is not None:
        cfg.verify_ssl = params['validate_certs']
    if params.get('ca_cert'):
        cfg.ssl_ca_cert = params['ca_cert']
    # Connection errors are reported at once rather than retried three times.
    cfg.retries = False
    return cfg, source, namespace


def default_namespace(source, kubeconfig, context):
    """kubectl's choice when no namespace is given: the context's, the service account's, else ``default``."""
    if source and source.startswith('kubeconfig'):
        contexts, current = kubernetes.config.list_kube_config_contexts(kubeconfig)
        chosen = [c for c in contexts if c.get('name') == context] if context else [current]
        found = ((chosen[0] or {}).get('context') or {}).get('namespace') if chosen else None
        if found:
            return found
    elif source == 'in-cluster service account':
        path = os.path.join(SERVICE_ACCOUNT_DIR, 'namespace')
        if os.path.exists(path):
            with open(path) as handle:
                found = handle.read().strip()
            if found:
                return found
    return 'default'


class KubeClient(object):
    """The official client, raw JSON in and out, every error turned into one BackendError."""

    def __init__(self, params):
        self.cfg, self.source, self.namespace = build_configuration(params)
        self.api_client = kubernetes.client.ApiClient(self.cfg)
        self.apps = kubernetes.client.AppsV1Api(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.version = kubernetes.client.VersionApi(self.api_client)

    @property
    def server(self):
        return self.cfg.host

    def call(self, what, func, *args, **kwargs):
        """Run one API call; JSON is decoded, text returned as is. ``not_found`` is the 404 message."""
        not_found = kwargs.pop('not_found', None)
        raw = kwargs.pop('raw', False)
        kwargs['_preload_content'] = False
        kwargs.setdefault('_request_timeout', REQUEST_TIMEOUT)
        try:
            response = func(*args, **kwargs)
            data = response.data
        except ApiException as exc:
            raise self.api_error(what, exc, not_found)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendError('cannot reach the Kubernetes API server at %s (from %s) while %s: %s' % (
                self.server, self.source, what, short_error(exc)))
        text = to_native(data, errors='surrogate_or_replace')
        if raw:
            return text
        try:
            return json.loads(text) if text else {}
        except ValueError:
            raise BackendError('the Kubernetes API server at %s answered %s with something that is not JSON: %s'
                               % (self.server, what, ' '.join(text.split())[:200]))

    def api_error(self, what, exc, not_found=None):
        status = getattr(exc, 'status', None)
        message = redact(status_message(exc))
        if status == 404 and not_found:
            return BackendError(not_found, status=404)
        if status == 401:
            return BackendError('the Kubernetes API server at %s rejected the credentials of %s (401 Unauthorized) '
                                'while %s: check api_key or the user of the kubeconfig context'
                                % (self.server, self.source, what), status=401)
        if status == 403:
            return BackendError('forbidden (403) while %s on the Kubernetes API server at %s: %s'
                                % (what, self.server, message), status=403)
        if status is None or status == 0:
            return BackendError('cannot reach the Kubernetes API server at %s while %s: %s'
                                % (self.server, what, short_error(exc)))
        return BackendError('%s failed on the Kubernetes API server at %s (HTTP %s): %s'
                            % (what, self.server, status, message), status=status)


class KubernetesBackend(object):
    """The backend interface (see _services.py) on apps/v1 Deployments, their ReplicaSets and pods."""

    platform = 'kubernetes'

    def __init__(self, module):
        ensure_kubernetes(module)
        self.module = module
        self.notes = []
        self.client = KubeClient(module.params)
        self.namespace = self.client.namespace
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

    def deployment(self, name):
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

    def services(self, names=None):
        return [self.service(name) for name in (names or self.deployment_names())]

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
        deployment = self.deployment(name)
        annotations = deployment['metadata'].get('annotations') or {}
        if PAUSED_ANNOTATION in annotations:
            return
        replicas = (deployment.get('spec') or {}).get('replicas')
        body = {'metadata': {'annotations': {PAUSED_ANNOTATION: str(1 if replicas is None else replicas)}},
                'spec': {'replicas': 0}}
        self._patch(name, body, STRATEGIC_MERGE_PATCH, 'pausing (scaling to 0)')

    def unpause(self, name):
        deployment = self.deployment(name)
        recorded = (deployment['metadata'].get('annotations') or {}).get(PAUSED_ANNOTATION)
        if recorded is None:
            return
        replicas = _int_or_none(recorded)
        if replicas is None or replicas < 0:
            raise BackendError('deployment %s in namespace %s: annotation %s holds %r, not a replica count; set '
                               'the replicas by hand and remove the annotation' % (
                                   name, self.namespace, PAUSED_ANNOTATION, recorded))
        body = {'metadata': {'annotations': {PAUSED_ANNOTATION: None}}, 'spec': {'replicas': replicas}}
        self._patch(name, body, STRATEGIC_MERGE_PATCH, 'unpausing (scaling back to %d)' % replicas)

    def is_paused(self, name):
        deployment = self.deployment(name)
        return PAUSED_ANNOTATION in (deployment['metadata'].get('annotations') or {})

    def history(self, name):
        deployment = self.deployment(name)
        current = revision_of(deployment)
        entries = []
        for rs in self.replicasets(deployment):
            number = revision_of(rs)
            if number is None:
                continue
            meta = rs['metadata']
            entries.append(dict(
                revision=number,
                image=first_image((rs.get('spec') or {}).get('template')),
                deployed_at=meta.get('creationTimestamp'),
                replicaset=meta.get('name'),
                replicas=(rs.get('spec') or {}).get('replicas') or 0,
                current=number == current,
                change_cause=(meta.get('annotations') or {}).get(CHANGE_CAUSE_ANNOTATION),
                # The numbers this ReplicaSet had before a rollback renumbered it.
                previous_revisions=[int(h) for h in ((meta.get('annotations') or {}).get(
                    REVISION_HISTORY_ANNOTATION) or '').split(',') if h.strip().isdigit()],
            ))
        return sorted(entries, key=lambda e: e['revision'])

    def rollback_target(self, name, revision=None):
        """What :meth:`rollback` would do, without doing it (check mode).

        ``{'from', 'to', 'template', 'noop'}``; ``noop`` when the deployment already runs that template
        (asked again for a revision it was rolled back to). BackendError when there is nothing to roll back to.
        """
        deployment = self.deployment(name)
        spec = deployment.get('spec') or {}
        if spec.get('paused'):
            raise BackendError('deployment %s in namespace %s is paused (kubectl rollout pause): resume it before '
                               'rolling back' % (name, self.namespace))
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
        regex = re.compile(pattern) if pattern else None
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
