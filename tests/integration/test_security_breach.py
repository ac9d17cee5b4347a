"""SecurityBreach on the lab (issue 14): the drill, check, approved run, unlock, secrets, bad input.

Real services: the lab's PostgreSQL 15 (pg_dump, audit_log, the server log), Docker with a Compose project, nftables,
tcpdump. Two things are the test's own, so that the shared lab is never locked down and the host's firewall never
touched:

* the API is a Compose project of the test (``irsec<pid>``: the lab's api service, same image and scripts, on a
  free port), created and removed by the fixture;
* every nftables rule goes into a network namespace the test creates (``ip netns add``) and deletes; the
  firewall module runs there (``ip netns exec``, or the playbook's ``security_breach_firewall_netns``), and the
  host's ruleset is compared before and after.

The notification goes to HttpReceiver, a STAND-IN for a webhook of the security team (tests/integration/receivers.py).
"""
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, ROOT, assert_clean_failure
from receivers import HttpReceiver

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('nft') or not shutil.which('tcpdump'),
                                reason='needs root, nft (nftables) and tcpdump')

PG_BINDIR = '/usr/lib/postgresql/15/bin'
API_SERVICE = """version: "2.4"
services:
  api:
    image: incident-lab/busybox:latest
    network_mode: host
    command: ["/bin/sh", "/srv/app/api-server.sh"]
    environment:
      API_LISTEN_HOST: "127.0.0.1"
      API_PORT: "{port}"
      API_ROOT: /srv/api
    volumes:
      - "{lab_dir}/compose/app:/srv/app:ro"
      - "{lab_dir}/api:/srv/api:ro"
    labels:
      incident.response.test: "security_breach"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:{port}/health"]
      interval: 2s
      timeout: 3s
      retries: 3
    restart: unless-stopped
    stop_grace_period: 2s
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def sh(*cmd, **kwargs):
    kwargs.setdefault('timeout', 120)
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)


def tcpdumps():
    return sh('pgrep', '-a', 'tcpdump').stdout.strip()


class Project(object):
    def __init__(self, lab_env):
        self.name = 'irsec%d' % os.getpid()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='irsec-compose-')
        self.file = os.path.join(self.dir, 'docker-compose.yml')
        with open(self.file, 'w') as handle:
            handle.write(API_SERVICE.format(port=self.port, lab_dir=lab_env['LAB_DIR']))
        self.env = dict(os.environ, DOCKER_HOST=lab_env['DOCKER_HOST'])

    def compose(self, *args):
        return sh('docker-compose', '-p', self.name, '-f', self.file, *args, env=self.env, timeout=300)

    def status(self):
        out = sh('docker', 'ps', '--all', '--filter', 'label=com.docker.compose.project=%s' % self.name,
                 '--format', '{{.State}} {{.Status}}', env=self.env).stdout.strip()
        return out

    def wait_healthy(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if '(healthy)' in self.status():
                return
            time.sleep(0.5)
        raise AssertionError('api of %s not healthy: %s' % (self.name, self.status()))


@pytest.fixture
def project(lab_env):
    proj = Project(lab_env)
    done = proj.compose('up', '--detach')
    assert done.returncode == 0, done.stderr
    proj.wait_healthy()
    yield proj
    proj.compose('down', '--timeout', '2')
    shutil.rmtree(proj.dir, ignore_errors=True)


class Netns(object):
    def __init__(self):
        self.name = 'irsec%d' % os.getpid()
        sh('ip', 'netns', 'del', self.name)
        assert sh('ip', 'netns', 'add', self.name).returncode == 0
        assert sh('ip', 'netns', 'exec', self.name, 'ip', 'link', 'set', 'lo', 'up').returncode == 0

    def run(self, *cmd, **kwargs):
        return sh('ip', 'netns', 'exec', self.name, *cmd, **kwargs)

    def ruleset(self):
        proc = self.run('nft', 'list', 'ruleset')
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def close(self):
        sh('ip', 'netns', 'del', self.name)


@pytest.fixture
def netns():
    ns = Netns()
    host_before = sh('nft', 'list', 'ruleset').stdout
    yield ns
    ns.close()
    assert sh('nft', 'list', 'ruleset').stdout == host_before, 'the host ruleset changed'


def connects(ns, port):
    """A TCP connect from inside the namespace to 127.0.0.1:port (True, or False when dropped/refused)."""
    code = ('import socket,sys\ns=socket.socket();s.settimeout(2)\n'
            'try:\n s.connect(("127.0.0.1",%d));print("OK")\nexcept OSError as e:\n print("NO",e)\n' % port)
    return ns.run('python3', '-c', code).stdout.startswith('OK')


def netns_module(ansible_env, ns, name, args, check=False):
    """Run incident.response.<name> with ansible inside the test's network namespace."""
    tree = tempfile.mkdtemp(prefix='ir-tree-')
    try:
        cmd = ['ip', 'netns', 'exec', ns.name, os.path.join(BIN, 'ansible'), 'localhost', '-i',
               os.path.join(ROOT, 'inventory', 'lab.yml'), '-m', 'incident.response.%s' % name, '-a',
               json.dumps(args), '--tree', tree] + (['--check'] if check else [])
        proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env, capture_output=True, text=True, timeout=300,
                              check=False)
        path = os.path.join(tree, 'localhost')
        return proc.returncode, (json.load(open(path)) if os.path.exists(path) else {}), proc.stdout + proc.stderr
    finally:
        shutil.rmtree(tree, ignore_errors=True)


# ------------------------------------------------------------------------------------------- firewall_block
def test_firewall_block_in_the_tests_namespace(ansible_env, netns, tmp_path):
    port = free_port()
    server = subprocess.Popen(['ip', 'netns', 'exec', netns.name, 'python3', '-c',  # pylint: disable=consider-using-with
                               'import socket,time\ns=socket.socket();s.bind(("127.0.0.1",%d));s.listen(50)\n'
                               'while True:\n c,_=s.accept();c.close()\n' % port])
    try:
        deadline = time.time() + 20
        while not connects(netns, port) and time.time() < deadline:
            time.sleep(0.2)
        assert connects(netns, port)
        args = dict(incident_id='INC-FW-%d' % os.getpid(), port=port, state_dir=str(tmp_path / 'fw'))
        empty = netns.ruleset()
        for state in ('present', 'absent'):
            args['state'] = state
            before = netns.ruleset()
            rc, result, out = netns_module(ansible_env, netns, 'firewall_block', args, check=True)
            assert rc == 0 and result['changed'] is True, out
            assert all(not a['done'] for a in result['actions'])
            assert netns.ruleset() == before
            rc, result, out = netns_module(ansible_env, netns, 'firewall_block', args)
            assert rc == 0 and result['changed'] is True, out
            state_file = json.load(open(result['state_file']))
            if state == 'present':
                handle = result['rule']['handle']
                assert state_file['active']['handle'] == handle
                assert 'handle %d' % handle in netns.run('nft', '-a', 'list', 'ruleset').stdout
                assert 'incident.response %s block tcp/%d' % (args['incident_id'], port) in netns.ruleset()
                assert not connects(netns, port)
                assert oct(os.stat(result['state_file']).st_mode & 0o777) == '0o600'
            else:
                assert netns.ruleset() == empty and connects(netns, port)
                assert state_file['active'] is None and [h['action'] for h in state_file['history']] == [
                    'added', 'removed']
            after = netns.ruleset()
            for check in (True, False):
                rc, result, out = netns_module(ansible_env, netns, 'firewall_block', args, check=check)
                assert rc == 0 and result['changed'] is False, out
                assert netns.ruleset() == after
    finally:
        server.kill()
        server.wait(timeout=10)


def test_firewall_block_removes_only_its_own_rule(ansible_env, netns, tmp_path):
    netns.run('nft', '-f', '-', input='add table inet incident_response\n'
              'add chain inet incident_response input { type filter hook input priority -10 ; policy accept ; }\n'
              'add rule inet incident_response input tcp dport 9999 drop comment "someone else"\n')
    before = netns.ruleset()
    args = dict(incident_id='INC-FW-OWN', port=9998, state_dir=str(tmp_path / 'fw'))
    rc, result, out = netns_module(ansible_env, netns, 'firewall_block', args)
    assert rc == 0 and result['changed'], out
    rc, result, out = netns_module(ansible_env, netns, 'firewall_block', dict(args, state='absent'))
    assert rc == 0 and result['changed'], out
    assert netns.ruleset() == before  # the other rule, the table and the chain stay


# ------------------------------------------------------------------------------------------- the playbook
def snapshot(project, netns, store, evidence_glob):
    return dict(api=project.status().split(' ')[0], ruleset=netns.ruleset(),
                store=sorted(os.listdir(store)) if os.path.isdir(store) else [],
                evidence=sorted(glob.glob(evidence_glob)), tcpdump=tcpdumps())


def breach_vars(project, netns, lab_env, incident_id, tmp_path, **more):
    extra = dict(incident_id=incident_id, security_breach_project=project.name, security_breach_port=project.port,
                 security_breach_firewall_netns=netns.name, security_breach_firewall_state_dir=str(tmp_path / 'fw'),
                 security_breach_auth_log=os.path.join(lab_env['LAB_DIR'], 'security', 'auth.log'),
                 security_breach_pcap_interface='lo', security_breach_pcap_seconds=3, security_breach_pcap_max_mb=5)
    extra.update(more)
    return extra


def test_breach_drill_check_approve_unlock(ansible, ansible_env, lab_env, project, netns, gameday, tmp_path):
    run = gameday('security_breach')
    assert run.rc == 0, run
    store = ansible_env['INCIDENT_STORE_PATH']
    incident_id = 'INC-SEC-%d' % os.getpid()
    evidence_glob = os.path.join(store, incident_id, 'evidence', '*')
    receiver = HttpReceiver()
    try:
        channels = [dict(name='security-webhook', type='webhook', audience='team',
                         url=receiver.url + '/webhook/security-token-123')]
        extra = breach_vars(project, netns, lab_env, incident_id, tmp_path, security_breach_notify_channels=channels)
        before = snapshot(project, netns, store, evidence_glob)
        assert before['api'] == 'running'

        # --check: the plan; nothing paused, captured, blocked, recorded or sent
        check = ansible.playbook('playbooks/security_breach.yml', extra, check=True)
        assert check.rc == 0, check
        assert 'would be paused' in check.output and 'would block tcp/%d' % project.port in check.output
        assert 'would capture 6 item(s)' in check.output
        assert snapshot(project, netns, store, evidence_glob) == before
        assert receiver.snapshot() == []

        # without approval (no prompt possible): stops after the plan
        refused = ansible.playbook('playbooks/security_breach.yml', extra)
        assert 'NOT APPROVED' in refused.output, refused
        after_refusal = snapshot(project, netns, store, evidence_glob)
        assert (after_refusal['api'], after_refusal['ruleset'], after_refusal['evidence']) == (
            'running', before['ruleset'], [])

        # approved: isolated, evidence with matching sha256, indicators, notified
        applied = ansible.playbook('playbooks/security_breach.yml', dict(extra, approve=True))
        assert applied.rc == 0, applied
        assert project.status().startswith('paused')
        rules = netns.ruleset()
        assert 'tcp dport %d' % project.port in rules and incident_id in rules
        assert tcpdumps() == before['tcpdump']
        captures = sorted(glob.glob(evidence_glob))
        assert [os.path.basename(c) for c in captures] == ['001-breach', '002-pcap']
        breach = captures[0]
        manifest = json.load(open(os.path.join(breach, 'manifest.json')))
        kinds = [item['kind'] for item in manifest['items']]
        assert kinds == ['container_logs', 'pg_dump', 'table_rows', 'pg_log', 'sockets', 'host_log']
        for item in manifest['items']:
            assert not item.get('error'), item
            path = os.path.join(breach, item['file'])
            assert oct(os.stat(path).st_mode & 0o777) == '0o600'
            assert sh('sha256sum', path).stdout.split()[0] == item['sha256']
            assert os.path.getsize(path) == item['size'] and item['bounds']['max_bytes'] > 0
        assert oct(os.stat(breach).st_mode & 0o777) == '0o700'
        for capture in captures:
            verified = sh('sha256sum', '-c', 'SHA256SUMS', cwd=capture)
            assert verified.returncode == 0, verified.stdout + verified.stderr
        rows = dict((i['kind'], i) for i in manifest['items'])
        assert rows['table_rows']['rows'] >= 4 and rows['host_log']['lines'] >= 3
        assert '[gameday security_breach]' in open(os.path.join(breach, rows['table_rows']['file'])).read()
        assert 'PGPASSWORD' not in json.dumps(rows['pg_dump']['command'])
        listing = sh(os.path.join(PG_BINDIR, 'pg_restore'), '--list', os.path.join(breach, rows['pg_dump']['file']))
        assert listing.returncode == 0 and 'TABLE public audit_log' in listing.stdout, listing.stderr
        pcap = json.load(open(os.path.join(captures[1], 'manifest.json')))['items'][0]
        assert pcap['stopped_by'] == 'duration'
        assert pcap['bounds'] == dict(duration_seconds=3, max_bytes=5 * 1024 * 1024)
        # the manifest's sha256 is in the incident's timeline
        events = [json.loads(line) for line in open(os.path.join(store, incident_id + '.events.jsonl'))]
        recorded = dict((e['evidence']['capture'], e['evidence']['manifest_sha256']) for e in events
                        if e.get('evidence'))
        assert recorded['001-breach'] == sh('sha256sum', os.path.join(breach, 'manifest.json')).stdout.split()[0]
        assert '002-pcap' in recorded
        record = json.load(open(os.path.join(store, incident_id + '.json')))
        assert record['status'] == 'mitigating' and record['severity'] == 'SEV1'
        assert any('isolated:' in (e.get('message') or '') for e in events)
        indicators = int(applied.output.split('indicators: ')[1].split()[0])
        assert indicators >= 5
        assert 'UNDO: ansible-playbook playbooks/security_breach.yml -e security_breach_action=unlock' in applied.output
        sent = receiver.received('/webhook/')
        assert len(sent) == 1 and sent[0]['json']['incident_id'] == incident_id

        # secrets: the lab's passwords and the drill's fake secret are in no record, timeline or output
        stored = open(os.path.join(store, incident_id + '.json')).read() + \
            open(os.path.join(store, incident_id + '.events.jsonl')).read()
        for secret in (lab_env['PGPASSWORD'], lab_env['LAB_PG_APP_PASSWORD'], lab_env['LAB_PG_MONITOR_PASSWORD'],
                       'Gameday-Fake-Secret-4711', 'security-token-123'):
            assert secret not in stored, 'a secret reached the incident record'
            assert secret not in applied.output, 'a secret reached the summary'
        assert 'Gameday-Fake-Secret-4711' in open(os.path.join(breach, rows['table_rows']['file'])).read()

        # idempotent: a second approved run finds everything done (no new capture, no second rule)
        state = snapshot(project, netns, store, evidence_glob)
        again = ansible.playbook('playbooks/security_breach.yml', dict(extra, approve=True))
        assert again.rc == 0 and again.changed == 0, again
        assert int(again.output.split('indicators: ')[1].split()[0]) == indicators  # read back from the capture
        assert snapshot(project, netns, store, evidence_glob)['ruleset'] == state['ruleset']
        assert sorted(glob.glob(evidence_glob)) == captures
        assert len(receiver.received('/webhook/')) == 1

        # unlock: check, apply (state as before), idempotent
        unlock = dict(extra, security_breach_action='unlock', approve=True)
        checked = ansible.playbook('playbooks/security_breach.yml', unlock, check=True)
        assert checked.rc == 0, checked
        assert project.status().startswith('paused') and netns.ruleset() == rules
        undone = ansible.playbook('playbooks/security_breach.yml', unlock)
        assert undone.rc == 0, undone
        project.wait_healthy()
        assert netns.ruleset() == before['ruleset']
        state_file = glob.glob(str(tmp_path / 'fw' / '*.json'))
        assert len(state_file) == 1 and json.load(open(state_file[0]))['active'] is None
        events = [json.loads(line) for line in open(os.path.join(store, incident_id + '.events.jsonl'))]
        assert any((e.get('message') or '').startswith('isolation undone') for e in events)
        assert sorted(glob.glob(evidence_glob)) == captures  # the evidence is kept
        for check_mode in (True, False):
            idle = ansible.playbook('playbooks/security_breach.yml', unlock, check=check_mode)
            assert idle.rc == 0 and idle.changed == 0, idle
        assert tcpdumps() == before['tcpdump']
    finally:
        receiver.close()


# ------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_one_message_and_nothing_runs(ansible, ansible_env, tmp_path):
    store = tempfile.mkdtemp(prefix='ir-sec-bad-')
    env = dict(INCIDENT_STORE_PATH=store)
    rc, _r, out = ansible.module('incident', dict(incident_id='INC-BAD-1', title='bad input'), env=env)
    assert rc == 0, out
    before = tcpdumps()
    cases = [
        ('packet_capture', dict(incident_id='INC-BAD-1', interface='nosuch9', port=80, duration=5, max_mb=1),
         "interface 'nosuch9' does not exist"),
        ('packet_capture', dict(incident_id='INC-BAD-1', interface='lo', port=80), 'needs both bounds'),
        ('packet_capture', dict(incident_id='INC-BAD-1', interface='lo', port=80, duration=0, max_mb=1),
         'duration must be between'),
        ('packet_capture', dict(incident_id='../../etc', interface='lo', port=80, duration=5, max_mb=1),
         'invalid incident id'),
        ('evidence_capture', dict(incident_id='../../etc', sockets=True), 'invalid incident id'),
        ('evidence_capture', dict(incident_id='INC-BAD-1', sockets=True, max_bytes=0), 'max_bytes'),
        ('firewall_block', dict(incident_id='INC-BAD-1', port=80, netns='irsec-missing-%d' % os.getpid(),
                                state_dir=str(tmp_path / 'fw')), 'does not exist'),
        ('firewall_block', dict(incident_id='x/../y', port=80, state_dir=str(tmp_path / 'fw')), 'invalid incident id'),
    ]
    for module, args, fragment in cases:
        rc, result, out = ansible.module(module, args, env=env)
        assert_clean_failure(rc, result, out, fragment)
        assert tcpdumps() == before
    assert not os.path.exists(os.path.join(store, 'INC-BAD-1', 'evidence'))
    assert not os.path.exists(str(tmp_path / 'fw'))
    run = ansible.playbook('playbooks/security_breach.yml', dict(incident_id='../x', approve=True), env=env)
    assert run.rc != 0 and 'invalid incident id' in run.output and 'Traceback' not in run.output, run
    assert tcpdumps() == before
    shutil.rmtree(store, ignore_errors=True)


# ------------------------------------------------------------------------------------------- gameday, pg log
def test_gameday_security_breach_fault_cause_and_clear(gameday, lab, lab_env):
    auth_log = os.path.join(lab_env['LAB_DIR'], 'security', 'auth.log')
    tagged = "SELECT count(*) FROM audit_log WHERE detail LIKE '%[gameday security_breach]'"
    assert gameday('security_breach').rc == 0
    rows = lab.query(tagged)[0][0]
    assert rows >= 4
    assert 'Failed password for invalid user admin' in open(auth_log).read()
    assert oct(os.stat(auth_log).st_mode & 0o777) == '0o600'
    again = gameday('security_breach')
    assert again.rc == 0 and lab.query(tagged)[0][0] == rows  # the rows are written once per 2 hours
    cleared = gameday('security_breach', action='clear')
    assert cleared.rc == 0, cleared
    assert lab.query(tagged)[0][0] == 0 and 'gameday security_breach' not in open(auth_log).read()


def test_pg_activity_info_server_log_lines(ansible, lab, lab_env):
    marker = 'irsec-log-marker-%d' % os.getpid()
    conn = lab.connect(application_name=marker)
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT 1/0 AS %s" % marker.replace('-', '_'))  # logged: ERROR + STATEMENT
            except Exception:  # pylint: disable=broad-except
                pass
    finally:
        conn.close()
    log_dir = os.path.join(lab_env['LAB_DIR'], 'pg15', 'log')
    rc, result, out = ansible.module('pg_activity_info', dict(log_lines=True, log_window='10m', log_path=log_dir))
    assert rc == 0, out
    log = result['server_log']
    assert log['error'] is None and log['source'].startswith(log_dir) and log['count'] >= 1
    assert any(marker.replace('-', '_') in line for line in log['lines']), log['lines'][-5:]
    for secret in (lab_env['PGPASSWORD'], lab_env['LAB_PG_APP_PASSWORD']):
        assert secret not in json.dumps(result)
    rc, result, out = ansible.module('pg_activity_info', dict(log_lines=True))
    found = result['server_log']
    # without a host path: pg_read_file where logging_collector is on, else a reason (the lab runs without it)
    assert rc == 0 and (found['error'] or found['source'].startswith('pg_read_file')), out
    rc, result, out = ansible.module('pg_activity_info', dict(log_lines=True, log_window='forever'))
    assert_clean_failure(rc, result, out, 'log_window')
    rc, result, out = ansible.module('pg_activity_info', {})
    assert rc == 0 and 'server_log' not in result, out


# ------------------------------------------------------------------------------------------- bounds and partial items
def test_packet_capture_stops_at_max_mb(ansible, ansible_env):
    import threading  # pylint: disable=import-outside-toplevel
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(('127.0.0.1', port))
    server.listen(5)
    stop = threading.Event()

    def serve():
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _addr = server.accept()
            except OSError:
                continue
            try:
                while not stop.is_set():
                    conn.sendall(b'x' * 65536)
            except OSError:
                pass
            finally:
                conn.close()

    def pull():
        while not stop.is_set():
            try:
                with socket.create_connection(('127.0.0.1', port), timeout=2) as client:
                    while not stop.is_set() and client.recv(65536):
                        pass
            except OSError:
                time.sleep(0.1)
    threads = [threading.Thread(target=serve, daemon=True), threading.Thread(target=pull, daemon=True)]
    for thread in threads:
        thread.start()
    evidence = tempfile.mkdtemp(prefix='ir-sec-pcap-')
    try:
        start = time.monotonic()
        rc, result, out = ansible.module('packet_capture', dict(
            incident_id='INC-PCAP-BOUND', evidence_dir=evidence, record_event=False, interface='lo', port=port,
            duration=120, max_mb=1))
        elapsed = time.monotonic() - start
        assert rc == 0, out
        item = result['item']
        assert item['stopped_by'] == 'max_mb' and item['truncated'] is True
        assert item['size'] <= 1024 * 1024 and elapsed < 110
        assert result['running'] is False and 'port %d' % port not in tcpdumps()
        assert sh('sha256sum', '-c', 'SHA256SUMS', cwd=result['capture_dir']).returncode == 0
    finally:
        stop.set()
        server.close()
        for thread in threads:
            thread.join(timeout=5)
        shutil.rmtree(evidence, ignore_errors=True)


def test_an_item_that_fails_is_recorded_and_the_others_kept(ansible, lab_env):
    evidence = tempfile.mkdtemp(prefix='ir-sec-partial-')
    try:
        rc, result, out = ansible.module('evidence_capture', dict(
            incident_id='INC-PARTIAL', evidence_dir=evidence, record_event=False, databases=['irsec_no_such_db'],
            tables=[{'name': 'audit_log'}], sockets=True))
        assert rc == 0, out
        kinds = dict((item['kind'], item) for item in result['items'])
        assert 'irsec_no_such_db' in kinds['pg_dump']['error'] and kinds['pg_dump']['restorable'] is False
        assert not kinds['table_rows'].get('error') and not kinds['sockets'].get('error')
        assert len(result['errors']) == 1
        assert lab_env['PGPASSWORD'] not in json.dumps(result)
        assert sh('sha256sum', '-c', 'SHA256SUMS', cwd=result['capture_dir']).returncode == 0
    finally:
        shutil.rmtree(evidence, ignore_errors=True)


def test_playbook_bad_pcap_settings_stop_before_anything_is_touched(ansible, ansible_env, lab_env, project, netns,
                                                                    tmp_path):
    store = ansible_env['INCIDENT_STORE_PATH']
    for more, fragment in ((dict(security_breach_pcap_interface='nosuch9'), "interface 'nosuch9' does not exist"),
                           (dict(security_breach_pcap_seconds=0), 'duration must be between')):
        incident_id = 'INC-SEC-BAD-%d-%d' % (os.getpid(), len(fragment))
        evidence_glob = os.path.join(store, incident_id, 'evidence', '*')
        before = snapshot(project, netns, store, evidence_glob)
        extra = breach_vars(project, netns, lab_env, incident_id, tmp_path, approve=True, **more)
        run = ansible.playbook('playbooks/security_breach.yml', extra)
        assert run.rc != 0 and fragment in run.output and 'Traceback' not in run.output, run
        after = snapshot(project, netns, store, evidence_glob)
        assert (after['api'], after['ruleset'], after['evidence'], after['tcpdump']) == (
            'running', before['ruleset'], [], before['tcpdump'])
