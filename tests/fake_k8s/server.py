"""A FAKE Kubernetes API server for the tests of the Kubernetes backend.

No Kubernetes API server can run on the test machines, so the tests of the Kubernetes side talk to
this fake instead. It is NOT Kubernetes: it implements exactly the endpoints the backend
(plugins/module_utils/_kubernetes.py) and the tests call, with the object shapes of the real API,
and a toy controller:

- ``GET /version``
- ``GET|POST /apis/apps/v1/namespaces/{ns}/deployments`` (``labelSelector``)
- ``GET|PATCH|DELETE /apis/apps/v1/namespaces/{ns}/deployments/{name}`` (strategic-merge, merge and JSON patch)
- ``GET|PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale`` (autoscaling/v1 Scale)
- ``GET /apis/apps/v1/namespaces/{ns}/replicasets`` (``labelSelector``)
- ``GET /api/v1/namespaces/{ns}/pods`` (``labelSelector``), ``DELETE /api/v1/namespaces/{ns}/pods/{name}``
- ``GET /api/v1/namespaces/{ns}/pods/{name}/log`` (``container``, ``tailLines``, ``sinceSeconds``,
  ``previous``, ``timestamps``)

The controller: a change of a deployment's pod template creates a ReplicaSet with the next
``deployment.kubernetes.io/revision`` (or gives an existing ReplicaSet with the same template the next
revision, as a rollback does on a real cluster); the ReplicaSet of the current template gets the
deployment's replicas, the others 0; pods are created ``Pending`` and become ``Running`` and ready after
``ready_delay`` seconds; removed pods stay ``Terminating`` for ``terminate_delay`` seconds. A container
whose environment has ``CRASH`` set never becomes ready (CrashLoopBackOff, exit code 1). A container
"prints" the lines of its ``LOG_LINES`` environment variable when it starts (the test deployment's
busybox command does the same on a real cluster).

Not implemented: watches, field selectors, namespaces as objects, spec.paused (kubectl rollout pause),
rolling-update surge limits (the new ReplicaSet is scaled up and the old ones down at once), events,
metrics, admission, and everything not listed above (answered 404).
"""
import copy
import datetime
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

REVISION = 'deployment.kubernetes.io/revision'
REVISION_HISTORY = 'deployment.kubernetes.io/revision-history'
HASH_LABEL = 'pod-template-hash'
GIT_VERSION = 'v1.30.0-fake'


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def stamp(moment=None):
    return (moment or now()).strftime('%Y-%m-%dT%H:%M:%SZ')


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self):
        return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                'message': self.message, 'reason': self.reason, 'details': self.details, 'code': self.code}


def not_found(kind, name, group='apps'):
    return ApiError(404, 'NotFound', '%s%s "%s" not found' % (kind, '.' + group if group else '', name),
                    dict(name=name, group=group, kind=kind))


# ---------------------------------------------------------------- patches
def merge_patch(target, patch, strategic=False):
    """RFC 7386 merge patch; ``strategic`` merges lists of objects by their ``name`` (containers, env)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith('$'):
            continue
        if value is None:
            result.pop(key, None)
        elif (strategic and isinstance(value, list) and isinstance(result.get(key), list)
              and all(isinstance(v, dict) and 'name' in v for v in value + result[key])):
            merged = copy.deepcopy(result[key])
            for item in value:
                for index, old in enumerate(merged):
                    if old['name'] == item['name']:
                        merged[index] = merge_patch(old, item, strategic)
                        break
                else:
                    merged.append(copy.deepcopy(item))
            result[key] = merged
        else:
            result[key] = merge_patch(result.get(key), value, strategic)
    return result


def _pointer(path):
    if not path.startswith('/'):
        raise ApiError(422, 'Invalid', 'json patch path %r must start with /' % path)
    return [part.replace('~1', '/').replace('~0', '~') for part in path[1:].split('/')]


def json_patch(target, operations):
    """RFC 6902 with add, replace, remove and test."""
    doc = copy.deepcopy(target)
    if not isinstance(operations, list):
        raise ApiError(400, 'BadRequest', 'json patch must be a list of operations')
    for operation in operations:
        parts = _pointer(operation.get('path', ''))
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        op = operation.get('op')
        if op in ('add', 'replace'):
            if isinstance(parent, list):
                index = len(parent) if last == '-' else int(last)
                if op == 'add':
                    parent.insert(index, copy.deepcopy(operation['value']))
                else:
                    parent[index] = copy.deepcopy(operation['value'])
            else:
                if op == 'replace' and last not in parent:
                    raise ApiError(422, 'Invalid', 'replace operation does not apply: doc is missing path: %s'
                                   % operation['path'])
                parent[last] = copy.deepcopy(operation['value'])
        elif op == 'remove':
            if isinstance(parent, list):
                del parent[int(last)]
            elif last in parent:
                del parent[last]
            else:
                raise ApiError(422, 'Invalid', 'remove operation does not apply: doc is missing path: %s'
                               % operation['path'])
        elif op == 'test':
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != operation.get('value'):
                raise ApiError(422, 'Invalid', 'testing value %s failed' % operation['path'])
        else:
            raise ApiError(400, 'BadRequest', 'json patch operation %r is not supported by the fake' % op)
    return doc


# ---------------------------------------------------------------- label selectors
_SET_EXPR = re.compile(r'^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([\w./-]*))?\s*$')


def split_selector(text):
    parts, depth, current = [], 0, ''
    for char in text:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def selector_matches(selector, labels):
    labels = labels or {}
    for part in split_selector(selector or ''):
        match = _SET_EXPR.match(part)
        if not match:
            raise ApiError(400, 'BadRequest', 'unable to parse requirement: %r' % part)
        negate, key, set_op, values, op, value = match.groups()
        if set_op:
            choices = [v.strip() for v in values.split(',') if v.strip()]
            if (set_op == 'in') != (labels.get(key) in choices):
                return False
        elif op in ('=', '=='):
            if labels.get(key) != value:
                return False
        elif op == '!=':
            if labels.get(key) == value:
                return False
        elif bool(negate) == (key in labels):
            return False
    return True


def template_hash(template):
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


class FakeCluster(object):
    """The objects of the FAKE API server and its toy controller (all under one lock)."""

    def __init__(self, ready_delay=0.3, terminate_delay=0.3, token=None):
        self.ready_delay = ready_delay
        self.terminate_delay = terminate_delay
        self.token = token
        self.lock = threading.RLock()
        self.deployments = {}   # (ns, name) -> object
        self.replicasets = {}
        self.pods = {}
        self.logs = {}          # (ns, pod, container) -> [(datetime, line)], previous: key + ('previous',)
        self.denied = set()     # (verb, resource) answered 403, e.g. ('patch', 'deployments')
        self.requests = []      # (method, path, HTTP status) of every request
        self._rv = itertools.count(1000)

    # ------------------------------------------------------------ bookkeeping
    @property
    def mutations(self):
        """The write requests (everything but GET) that succeeded: (method, path)."""
        return [r[:2] for r in self.requests if r[0] != 'GET' and r[2] < 300]

    def _meta(self, name, namespace, labels=None, annotations=None):
        return dict(name=name, namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=str(next(self._rv)),
                    generation=1, creationTimestamp=stamp(), labels=dict(labels or {}),
                    annotations=dict(annotations or {}))

    def _touch(self, obj):
        obj['metadata']['resourceVersion'] = str(next(self._rv))

    def snapshot(self):
        """Every object as JSON text: equal snapshots mean nothing changed."""
        with self.lock:
            return json.dumps(dict(deployments=sorted(self.deployments.items()),
                                   replicasets=sorted(self.replicasets.items()),
                                   pods=sorted(self.pods.items())), sort_keys=True, default=str)

    # ------------------------------------------------------------ deployments
    def validate_deployment(self, dep):
        spec = dep.get('spec') or {}
        name = dep['metadata']['name']
        replicas = spec.get('replicas')
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, 'Invalid', 'Deployment.apps "%s" is invalid: spec.replicas: Invalid value: %s: must '
                           'be greater than or equal to 0' % (name, json.dumps(replicas)))
        labels = ((spec.get('template') or {}).get('metadata') or {}).get('labels') or {}
        match = (spec.get('selector') or {}).get('matchLabels') or {}
        if not match or any(labels.get(k) != v for k, v in match.items()):
            raise ApiError(422, 'Invalid', 'Deployment.apps "%s" is invalid: spec.template.metadata.labels: Invalid '
                           'value: %s: `selector` does not match template `labels`' % (name, json.dumps(labels)))
        if not ((spec.get('template') or {}).get('spec') or {}).get('containers'):
            raise ApiError(422, 'Invalid', 'Deployment.apps "%s" is invalid: spec.template.spec.containers: '
                           'Required value' % name)

    def create_deployment(self, namespace, body):
        with self.lock:
            meta = body.get('metadata') or {}
            name = meta.get('name')
            if not name:
                raise ApiError(422, 'Invalid', 'Deployment.apps is invalid: metadata.name: Required value')
            if (namespace, name) in self.deployments:
                raise ApiError(409, 'AlreadyExists', 'deployments.apps "%s" already exists' % name,
                               dict(name=name, group='apps', kind='deployments'))
            spec = copy.deepcopy(body.get('spec') or {})
            spec.setdefault('replicas', 1)
            spec.setdefault('revisionHistoryLimit', 10)
            spec.setdefault('progressDeadlineSeconds', 600)
            spec.setdefault('strategy', {'type': 'RollingUpdate',
                                         'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}})
            dep = dict(apiVersion='apps/v1', kind='Deployment',
                       metadata=self._meta(name, namespace, meta.get('labels'), meta.get('annotations')),
                       spec=spec, status=dict(observedGeneration=0))
            self.validate_deployment(dep)
            self.deployments[(namespace, name)] = dep
            self.reconcile()
            return copy.deepcopy(dep)

    def get_deployment(self, namespace, name):
        with self.lock:
            dep = self.deployments.get((namespace, name))
            if dep is None:
                raise not_found('deployments', name)
            return dep

    def patch_deployment(self, namespace, name, content_type, patch):
        with self.lock:
            dep = self.get_deployment(namespace, name)
            if 'json-patch' in content_type:
                new = json_patch(dep, patch)
            elif 'merge-patch' in content_type:
                new = merge_patch(dep, patch, strategic='strategic' in content_type)
            else:
                raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - '
                               'accepted media types include: application/json-patch+json, '
                               'application/merge-patch+json, application/strategic-merge-patch+json')
            for key in ('name', 'namespace', 'uid', 'creationTimestamp', 'generation', 'resourceVersion'):
                new['metadata'][key] = dep['metadata'][key]
            new['status'] = dep['status']
            new['metadata']['annotations'] = new['metadata'].get('annotations') or {}
            self.validate_deployment(new)
            if new != dep:
                if new['spec'] != dep['spec']:
                    new['metadata']['generation'] = dep['metadata']['generation'] + 1
                self._touch(new)
                self.deployments[(namespace, name)] = new
            self.reconcile()
            return copy.deepcopy(self.deployments[(namespace, name)])

    def delete_deployment(self, namespace, name):
        with self.lock:
            dep = self.get_deployment(namespace, name)
            uid = dep['metadata']['uid']
            del self.deployments[(namespace, name)]
            for key, rs in list(self.replicasets.items()):
                if self._owner_uid(rs) == uid:
                    del self.replicasets[key]
                    for pkey, pod in list(self.pods.items()):
                        if self._owner_uid(pod) == rs['metadata']['uid']:
                            del self.pods[pkey]
            return {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Success', 'details': {'name': name}}

    def scale_of(self, dep):
        meta = dep['metadata']
        match = dep['spec']['selector'].get('matchLabels') or {}
        return dict(kind='Scale', apiVersion='autoscaling/v1',
                    metadata=dict(name=meta['name'], namespace=meta['namespace'], uid=meta['uid'],
                                  resourceVersion=meta['resourceVersion'],
                                  creationTimestamp=meta['creationTimestamp']),
                    spec=dict(replicas=dep['spec']['replicas']),
                    status=dict(replicas=dep['status'].get('replicas', 0),
                                selector=','.join('%s=%s' % kv for kv in sorted(match.items()))))

    def patch_scale(self, namespace, name, content_type, patch):
        with self.lock:
            dep = self.get_deployment(namespace, name)
            scale = self.scale_of(dep)
            if 'json-patch' in content_type:
                new = json_patch(scale, patch)
            else:
                new = merge_patch(scale, patch)
            replicas = (new.get('spec') or {}).get('replicas')
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError(422, 'Invalid', 'Scale.autoscaling "%s" is invalid: spec.replicas: Invalid value: %s: '
                               'must be greater than or equal to 0' % (name, json.dumps(replicas)))
            if replicas != dep['spec']['replicas']:
                dep['spec']['replicas'] = replicas
                dep['metadata']['generation'] += 1
                self._touch(dep)
            self.reconcile()
            return self.scale_of(dep)

    # ------------------------------------------------------------ pods
    def delete_pod(self, namespace, name):
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                raise not_found('pods', name, group='')
            if not pod['metadata'].get('deletionTimestamp'):
                pod['metadata']['deletionTimestamp'] = stamp()
                pod['metadata']['deletionGracePeriodSeconds'] = 30
                pod['_deleted_at'] = time.monotonic()
                self._touch(pod)
            self.reconcile()
            return self.public(pod)

    @staticmethod
    def public(obj):
        return dict((k, copy.deepcopy(v)) for k, v in obj.items() if not k.startswith('_'))

    def pod_log(self, namespace, name, query):
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                raise not_found('pods', name, group='')
            containers = [c['name'] for c in pod['spec']['containers']]
            container = (query.get('container') or [None])[0]
            if container is None:
                if len(containers) > 1:
                    raise ApiError(400, 'BadRequest', 'a container name must be specified for pod %s, choose one '
                                   'of: [%s]' % (name, ' '.join(containers)))
                container = containers[0]
            if container not in containers:
                raise ApiError(400, 'BadRequest', 'container %s is not valid for pod %s' % (container, name))
            if pod['status']['phase'] == 'Pending':
                raise ApiError(400, 'BadRequest', 'container "%s" in pod "%s" is waiting to start: '
                               'ContainerCreating' % (container, name))
            previous = (query.get('previous') or ['false'])[0] == 'true'
            key = (namespace, name, container) + (('previous',) if previous else ())
            if previous and key not in self.logs:
                raise ApiError(400, 'BadRequest', 'previous terminated container "%s" in pod "%s" not found'
                               % (container, name))
            lines = list(self.logs.get(key, []))
        if query.get('sinceSeconds'):
            since = now() - datetime.timedelta(seconds=int(query['sinceSeconds'][0]))
            lines = [(moment, line) for moment, line in lines if moment >= since]
        if query.get('tailLines'):
            tail = int(query['tailLines'][0])
            lines = lines[-tail:] if tail else []
        timestamps = (query.get('timestamps') or ['false'])[0] == 'true'
        return ''.join('%s%s\n' % (moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ ') if timestamps else '', line)
                       for moment, line in lines)

    def add_log(self, namespace, pod, line, container=None):
        """Let a FAKE container 'print' one more line (tests use it for fresh log lines)."""
        with self.lock:
            container = container or self.pods[(namespace, pod)]['spec']['containers'][0]['name']
            self.logs.setdefault((namespace, pod, container), []).append((now(), line))

    # ------------------------------------------------------------ the toy controller
    @staticmethod
    def _owner_uid(obj):
        refs = obj['metadata'].get('ownerReferences') or []
        return refs[0]['uid'] if refs else None

    @staticmethod
    def _owner_ref(obj):
        return [dict(apiVersion=obj['apiVersion'], kind=obj['kind'], name=obj['metadata']['name'],
                     uid=obj['metadata']['uid'], controller=True, blockOwnerDeletion=True)]

    def owned(self, store, owner):
        return [obj for obj in store.values() if self._owner_uid(obj) == owner['metadata']['uid']]

    def reconcile(self):
        with self.lock:
            for dep in list(self.deployments.values()):
                self._reconcile_deployment(dep)

    def _reconcile_deployment(self, dep):
        namespace = dep['metadata']['namespace']
        template = dep['spec']['template']
        digest = template_hash(template)
        owned = self.owned(self.replicasets, dep)
        revisions = [int(rs['metadata']['annotations'].get(REVISION, 0)) for rs in owned]
        current = [rs for rs in owned if rs['metadata']['labels'].get(HASH_LABEL) == digest]
        if current:
            rs = current[0]
            rev = int(rs['metadata']['annotations'][REVISION])
            if rev != max(revisions):
                history = [h for h in rs['metadata']['annotations'].get(REVISION_HISTORY, '').split(',') if h]
                rs['metadata']['annotations'][REVISION_HISTORY] = ','.join(history + [str(rev)])
                rs['metadata']['annotations'][REVISION] = str(max(revisions) + 1)
                self._touch(rs)
        else:
            rs_template = copy.deepcopy(template)
            rs_template.setdefault('metadata', {}).setdefault('labels', {})[HASH_LABEL] = digest
            selector = copy.deepcopy(dep['spec']['selector'])
            selector.setdefault('matchLabels', {})[HASH_LABEL] = digest
            name = '%s-%s' % (dep['metadata']['name'], digest)
            labels = dict(rs_template['metadata']['labels'])
            annotations = {REVISION: str(max(revisions + [0]) + 1)}
            rs = dict(apiVersion='apps/v1', kind='ReplicaSet',
                      metadata=self._meta(name, namespace, labels, annotations),
                      spec=dict(replicas=0, selector=selector, template=rs_template), status=dict(replicas=0))
            rs['metadata']['ownerReferences'] = self._owner_ref(dep)
            self.replicasets[(namespace, name)] = rs
            owned.append(rs)
        dep_rev = rs['metadata']['annotations'][REVISION]
        if dep['metadata']['annotations'].get(REVISION) != dep_rev:
            dep['metadata']['annotations'][REVISION] = dep_rev
            self._touch(dep)
        for other in owned:
            want = dep['spec']['replicas'] if other is rs else 0
            if other['spec']['replicas'] != want:
                other['spec']['replicas'] = want
                other['metadata']['generation'] += 1
                self._touch(other)
            self._reconcile_replicaset(other)
        # Old ReplicaSets beyond revisionHistoryLimit go, as on a real cluster.
        limit = dep['spec'].get('revisionHistoryLimit', 10)
        old = sorted((o for o in owned if o is not rs and o['spec']['replicas'] == 0
                      and not self.owned(self.pods, o)),
                     key=lambda o: int(o['metadata']['annotations'][REVISION]))
        for gone in old[:max(len(old) - limit, 0)]:
            del self.replicasets[(namespace, gone['metadata']['name'])]
        self._dep_status(dep, rs)

    def _reconcile_replicaset(self, rs):
        namespace = rs['metadata']['namespace']
        clock = time.monotonic()
        pods = self.owned(self.pods, rs)
        for pod in pods:
            if pod['metadata'].get('deletionTimestamp'):
                if clock - pod['_deleted_at'] >= self.terminate_delay:
                    del self.pods[(namespace, pod['metadata']['name'])]
                continue
            if pod['status']['phase'] == 'Pending' and clock - pod['_created_at'] >= self.ready_delay:
                self._start_pod(pod)
            elif pod.get('_crash') and clock - pod['_crashed_at'] >= max(self.ready_delay, 0.5):
                self._crash_again(pod)
        active = [p for p in self.owned(self.pods, rs) if not p['metadata'].get('deletionTimestamp')]
        want = rs['spec']['replicas']
        for _index in range(want - len(active)):
            self._new_pod(rs)
        if len(active) > want:
            # Not-ready pods go first, then the youngest, as the ReplicaSet controller does.
            doomed = sorted(active, key=lambda p: (self._pod_ready(p), p['_created_at']))
            for pod in doomed[:len(active) - want]:
                pod['metadata']['deletionTimestamp'] = stamp()
                pod['metadata']['deletionGracePeriodSeconds'] = 30
                pod['_deleted_at'] = clock
                self._touch(pod)
        active = [p for p in self.owned(self.pods, rs) if not p['metadata'].get('deletionTimestamp')]
        ready = len([p for p in active if self._pod_ready(p)])
        status = dict(replicas=len(active), fullyLabeledReplicas=len(active), readyReplicas=ready,
                      availableReplicas=ready, observedGeneration=rs['metadata']['generation'])
        if rs['status'] != status:
            rs['status'] = status
            self._touch(rs)

    @staticmethod
    def _pod_ready(pod):
        return any(c['type'] == 'Ready' and c['status'] == 'True' for c in pod['status'].get('conditions') or [])

    def _new_pod(self, rs):
        namespace = rs['metadata']['namespace']
        suffix = uuid.uuid4().hex[:5]
        name = '%s-%s' % (rs['metadata']['name'], suffix)
        template = rs['spec']['template']
        meta = self._meta(name, namespace, (template.get('metadata') or {}).get('labels'),
                          (template.get('metadata') or {}).get('annotations'))
        meta['generateName'] = rs['metadata']['name'] + '-'
        meta['ownerReferences'] = self._owner_ref(rs)
        del meta['generation']
        spec = copy.deepcopy(template.get('spec') or {})
        spec.update(nodeName='fake-node-1', restartPolicy=spec.get('restartPolicy', 'Always'))
        containers = [dict(name=c['name'], image=c.get('image'), imageID='', ready=False, restartCount=0,
                           started=False, state={'waiting': {'reason': 'ContainerCreating'}}, lastState={})
                      for c in spec.get('containers') or []]
        pod = dict(apiVersion='v1', kind='Pod', metadata=meta, spec=spec,
                   status=dict(phase='Pending', qosClass='BestEffort', containerStatuses=containers,
                               conditions=[dict(type='PodScheduled', status='True'),
                                           dict(type='Initialized', status='True'),
                                           dict(type='ContainersReady', status='False'),
                                           dict(type='Ready', status='False')]),
                   _created_at=time.monotonic())
        self.pods[(namespace, name)] = pod

    @staticmethod
    def _env(container, key):
        for item in container.get('env') or []:
            if item.get('name') == key:
                return item.get('value')
        return None

    def _start_pod(self, pod):
        namespace, name = pod['metadata']['namespace'], pod['metadata']['name']
        started = now()
        crash = False
        for spec_c, status_c in zip(pod['spec']['containers'], pod['status']['containerStatuses']):
            lines = self._env(spec_c, 'LOG_LINES')
            if lines:
                self.logs[(namespace, name, spec_c['name'])] = [(started, line) for line in lines.split('\n')]
            if self._env(spec_c, 'CRASH'):
                crash = True
                status_c.update(ready=False, started=False, restartCount=1,
                                state={'waiting': {'reason': 'CrashLoopBackOff',
                                                   'message': 'back-off 10s restarting failed container'}},
                                lastState={'terminated': {'exitCode': 1, 'reason': 'Error',
                                                          'startedAt': stamp(started), 'finishedAt': stamp()}})
                self.logs[(namespace, name, spec_c['name'], 'previous')] = list(
                    self.logs.get((namespace, name, spec_c['name']), []))
            else:
                status_c.update(ready=True, started=True, state={'running': {'startedAt': stamp(started)}})
        ready = 'False' if crash else 'True'
        pod['status'].update(phase='Running', startTime=stamp(started), hostIP='127.0.0.1',
                             podIP='10.244.0.%d' % (len(self.pods) % 250 + 2))
        for cond in pod['status']['conditions']:
            if cond['type'] in ('Ready', 'ContainersReady'):
                cond['status'] = ready
        pod['_crash'] = crash
        pod['_crashed_at'] = time.monotonic()
        self._touch(pod)

    def _crash_again(self, pod):
        for status_c in pod['status']['containerStatuses']:
            if not status_c['ready']:
                status_c['restartCount'] += 1
        pod['_crashed_at'] = time.monotonic()
        self._touch(pod)

    def _dep_status(self, dep, current_rs):
        pods = []
        for rs in self.owned(self.replicasets, dep):
            pods.extend((rs, p) for p in self.owned(self.pods, rs) if not p['metadata'].get('deletionTimestamp'))
        updated = [p for rs, p in pods if rs is current_rs]
        ready = [p for _rs, p in pods if self._pod_ready(p)]
        desired = dep['spec']['replicas']
        available = len(ready) >= desired - 1 if desired else True
        complete = len(updated) == desired and len(pods) == desired and len(ready) == desired
        status = dict(observedGeneration=dep['metadata']['generation'], replicas=len(pods),
                      updatedReplicas=len(updated), readyReplicas=len(ready), availableReplicas=len(ready),
                      unavailableReplicas=max(desired - len(ready), 0),
                      conditions=[dict(type='Available', status='True' if available else 'False',
                                       reason='MinimumReplicasAvailable' if available
                                       else 'MinimumReplicasUnavailable'),
                                  dict(type='Progressing', status='True',
                                       reason='NewReplicaSetAvailable' if complete else 'ReplicaSetUpdated',
                                       message='ReplicaSet "%s" %s.' % (
                                           current_rs['metadata']['name'],
                                           'has successfully progressed' if complete else 'is progressing'))])
        for key in ('readyReplicas', 'availableReplicas', 'updatedReplicas', 'replicas', 'unavailableReplicas'):
            if not status[key]:
                del status[key]
        if dep['status'] != status:
            dep['status'] = status
            self._touch(dep)

    def lists(self, store, namespace, selector):
        with self.lock:
            return [self.public(obj) for (ns, _name), obj in sorted(store.items())
                    if ns == namespace and selector_matches(selector, obj['metadata'].get('labels'))]


class Handler(BaseHTTPRequestHandler):
    """Routes of the FAKE API server."""

    server_version = 'fake-kube-apiserver/0.1'
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    @property
    def cluster(self):
        return self.server.cluster

    def _send(self, code, body, content_type='application/json'):
        self.cluster.requests.append((self.command, urlparse(self.path).path, code))
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        try:
            return json.loads(self._raw or b'null')
        except ValueError:
            raise ApiError(400, 'BadRequest', 'the request body is not JSON')

    def _handle(self, method):
        # Read the whole body first, even when unused (DELETE options): the connection is kept alive.
        length = int(self.headers.get('Content-Length') or 0)
        self._raw = self.rfile.read(length) if length else b''
        url = urlparse(self.path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split('/') if p]
        try:
            if parts == ['version']:
                return self._send(200, dict(major='1', minor='30', gitVersion=GIT_VERSION, platform='linux/amd64'))
            self._authorize(method, parts)
            self.cluster.reconcile()
            return self._route(method, parts, query)
        except ApiError as exc:
            return self._send(exc.code, exc.status())

    def _authorize(self, method, parts):
        if self.cluster.token and self.headers.get('Authorization') != 'Bearer %s' % self.cluster.token:
            raise ApiError(401, 'Unauthorized', 'Unauthorized')
        resource = next((p for p in reversed(parts) if p in ('deployments', 'replicasets', 'pods')), None)
        verb = dict(GET='get', PATCH='patch', POST='create', DELETE='delete').get(method)
        if (verb, resource) in self.cluster.denied:
            raise ApiError(403, 'Forbidden', '%s is forbidden: User "system:serviceaccount:fake:oncall" cannot %s '
                           'resource "%s"' % (resource, verb, resource))

    def _route(self, method, parts, query):
        cluster = self.cluster
        selector = (query.get('labelSelector') or [''])[0]
        ctype = (self.headers.get('Content-Type') or '').split(';')[0].strip()
        if parts[:4] == ['apis', 'apps', 'v1', 'namespaces'] and len(parts) >= 6:
            ns, kind, rest = parts[4], parts[5], parts[6:]
            if kind == 'deployments':
                if not rest and method == 'GET':
                    return self._send(200, dict(kind='DeploymentList', apiVersion='apps/v1',
                                                metadata=dict(resourceVersion='1'),
                                                items=cluster.lists(cluster.deployments, ns, selector)))
                if not rest and method == 'POST':
                    return self._send(201, cluster.create_deployment(ns, self._body()))
                if len(rest) == 1 and method == 'GET':
                    return self._send(200, cluster.public(cluster.get_deployment(ns, rest[0])))
                if len(rest) == 1 and method == 'PATCH':
                    return self._send(200, cluster.patch_deployment(ns, rest[0], ctype, self._body()))
                if len(rest) == 1 and method == 'DELETE':
                    return self._send(200, cluster.delete_deployment(ns, rest[0]))
                if len(rest) == 2 and rest[1] == 'scale' and method == 'GET':
                    return self._send(200, cluster.scale_of(cluster.get_deployment(ns, rest[0])))
                if len(rest) == 2 and rest[1] == 'scale' and method == 'PATCH':
                    return self._send(200, cluster.patch_scale(ns, rest[0], ctype, self._body()))
            if kind == 'replicasets' and not rest and method == 'GET':
                return self._send(200, dict(kind='ReplicaSetList', apiVersion='apps/v1',
                                            metadata=dict(resourceVersion='1'),
                                            items=cluster.lists(cluster.replicasets, ns, selector)))
        if parts[:3] == ['api', 'v1', 'namespaces'] and len(parts) >= 5 and parts[4] == 'pods':
            ns, rest = parts[3], parts[5:]
            if not rest and method == 'GET':
                return self._send(200, dict(kind='PodList', apiVersion='v1', metadata=dict(resourceVersion='1'),
                                            items=cluster.lists(cluster.pods, ns, selector)))
            if len(rest) == 1 and method == 'DELETE':
                return self._send(200, cluster.delete_pod(ns, rest[0]))
            if len(rest) == 2 and rest[1] == 'log' and method == 'GET':
                return self._send(200, cluster.pod_log(ns, rest[0], query), 'text/plain')
        raise ApiError(404, 'NotFound', 'the server could not find the requested resource (fake: %s %s is not '
                       'implemented)' % (method, '/' + '/'.join(parts)))

    def do_GET(self):  # pylint: disable=invalid-name
        self._handle('GET')

    def do_POST(self):  # pylint: disable=invalid-name
        self._handle('POST')

    def do_PATCH(self):  # pylint: disable=invalid-name
        self._handle('PATCH')

    def do_DELETE(self):  # pylint: disable=invalid-name
        self._handle('DELETE')


class FakeKubeServer(object):
    """The FAKE API server on 127.0.0.1 (a free port), with its controller ticking in a thread."""

    def __init__(self, ready_delay=0.3, terminate_delay=0.3, token='fake-token'):
        self.cluster = FakeCluster(ready_delay=ready_delay, terminate_delay=terminate_delay, token=token)
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.cluster = self.cluster
        self.port = self.httpd.server_address[1]
        self.url = 'http://127.0.0.1:%d' % self.port
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        serve = threading.Thread(target=self.httpd.serve_forever, name='fake-k8s-http', daemon=True)
        tick = threading.Thread(target=self._tick, name='fake-k8s-controller', daemon=True)
        self._threads = [serve, tick]
        for thread in self._threads:
            thread.start()
        return self

    def _tick(self):
        while not self._stop.wait(0.05):
            self.cluster.reconcile()

    def stop(self):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path, context='fake', namespace='default', token=None):
        """Write a kubeconfig for this FAKE server (JSON is YAML) and return its path."""
        config = {
            'apiVersion': 'v1', 'kind': 'Config', 'current-context': context, 'preferences': {},
            'clusters': [{'name': 'fake-cluster', 'cluster': {'server': self.url}}],
            'users': [{'name': 'fake-oncall', 'user': {'token': token or self.cluster.token or 'none'}}],
            'contexts': [{'name': context, 'context': {'cluster': 'fake-cluster', 'user': 'fake-oncall',
                                                       'namespace': namespace}}],
        }
        with open(path, 'w') as handle:
            json.dump(config, handle, indent=2)
        return path


def deployment_manifest(name, replicas=2, image='busybox:1.36', log_lines=None, crash=False, labels=None):
    """A Deployment the tests create on the fake and on a real cluster alike (busybox prints LOG_LINES)."""
    labels = dict(labels or {'app': name})
    env = [dict(name='LOG_LINES', value='\n'.join(log_lines or ['INFO %s started' % name]))]
    if crash:
        env.append(dict(name='CRASH', value='1'))
    script = 'printf "%s\\n" "$LOG_LINES"; if [ -n "$CRASH" ]; then exit 1; fi; exec sleep 3600'
    return {
        'apiVersion': 'apps/v1', 'kind': 'Deployment',
        'metadata': {'name': name, 'labels': labels},
        'spec': {
            'replicas': replicas,
            'selector': {'matchLabels': labels},
            'template': {
                'metadata': {'labels': labels},
                'spec': {
                    'terminationGracePeriodSeconds': 1,
                    'containers': [{'name': 'app', 'image': image, 'command': ['sh', '-c', script], 'env': env,
                                    'readinessProbe': {'exec': {'command': ['sh', '-c', '[ -z "$CRASH" ]']},
                                                       'periodSeconds': 1}}],
                },
            },
        },
    }


def main():
    """Run the FAKE server by hand: python tests/fake_k8s/server.py [kubeconfig-path]."""
    import sys
    server = FakeKubeServer().start()
    path = sys.argv[1] if len(sys.argv) > 1 else 'fake-kubeconfig.json'
    server.kubeconfig(path)
    print('FAKE Kubernetes API server on %s; kubeconfig %s; Ctrl-C stops it' % (server.url, path))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == '__main__':
    main()
