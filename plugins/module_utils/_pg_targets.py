# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Many PostgreSQL targets in one module run (the ``targets`` option of pg_activity_info and pg_backends).

Private to the collection: the API may change without notice. Documented once in the doc fragment
``incident.response.postgres_targets``.

Every module run costs the controller about a second of CPU (AnsiballZ, a new Python, imports from a zip), so a
step that runs once per target costs N of them; with ``targets`` one run does the step for every target, each in a
thread of its own (bounded pool), each with its own connection and its own result. The per-target work is the
module's ordinary single-target function, called with a :class:`TargetModule`: the module's parameters with the
target's overrides, whose ``fail_json``/``exit_json`` end that target's work (raise) instead of the process, so a
target that fails (cannot connect, cap refused) fails in its own entry and the others go on.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import copy

from ansible.module_utils.common.text.converters import to_native

#: at most this many targets are worked at once (threads; each holds one PostgreSQL connection)
MAX_THREADS = 16
#: the connection options a target may override (the rest are the module's own)
CONNECTION_OVERRIDES = ('login_host', 'login_port', 'login_db', 'login_user', 'login_password')


def targets_argument_spec(**filters):
    """The ``targets`` option: a list of dicts with ``name`` (required), the connection overrides and the
    module's own per-target options in ``filters`` (e.g. ``databases=dict(type='list', elements='str')``)."""
    options = dict(
        name=dict(type='str', required=True),
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_db=dict(type='str'),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
    )
    options.update(filters)
    return dict(targets=dict(type='list', elements='dict', options=options))


class TargetFailed(Exception):
    """fail_json of one target: its result (``msg`` and what came with it)."""


class TargetExited(Exception):
    """exit_json of one target (a diagnosis that reports an unreachable server): its result."""


class TargetModule(object):
    """Stands for the AnsibleModule inside one target's work: ``params`` are the module's with the target's
    overrides; ``fail_json``/``exit_json`` raise instead of exiting; ``warn`` keeps the warning for the target."""

    def __init__(self, module, target, overrides):
        self._module = module
        self.name = target['name']
        self.params = dict(module.params)
        for key, value in overrides.items():
            if value is not None:
                self.params[key] = copy.deepcopy(value)
        self.params.pop('targets', None)
        self.check_mode = module.check_mode
        self._diff = getattr(module, '_diff', False)
        self.warnings = []

    def warn(self, warning):
        self.warnings.append(warning)

    def fail_json(self, msg=None, **kwargs):
        kwargs.pop('exception', None)  # no traceback in a target's entry
        raise TargetFailed(dict(kwargs, failed=True, msg=msg))

    def exit_json(self, **kwargs):
        raise TargetExited(kwargs)


def validate_targets(module, per_target=()):
    """Fail the module with one message when ``targets`` cannot be worked: empty, a name missing or repeated.

    Returns the list of targets, or None when the option is not given (the single-target behaviour)."""
    targets = module.params.get('targets')
    if targets is None:
        return None
    if not targets:
        module.fail_json(msg='targets is empty: give at least one target, or omit targets for the connection '
                             'options alone')
    seen = set()
    for index, target in enumerate(targets):
        name = target.get('name')
        if not isinstance(name, str) or not name.strip():
            module.fail_json(msg='targets[%d].name must be a non-empty name (the inventory host)' % index)
        if '\x00' in name:
            module.fail_json(msg='targets[%d].name contains a NUL (0x00) character' % index)
        if name in seen:
            module.fail_json(msg='targets[%d].name %r is given twice: each target once' % (index, name))
        seen.add(name)
    return targets


def _entry(name, work, proxy):
    try:
        result = work(proxy)
    except TargetExited as exc:
        result = exc.args[0]
    except TargetFailed as exc:
        result = exc.args[0]
    except Exception as exc:  # pylint: disable=broad-except
        # one target's unexpected error must not take the others down, nor print a traceback
        result = dict(failed=True, msg='%s: %s' % (exc.__class__.__name__, to_native(exc)))
    result = dict(result)
    result.setdefault('changed', False)
    if proxy.warnings:
        result['warnings'] = list(proxy.warnings)
    return name, result


def run_targets(module, targets, work, overrides_of):
    """``work(target_module)`` for every target, concurrently (at most MAX_THREADS at once).

    ``overrides_of(target)``: the parameters of that target (its connection keys and filters; None = the
    module's own). Returns ``{name: result}`` in the order of ``targets``; a target whose work failed has
    ``failed: true`` and ``msg`` in its entry. The targets' warnings reach the module's, each naming its target.
    """
    proxies = [TargetModule(module, target, overrides_of(target)) for target in targets]
    results = {}
    workers = max(1, min(len(proxies), MAX_THREADS))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_entry, proxy.name, work, proxy) for proxy in proxies]
        for future in futures:
            name, result = future.result()
            results[name] = result
    for proxy in proxies:
        for warning in proxy.warnings:
            module.warn('%s: %s' % (proxy.name, warning))
    return dict((proxy.name, results[proxy.name]) for proxy in proxies)


def connection_overrides(target):
    """The connection keys a target gives (the others fall back to the module's options)."""
    return dict((key, target.get(key)) for key in CONNECTION_OVERRIDES)


def failed_targets(results):
    return [name for name, result in results.items() if result.get('failed')]
