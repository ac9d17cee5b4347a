#!/usr/bin/env python
"""Alerts soak: N alerts through the lab's Alertmanager and a real ansible-rulebook; figures, not a timed test.

Run with the lab up (make lab-up) and build/eda-venv installed (make setup). It writes the lab's Alertmanager
configuration with its route to the rulebook (tests/integration/files/lab_alertmanager_rulebook.yml: the lab role's
task files, POST /-/reload, never a restart), starts ansible-rulebook on the lab's rulebook port, and then:

  soak:  --alerts N distinct alerts (SoakAlert, unknown to the map: the read-only triage), each posted twice to
         Alertmanager, plus each Alertmanager webhook payload delivered a second time straight to the rulebook (a
         retried delivery). Prints the time from the post to the incident opened and to the dispatch done
         (min / median / p90 / max), and the duplicates: incidents per fingerprint > 1, runs per alert > 1.
  loop:  --fault workers_down --rounds R: gameday causes the fault with gameday_alert (NoActiveWorkers fired into
         Alertmanager), the rulebook runs no_active_workers.yml; the time from the alert to the workers back; then
         the fault is cleared and the silence expired. Prints cured / failed / duplicate runs.

    benchmarks/alerts_soak.py [--alerts 10] [--fault workers_down --rounds 3] [--timeout 600]
Incidents go to a temporary files store (removed at the end); the alerts carry soak=<run id> and are resolved.
"""
import argparse
import json
import os
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
from ansible_collections.incident.response.plugins.module_utils import _incident  # noqa: E402 pylint: disable=wrong-import-position

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
        self.proc = subprocess.Popen([RULEBOOK, '-r', os.path.join(ROOT, 'extensions/eda/rulebooks/alertmanager.yml'),
                                      '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
                                      '-E', 'ALERT_WEBHOOK_PORT,ALERT_WEBHOOK_TOKEN', '--print-events'],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
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
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
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


def loop(lab, fault, rounds, timeout, run_id):
    plays = dict(workers_down='No active workers')
    if fault not in plays:
        sys.exit('--fault: only %s are looped (act-mapped faults with a verified cure)' % ', '.join(sorted(plays)))
    cured, failed, duplicates, times = 0, 0, 0, []
    for number in range(rounds):
        tag = '%s-%d' % (run_id, number)
        extra = dict(fault=fault, gameday_alert=True, gameday_alert_labels=dict(soak=tag, dispatch='incident-response'))
        started = time.monotonic()
        lab.playbook('playbooks/gameday.yml', extra)
        try:
            record = lab.wait(lambda: (lab.incidents(soak=tag) or [None])[0], timeout, 'the incident of round %d' % number)
            lab.wait(lambda: any(e['type'] == 'play_end' and e.get('play') == plays[fault]
                                 for e in lab.store.events(record['id'])), timeout, 'the cure of round %d' % number)
            elapsed = time.monotonic() - started
            record = lab.store.get(record['id'])
            if record['status'] == 'monitoring':
                cured += 1
                times.append(elapsed)
            else:
                failed += 1
            time.sleep(2)
            duplicates += len(lab.incidents(soak=tag)) - 1
            duplicates += max(0, sum(1 for e in lab.store.events(record['id'])
                                     if e['type'] == 'play_end' and e.get('play') == plays[fault]) - 1)
        except RuntimeError as exc:
            print('round %d: %s' % (number, exc))
            failed += 1
        finally:
            lab.playbook('playbooks/gameday.yml', dict(extra, gameday_action='clear'))
            for silence in http('GET', lab.am + '/api/v2/silences'):
                if silence['status']['state'] == 'active' and any(
                        m['name'] == 'soak' and m['value'] == tag for m in silence['matchers']):
                    http('DELETE', lab.am + '/api/v2/silence/%s' % silence['id'])
    print('\n== loop: %s x %d (gameday alert -> Alertmanager -> rulebook -> playbook)' % (fault, rounds))
    print('alert -> workers back:    %s' % figures(times))
    print('cured %d  failed %d  duplicate runs/incidents %d' % (cured, failed, duplicates))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--alerts', type=int, default=10)
    parser.add_argument('--fault', default='')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--timeout', type=int, default=600)
    args = parser.parse_args()
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
        if args.fault:
            loop(lab, args.fault, args.rounds, args.timeout, run_id)
    finally:
        lab.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
