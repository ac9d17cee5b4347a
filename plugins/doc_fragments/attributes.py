# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The attributes every module of the collection shares (none yet: each remediation documents its own).
    DOCUMENTATION = r'''
options: {}
'''

    # The attributes of a read-only module (every *_info module and http_check):
    # extends_documentation_fragment: [incident.response.attributes.info_module]
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    description: Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Reads only; there is nothing to compare.
  idempotent:
    support: full
    description: Reads only; it changes nothing.
'''
