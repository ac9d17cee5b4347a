#!/usr/bin/env python
"""Alerts soak: N alerts through the lab's Alertmanager and a real ansible-rulebook; figures, not a timed test.

Run with the lab up (make lab-up) and build/eda-venv installed (make setup). It writes the lab's Alertmanager
configuration with its route to the rulebook (tests/integration/files/lab_alertmanager_rulebook.yml: the lab role's
task files, POST /-/reload, never a restart), starts ansible-rulebook on the lab's rulebook port, and then:

  soak:  --alerts N distinct alerts (SoakAlert, unknown to the map: the read-only triage), each posted twice to
         Alertmanager, plus each Alertmanager webhook payload delivered a second time straight to the rulebook (a
         retried delivery). Prints the time from the post to the incident opened and to the dispatch done
         (min / median / p90 / max), and the duplicates: incidents per fingerprint > 1, runs per alert > 1.
  loop:  --fault F[,F...] or --fault all, --rounds R: every act-mapped alert of the map through the whole loop, R
         rounds in a row per fault: gameday causes the fault with gameday_alert (its alert posted to Alertmanager,
         group_wait 1s), the rulebook runs the dispatcher, the dispatcher the mapped playbook. Faults (Faults):
           workers_down        -> NoActiveWorkers                 -> no_active_workers.yml
           worker_shortage     -> HighQueueDepth                  -> scale_workers.yml
           idle_in_transaction -> DatabaseConnectionPoolExhausted -> connection_pool_exhausted.yml
           service_crash       -> ServiceDown (service=api)       -> service_down.yml
         Each round measures the time from the alert's startsAt to the recovery VERIFIED IN THE LAB (not the
         playbook's word): workers running and heartbeating since the alert (4 after HighQueueDepth); the drill's
         sessions idle in transaction ended and the protected one kept (in a database of its own, ir_alerts_soak,
         created and dropped by the soak; gameday_instance keeps its holder apart from other drills); api running,
         healthy, GET /health 200. Cured: the verified recovery AND the playbook's incident in monitoring AND its
         remediation task changed something, the recovery not seen before that task started (else: interference,
         another user of the shared lab undid the fault). Duplicates: incidents per alert > 1, runs of the
         playbook per alert > 1 (and the rulebook's dispatch count per alert name). Whatever happened, the round
         then clears its fault (resolving the alert), expires its silences and restores the lab (2 workers, api
         healthy). The pool drill lowers the idle-in-transaction threshold to 2 s (lab_map_override: the runbooks'
         30 minutes would spare fresh sessions), in the alert's database only.

    benchmarks/alerts_soak.py [--alerts 10] [--fault all --rounds 10] [--timeout 600] [--keep-log FILE]
Incidents go to a temporary files store (removed at the end); the alerts carry soak=<run id> and are resolved.
"""
import argparse
import calendar
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(ROOT, 'build', 'collections'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
from ansible_collections.incident.response.plugins.module_utils import _incident  # noqa: E402 pylint: disable=wrong-import-position
from conftest import stop_process_group  # noqa: E402 pylint: disable=wrong-import-position

RULEBOOK = os.path.join(ROOT, 'build', 'eda-venv', 'bin', 'ansible-rulebook')
BIN = os.path.join(ROOT, '.venv', 'bin')


def lab_env(lab_dir):
    env = {}
    with open(os.path.join(lab_dir, 'lab.env')) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith('export ') and '=' in line:
                key, value = line[len('export '):].split('=', 1)
                env[key] = value.strip().strip("'\"")
    return env


def http(method, url, body=None, token=None):
    headers = {'Content-Type': 'application/json'}
    if token:
        headers['Authorization'] = 'Bearer %s' % token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:  # the rulebook's webhook answers text
        return raw.decode('utf-8', 'replace')


def stamp(seconds):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds)) + '.%03dZ' % int((seconds % 1) * 1000)


def figures(values):
    if not values:
        return 'none'
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return 'min %.1fs  median %.1fs  p90 %.1fs  max %.1fs  (n=%d)' % (values[0], statistics.median(values), p90,
                                                                      values[-1], len(values))


class Lab(object):
    def __init__(self, env, store_dir):
        self.env = env
        self.am = env['LAB_ALERTMANAGER_URL'].rstrip('/')
        self.port = int(env.get('LAB_EDA_WEBHOOK_PORT') or 59095)
        token_file = env.get('LAB_EDA_WEBHOOK_TOKEN_FILE') or os.path.join(env['LAB_DIR'], 'secrets', 'eda_webhook_token')
        self.run_env = dict(os.environ, **env)
        self.run_env.update(ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                            INCIDENT_STORE='files', INCIDENT_STORE_PATH=store_dir,
                            PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
        self.playbook('tests/integration/files/lab_alertmanager_rulebook.yml')
        with open(token_file) as handle:
            self.token = handle.read().strip()
        self.store = _incident.get_store(dict(store='files', store_path=store_dir, store_dsn=None,
                                              store_schema='incident_response'))
        self.log_path = os.path.join(os.path.dirname(store_dir), 'rulebook.log')
        self.log = open(self.log_path, 'w')
        env = dict(self.run_env, ALERT_WEBHOOK_PORT=str(self.port), ALERT_WEBHOOK_TOKEN=self.token)
        # the lab inventory plus the drill's map override (lab_map_override), as a host variable of localhost
        self.inventory = os.path.join(os.path.dirname(store_dir), 'inventory.yml')
        with open(self.inventory, 'w') as handle:
            json.dump(dict(all=dict(hosts=dict(localhost=dict(
                ansible_connection='local', ansible_python_interpreter='{{ ansible_playbook_python }}',
                alert_dispatch_map_extra=lab_map_override())))), handle, indent=1)
        self.proc = subprocess.Popen([RULEBOOK, '-r', os.path.join(ROOT, 'extensions/eda/rulebooks/alertmanager.yml'),
                                      '-i', self.inventory,
                                      '-E', 'ALERT_WEBHOOK_PORT,ALERT_WEBHOOK_TOKEN', '--print-events'],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)  # stopped with its playbooks
        started = time.monotonic()
        try:
            self.wait(self.listening, 120, 'the rulebook webhook on 127.0.0.1:%d' % self.port)
        except BaseException:
            self.stop()
            raise
        print('rulebook listening after %.1fs' % (time.monotonic() - started))

    def playbook(self, path, extra=None):
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
               os.path.join(ROOT, path)]
        for key, value in (extra or {}).items():
            cmd.extend(['-e', json.dumps({key: value})])
        proc = subprocess.run(cmd, cwd=ROOT, env=self.run_env, capture_output=True, text=True, check=False,
                              timeout=900, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            sys.exit('failed: %s\n%s' % (' '.join(cmd), (proc.stdout + proc.stderr)[-3000:]))
        return proc.stdout

    def listening(self):
        if self.proc.poll() is not None:
            sys.exit('ansible-rulebook exited: %s' % self.output()[-3000:])
        try:
            http('POST', 'http://127.0.0.1:%d/alerts' % self.port, dict(ping=True), self.token)
            return True
        except Exception:  # pylint: disable=broad-except
            return False

    def output(self):
        with open(self.log_path) as handle:
            return handle.read()

    @staticmethod
    def wait(predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise RuntimeError('timed out after %ss waiting for %s' % (timeout, what))

    def alerts(self, **labels):
        query = '&'.join('filter=' + urllib.request.quote('%s="%s"' % item) for item in sorted(labels.items()))
        return http('GET', self.am + '/api/v2/alerts?' + query)

    def incidents(self, **labels):
        return [r for r in self.store.list() if all(((r.get('alert') or {}).get('labels') or {}).get(k) == v
                                                    for k, v in labels.items())]

    def stop(self):
        """The rulebook and the playbooks it started (its process group): a playbook left behind polls forever."""
        stop_process_group(self.proc)
        self.log.close()


def soak(lab, count, timeout, run_id):
    names = ['SoakAlert']
    posted, opened, done = {}, {}, {}
    alerts = []
    for index in range(count):
        labels = dict(alertname='SoakAlert', soak=run_id, idx=str(index), dispatch='incident-response')
        alert = dict(labels=labels, annotations=dict(summary='soak alert %d' % index), startsAt=stamp(time.time()))
        http('POST', lab.am + '/api/v2/alerts', [alert])
        http('POST', lab.am + '/api/v2/alerts', [alert])  # the same alert again (Prometheus re-sends)
        posted[str(index)] = time.monotonic()
        alerts.append(alert)
    # each alert as Alertmanager holds it, delivered once more straight to the rulebook (a retried delivery)
    held = lab.wait(lambda: lab.alerts(soak=run_id) if len(lab.alerts(soak=run_id)) == count else None, 60,
                    'the %d alerts in Alertmanager' % count)
    for alert in held:
        payload = dict(version='4', status='firing', receiver='incident-response', groupKey='soak', alerts=[dict(
            status='firing', labels=alert['labels'], annotations=alert['annotations'], startsAt=alert['startsAt'],
            endsAt=alert['endsAt'], fingerprint=alert['fingerprint'])])
        http('POST', 'http://127.0.0.1:%d/alerts' % lab.port, payload, lab.token)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(done) < count:
        now = time.monotonic()
        for record in lab.incidents(soak=run_id):
            idx = record['alert']['labels']['idx']
            opened.setdefault(idx, now)
            if idx not in done and any(e['type'] == 'play_end' and e.get('play') == 'Triage (read only)'
                                       for e in lab.store.events(record['id'])):
                done[idx] = now
        time.sleep(0.5)
    time.sleep(3)  # let a duplicate run, if any, show
    fingerprints = {}
    for record in lab.incidents(soak=run_id):
        fingerprints.setdefault(record['alert']['fingerprint'], []).append(record['id'])
    runs = [sum(1 for e in lab.store.events(ids[0]) if e['type'] == 'play_end' and e.get('play') == 'Triage (read only)')
            for ids in fingerprints.values()]
    print('\n== soak: %d alerts (%s), each posted twice + one direct redelivery' % (count, ', '.join(names)))
    print('post -> incident opened:  %s' % figures([opened[i] - posted[i] for i in opened]))
    print('post -> triage done:      %s' % figures([done[i] - posted[i] for i in done]))
    print('dispatched %d/%d; incidents %d for %d fingerprints; duplicate incidents %d; duplicate runs %d'
          % (len(done), count, sum(len(v) for v in fingerprints.values()), len(fingerprints),
             sum(len(v) - 1 for v in fingerprints.values()), sum(max(0, r - 1) for r in runs)))
    past = stamp(time.time() + 1)
    time.sleep(1.5)
    http('POST', lab.am + '/api/v2/alerts', [dict(a, endsAt=past) for a in alerts])


# ---------------------------------------------------------------- loop: every act-mapped alert through the lab
class Faults(object):
    """The act-mapped alerts of the map (roles/alert_dispatch/defaults/main.yml), each with the gameday fault that
    fires it and a verified recovery read from the lab itself (not from the playbook's own verdict)."""

    #: fault -> (alert name, the play of the mapped playbook, what the verified recovery is)
    FAULTS = dict(
        workers_down=('NoActiveWorkers', 'No active workers', 'every worker running, each heartbeating since the alert'),
        worker_shortage=('HighQueueDepth', 'Scale workers', 'workers scaled to %d, each heartbeating since the alert'),
        idle_in_transaction=('DatabaseConnectionPoolExhausted', 'Connection pool exhausted',
                             'the drill\'s sessions idle in transaction ended, the protected session kept'),
        service_crash=('ServiceDown', 'Service down', 'api running, healthy and GET /health answering 200'),
    )
    ORDER = ['workers_down', 'worker_shortage', 'idle_in_transaction', 'service_crash']
    #: fault -> the playbook's remediation task (module, task name prefix): it must have changed something, and the
    #: recovery must not be seen before it started, for the cure to be the playbook's (the lab is shared: another
    #: user's `compose up` can undo a fault first)
    REMEDIATION = dict(workers_down=('incident.response.service_restart', ''),
                       worker_shortage=('incident.response.service_scale', ''),
                       idle_in_transaction=('incident.response.pg_backends', 'End sessions idle'),
                       service_crash=('incident.response.service_restart', ''))
    SCALED = 4  # workers_down_replicas: the workers after NoActiveWorkers and HighQueueDepth
    DATABASE = 'ir_alerts_soak'  # the pool drill's own database (the lab's PostgreSQL is shared)
    LAB_WORKERS = 2  # lab_worker_replicas: the lab's normal

    def __init__(self, lab):
        import docker  # pylint: disable=import-outside-toplevel
        import psycopg2  # pylint: disable=import-outside-toplevel
        self.psycopg2 = psycopg2
        self.lab = lab
        self.env = lab.env
        self.client = docker.DockerClient(base_url=self.env['DOCKER_HOST'], timeout=60)
        self.project = self.env['LAB_COMPOSE_PROJECT']

    def containers(self, service):
        return self.client.containers.list(all=True, filters={'label': [
            'com.docker.compose.project=%s' % self.project, 'com.docker.compose.service=%s' % service]})

    def query(self, sql, params=None, dbname=None, fetch=True):
        conn = self.psycopg2.connect(host=self.env['PGHOST'], port=int(self.env['PGPORT']), user=self.env['PGUSER'],
                                     password=self.env['PGPASSWORD'],
                                     dbname=dbname or self.env.get('PGDATABASE') or 'scheduler',
                                     application_name='alerts-soak-observer', connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = '30s'")
                cur.execute(sql, params)
                return cur.fetchall() if fetch else None
        finally:
            conn.close()

    def create_database(self):
        """The pool drill's database: its sessions, and the remediation scoped to it by the alert's database label,
        never touch the sessions of others in the shared lab. The holder's idle transactions insert into audit_log."""
        self.drop_database()
        self.query('CREATE DATABASE %s' % self.DATABASE, fetch=False)
        self.query('CREATE TABLE audit_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), '
                   "actor text NOT NULL, action text NOT NULL, detail text NOT NULL DEFAULT ''); "
                   'GRANT SELECT, INSERT ON audit_log TO %s; GRANT USAGE ON SEQUENCE audit_log_id_seq TO %s'
                   % (self.env['LAB_PG_APP_USER'], self.env['LAB_PG_APP_USER']), dbname=self.DATABASE, fetch=False)

    def drop_database(self):
        self.query('DROP DATABASE IF EXISTS %s WITH (FORCE)' % self.DATABASE, fetch=False)

    def workers_beating(self, since, count=None):
        workers = self.containers('worker')
        if not workers or any(c.status != 'running' for c in workers) or (count and len(workers) != count):
            return False
        ids = ['worker-' + c.id[:12] for c in workers]
        rows = self.query("SELECT count(*) FROM worker_heartbeat WHERE worker_id = ANY(%s) AND status = 'running' "
                          "AND last_seen > now() - interval '15 seconds' AND last_seen > to_timestamp(%s)",
                          (ids, since))
        return rows[0][0] == len(ids)

    def sessions(self, instance):
        """The drill's sessions idle in transaction in its database: its own (gameday_idle_tx-<instance>) and the
        protected monitoring one (postgres_exporter), which the remediation must spare."""
        rows = self.query("SELECT CASE WHEN application_name = %s THEN 'drill' ELSE application_name END, count(*) "
                          "FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = %s "
                          "AND application_name IN (%s, 'postgres_exporter') GROUP BY 1",
                          ('gameday_idle_tx-' + instance, self.DATABASE, 'gameday_idle_tx-' + instance))
        return dict(rows)

    def api_answers(self):
        api = self.containers('api')
        if not api or any(c.status != 'running' or (c.attrs['State'].get('Health') or {}).get('Status') != 'healthy'
                          for c in api):
            return False
        try:
            with urllib.request.urlopen(self.env['LAB_API_URL'].rstrip('/') + '/health', timeout=5) as resp:
                return resp.status == 200
        except Exception:  # pylint: disable=broad-except
            return False

    def recovered(self, fault, since, instance):
        """The verified recovery of the fault, read from the lab."""
        if fault == 'workers_down':
            return self.workers_beating(since)
        if fault == 'worker_shortage':
            return self.workers_beating(since, self.SCALED)
        if fault == 'idle_in_transaction':
            held = self.sessions(instance)
            return held.get('drill', 0) == 0 and held.get('postgres_exporter', 0) >= 1
        if fault == 'service_crash':
            return self.api_answers()
        raise ValueError(fault)

    def describe(self, fault, instance):
        """What the lab shows for the fault, for a round's note."""
        try:
            if fault in ('workers_down', 'worker_shortage'):
                return 'workers %s' % sorted(c.status for c in self.containers('worker'))
            if fault == 'idle_in_transaction':
                return 'sessions idle in transaction %s' % self.sessions(instance)
            return 'api %s' % [(c.status, (c.attrs['State'].get('Health') or {}).get('Status'))
                               for c in self.containers('api')]
        except Exception as exc:  # pylint: disable=broad-except
            return 'not read: %s' % exc

    def restore(self, timeout=120):
        """The lab's normal again (2 workers, api healthy, scheduler running), as tests/integration's lab_project."""
        cmd = ['docker-compose', '-p', self.project, '-f', self.env['LAB_COMPOSE_FILE'], 'up', '--detach',
               '--no-recreate', '--scale', 'worker=%d' % self.LAB_WORKERS]
        subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, DOCKER_HOST=self.env['DOCKER_HOST']))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.containers('worker')
            if len(workers) == self.LAB_WORKERS and all(c.status == 'running' for c in workers) and self.api_answers() \
                    and [c.status for c in self.containers('scheduler')] == ['running']:
                return True
            time.sleep(1)
        return False


def lab_map_override():
    """The lab drill's map entry for DatabaseConnectionPoolExhausted: the runbooks' 30 minutes idle in transaction
    would leave the drill's fresh sessions alone, so the drill ends the ones idle for 2 s (in the alert's database
    only, as the shipped map does). Given to the rulebook as an inventory host variable."""
    return dict(DatabaseConnectionPoolExhausted=dict(
        playbook='connection_pool_exhausted.yml', mode='act', system='task_scheduler',
        optional_labels=dict(pg_login_db='database', pg_connections_databases='database'),
        vars=dict(pg_connections_idle_in_transaction_age='2s')))


def parse_stamp(value):
    value = value.rstrip('Z')
    whole, _dot, frac = value.partition('.')
    seconds = calendar.timegm(time.strptime(whole, '%Y-%m-%dT%H:%M:%S'))
    return seconds + (float('0.' + frac[:6]) if frac else 0.0)


def loop_round(lab, faults, fault, number, timeout, run_id):
    """One round: cause the fault with its alert, wait for the verified recovery and the playbook's end, count the
    duplicates; then, whatever happened, clear the fault, expire the round's silences and restore the lab."""
    alertname, play, _what = Faults.FAULTS[fault]
    tag = '%s-%s-%d' % (run_id, fault, number)
    instance = '%s-%d' % (run_id[-8:], number)
    extra = dict(fault=fault, gameday_alert=True, gameday_alert_labels=dict(soak=tag, dispatch='incident-response'),
                 gameday_instance=instance, gameday_database=Faults.DATABASE)
    outcome = dict(fault=fault, round=number, cured=False, seconds=None, duplicates=0, note='')
    try:
        lab.playbook('playbooks/gameday.yml', extra)
        held = lab.alerts(soak=tag)
        if len(held) != 1 or held[0]['labels'].get('alertname') != alertname:
            outcome['note'] = 'gameday fired %s, not one %s' % ([a['labels'].get('alertname') for a in held], alertname)
            return outcome
        posted = parse_stamp(held[0]['startsAt'])
        absent = None
        if faults.recovered(fault, posted, instance):
            absent = ('interference: the fault was not there when its alert fired (nothing to cure; %s)'
                      % faults.describe(fault, instance))
        deadline = time.monotonic() + timeout
        recovered_at = None
        record = None
        ended = False
        while time.monotonic() < deadline:
            if absent is None and recovered_at is None and faults.recovered(fault, posted, instance):
                recovered_at = time.time()
            if record is None:
                record = (lab.incidents(soak=tag) or [None])[0]
            if record is not None and not ended:
                ended = any(e['type'] == 'play_end' and e.get('play') == play for e in lab.store.events(record['id']))
            if ended and (recovered_at is not None or absent):
                break  # (without the fault, the playbook's run is waited for all the same: no overlap with the next)
            if ended and recovered_at is None and lab.store.get(record['id'])['status'] != 'monitoring':
                break  # the playbook failed: no cure to wait for
            time.sleep(1)
        if record is None:
            outcome['note'] = 'no incident within %ss' % timeout
            return outcome
        status = lab.store.get(record['id'])['status']
        if absent:
            outcome['note'] = absent
        elif not ended:
            outcome['note'] = '%s did not end within %ss' % (play, timeout)
        elif recovered_at is None:
            outcome['note'] = 'not recovered (incident %s; %s)' % (status, faults.describe(fault, instance))
        elif status != 'monitoring':
            outcome['note'] = 'recovered but the playbook did not verify it (incident %s)' % status
        else:
            module, prefix = Faults.REMEDIATION[fault]
            acts = [e for e in lab.store.events(record['id']) if e['type'] == 'task' and e.get('module') == module
                    and (e.get('task') or '').startswith(prefix)]
            acted = [e for e in acts if e.get('outcome') == 'changed']
            if not acted:
                outcome['note'] = ('interference: the playbook found nothing to do (%s): someone else undid the fault'
                                   % '; '.join(e.get('summary') or '' for e in acts))
            elif recovered_at < parse_stamp(acted[0]['start']) - 0.5:
                outcome['note'] = ('interference: recovered %.1fs before the playbook acted (someone else undid the '
                                   'fault)' % (parse_stamp(acted[0]['start']) - recovered_at))
            else:
                outcome['cured'] = True
                outcome['seconds'] = recovered_at - posted
        time.sleep(3)  # let a duplicate run, if any, show
        records = lab.incidents(soak=tag)
        runs = sum(1 for r in records for e in lab.store.events(r['id'])
                   if e['type'] == 'play_end' and e.get('play') == play)
        outcome['duplicates'] = (len(records) - 1) + max(0, runs - 1)
        outcome['incidents'], outcome['runs'] = len(records), runs
        return outcome
    except (RuntimeError, SystemExit, subprocess.SubprocessError) as exc:
        outcome['note'] = 'error: %s' % str(exc)[-500:]
        return outcome
    finally:
        try:
            lab.playbook('playbooks/gameday.yml', dict(extra, gameday_action='clear'))
        except SystemExit as exc:
            outcome['note'] += ' (clear failed: %s)' % str(exc)[-300:]
        for silence in http('GET', lab.am + '/api/v2/silences'):
            if silence['status']['state'] in ('active', 'pending') and any(
                    m['name'] == 'soak' and m['value'] == tag for m in silence['matchers']):
                http('DELETE', lab.am + '/api/v2/silence/%s' % silence['id'])
        holder_log = os.path.join(lab.env['LAB_DIR'], 'gameday', '%s-%s.log' % (fault, instance))
        if os.path.exists(holder_log):
            os.remove(holder_log)
        if not faults.restore():
            outcome['note'] += ' (the lab did not come back to 2 workers + api healthy)'


def loop(lab, fault_names, rounds, timeout, run_id):
    faults = Faults(lab)
    if not faults.restore():
        sys.exit('the lab is not in its normal state (2 workers running, api healthy): not starting the loop')
    if 'idle_in_transaction' in fault_names:
        faults.create_database()
    try:
        return loop_faults(lab, faults, fault_names, rounds, timeout, run_id)
    finally:
        if 'idle_in_transaction' in fault_names:
            faults.drop_database()


def loop_faults(lab, faults, fault_names, rounds, timeout, run_id):
    results = {}
    for fault in fault_names:
        alertname, play, what = Faults.FAULTS[fault]
        if '%d' in what:
            what = what % Faults.SCALED
        print('\n== loop: %s -> %s -> %s x %d; verified recovery: %s' % (fault, alertname, play, rounds, what))
        sys.stdout.flush()
        results[fault] = []
        for number in range(rounds):
            outcome = loop_round(lab, faults, fault, number, timeout, run_id)
            results[fault].append(outcome)
            print('  round %d: %s%s%s' % (number, 'cured in %.1fs' % outcome['seconds'] if outcome['cured'] else 'FAILED',
                                          ', duplicates %d' % outcome['duplicates'] if outcome['duplicates'] else '',
                                          (' - ' + outcome['note'].strip()) if outcome['note'].strip() else ''))
            sys.stdout.flush()
    print('\n== loop summary: gameday fault + alert -> Alertmanager (group_wait 1s) -> rulebook -> dispatcher -> '
          'playbook; time from the alert posted (its startsAt) to the recovery verified in the lab')
    output = lab.output()
    for fault in fault_names:
        done = results[fault]
        alertname = Faults.FAULTS[fault][0]
        # the rulebook's own count: the dispatcher prints "<alert> -> <playbook> (act): localhost" once per run
        dispatched = len(re.findall(r'\b%s -> \S+ \(act\): localhost' % alertname, output))
        times = [o['seconds'] for o in done if o['cured']]
        print('%-20s %-32s post -> verified recovery: %s' % (fault, Faults.FAULTS[fault][0], figures(times)))
        interfered = sum(1 for o in done if not o['cured'] and o['note'].startswith('interference'))
        print('%-20s %-32s cured %d  failed %d (interference: %d)  duplicate '
              'runs/incidents %d  (rulebook dispatches %d for %d alerts)'
              % ('', '', len(times), len(done) - len(times), interfered, sum(o['duplicates'] for o in done),
                 dispatched, len(done)))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--alerts', type=int, default=10)
    parser.add_argument('--fault', default='', help='a fault of %s, or all (in that order)' % ', '.join(Faults.ORDER))
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--timeout', type=int, default=600)
    parser.add_argument('--keep-log', default='', help='copy the rulebook output (every playbook run) to this file')
    args = parser.parse_args()
    fault_names = Faults.ORDER if args.fault == 'all' else [f for f in args.fault.split(',') if f]
    unknown = [f for f in fault_names if f not in Faults.FAULTS]
    if unknown:
        sys.exit('--fault: %s unknown; looped are %s, or all' % (', '.join(unknown), ', '.join(Faults.ORDER)))
    if not os.path.exists(RULEBOOK):
        sys.exit('ansible-rulebook is not installed in build/eda-venv (make setup)')
    env = lab_env(os.environ.get('INCIDENT_LAB_DIR') or '/var/lib/incident-response-lab')
    work = tempfile.mkdtemp(prefix='ir-alerts-soak-')
    store_dir = os.path.join(work, 'incidents')
    run_id = 'soak-' + uuid.uuid4().hex[:8]
    lab = Lab(env, store_dir)
    try:
        if args.alerts > 0:
            soak(lab, args.alerts, args.timeout, run_id)
        if fault_names:
            loop(lab, fault_names, args.rounds, args.timeout, run_id)
    finally:
        lab.stop()
        if args.keep_log:
            shutil.copyfile(lab.log_path, args.keep_log)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
