# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The platform switch of the service modules (module_utils/_services.py).
    DOCUMENTATION = r'''
options:
  platform:
    description:
      - Where the service runs.
      - V(compose) uses the Docker engine and the Compose CLI (options O(project), O(project_dir), O(files),
        O(docker_host), O(timeout)).
      - V(kubernetes) uses the Kubernetes API (a Deployment, see the Kubernetes connection options).
    type: str
    default: compose
    choices: [compose, kubernetes]
'''
