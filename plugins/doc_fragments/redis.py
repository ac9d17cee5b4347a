# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every Redis module (redis_common_argument_spec in module_utils/_redis.py).
    DOCUMENTATION = r'''
options:
  url:
    description:
      - A Redis URL, V(redis://[[user]:password@]host[:port][/db]), V(rediss://...) (TLS) or
        V(unix://[[user]:password@]/path/to/socket?db=N). Falls back to the E(REDIS_URL) environment variable.
      - Options given explicitly (O(host), O(port), O(db), O(username), O(password), O(unix_socket), O(tls))
        take precedence over the parts of the URL; without either, V(127.0.0.1), port V(6379), db V(0).
      - Treated as a secret (it may hold the password), never logged or returned.
    type: str
  host:
    description: Host running Redis. Defaults to V(127.0.0.1) when neither O(url) nor E(REDIS_URL) names one.
    type: str
  port:
    description: Port Redis listens on. Defaults to V(6379).
    type: int
  db:
    description: Database number. Defaults to V(0).
    type: int
  username:
    description: ACL user to authenticate as (Redis 6 and newer); without it, the C(default) user.
    type: str
  password:
    description: Password (C(AUTH)). Never logged or returned.
    type: str
  unix_socket:
    description: Path of the Unix socket to connect through; takes precedence over O(host) and O(port).
    type: path
  tls:
    description: Connect with TLS (V(true) by default for a V(rediss://) URL).
    type: bool
  ca_cert:
    description: File of certificate authorities to verify the server against when O(tls=true).
    type: path
  validate_certs:
    description: Verify the server's certificate and host name when O(tls=true).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the connection and for each command before failing with a message naming the server.
    type: int
    default: 5
requirements:
  - redis (redis-py) 4.0 or newer on the host that runs the module
notes:
  - The module's connection is named C(incident.response) (C(CLIENT LIST) shows it).
  - Set these options once for all modules of the group with C(module_defaults) and C(group/incident.response.redis).
'''
