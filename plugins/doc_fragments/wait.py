# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of the shared waiter (module_utils/_common.py wait_until).
    DOCUMENTATION = r'''
options:
  wait:
    description:
      - Whether to wait until the change has taken effect before returning.
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds to wait when O(wait=true).
    type: int
    default: 30
  wait_sleep:
    description:
      - Seconds between two checks when O(wait=true).
    type: int
    default: 1
'''
