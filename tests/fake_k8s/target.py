"""The cluster the Kubernetes tests run against: the FAKE API server (default) or a real cluster.

``INCIDENT_K8S_TARGET=real`` (what ``make test-k8s`` sets when ``KUBECONFIG`` is given) selects the real
cluster of ``KUBECONFIG``: the tests then work in a throwaway namespace ``ir-test-<random>`` that is
deleted at the end. Otherwise a FAKE API server (tests/fake_k8s/server.py) is started on 127.0.0.1.
Both are driven through the official client, the same calls on either.
"""
import json
import os
import tempfile
import time
import uuid

import kubernetes
import kubernetes.client
import kubernetes.config

from .server import FakeKubeServer, deployment_manifest

TARGET_ENV = 'INCIDENT_K8S_TARGET'


def use_real_cluster():
    return os.environ.get(TARGET_ENV, 'fake') == 'real'


class K8sTarget(object):
    """One namespace on the FAKE server or on a real cluster, with what the tests need to set up and observe."""

    def __init__(self):
        self.real = use_real_cluster()
        self.tmp = tempfile.mkdtemp(prefix='ir-k8s-')
        self.fake = None
        if self.real:
            self.kubeconfig = os.environ.get('KUBECONFIG') or os.path.expanduser('~/.kube/config')
            self.namespace = 'ir-test-%s' % uuid.uuid4().hex[:6]
        else:
            self.fake = FakeKubeServer(ready_delay=0.3, terminate_delay=0.3).start()
            self.namespace = 'incidents'
            self.kubeconfig = self.fake.kubeconfig(os.path.join(self.tmp, 'kubeconfig'))
            self.context_kubeconfig = self.fake.kubeconfig(os.path.join(self.tmp, 'kubeconfig-ns'),
                                                           namespace=self.namespace)
        try:
            self.api_client = kubernetes.config.new_client_from_config(config_file=self.kubeconfig,
                                                                       persist_config=False)
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise RuntimeError('the Kubernetes tests cannot use the kubeconfig %s: %s' % (self.kubeconfig, exc))
        self.apps = kubernetes.client.AppsV1Api(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        if self.real:
            self.core.create_namespace({'metadata': {'name': self.namespace,
                                                     'labels': {'app.kubernetes.io/created-by': 'incident.response-tests'}}})
            self.context_kubeconfig = self._with_namespace()

    def _with_namespace(self):
        """A copy of the real kubeconfig whose current context is in the throwaway namespace (None if not one file)."""
        if os.pathsep in self.kubeconfig:
            return None
        import yaml  # pylint: disable=import-outside-toplevel
        with open(self.kubeconfig) as handle:
            config = yaml.safe_load(handle)
        for entry in config.get('contexts') or []:
            if entry.get('name') == config.get('current-context'):
                entry.setdefault('context', {})['namespace'] = self.namespace
        path = os.path.join(self.tmp, 'kubeconfig-ns')
        with open(path, 'w') as handle:
            yaml.safe_dump(config, handle)
        os.chmod(path, 0o600)
        return path

    @property
    def label(self):
        return 'a real cluster (%s, namespace %s)' % (self.kubeconfig, self.namespace) if self.real else \
            'the FAKE API server at %s' % self.fake.url

    def close(self):
        if self.real:
            self.core.delete_namespace(self.namespace)
        else:
            self.fake.stop()

    def args(self, **extra):
        """Module arguments that select this cluster."""
        return dict(dict(platform='kubernetes', kubeconfig=self.kubeconfig, namespace=self.namespace), **extra)

    # ------------------------------------------------------------ setup
    def _json(self, response):
        return json.loads(response.data)

    def create(self, name, replicas=2, image='busybox:1.36', log_lines=None, crash=False, wait=True):
        body = deployment_manifest(name, replicas=replicas, image=image, log_lines=log_lines, crash=crash)
        self.apps.create_namespaced_deployment(self.namespace, body)
        if wait:
            self.settle(name)

    def delete(self, name):
        self.apps.delete_namespaced_deployment(name, self.namespace)

    def set_image(self, name, image, wait=True):
        """A new deploy: a new pod template, hence a new ReplicaSet and revision."""
        body = {'spec': {'template': {'spec': {'containers': [{'name': 'app', 'image': image}]}}}}
        self.apps.patch_namespaced_deployment(name, self.namespace, body,
                                              _content_type='application/strategic-merge-patch+json')
        if wait:
            self.settle(name)

    # ------------------------------------------------------------ observation
    def deployment(self, name):
        return self._json(self.apps.read_namespaced_deployment(name, self.namespace, _preload_content=False))

    def replicasets(self, name):
        items = self._json(self.apps.list_namespaced_replica_set(self.namespace, label_selector='app=%s' % name,
                                                                 _preload_content=False))['items']
        return sorted(items, key=lambda rs: int(rs['metadata']['annotations'].get(
            'deployment.kubernetes.io/revision', 0)))

    def pods(self, name, active=True):
        items = self._json(self.core.list_namespaced_pod(self.namespace, label_selector='app=%s' % name,
                                                         _preload_content=False))['items']
        return sorted((p for p in items if not (active and p['metadata'].get('deletionTimestamp'))),
                      key=lambda p: p['metadata']['name'])

    def pod_names(self, name):
        return [p['metadata']['name'] for p in self.pods(name)]

    def images(self, name):
        return sorted(set(p['spec']['containers'][0]['image'] for p in self.pods(name)))

    def settled(self, name):
        dep = self.deployment(name)
        status = dep.get('status') or {}
        desired = dep['spec']['replicas']
        return (status.get('observedGeneration', 0) >= dep['metadata']['generation']
                and (status.get('updatedReplicas') or 0) == desired
                and (status.get('readyReplicas') or 0) == desired
                and (status.get('replicas') or 0) == desired
                and len(self.pods(name)) == desired
                and len(self.pods(name, active=False)) == desired)

    def settle(self, name, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.settled(name):
                return self.deployment(name)
            time.sleep(0.2)
        raise AssertionError('deployment %s did not settle on %s: %s' % (name, self.label, self.deployment(name)))

    def fingerprint(self):
        """What check mode must not change: deployments (spec, annotations, generation), ReplicaSets, pods."""
        deployments = self._json(self.apps.list_namespaced_deployment(self.namespace, _preload_content=False))
        replicasets = self._json(self.apps.list_namespaced_replica_set(self.namespace, _preload_content=False))
        pods = self._json(self.core.list_namespaced_pod(self.namespace, _preload_content=False))
        return dict(
            deployments=sorted((d['metadata']['name'], d['metadata']['generation'],
                                json.dumps(d['metadata'].get('annotations'), sort_keys=True),
                                json.dumps(d['spec'], sort_keys=True)) for d in deployments['items']),
            replicasets=sorted((r['metadata']['name'], r['spec']['replicas'],
                                r['metadata']['annotations'].get('deployment.kubernetes.io/revision'))
                               for r in replicasets['items']),
            pods=sorted((p['metadata']['name'], bool(p['metadata'].get('deletionTimestamp')))
                        for p in pods['items']),
        )

    def mutations(self):
        """Writes the FAKE server received (None on a real cluster, which does not tell)."""
        return None if self.real else len(self.fake.cluster.mutations)

    def add_log(self, pod, line):
        """Make a FAKE pod print a line (None on a real cluster)."""
        if not self.real:
            self.fake.cluster.add_log(self.namespace, pod, line)
