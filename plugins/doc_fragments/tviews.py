# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The assessment options of tview_info and tview_emergency (_tviews.assessment_argument_spec).
    DOCUMENTATION = r'''
options:
  contract:
    description: Which pg_tviews contract to expect; V(auto) detects it (the runbook catalog wins when both exist).
    type: str
    default: auto
    choices: [auto, runbook, extension]
  stale_after:
    description: A TVIEW not refreshed for this long is stale (seconds or a duration such as V(4h)).
    type: raw
    default: 4h
  failing_share:
    description: Emergency when more than this share of the TVIEWs have errors (0 to 1).
    type: float
    default: 0.5
  max_pending:
    description: Emergency when more than this many refreshes are pending.
    type: int
    default: 10000
  connection_share:
    description: Emergency when more sessions than this share of C(max_connections) wait on locks (0 to 1).
    type: float
    default: 0.8
  exit_healthy_share:
    description: The exit criteria need more than this share of TVIEWs healthy (0 to 1).
    type: float
    default: 0.95
  integrity_limit:
    description: Check at most this many TVIEWs in the integrity check (the runbook checks 5); V(0) checks all.
    type: int
    default: 0
  error_limit:
    description: List at most this many TVIEWs in the C(errors) and C(stale) lists of the assessment (V(0), all).
    type: int
    default: 50
'''
