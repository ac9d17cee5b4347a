"""A STAND-IN for the part of an AWX controller that turns a job template into an ansible-runner job.

No AWX can run on these machines (it needs Kubernetes and images from a registry), so the tests build each job the
way AWX's job launch does, from the committed data (awx/*.yml), and run it with the real ansible-runner 2.4.3:

* a FRESH private data dir per job (ansible-runner keeps --cmdline in env/cmdline and would reuse it on the next run
  of the same dir: a check job followed by a run job in one dir would run in check mode again);
* extra vars = the template's extra_vars + the survey (every unanswered question with a default gets its default,
  as AWX does; an answer outside a multiple choice or of the wrong type is refused, as AWX refuses the launch) + the
  workflow's survey answers and the node's extra_data + the credentials' extra_vars injectors;
* job type check -> --check, diff_mode -> --diff;
* credential injectors: env -> env/envvars, file -> a file in the private data dir (tower.filename.<name>), rendered
  from the credential's inputs with Jinja as AWX renders them;
* the job's process environment is clean (PATH, HOME, LANG): PG*, DOCKER_HOST, REDIS_URL... come from the
  credentials only, never from the test's environment;
* a workflow: nodes in the order of their links; an approval node is given or denied by the test (a person).
"""
import json
import os
import shutil
import subprocess
import threading

import jinja2
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
BIN = os.path.join(ROOT, '.venv', 'bin')


def load(name):
    with open(os.path.join(ROOT, 'awx', name + '.yml')) as handle:
        return yaml.safe_load(handle)[name]


class LaunchRefused(Exception):
    """AWX would refuse the launch (a survey answer it does not accept)."""


class Job(object):
    def __init__(self, pdd, ident, rc, status):
        self.pdd, self.ident, self.rc, self.status = pdd, ident, rc, status
        self.artifacts = os.path.join(pdd, 'artifacts', ident)

    @property
    def stdout(self):
        with open(os.path.join(self.artifacts, 'stdout')) as handle:
            return handle.read()

    @property
    def output(self):
        """The job's output and its task results (the display shortens long lines; the events carry them whole)."""
        parts = [self.stdout]
        for event in self.events():
            res = (event.get('event_data') or {}).get('res')
            if res:
                parts.append(json.dumps(res))
        return ' '.join(' '.join(parts).split())

    def events(self):
        directory = os.path.join(self.artifacts, 'job_events')
        found = []
        for name in os.listdir(directory):
            if name.endswith('.json') and not name.endswith('-partial.json'):
                with open(os.path.join(directory, name)) as handle:
                    found.append(json.load(handle))
        return sorted(found, key=lambda event: event['counter'])

    def stats(self):
        ends = [event for event in self.events() if event['event'] == 'playbook_on_stats']
        return ends[-1]['event_data'] if ends else {}

    def changed(self):
        return sum((self.stats().get('changed') or {}).values())

    def __repr__(self):
        return 'job %s rc=%s status=%s\n%s' % (self.ident, self.rc, self.status, self.output[-5000:])


class Controller(object):
    """Launches the committed job templates and workflows as AWX would (see the module docstring)."""

    def __init__(self, base, credentials, collections_path):
        self.base = str(base)
        self.credentials = credentials            # credential name -> inputs (the values an admin typed)
        self.collections_path = collections_path  # what the execution environment has installed
        self.templates = dict((item['name'], item) for item in load('controller_templates'))
        self.workflows = dict((item['name'], item) for item in load('controller_workflows'))
        self.types = dict((item['name'], item) for item in load('controller_credential_types'))
        with open(os.path.join(ROOT, 'awx', 'source.yml')) as handle:
            source = yaml.safe_load(handle)
        self.type_of = dict((entry['name'], entry['type']) for entry in source['credentials'].values())
        self.jobs = 0
        self.lock = threading.Lock()
        self.inventory_hosts = {'localhost': {'ansible_connection': 'local',
                                              'ansible_python_interpreter': os.path.join(BIN, 'python')}}

    @staticmethod
    def survey_vars(spec, answers):
        """What AWX puts in extra vars from a survey: answers (checked) and the defaults of unanswered questions."""
        found = {}
        known = set()
        for question in spec['spec']:
            variable = question['variable']
            known.add(variable)
            if variable in answers:
                value = answers[variable]
            elif 'default' in question:
                value = question['default']
            elif question.get('required'):
                raise LaunchRefused('survey: %s is required' % variable)
            else:
                continue
            if question['type'] == 'multiplechoice' and str(value) not in question['choices']:
                raise LaunchRefused('survey: %r is not a choice of %s' % (value, variable))
            if question['type'] == 'integer':
                if isinstance(value, bool) or not isinstance(value, int):
                    raise LaunchRefused('survey: %s takes an integer' % variable)
            if question['type'] == 'float' and not isinstance(value, (int, float)):
                raise LaunchRefused('survey: %s takes a number' % variable)
            if question.get('required') and value in ('', None):
                raise LaunchRefused('survey: %s is required' % variable)
            found[variable] = value
        unknown = set(answers) - known
        if unknown:
            raise LaunchRefused('survey: no question for %s' % sorted(unknown))
        return found

    def inject(self, names, pdd, overrides=None):
        env, extra = {}, {}
        for name in names:
            ctype = self.types[self.type_of[name]]
            inputs = dict((field['id'], field.get('default', '')) for field in ctype['inputs']['fields'])
            inputs.update((overrides or {}).get(name) or self.credentials[name])
            missing = [field for field in ctype['inputs'].get('required', []) if not inputs.get(field)]
            if missing:
                raise LaunchRefused('credential %s lacks %s' % (name, missing))
            injectors = ctype['injectors']
            files = {}
            for key, template in (injectors.get('file') or {}).items():
                label = key.split('.', 1)[1] if '.' in key else 'template'
                path = os.path.join(pdd, 'env', 'cred_%s_%s' % (ctype['name'].split()[-1], label))
                with open(path, 'w') as handle:
                    handle.write(jinja2.Template(template).render(**inputs))
                os.chmod(path, 0o600)
                files[label] = path
            context = dict(inputs, tower=dict(filename=files or None))
            if files and list(files) == ['template']:
                context['tower'] = dict(filename=files['template'])
            for key, template in (injectors.get('env') or {}).items():
                env[key] = jinja2.Template(template).render(**context)
            for key, template in (injectors.get('extra_vars') or {}).items():
                extra[key] = jinja2.Template(template).render(**context)
        return env, extra

    def launch(self, name, answers=None, workflow_vars=None, extra_data=None, credentials=None, limit=None,
               inventory_hosts=None, forks=None, launch_vars=None, inputs=None):
        """Run the job template NAME; returns the Job (after it ended).

        launch_vars: extra variables given at launch (refused unless the template asks for variables on launch);
        inputs: {credential name: inputs} of the credentials chosen at launch (ask_credential_on_launch).
        """
        template = self.templates[name]
        if launch_vars and not template['ask_variables_on_launch']:
            raise LaunchRefused('%s does not ask for variables on launch' % name)
        if (inputs or credentials is not None) and not template['ask_credential_on_launch']:
            raise LaunchRefused('%s does not ask for credentials on launch' % name)
        with self.lock:
            self.jobs += 1
            number = self.jobs
        ident = 'job-%03d' % number
        pdd = os.path.join(self.base, ident)
        assert not os.path.exists(pdd), 'a job reuses a private data dir'
        for sub in ('project', 'inventory', 'env'):
            os.makedirs(os.path.join(pdd, sub))
        # the project checkout: the playbooks; the collection comes from the execution environment
        os.symlink(os.path.join(ROOT, 'playbooks'), os.path.join(pdd, 'project', 'playbooks'))
        with open(os.path.join(pdd, 'project', 'ansible.cfg'), 'w') as handle:
            handle.write('[defaults]\ncollections_path = %s\ninterpreter_python = auto_silent\n'
                         'host_key_checking = False\n' % self.collections_path)
        hosts = inventory_hosts or self.inventory_hosts
        with open(os.path.join(pdd, 'inventory', 'hosts.json'), 'w') as handle:
            json.dump({'all': {'hosts': hosts}}, handle)
        extravars = dict(template.get('extra_vars') or {})
        extravars.update(self.survey_vars(template['survey_spec'], dict(answers or {})) if template['survey_enabled']
                         else {})
        extravars.update(launch_vars or {})
        extravars.update(workflow_vars or {})
        extravars.update(extra_data or {})
        env, extra = self.inject(credentials if credentials is not None else template['credentials'], pdd, inputs)
        extravars.update(extra)
        env.update(JOB_ID=str(number), AWX_JOB_ID=str(number), ANSIBLE_NOCOLOR='1')
        with open(os.path.join(pdd, 'env', 'extravars'), 'w') as handle:
            json.dump(extravars, handle)
        with open(os.path.join(pdd, 'env', 'envvars'), 'w') as handle:
            json.dump(env, handle)
        cmdline = []
        if template['job_type'] == 'check':
            cmdline.append('--check')
        if template['diff_mode']:
            cmdline.append('--diff')
        if limit:
            cmdline += ['--limit', limit]
        if forks:
            cmdline += ['--forks', str(forks)]
        cmd = [os.path.join(BIN, 'ansible-runner'), 'run', pdd, '-p', template['playbook'], '--ident', ident]
        if cmdline:
            cmd += ['--cmdline', ' '.join(cmdline)]
        clean = dict(PATH=BIN + os.pathsep + '/usr/local/bin:/usr/bin:/bin', HOME=os.environ.get('HOME', '/root'),
                     LANG='C.UTF-8')
        subprocess.run(cmd, cwd=pdd, env=clean, capture_output=True, text=True, timeout=900, check=False)
        artifacts = os.path.join(pdd, 'artifacts', ident)
        with open(os.path.join(artifacts, 'rc')) as handle:
            rc = int(handle.read().strip())
        with open(os.path.join(artifacts, 'status')) as handle:
            status = handle.read().strip()
        return Job(pdd, ident, rc, status)

    def launch_workflow(self, name, answers, approve):
        """Run the workflow NAME; approve: True (a person approves), False (denies). Returns {identifier: Job}."""
        workflow = self.workflows[name]
        survey = self.survey_vars(workflow['survey_spec'], answers)
        nodes = dict((node['identifier'], node) for node in workflow['simplified_workflow_nodes'])
        targets = set(t for node in nodes.values() for link in ('success_nodes', 'failure_nodes', 'always_nodes')
                      for t in node.get(link, []))
        pending = [identifier for identifier in nodes if identifier not in targets]
        ran = {}
        while pending:
            identifier = pending.pop(0)
            node = nodes[identifier]
            if 'approval_node' in node:
                ran[identifier] = 'approved' if approve else 'denied'
                ok = bool(approve)
            else:
                asked = set(q['variable'] for q in self.templates[node['unified_job_template']]['survey_spec']['spec'])
                # the workflow's answers answer the node's survey (AWX passes them to the job as its answers)
                job = self.launch(node['unified_job_template'],
                                  answers=dict((k, v) for k, v in survey.items() if k in asked),
                                  workflow_vars=survey, extra_data=node.get('extra_data'))
                ran[identifier] = job
                ok = job.status == 'successful'
            follow = node.get('always_nodes', []) + (node.get('success_nodes', []) if ok else
                                                     node.get('failure_nodes', []))
            pending.extend(follow)
        return ran


def remove(path):
    shutil.rmtree(path, ignore_errors=True)
