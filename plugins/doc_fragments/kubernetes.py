# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of the Kubernetes backend (module_utils/_k8s_client.py kubernetes_argument_spec).
    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - With O(platform=kubernetes), the kubeconfig file to read the API server and credentials from.
      - Falls back to E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG) (which may list several files separated by V(:)).
      - Without O(kubeconfig), O(context) and O(host), the service account of the pod the module runs in is used
        when its files exist (in-cluster), else C(~/.kube/config).
    type: path
  context:
    description:
      - The context of the kubeconfig to use; its current context when not given. Falls back to E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the Kubernetes API server, for example V(https://k8s.example.com:6443).
      - Together with O(api_key), used without any kubeconfig; with a kubeconfig, replaces its server.
      - Falls back to E(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token to authenticate with (for example a service account token). Falls back to E(K8S_AUTH_API_KEY).
      - Never logged or returned.
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificate of the API server. When not given, the kubeconfig decides
        (verification is on unless it sets C(insecure-skip-tls-verify)).
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - File of the certificate authority that signed the API server's certificate, replacing the kubeconfig's.
    type: path
    aliases: [ssl_ca_cert]
  namespace:
    description:
      - The namespace of the deployments, with O(platform=kubernetes).
      - When not given, as kubectl does, the namespace of the kubeconfig context (or of the service account, in a
        pod), else V(default).
    type: str
requirements:
  - kubernetes (the Kubernetes Python client, 24.2.0 or newer) on the host that runs the module, for O(platform=kubernetes)
notes:
  - With O(platform=kubernetes) a service is an apps/v1 Deployment of O(namespace); its ReplicaSets give the revisions
    (annotation C(deployment.kubernetes.io/revision)) and its pods the instances.
  - "The credentials need these permissions in O(namespace): get, list and patch C(deployments); get and patch
    C(deployments/scale); list C(replicasets); list and delete C(pods); get C(pods/log)."
  - Set these options once for all service modules with C(module_defaults) and C(group/incident.response.kubernetes).
'''
