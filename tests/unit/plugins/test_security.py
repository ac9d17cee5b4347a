"""Evidence, packet capture and firewall modules (issue 14): the chain-of-custody helpers and the argument handling.

In-process through the harness. Nothing here touches the host's firewall: firewall_block runs with an ``nft_path``
that does not exist (its rule handling is tested inside a network namespace by
tests/integration/test_security_breach.py), packet_capture in check mode or with a tcpdump that does not exist.
The Hypothesis part checks that any input ends in a result or one ``msg``, never a traceback.
"""
import datetime
import json
import os
import socket
import stat
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from module_harness import Exited, Failed, run

from ansible_collections.incident.response.plugins.module_utils import _evidence
from ansible_collections.incident.response.plugins.module_utils._firewall import rule_comment
from ansible_collections.incident.response.plugins.modules import evidence_capture, firewall_block, packet_capture

UTC = datetime.timezone.utc
EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '100'))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ------------------------------------------------------------------------------------------- log times
@pytest.mark.parametrize('line, expected', [
    ('2026-12-01 23:24:01.123 UTC [42] app@db/x LOG:  hi', datetime.datetime(2026, 12, 1, 23, 24, 1, 123000, UTC)),
    ('2026-12-01T23:24:01.123456789Z container line', datetime.datetime(2026, 12, 1, 23, 24, 1, 123456, UTC)),
    ('2026-12-01T23:24:01+01:00 x', datetime.datetime(2026, 12, 1, 22, 24, 1, 0, UTC)),
    ('[2026-12-01 23:24:01] bracketed', datetime.datetime(2026, 12, 1, 23, 24, 1, 0, UTC)),
    ('Dec  1 23:24:01 host sshd[1]: Failed password', datetime.datetime(2026, 12, 1, 23, 24, 1, 0, UTC)),
    ('\tDETAIL:  a continuation', None),
    ('2026-13-45 99:99:99 not a time', None),
    ('', None),
])
def test_line_time(line, expected):
    assert _evidence.line_time(line, now=datetime.datetime(2026, 12, 2, 0, 0, tzinfo=UTC)) == expected


def test_lines_in_window_keeps_continuations_with_their_line():
    lines = ['2026-12-01 20:00:00.000 UTC [1] ERROR:  old', '\tSTATEMENT:  old statement',
             '2026-12-01 23:00:00.000 UTC [2] ERROR:  new', '\tSTATEMENT:  new statement',
             '2026-12-02 01:00:00.000 UTC [3] LOG:  future']
    since = datetime.datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    until = datetime.datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert list(_evidence.lines_in_window(lines, since, until)) == lines[2:4]


def test_read_tail_cuts_at_a_line_start(tmp_path):
    path = tmp_path / 'log'
    path.write_bytes(b''.join(b'line %04d\n' % n for n in range(1000)))
    data, size, truncated = _evidence.read_tail(str(path), 100)
    assert truncated and size == 10000 and len(data) <= 100
    assert data.startswith(b'line ') and data.endswith(b'line 0999\n')


# ------------------------------------------------------------------------------------------- captures
def test_captures_never_overwrite_and_are_private(tmp_path):
    evidence = str(tmp_path / 'store' / 'INC-1' / 'evidence')
    first = _evidence.Capture(evidence, 'breach')
    name, handle = first.open_item('a.txt')
    with handle:
        handle.write(b'first')
    again, handle = first.open_item('a.txt')
    handle.close()
    assert (name, again) == ('a.txt', 'a-2.txt')
    first.add(dict(kind='x', what='a'), name)
    manifest, digest = first.finish()
    second = _evidence.Capture(evidence, 'breach')
    assert [os.path.basename(c[2]) for c in _evidence.list_captures(evidence)] == ['001-breach', '002-breach']
    assert second.number == 2
    assert mode(evidence) == 0o700 and mode(first.path) == 0o700
    for entry in os.listdir(first.path):
        assert mode(os.path.join(first.path, entry)) == 0o600
    assert (tmp_path / 'store' / 'INC-1' / 'evidence' / '001-breach' / 'a.txt').read_bytes() == b'first'
    assert manifest['items'][0]['sha256'] == _evidence.sha256_file(os.path.join(first.path, 'a.txt'))
    assert digest == _evidence.sha256_file(os.path.join(first.path, _evidence.MANIFEST))
    # SHA256SUMS is what sha256sum -c reads
    proc = subprocess.run(['sha256sum', '-c', _evidence.CHECKSUMS], cwd=first.path, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and 'a.txt: OK' in proc.stdout and 'manifest.json: OK' in proc.stdout
    assert _evidence.verify_capture(first.path) == []
    with open(os.path.join(first.path, 'a.txt'), 'ab') as tamper:
        tamper.write(b'!')
    assert _evidence.verify_capture(first.path) == ['a.txt does not match its sha256']


@pytest.mark.parametrize('label', ['', '../x', 'a/b', '-x', 'x' * 41, 'a b'])
def test_bad_labels_are_refused(tmp_path, label):
    with pytest.raises(_evidence.EvidenceError):
        _evidence.Capture(str(tmp_path), label)


def test_bounded_writer_keeps_at_most_max_bytes(tmp_path):
    with open(tmp_path / 'out', 'wb') as handle:
        writer = _evidence.BoundedWriter(handle, 10)
        writer.write(b'12345')
        with pytest.raises(_evidence.BoundReached):
            writer.write(b'6789012345')
    assert (tmp_path / 'out').read_bytes() == b'1234567890' and writer.truncated


def test_bounded_writer_deadline(tmp_path):
    with open(tmp_path / 'out', 'wb') as handle:
        writer = _evidence.BoundedWriter(handle, 10, deadline=0)
        with pytest.raises(_evidence.BoundReached):
            writer.write(b'x')
    assert writer.timed_out and writer.full


def test_safe_name_has_no_path():
    for text in ('../../etc/passwd', '/abs', 'a\x00b', '..'):
        name = _evidence.safe_name(text)
        assert '/' not in name and not name.startswith('.') and '\x00' not in name


def test_parse_proc_net_tcp():
    text = ('  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
            '   0: 0100007F:E2A0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1\n'
            '   1: 0100007F:E2A0 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 5678 1\n'
            'garbage\n')
    rows = _evidence.parse_proc_net_tcp(text)
    assert rows[0] == dict(local='127.0.0.1', local_port=58016, remote='0.0.0.0', remote_port=0, state='LISTEN',
                           uid=0, inode='1234')
    assert rows[1]['state'] == 'ESTABLISHED' and rows[1]['remote_port'] == 50000 and rows[1]['uid'] == 1000
    six = ('  sl  local_address                         remote_address                        st\n'
           '   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 99 1\n')
    assert _evidence.parse_proc_net_tcp(six, socket.AF_INET6)[0]['local'] == '::1'


def test_read_sockets_of_this_host():
    rows = _evidence.read_sockets()
    assert all(row['proto'] in ('tcp', 'tcp6') for row in rows)


def test_rule_comment_names_incident_and_port():
    assert rule_comment('INC-2026-12-01-001', 'tcp', 8080) == 'incident.response INC-2026-12-01-001 block tcp/8080'


# ------------------------------------------------------------------------------------------- evidence_capture
def evidence_args(tmp_path, **more):
    args = dict(incident_id='INC-T-1', evidence_dir=str(tmp_path / 'evidence'), store_path=str(tmp_path / 'store'),
                record_event=False, sockets=True)
    args.update(more)
    return args


def test_evidence_check_mode_lists_and_writes_nothing(tmp_path):
    kind, result = run(evidence_capture, evidence_args(
        tmp_path, _ansible_check_mode=True, databases=['scheduler'], tables=[{'name': 'audit_log'}], pg_log=True,
        host_logs=[{'path': '/var/log/auth.log'}], container_logs=['api'], compose_project='p',
        login_port=1))
    assert kind is Exited, result
    assert result['changed'] is True and [i['kind'] for i in result['planned']] == [
        'container_logs', 'pg_dump', 'table_rows', 'pg_log', 'sockets', 'host_log']
    assert all(not action['done'] for action in result['actions'])
    assert all(item['bounds']['max_bytes'] and item['bounds']['timeout_seconds'] for item in result['planned'])
    assert not os.path.exists(tmp_path / 'evidence') and not os.path.exists(tmp_path / 'store')


def test_evidence_real_capture_of_host_log_and_sockets(tmp_path):
    log = tmp_path / 'auth.log'
    now = datetime.datetime.now(UTC)
    old = now - datetime.timedelta(hours=5)
    log.write_text('%s host sshd: Failed password for root password=Hunter2x\n%s host sshd: Accepted\n'
                   '%s host sshd: invalid user old\n' % (now.strftime('%b %e %H:%M:%S'), now.strftime('%b %e %H:%M:%S'),
                                                         old.strftime('%b %e %H:%M:%S')))
    kind, result = run(evidence_capture, evidence_args(tmp_path, host_logs=[{'path': str(log)}]))
    assert kind is Exited, result
    items = dict((item['kind'], item) for item in result['items'])
    assert items['host_log']['lines'] == 1 and items['sockets']['listening'] >= 0
    assert 'Hunter2x' not in json.dumps(result) and items['host_log']['preview'][0].endswith('password=********')
    raw = open(os.path.join(result['capture_dir'], items['host_log']['file'])).read()
    assert 'Hunter2x' in raw  # the raw evidence is kept as it is (0600)
    assert _evidence.verify_capture(result['capture_dir']) == []
    kind, again = run(evidence_capture, evidence_args(tmp_path, host_logs=[{'path': str(log)}]))
    assert again['capture_dir'].endswith('002-capture')
    kind, once = run(evidence_capture, evidence_args(tmp_path, once=True))
    assert kind is Exited and once['changed'] is False and once['capture_dir'] == again['capture_dir']
    reread = dict((item['kind'], item) for item in once['items'])
    assert reread['host_log']['preview'] == items['host_log']['preview']


@pytest.mark.parametrize('more, fragment', [
    (dict(incident_id='../etc'), 'invalid incident id'),
    (dict(incident_id='a/b'), 'invalid incident id'),
    (dict(label='../x'), 'label'),
    (dict(max_bytes=0), 'max_bytes must be between'),
    (dict(item_timeout=0), 'item_timeout must be between'),
    (dict(since='forever'), 'since'),
    (dict(since=''), 'since'),
    (dict(sockets=False), 'nothing to capture'),
    (dict(container_logs=['api']), 'container_logs needs compose_project'),
    (dict(tables=[{'name': 'x; DROP TABLE y'}]), 'is not a table name'),
    (dict(tables=[{'name': 'audit_log', 'time_column': 'a b'}]), 'is not a column name'),
    (dict(tables=[{'name': 'audit_log', 'max_rows': 0}]), 'max_rows'),
    (dict(databases=['--help']), 'is not a database name'),
    (dict(host_logs=[{'path': '/x', 'pattern': '(a+)+$'}]), 'nests a repeat'),
    (dict(host_logs=[{'path': '/x', 'pattern': '('}]), 'is not a valid regular expression'),
])
def test_evidence_bad_input_is_one_message(tmp_path, more, fragment):
    kind, result = run(evidence_capture, evidence_args(tmp_path, **more))
    assert kind is Failed and fragment in result['msg'], result
    assert not os.path.exists(tmp_path / 'evidence')


def test_evidence_needs_the_incident_when_recording(tmp_path):
    kind, result = run(evidence_capture, evidence_args(tmp_path, record_event=True))
    assert kind is Failed and 'does not exist' in result['msg'] and 'nothing was captured' in result['msg']
    assert not os.path.exists(tmp_path / 'evidence')


# ------------------------------------------------------------------------------------------- packet_capture
def pcap_args(tmp_path, **more):
    args = dict(incident_id='INC-T-1', evidence_dir=str(tmp_path / 'evidence'), store_path=str(tmp_path / 'store'),
                record_event=False, interface='lo', port=8080, duration=2, max_mb=1)
    args.update(more)
    return args


@pytest.mark.parametrize('more, fragment', [
    (dict(duration=None), 'needs both bounds'),
    (dict(max_mb=None), 'needs both bounds'),
    (dict(duration=None, max_mb=None), 'missing: duration, max_mb'),
    (dict(duration=0), 'duration must be between'),
    (dict(duration=3601), 'duration must be between'),
    (dict(max_mb=2048), 'max_mb must be between'),
    (dict(port=0), 'port must be between'),
    (dict(interface='nosuch0'), "interface 'nosuch0' does not exist"),
    (dict(interface='../lo'), 'does not exist'),
    (dict(incident_id='../x'), 'invalid incident id'),
    (dict(tcpdump_path='/nonexistent/tcpdump'), 'tcpdump not found'),
])
def test_pcap_bad_input_is_one_message(tmp_path, more, fragment):
    kind, result = run(packet_capture, pcap_args(tmp_path, **more))
    assert kind is Failed and fragment in result['msg'], result
    assert not os.path.exists(tmp_path / 'evidence')


def test_pcap_check_mode_captures_nothing(tmp_path):
    kind, result = run(packet_capture, pcap_args(tmp_path, _ansible_check_mode=True))
    assert kind is Exited and result['changed'] and result['running'] is False
    assert result['actions'][0]['detail']['bounds'] == dict(duration_seconds=2, max_bytes=1024 * 1024)
    assert not os.path.exists(tmp_path / 'evidence')


# ------------------------------------------------------------------------------------------- firewall_block
def fw_args(tmp_path, **more):
    args = dict(incident_id='INC-T-1', port=8080, state_dir=str(tmp_path / 'fw'), nft_path='/nonexistent/nft')
    args.update(more)
    return args


@pytest.mark.parametrize('more, fragment', [
    (dict(port=0), 'port must be between'),
    (dict(port=70000), 'port must be between'),
    (dict(incident_id='../x'), 'invalid incident id'),
    (dict(table='bad-name'), 'table'),
    (dict(chain='1x'), 'chain'),
    (dict(netns='../ns'), 'is not a network namespace name'),
    (dict(timeout=0), 'timeout must be between'),
    (dict(), 'nft (nftables) not found'),
])
def test_firewall_bad_input_is_one_message(tmp_path, more, fragment):
    kind, result = run(firewall_block, fw_args(tmp_path, **more))
    assert kind is Failed and fragment in result['msg'], result
    assert not os.path.exists(tmp_path / 'fw')


# ------------------------------------------------------------------------------------------- Hypothesis
HOSTILE = st.sampled_from(['', ' ', '..', '../x', 'a/b', '\x00', 'inf', 'nan', '-1', '0', '1e400', '9' * 200,
                           '(a+)+$', '(', '.*', '%s', "'; DROP TABLE x; --", '\u2603', 'lo', 'any', 'INC-1'])
TEXT = st.one_of(HOSTILE, st.text(max_size=30))
NUMBER = st.one_of(st.integers(min_value=-10 ** 20, max_value=10 ** 20), st.integers(min_value=-2, max_value=70000),
                   st.floats(allow_nan=True, allow_infinity=True), st.just(10 ** 400))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(TEXT, SCALAR, max_size=2))


def fuzz_args(names, fixed):
    return st.fixed_dictionaries({}, optional=dict((name, VALUE) for name in names)).map(
        lambda args: dict(args, **fixed))


def assert_clean(kind, result):
    assert kind in (Exited, Failed)
    if kind is Failed:
        assert result.get('msg') and 'Traceback' not in str(result.get('msg')), result
        assert 'exception' not in result or 'Traceback' not in str(result.get('msg'))


@FUZZ
@given(args=fuzz_args(['incident_id', 'label', 'once', 'since', 'max_bytes', 'item_timeout', 'container_logs',
                       'compose_project', 'databases', 'tables', 'pg_log', 'sockets', 'host_logs', 'preview_rows'],
                      dict(_ansible_check_mode=True, evidence_dir='/nonexistent-ir-fuzz/evidence',
                           store_path='/nonexistent-ir-fuzz/store', record_event=False, login_port=1)))
def test_fuzz_evidence_capture(args):
    kind, result = run(evidence_capture, args)
    assert_clean(kind, result)
    assert not os.path.exists('/nonexistent-ir-fuzz')


@FUZZ
@given(args=fuzz_args(['incident_id', 'port', 'protocol', 'state', 'family', 'table', 'chain', 'netns', 'timeout'],
                      dict(nft_path='/nonexistent-ir-fuzz/nft', state_dir='/nonexistent-ir-fuzz/fw')))
def test_fuzz_firewall_block(args):
    # nft_path never exists: whatever passes validation stops at "nft not found", the host's tables are not read
    kind, result = run(firewall_block, args)
    assert_clean(kind, result)
    assert not os.path.exists('/nonexistent-ir-fuzz')


@FUZZ
@given(args=fuzz_args(['incident_id', 'label', 'interface', 'port', 'protocol', 'duration', 'max_mb', 'once'],
                      dict(tcpdump_path='/nonexistent-ir-fuzz/tcpdump', evidence_dir='/nonexistent-ir-fuzz/ev',
                           store_path='/nonexistent-ir-fuzz/store', record_event=False)))
def test_fuzz_packet_capture(args):
    kind, result = run(packet_capture, args)
    assert_clean(kind, result)
    assert kind is Failed or result.get('changed') is False
    assert not os.path.exists('/nonexistent-ir-fuzz')


def test_every_directory_made_for_evidence_is_private(tmp_path):
    _evidence.ensure_private_dir(str(tmp_path / 'a' / 'b' / 'c'))
    assert [mode(tmp_path / p) for p in ('a', 'a/b', 'a/b/c')] == [0o700] * 3
