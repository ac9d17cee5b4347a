# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Kubernetes API client of the Kubernetes backend (private to the collection).

Configuration from the module options (kubeconfig and context, host and api_key, or the in-cluster service
account, with the namespace kubectl would choose), and :class:`KubeClient`: the official ``kubernetes`` client,
raw JSON in and out, with every error (HTTP status, unreachable server, not JSON) turned into one
``BackendError`` naming the server and what was being done. Like kubernetes.core's client module, it knows
nothing of Deployments: the backend (``_kubernetes.py``) says what to call.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import BackendError, redact

# The client is imported on first use (load_kubernetes), not when this file is: the service modules ship the
# Kubernetes backend with the Compose one, and importing the client takes longer than the rest of a Compose run's
# imports together (about 0.5 s of CPU), so a run with platform=compose never pays for it.
HAS_KUBERNETES = None  # None: not tried yet; then True or False
KUBERNETES_IMPORT_ERROR = None
kubernetes = None  # the package, once load_kubernetes() has imported it
urllib3 = None


class ApiException(Exception):  # pylint: disable=function-redefined
    """Replaced by the client's own ApiException once the client is imported."""
    status = None


def load_kubernetes():
    """Import the ``kubernetes`` client (once); True when it is installed."""
    global HAS_KUBERNETES, KUBERNETES_IMPORT_ERROR, ApiException, kubernetes, urllib3  # pylint: disable=global-statement
    if HAS_KUBERNETES is None:
        try:
            import kubernetes  # pylint: disable=redefined-outer-name
            import kubernetes.client
            import kubernetes.config
            from kubernetes.client.rest import ApiException as _ApiException
            import urllib3  # pylint: disable=redefined-outer-name
            ApiException = _ApiException
            HAS_KUBERNETES = True
        except ImportError:
            KUBERNETES_IMPORT_ERROR = traceback.format_exc()
            HAS_KUBERNETES = False
    return HAS_KUBERNETES


SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
# Seconds one API request may take before it fails with a message naming the server.
REQUEST_TIMEOUT = 30

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
    if not load_kubernetes():
        module.fail_json(msg=missing_required_lib('kubernetes (the Kubernetes Python client)')
                         + ' It is needed on the host that runs the module (the target), not only on the controller.',
                         exception=KUBERNETES_IMPORT_ERROR)


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


def build_configuration(params):
    """A client Configuration from the module options (kubeconfig, host/api_key, or in-cluster)."""
    load_kubernetes()
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
        text = to_native(data, errors='replace')
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
