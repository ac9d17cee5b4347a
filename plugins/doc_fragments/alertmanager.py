# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every Alertmanager module (module_utils/_alertmanager.py).
    DOCUMENTATION = r'''
options:
  url:
    description:
      - Base URL of the Alertmanager, for example V(http://127.0.0.1:9093) (the module adds C(/api/v2)).
      - Falls back to the E(ALERTMANAGER_URL) environment variable.
    type: str
    aliases: [alertmanager_url]
  url_username:
    description:
      - User name for HTTP basic authentication (a reverse proxy in front of Alertmanager, or its C(web.config)).
    type: str
    aliases: [username]
  url_password:
    description:
      - Password for HTTP basic authentication. Never logged or returned.
    type: str
    aliases: [password]
  bearer_token:
    description:
      - "A token sent as C(Authorization: Bearer ...), instead of basic authentication. Never logged or returned."
    type: str
  ca_path:
    description:
      - File of certificate authorities to verify an C(https) Alertmanager against.
    type: path
    aliases: [ca_cert]
  validate_certs:
    description:
      - Verify TLS certificates. Turn off only on a lab.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each answer of Alertmanager before failing with a message naming the URL.
    type: int
    default: 10
notes:
  - Speaks the Alertmanager v2 API (C(/api/v2)); the v1 API was removed in Alertmanager 0.27.
  - Set these options once for all modules of the group with C(module_defaults) and
    C(group/incident.response.alertmanager).
'''
