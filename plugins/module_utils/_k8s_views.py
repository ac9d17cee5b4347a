# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure views of Kubernetes objects for the Kubernetes backend (private to the collection).

Functions of plain dicts (the JSON the API server returns) to the service modules' shapes: a pod to an entry of
``instances``, a Deployment with its ReplicaSets and pods to a service, the ReplicaSet a rollback goes to. No
client, no I/O, no ``kubernetes`` import: they are unit tested on hand-written objects. The client is
``_k8s_client.py``, the backend that uses both ``_kubernetes.py``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime

from ansible_collections.incident.response.plugins.module_utils._common import BackendError, parse_time

REVISION_ANNOTATION = 'deployment.kubernetes.io/revision'
REVISION_HISTORY_ANNOTATION = 'deployment.kubernetes.io/revision-history'
RESTARTED_AT_ANNOTATION = 'kubectl.kubernetes.io/restartedAt'
PAUSED_ANNOTATION = 'incident.response/paused-replicas'
CHANGE_CAUSE_ANNOTATION = 'kubernetes.io/change-cause'
TEMPLATE_HASH_LABEL = 'pod-template-hash'


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
        paused_replicas=int_or_none(annotations.get(PAUSED_ANNOTATION)),
        rollout_complete=bool(observed and len(updated) == desired and len(ready) == desired
                              and len(active) == desired),
        instances=instances,
    )


def int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def history_entries(deployment, replicasets):
    """The revisions of a deployment from its ReplicaSets, oldest first (``kubectl rollout history``)."""
    current = revision_of(deployment)
    entries = []
    for rs in replicasets:
        number = revision_of(rs)
        if number is None:
            continue
        meta = rs.get('metadata') or {}
        annotations = meta.get('annotations') or {}
        entries.append(dict(
            revision=number,
            image=first_image((rs.get('spec') or {}).get('template')),
            deployed_at=meta.get('creationTimestamp'),
            replicaset=meta.get('name'),
            replicas=(rs.get('spec') or {}).get('replicas') or 0,
            current=number == current,
            change_cause=annotations.get(CHANGE_CAUSE_ANNOTATION),
            # The numbers this ReplicaSet had before a rollback renumbered it.
            previous_revisions=[int(h) for h in (annotations.get(REVISION_HISTORY_ANNOTATION) or '').split(',')
                                if h.strip().isdigit()],
        ))
    return sorted(entries, key=lambda e: e['revision'])


def _only(deployment_name, namespace, number, replicasets):
    """The one ReplicaSet of revision ``number``; BackendError when several carry it (a garbled history)."""
    if len(replicasets) > 1:
        raise BackendError('deployment %s has %d ReplicaSets with revision %s in namespace %s (%s): the revision '
                           'history is ambiguous, roll back by hand (kubectl rollout undo --to-revision)' % (
                               deployment_name, len(replicasets), number, namespace,
                               ', '.join(sorted((rs.get('metadata') or {}).get('name') or '?' for rs in replicasets))))
    return replicasets[0]


def pick_rollback_target(deployment_name, namespace, current_revision, replicasets, revision=None):
    """The ReplicaSet to roll back to: the previous revision, or the one asked for. BackendError otherwise.

    Two ReplicaSets with the revision chosen (a history edited by hand) are refused, not guessed between.
    """
    known = sorted(((revision_of(rs), rs) for rs in replicasets if revision_of(rs) is not None),
                   key=lambda pair: pair[0])
    numbers = sorted(set(number for number, _rs in known))

    def of(number):
        return _only(deployment_name, namespace, number, [rs for n, rs in known if n == number])

    if revision is None:
        older = [number for number in numbers if current_revision is None or number < current_revision]
        if not older:
            raise BackendError('deployment %s has no previous revision in namespace %s (revisions kept: %s)' % (
                deployment_name, namespace, ', '.join(str(n) for n in numbers) or 'none'))
        return of(older[-1])
    if revision in numbers:
        return of(revision)
    # A rollback gives the old ReplicaSet a new number and keeps the old ones in revision-history:
    # asking again for revision N finds the ReplicaSet that now runs it (and nothing to do).
    renumbered = [rs for _number, rs in known
                  if str(revision) in [h.strip() for h in (((rs.get('metadata') or {}).get('annotations') or {})
                                                           .get(REVISION_HISTORY_ANNOTATION) or '').split(',')]]
    if renumbered:
        return _only(deployment_name, namespace, revision, renumbered)
    raise BackendError('deployment %s has no revision %s in namespace %s (revisions kept: %s)' % (
        deployment_name, revision, namespace, ', '.join(str(n) for n in numbers) or 'none'))
