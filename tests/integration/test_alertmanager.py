"""alertmanager_silence and alertmanager_alert_info against the lab's REAL Alertmanager (LAB_ALERTMANAGER_URL).

Every test uses a label unique to the test run (``irtest=<uuid>``) so that it neither sees nor disturbs the
silences and alerts of others; the silences it creates are expired and the alerts it fires are resolved
(posted again with an endsAt in the past) at teardown.
"""
import datetime
import json
import urllib.request
import uuid

import pytest


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _stamp(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (moment.microsecond // 1000)


class Alertmanager(object):
    """The lab's Alertmanager, read and fed directly through its v2 API (as curl would)."""

    def __init__(self, url):
        self.url = url.rstrip('/')
        self.fired = []

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + '/api/v2' + path, data=data, method=method,
                                     headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def silences(self, tag):
        """Live (active/pending) silences carrying the matcher irtest=<tag>, as a comparable digest."""
        found = []
        for s in self.call('GET', '/silences'):
            if s['status']['state'] in ('active', 'pending') and \
                    any(m['name'] == 'irtest' and m['value'] == tag for m in s['matchers']):
                found.append((s['id'], s['startsAt'], s['endsAt'], s['comment'], s['status']['state']))
        return sorted(found)

    def expire_all(self, tag):
        for silence in self.silences(tag):
            self.call('DELETE', '/silence/%s' % silence[0])

    def fire(self, labels, annotations=None):
        alert = dict(labels=labels, annotations=annotations or {}, startsAt=_stamp(_now()))
        self.call('POST', '/alerts', [alert])
        self.fired.append(alert)
        return alert

    def resolve_all(self):
        past = _stamp(_now() - datetime.timedelta(seconds=1))
        if self.fired:
            self.call('POST', '/alerts', [dict(a, endsAt=past) for a in self.fired])
        self.fired = []

    def alerts(self, tag):
        return self.call('GET', '/alerts?filter=irtest%3D%22' + tag + '%22')


@pytest.fixture
def tag():
    return 'ir-' + uuid.uuid4().hex[:12]


@pytest.fixture
def am(lab_env, tag):
    manager = Alertmanager(lab_env['LAB_ALERTMANAGER_URL'])
    yield manager
    manager.expire_all(tag)
    manager.resolve_all()
    assert manager.silences(tag) == []


def silence_args(lab_env, tag, **extra):
    args = dict(url=lab_env['LAB_ALERTMANAGER_URL'], incident_id='INC-%s' % tag,
                matchers=[dict(name='alertname', value='NoActiveWorkers'), dict(name='irtest', value=tag)],
                comment='pytest silence', created_by='pytest', duration='30m')
    args.update(extra)
    return args


def test_silence_four_steps(ansible, am, lab_env, tag):
    args = silence_args(lab_env, tag)
    before = am.silences(tag)
    assert before == []

    # 1. check: would create, creates nothing
    rc, res, out = ansible.module('alertmanager_silence', args, check=True, diff=True)
    assert rc == 0, out
    assert res['changed'] is True
    assert [a['action'] for a in res['actions']] == ['create_silence']
    assert res['actions'][0]['done'] is False
    # --diff shows the silence before (none) and after (the tree drops 'diff': read the output)
    assert '--- before' in out and '+++ after' in out and "+    comment: '[incident INC-%s] pytest silence'" % tag in out
    assert am.silences(tag) == before

    # 2. apply: one silence, 30 minutes, comment naming the incident
    rc, res, out = ansible.module('alertmanager_silence', args, diff=True)
    assert rc == 0, out
    assert res['changed'] is True and res['actions'][0]['done'] is True
    live = am.silences(tag)
    assert len(live) == 1
    silence_id, starts, ends, comment, state = live[0]
    assert silence_id == res['silence_id'] and state == 'active'
    assert comment == '[incident INC-%s] pytest silence' % tag
    length = (datetime.datetime.fromisoformat(ends.replace('Z', '+00:00')) -
              datetime.datetime.fromisoformat(starts.replace('Z', '+00:00'))).total_seconds()
    assert 1790 <= length <= 1810

    # 3. idempotent check: found, not duplicated, nothing would change
    rc, res, out = ansible.module('alertmanager_silence', args, check=True)
    assert rc == 0, out
    assert res['changed'] is False and res['actions'] == [] and res['silence_id'] == silence_id
    assert am.silences(tag) == live

    # 4. idempotent apply (matchers in another order are the same silence)
    args['matchers'] = list(reversed(args['matchers']))
    rc, res, out = ansible.module('alertmanager_silence', args)
    assert rc == 0, out
    assert res['changed'] is False and res['silence_id'] == silence_id
    assert am.silences(tag) == live


def test_silence_other_incident_gets_its_own(ansible, am, lab_env, tag):
    rc, first, out = ansible.module('alertmanager_silence', silence_args(lab_env, tag))
    assert rc == 0 and first['changed'], out
    rc, second, out = ansible.module('alertmanager_silence', silence_args(lab_env, tag, incident_id='OTHER-%s' % tag))
    assert rc == 0 and second['changed'], out
    assert second['silence_id'] != first['silence_id']
    assert len(am.silences(tag)) == 2


def test_silence_extend_then_expire(ansible, am, lab_env, tag):
    rc, res, out = ansible.module('alertmanager_silence', silence_args(lab_env, tag))
    assert rc == 0, out
    live, = am.silences(tag)
    end_before = live[2]

    # extend to 1 h: check first, then for real
    longer = silence_args(lab_env, tag, duration='1h')
    rc, res, out = ansible.module('alertmanager_silence', longer, check=True)
    assert rc == 0 and res['changed'] and res['actions'][0]['action'] == 'extend_silence', out
    assert am.silences(tag)[0][2] == end_before
    rc, res, out = ansible.module('alertmanager_silence', longer)
    assert rc == 0 and res['changed'], out
    live = am.silences(tag)
    assert len(live) == 1 and live[0][2] > end_before
    rc, res, out = ansible.module('alertmanager_silence', longer)
    assert rc == 0 and res['changed'] is False, out

    # expire: check (nothing expired), apply, idempotent check, idempotent apply
    gone = silence_args(lab_env, tag, state='absent')
    rc, res, out = ansible.module('alertmanager_silence', gone, check=True)
    assert rc == 0 and res['changed'] and res['actions'][0]['action'] == 'expire_silence', out
    assert am.silences(tag) == live
    rc, res, out = ansible.module('alertmanager_silence', gone)
    assert rc == 0 and res['changed'] and res['actions'][0]['done'], out
    assert am.silences(tag) == []
    for check in (True, False):
        rc, res, out = ansible.module('alertmanager_silence', gone, check=check)
        assert rc == 0 and res['changed'] is False, out


@pytest.mark.parametrize('matchers', [
    [],
    [dict(name='alertname', value='.*', isRegex=True)],
    [dict(name='alertname', value='.+', isRegex=True)],
    [dict(name='alertname', value='', isEqual=False)],
])
def test_silence_matching_everything_refused(ansible, am, lab_env, tag, matchers):
    before = am.call('GET', '/silences')
    rc, res, out = ansible.module('alertmanager_silence', silence_args(lab_env, tag, matchers=matchers))
    assert rc != 0
    assert 'refusing a silence that matches every alert' in res['msg']
    assert 'Traceback' not in out
    assert len(am.call('GET', '/silences')) == len(before)


def test_silence_bad_input(ansible, am, lab_env, tag):
    cases = [
        (dict(duration='5h'), 'longer than max_duration 4h'),
        (dict(duration='soon'), 'is not a duration'),
        (dict(ends_at='2020-01-01T00:00:00Z', duration=None), 'is in the past'),
        (dict(ends_at='tomorrow'), 'is not an RFC 3339 time'),
        (dict(matchers=[dict(name='alertname', value='(', isRegex=True), dict(name='irtest', value=tag)]),
         'not a valid regular expression'),
        (dict(url='http://127.0.0.1:1'), 'Alertmanager at http://127.0.0.1:1 is unreachable'),
        (dict(url='not-a-url'), 'is not an http(s) URL'),
    ]
    for extra, message in cases:
        rc, res, out = ansible.module('alertmanager_silence', silence_args(lab_env, tag, **extra))
        assert rc != 0, (extra, out)
        assert message in res.get('msg', ''), (extra, res)
        assert 'Traceback' not in out, out
    assert am.silences(tag) == []


def test_silence_url_from_environment_and_secret_not_logged(ansible, am, lab_env, tag):
    args = silence_args(lab_env, tag, bearer_token='s3cr3t-token-%s' % tag)
    del args['url']
    rc, res, out = ansible.module('alertmanager_silence', args, env=dict(ALERTMANAGER_URL=lab_env['LAB_ALERTMANAGER_URL']),
                                  extra=('-v',))
    assert rc == 0 and res['changed'], out
    assert 's3cr3t-token' not in out and 's3cr3t-token' not in json.dumps(res)
    assert len(am.silences(tag)) == 1


def test_alert_info_on_fired_alerts(ansible, am, lab_env, tag):
    url = lab_env['LAB_ALERTMANAGER_URL']
    rc, res, out = ansible.module('alertmanager_alert_info', dict(url=url, labels=dict(irtest=tag)))
    assert rc == 0 and res['status'] == 'ok' and res['alerts'] == [], out

    am.fire(dict(alertname='NoActiveWorkers', irtest=tag, service='worker', severity='critical'),
            dict(summary='No workers are sending heartbeats'))
    am.fire(dict(alertname='HighQueueDepth', irtest=tag, service='worker', severity='warning'))
    rc, res, out = ansible.module('alertmanager_alert_info', dict(url=url, labels=dict(irtest=tag)), check=True)
    assert rc == 0, out
    assert res['status'] == 'critical' and res['counts']['active'] == 2 and res['counts']['total'] == 2
    assert sorted(a['name'] for a in res['alerts']) == ['HighQueueDepth', 'NoActiveWorkers']
    workers = [a for a in res['alerts'] if a['name'] == 'NoActiveWorkers'][0]
    assert workers['annotations']['summary'] == 'No workers are sending heartbeats'
    assert len(workers['fingerprint']) == 16 and workers['startsAt'] and workers['state'] == 'active'

    # filtered by labels, by a filter expression, by receiver, by fingerprint
    rc, res, out = ansible.module('alertmanager_alert_info',
                                  dict(url=url, labels=dict(irtest=tag, alertname='NoActiveWorkers')))
    assert [a['fingerprint'] for a in res['alerts']] == [workers['fingerprint']], out
    rc, res, out = ansible.module('alertmanager_alert_info',
                                  dict(url=url, labels=dict(irtest=tag), filters=['severity=~"warn.*"']))
    assert [a['name'] for a in res['alerts']] == ['HighQueueDepth'], out
    rc, res, out = ansible.module('alertmanager_alert_info', dict(url=url, labels=dict(irtest=tag), receiver='^nobody$'))
    assert res['alerts'] == [] and res['status'] == 'ok', out
    receiver = workers['receivers'][0]
    rc, res, out = ansible.module('alertmanager_alert_info', dict(url=url, labels=dict(irtest=tag), receiver=receiver,
                                                                  fingerprint=workers['fingerprint']))
    assert [a['name'] for a in res['alerts']] == ['NoActiveWorkers'], out

    # silenced by a real silence: warning, silencedBy names it
    rc, sil, out = ansible.module('alertmanager_silence', silence_args(lab_env, tag))
    assert rc == 0, out
    rc, res, out = ansible.module('alertmanager_alert_info',
                                  dict(url=url, labels=dict(irtest=tag, alertname='NoActiveWorkers')))
    assert res['status'] == 'warning' and res['alerts'][0]['silencedBy'] == [sil['silence_id']], out
    assert res['alerts'][0]['state'] == 'suppressed'
    rc, res, out = ansible.module('alertmanager_alert_info', dict(url=url, labels=dict(irtest=tag), silenced=False))
    assert [a['name'] for a in res['alerts']] == ['HighQueueDepth'], out

    # resolved: gone
    am.resolve_all()
    rc, res, out = ansible.module('alertmanager_alert_info', dict(url=url, labels=dict(irtest=tag)))
    assert res['status'] == 'ok' and res['alerts'] == [], out


def test_alert_info_unreachable_is_unknown(ansible):
    rc, res, out = ansible.module('alertmanager_alert_info', dict(url='http://127.0.0.1:1', labels=dict(x='y')))
    assert rc == 0, out
    assert res['status'] == 'unknown' and 'is unreachable' in res['reasons'][0]
    assert 'Traceback' not in out


def test_alert_info_bad_filter(ansible, lab_env):
    rc, res, out = ansible.module('alertmanager_alert_info',
                                  dict(url=lab_env['LAB_ALERTMANAGER_URL'], filters=['this is not a matcher']))
    assert rc != 0 and 'HTTP 400' in res['msg'] and 'Traceback' not in out, out
