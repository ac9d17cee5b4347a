"""Run a module's main() in-process: its exit_json/fail_json become exceptions the test can read."""
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class Failed(Exception):
    """fail_json was called; args[0] is the result."""


class Exited(Exception):
    """exit_json was called; args[0] is the result."""


def _fail_json(self, **kwargs):
    raise Failed(kwargs)


def _exit_json(self, **kwargs):
    raise Exited(kwargs)


def run(module, args):
    """Run ``module.main()`` with ``args``; returns (Failed or Exited, result dict)."""
    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', _fail_json), \
            mock.patch.object(basic.AnsibleModule, 'exit_json', _exit_json):
        with pytest.raises((Failed, Exited)) as info:
            module.main()
    return info.type, info.value.args[0]
