"""Every role with a service backend takes ``<prefix>_namespace`` for Kubernetes and passes it as ``namespace``
wherever it passes ``platform`` (issue 9: workers_down passed its namespace as ``project``, which the Kubernetes
backend ignores, and no other role had one). Read from the roles' own files."""
import glob
import os
import re

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
PLATFORM = re.compile(r'^\s*platform: "\{\{ (\w+)_platform \}\}"\s*$')


def service_roles():
    found = {}
    for path in sorted(glob.glob(os.path.join(ROOT, 'roles', '*', 'tasks', '*.yml'))):
        for line in open(path):
            match = PLATFORM.match(line)
            if match:
                found.setdefault(path.split(os.sep)[-3], set()).add(match.group(1))
    return found


def test_the_service_roles_are_found():
    assert set(service_roles()) >= {'workers_down', 'service_down', 'high_resource', 'queue_backlog'}


@pytest.mark.parametrize('role', sorted(service_roles()))
def test_role_has_a_namespace_and_passes_it(role):
    for prefix in service_roles()[role]:
        defaults = yaml.safe_load(open(os.path.join(ROOT, 'roles', role, 'defaults', 'main.yml')))
        assert defaults.get('%s_namespace' % prefix) == '', role
        specs = yaml.safe_load(open(os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml')))
        options = specs['argument_specs']['main']['options']
        assert options['%s_namespace' % prefix]['type'] == 'str', role
        for path in glob.glob(os.path.join(ROOT, 'roles', role, 'tasks', '*.yml')):
            for task in yaml.safe_load(open(path)) or []:
                for key, args in task.items():
                    if isinstance(args, dict) and args.get('platform') == '{{ %s_platform }}' % prefix:
                        assert args.get('namespace') == '{{ %s_namespace | default(omit, true) }}' % prefix, (path, key)
                        assert 'namespace' not in str(args.get('project')), (path, key)
