# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of the Compose backend (module_utils/_compose.py compose_argument_spec).
    DOCUMENTATION = r'''
options:
  project:
    description:
      - The Compose project name (C(com.docker.compose.project) label of its containers), for O(platform=compose).
      - Containers are found by the labels C(com.docker.compose.project) and C(com.docker.compose.service),
        never by their names.
    type: str
  project_dir:
    description:
      - The project directory of the Compose project.
      - When not given, taken from the C(com.docker.compose.project.working_dir) label of the project's containers.
      - The deploy history used by rollbacks lives under it, in C(.incident-response/).
    type: path
  files:
    description:
      - The Compose files of the project, used by the commands that go through the Compose CLI (scaling, rollback).
      - When not given, taken from the C(com.docker.compose.project.config_files) label of the project's containers.
    type: list
    elements: path
  docker_host:
    description:
      - The Docker daemon to talk to, such as V(unix:///var/run/docker.sock) or V(tcp://127.0.0.1:2375).
      - When not given, the E(DOCKER_HOST) environment variable of the module is used, then the local socket.
    type: str
    default: unix:///var/run/docker.sock
  timeout:
    description:
      - Seconds to wait for an answer of the Docker daemon.
    type: int
    default: 60
  history_file:
    description:
      - The JSON file of the deploy history (the image each deploy of each service used).
      - Defaults to C(<project_dir>/.incident-response/<project>-deploy-history.json).
    type: path
requirements:
  - docker (the Docker SDK for Python) on the managed node, for O(platform=compose)
  - the Compose CLI, C(docker compose) (v2 plugin) or C(docker-compose) (v1), on the managed node, to scale and
    roll back on O(platform=compose)
'''
