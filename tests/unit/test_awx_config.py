"""The AWX configuration as code (awx/*.yml) checked without a controller.

No AWX can run on these machines (it needs Kubernetes and images from a registry). What is checked instead:
* the committed data equal what scripts/awx_config.py generates from the playbooks and the roles' argument specs;
* every task of playbooks/awx_configure.yml, for every item of its loop, templated by Ansible itself, validates
  against the REAL argument spec of its awx.awx 24.6.1 module (ArgumentSpecValidator, the module's own
  argument_spec + mutually_exclusive + required_if + the controller auth options), approval nodes against the
  suboptions the module documents;
* our own rules: every survey variable is an option of the role the playbook runs, with a compatible type and a
  default the role accepts; every workflow link and job template name resolves; approval timeouts are numbers; no
  secret in a survey; injectors use only the fields their credential type declares.
"""
import importlib
import os
import re
import subprocess
import sys

import jinja2
import jinja2.meta
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EXTRA = os.path.join(ROOT, 'build', 'collections-extra')
AWX = os.path.join(EXTRA, 'ansible_collections', 'awx', 'awx')
SECRET = re.compile(r'password|passwd|secret|token|dsn|routing_key|webhook|private_key|api_key', re.I)
SKIP = ('lab', 'gameday', 'awx_configure')


def load(path):
    with open(os.path.join(ROOT, path)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def data():
    found = {}
    for name in ('controller_credential_types', 'controller_templates', 'controller_workflows'):
        found.update(load('awx/%s.yml' % name))
    return found


@pytest.fixture(scope='module')
def awx_specs():
    """module name -> dict(argument_spec, mutually_exclusive, required_if, ...) as main() hands them to its module."""
    if not os.path.isfile(os.path.join(AWX, 'MANIFEST.json')):
        pytest.fail('awx.awx is not in %s: run make setup (scripts/awx_collections.sh)' % EXTRA)
    if EXTRA not in sys.path:
        sys.path.append(EXTRA)
    api = importlib.import_module('ansible_collections.awx.awx.plugins.module_utils.controller_api')
    assert yaml.safe_load(open(os.path.join(AWX, 'MANIFEST.json')).read())['collection_info']['version'] == '24.6.1'
    specs = {}

    class Captured(Exception):
        pass

    class Capture(object):  # stands in for ControllerAPIModule: keeps what main() passes, then stops main()
        def __init__(self, argument_spec=None, **kwargs):
            full = dict(api.ControllerModule.AUTH_ARGSPEC)
            full.update(argument_spec)
            raise Captured(dict(kwargs, argument_spec=full))

    for name in ('credential_type', 'job_template', 'workflow_job_template', 'workflow_job_template_node',
                 'execution_environment', 'project', 'inventory'):
        module = importlib.import_module('ansible_collections.awx.awx.plugins.modules.%s' % name)
        original = module.ControllerAPIModule
        module.ControllerAPIModule = Capture
        try:
            module.main()
        except Captured as captured:
            specs[name] = captured.args[0]
        finally:
            module.ControllerAPIModule = original
        specs[name]['documentation'] = yaml.safe_load(module.DOCUMENTATION)
    return specs


def validate(spec, params):
    validator = ArgumentSpecValidator(spec['argument_spec'], mutually_exclusive=spec.get('mutually_exclusive'),
                                      required_together=spec.get('required_together'),
                                      required_one_of=spec.get('required_one_of'),
                                      required_if=spec.get('required_if'),
                                      required_by=spec.get('required_by'))
    result = validator.validate(params)
    return [str(error) for error in result.errors], result.unsupported_parameters


def role_of(playbook):
    for play in load('playbooks/%s.yml' % playbook) or []:
        play_vars = play.get('vars') or {}
        if play_vars.get('incident_run_role'):
            return play_vars['incident_run_role'].split('.')[-1], play_vars.get('incident_run_tasks_from') or 'main'
        for entry in play.get('roles') or []:
            return (entry['role'] if isinstance(entry, dict) else entry).split('.')[-1], 'main'
        for task in play.get('tasks') or []:
            include = task.get('ansible.builtin.include_role')
            if isinstance(include, dict) and include.get('name'):
                return include['name'].split('.')[-1], include.get('tasks_from') or 'main'
    return None, None


def role_options(role, entry):
    path = os.path.join(ROOT, 'roles', str(role), 'meta', 'argument_specs.yml')
    if not role or not os.path.exists(path):
        return {}
    return load(path)['argument_specs'][entry].get('options') or {}


def test_committed_data_equal_the_generated_data():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'awx_config.py'), '--check'],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_incident_playbook_has_a_check_and_a_run_template(data):
    playbooks = sorted(name[:-4] for name in os.listdir(os.path.join(ROOT, 'playbooks')) if name.endswith('.yml'))
    wanted = sorted((name, job_type) for name in playbooks if name not in SKIP for job_type in ('check', 'run'))
    have = sorted((item['playbook'][len('playbooks/'):-4], item['job_type']) for item in data['controller_templates'])
    assert have == wanted
    for item in data['controller_templates']:
        assert item['diff_mode'] is (item['job_type'] == 'check')
        assert item['survey_enabled'] is True and item['survey_spec']['spec']


def test_configure_playbook_tasks_validate_against_the_awx_modules(data, awx_specs, monkeypatch):
    """Each awx.awx task, templated by Ansible for each item of its loop, against its module's argument spec."""
    monkeypatch.setenv('CONTROLLER_HOST', 'https://awx.invalid')
    monkeypatch.setenv('CONTROLLER_OAUTH_TOKEN', 'stand-in-token')
    init_plugin_loader()
    play = load('playbooks/awx_configure.yml')[0]
    variables = dict(data)
    variables.update(play['vars'])
    defaults = Templar(loader=DataLoader(), variables=variables).template(
        {key: trust_as_template(value) for key, value in play['module_defaults']['group/awx.awx.controller'].items()})
    checked = {}
    for task in play['tasks']:
        module = [key for key in task if key.startswith('awx.awx.')]
        if not module:
            continue
        name = module[0].split('.')[-1]
        items = [None]
        if 'loop' in task:
            items = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(task['loop']))
            assert items, task['name']
        for item in items:
            templar = Templar(loader=DataLoader(), variables=dict(variables, item=item))
            args = templar.template({key: trust_as_template(value) if isinstance(value, str) else value
                                     for key, value in task[module[0]].items()})
            params = dict(defaults, **args)
            errors, unsupported = validate(awx_specs[name], params)
            assert not errors and not unsupported, (task['name'], item, errors, unsupported)
            if params.get('approval_node'):
                suboptions = awx_specs[name]['documentation']['options']['approval_node']['suboptions']
                spec = {key: dict(type=value.get('type', 'str'), required=bool(value.get('required')))
                        for key, value in suboptions.items()}
                errors, unsupported = validate(dict(argument_spec=spec), dict(params['approval_node']))
                assert not errors and not unsupported, (item, errors, unsupported)
            checked[name] = checked.get(name, 0) + 1
    nodes = sum(len(item['simplified_workflow_nodes']) for item in data['controller_workflows'])
    assert checked == {'execution_environment': 1, 'project': 1, 'inventory': 1,
                       'credential_type': len(data['controller_credential_types']),
                       'job_template': len(data['controller_templates']),
                       'workflow_job_template': len(data['controller_workflows']),
                       'workflow_job_template_node': 2 * nodes}


def test_data_keys_all_reach_the_modules(data):
    """Nothing in the data is silently dropped by the playbook: every key of an item is passed to its module."""
    tasks = dict((key.split('.')[-1], task[key]) for task in load('playbooks/awx_configure.yml')[0]['tasks']
                 for key in task if key.startswith('awx.awx.') and 'item.0' not in str(task[key]))
    for section, module in (('controller_credential_types', 'credential_type'), ('controller_templates', 'job_template'),
                            ('controller_workflows', 'workflow_job_template')):
        passed = set(tasks[module])
        for item in data[section]:
            extra = set(item) - passed - {'simplified_workflow_nodes'}
            assert not extra, (section, item['name'], extra)
    node_tasks = [task['awx.awx.workflow_job_template_node'] for task in load('playbooks/awx_configure.yml')[0]['tasks']
                  if 'awx.awx.workflow_job_template_node' in task]
    passed = set().union(*[set(task) for task in node_tasks])
    for workflow in data['controller_workflows']:
        for node in workflow['simplified_workflow_nodes']:
            assert not set(node) - passed, node


@pytest.mark.parametrize('kind', ['controller_templates', 'controller_workflows'])
def test_survey_variables_are_role_options_of_a_compatible_type(data, kind):
    incident = role_options('incident', 'main')
    by_name = dict((item['name'], item) for item in data['controller_templates'])
    for item in data[kind]:
        if kind == 'controller_templates':
            playbooks = [item['playbook']]
        else:
            playbooks = [by_name[node['unified_job_template']]['playbook'] for node in item['simplified_workflow_nodes']
                         if node.get('unified_job_template') and 'review' not in node['identifier']]
        for playbook in set(playbooks):
            options = dict(incident)
            options.update(role_options(*role_of(playbook[len('playbooks/'):-4])))
            for question in item['survey_spec']['spec']:
                variable = question['variable']
                assert variable in options, (item['name'], variable)
                option = options[variable]
                kind_of = option.get('type', 'str')
                compatible = {'integer': ('int',), 'float': ('float',), 'text': ('str', 'raw', 'path'),
                              'multiplechoice': ('bool', 'str')}
                assert kind_of in compatible[question['type']], (item['name'], variable, question['type'], kind_of)
                if question['type'] == 'multiplechoice':
                    expected = ['true', 'false'] if kind_of == 'bool' else [str(c) for c in option['choices']]
                    assert question['choices'] == expected, (item['name'], variable)
                if 'default' in question:
                    assert 'default' in option
                    spec = {variable: dict((k, v) for k, v in option.items() if k in ('type', 'choices', 'elements'))}
                    errors, _unsupported = validate(dict(argument_spec=spec), {variable: question['default']})
                    assert not errors, (item['name'], variable, errors)
                    if question['type'] in ('integer', 'float'):
                        assert float(question['default']) == float(option['default']), (item['name'], variable)
                    else:
                        assert str(question['default']).lower() == str(option['default']).lower(), (item['name'], variable)
                assert question['question_description'], variable


def test_no_secret_in_any_survey(data):
    secrets = set()
    for ctype in data['controller_credential_types']:
        for field in ctype['inputs']['fields']:
            if field.get('secret'):
                secrets.add(field['id'])
    for item in data['controller_templates'] + data['controller_workflows']:
        for question in item['survey_spec']['spec']:
            assert not SECRET.search(question['variable']), (item['name'], question['variable'])
            assert question['type'] != 'password', (item['name'], question['variable'])
            assert question['variable'] not in secrets
        assert not item.get('extra_vars'), 'no variables (nor secrets) in a template: %s' % item['name']


def test_workflow_links_resolve_and_approvals_time_out(data):
    templates = set(item['name'] for item in data['controller_templates'])
    assert [item['name'] for item in data['controller_workflows']] == [
        'incident.response %s (gated)' % name
        for name in ('emergency_disable', 'database_down', 'rollback', 'tview_restart', 'queue_backlog', 'redis_oom',
                     'redis_down', 'security_breach')]
    for workflow in data['controller_workflows']:
        nodes = workflow['simplified_workflow_nodes']
        identifiers = [node['identifier'] for node in nodes]
        assert len(identifiers) == len(set(identifiers))
        for node in nodes:
            for link in ('success_nodes', 'failure_nodes', 'always_nodes'):
                for target in node.get(link, []):
                    assert target in identifiers, (workflow['name'], node['identifier'], target)
            assert ('unified_job_template' in node) != ('approval_node' in node), node
            if 'unified_job_template' in node:
                assert node['unified_job_template'] in templates, node
            else:
                approval = node['approval_node']
                assert isinstance(approval['timeout'], int) and not isinstance(approval['timeout'], bool)
                assert approval['timeout'] > 0
                assert 'check' in approval['description'] and 'plan' in approval['description']
        # check -> approval -> run -> review
        chain = dict((node['identifier'], node.get('success_nodes', []) + node.get('always_nodes', [])) for node in nodes)
        assert chain == {'check': ['approval'], 'approval': ['run'], 'run': ['review'], 'review': []}
        by_id = dict((node['identifier'], node) for node in nodes)
        assert by_id['check']['unified_job_template'].endswith('(check)')
        assert by_id['run']['unified_job_template'].endswith('(run)')
        assert by_id['review']['unified_job_template'] == 'incident.response post_incident_review (run)'
        assert [q for q in workflow['survey_spec']['spec'] if q['variable'] == 'incident_id'][0]['required'] is True


def test_credential_types_inject_only_their_fields(data):
    env = jinja2.Environment()
    kinds = set()
    for ctype in data['controller_credential_types']:
        fields = set(field['id'] for field in ctype['inputs']['fields'])
        assert set(ctype['inputs'].get('required', [])) <= fields, ctype['name']
        for section, values in ctype['injectors'].items():
            assert section in ('env', 'extra_vars', 'file'), section
            for key, value in values.items():
                used = jinja2.meta.find_undeclared_variables(env.parse(value)) - {'tower'}
                assert used <= fields, (ctype['name'], key, used)
                if section == 'env':
                    assert re.match(r'^[A-Z][A-Z0-9_]*$', key), key
        kinds.add(ctype['name'])
        for field in ctype['inputs']['fields']:
            if SECRET.search(field['id']) or field['id'] in ('kubeconfig', 'url') and 'Redis' in ctype['name']:
                assert field.get('secret') is True, (ctype['name'], field['id'])
    assert {'incident.response PostgreSQL', 'incident.response Docker host', 'incident.response kubeconfig',
            'incident.response Alertmanager', 'incident.response Redis', 'incident.response notification webhooks',
            'incident.response SMTP'} <= kinds
    kube = [c for c in data['controller_credential_types'] if c['name'] == 'incident.response kubeconfig'][0]
    assert kube['injectors']['file'] == {'template.kubeconfig': '{{ kubeconfig }}'}
    assert kube['injectors']['env']['K8S_AUTH_KUBECONFIG'] == '{{ tower.filename.kubeconfig }}'
    pg = [c for c in data['controller_credential_types'] if c['name'] == 'incident.response PostgreSQL'][0]
    assert set(pg['injectors']['env']) >= {'PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE'}
    used = set(name for item in data['controller_templates'] for name in item['credentials'])
    source = load('awx/source.yml')['credentials']
    assert used <= set(entry['name'] for entry in source.values())
