"""incident_notify, incident_timers_info and playbooks/incident_updates.yml (issue 8, sections 3 and 4).

A REAL SMTP server (aiosmtpd, STARTTLS + AUTH) on loopback, and an HTTP STAND-IN for Slack, a generic webhook and
PagerDuty (tests/integration/receivers.py: none of those services can run here). The incident records live in a
FileStore in a temporary directory; the tests move the clock by writing the record's times in the past through
the store API, never by sleeping.
"""
import datetime
import hashlib
import json
import os

import pytest

from conftest import assert_clean_failure
from receivers import HttpReceiver, SmtpServer, free_port

from ansible_collections.incident.response.plugins.module_utils import _incident

pytestmark = pytest.mark.integration

SLACK_TOKEN = 'T0SLACK/B0HOOK/slackTok3nXYZ987'
WEBHOOK_TOKEN = 'whk-Tok3n-4f9a1c'
STATUS_TOKEN = 'status-page-Tok3n-77aa'
ROUTING_KEY = 'R0UTINGkey0123456789abcdefABCDEF'
HEADER_TOKEN = 'Bearer hdr-Secr3t-Token-5150'
SECRETS = [SLACK_TOKEN, WEBHOOK_TOKEN, STATUS_TOKEN, ROUTING_KEY, HEADER_TOKEN, 'smtp-Secret-Pa55']


def ago(minutes):
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.000Z')


@pytest.fixture
def http():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp(tmp_path):
    server = SmtpServer(str(tmp_path))
    yield server
    server.close()


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / 'incidents'
    return str(path)


@pytest.fixture
def store(store_path):
    return _incident.get_store(dict(store='files', store_path=store_path))


@pytest.fixture
def env(store_path):
    return dict(INCIDENT_STORE='files', INCIDENT_STORE_PATH=store_path)


def open_incident(store, incident_id, severity='SEV1', system='task_scheduler', minutes_ago=2, **fields):
    record = dict(
        id=incident_id, title='Task scheduler API down', system=system, severity=severity,
        priority=_incident.priority_for(severity), status='investigating', commander='Alice Oncall',
        responders=['Bob Dba', 'Carol Dev'], impact='No scheduled task runs; the API answers 502',
        alert=dict(name='TaskSchedulerAPIDown', labels=dict(service='api'), fingerprint='fp-' + incident_id,
                   starts_at=ago(minutes_ago + 1)),
        times=dict(started=ago(minutes_ago + 1), detected=ago(minutes_ago)))
    record.update(fields)
    created = store.create(record)
    store.append_event(incident_id, dict(type='note', actor='pytest', message='bridge opened on #inc-api'))
    return created


def channels(http, smtp, required=()):
    result = [
        dict(name='slack', type='slack', url='%s/slack/%s' % (http.url, SLACK_TOKEN)),
        dict(name='ops-webhook', type='webhook', url='%s/webhook/%s' % (http.url, WEBHOOK_TOKEN),
             headers=dict(Authorization=HEADER_TOKEN)),
        dict(name='status-page', type='webhook', audience='public', url='%s/webhook/%s' % (http.url, STATUS_TOKEN)),
        dict(name='pagerduty', type='pagerduty', url='%s/v2/enqueue' % http.url, routing_key=ROUTING_KEY),
    ]
    if smtp is not None:
        result.append(dict(name='email', type='email', smtp_host='127.0.0.1', smtp_port=smtp.port,
                           smtp_username=smtp.username, smtp_password=smtp.password, ca_path=smtp.cert,
                           mail_from='incident-bot@example.com', mail_to=['incident-team@example.com']))
    for channel in result:
        if channel['name'] in required:
            channel['required'] = True
    return result


def store_digest(path):
    """Every file of the store: name and sha256 (any change shows)."""
    digest = {}
    if not os.path.isdir(path):
        return digest
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, 'rb') as handle:
                digest[name] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def notifications(store, incident_id):
    """The results of the sends (not the claims taken before sending)."""
    return [e for e in store.events(incident_id) if e['type'] == 'notification' and e.get('state') != 'sending']


def assert_no_secret(*texts):
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode('utf-8', 'replace')
        if not isinstance(text, str):
            text = json.dumps(text, default=str)
        for secret in SECRETS:
            assert secret not in text, 'secret %r leaked' % secret
            for part in secret.split('/'):
                if len(part) >= 10:
                    assert part not in text, 'part of secret %r leaked' % secret


def store_text(path):
    chunks = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), 'rb') as handle:
                chunks.append(handle.read().decode('utf-8', 'replace'))
    return '\n'.join(chunks)


# ------------------------------------------------------------------------------------------------ notify
def test_initial_notification_four_steps(ansible, env, store, store_path, http, smtp):
    incident_id = 'INC-T-notify-001'
    open_incident(store, incident_id)
    args = dict(incident_id=incident_id, template='initial', channels=channels(http, smtp),
                vars=dict(bridge='#inc-api', next_steps=['roll back the deploy of 19:55']))

    # 1. check: every message rendered and returned, nothing sent, nothing written
    before = store_digest(store_path)
    rc, result, out = ansible.module('incident_notify', args, check=True, env=env)
    assert rc == 0, out
    assert result['changed'] is True
    states = dict((m['channel'], m['state']) for m in result['messages'])
    assert states == {'slack': 'would_send', 'ops-webhook': 'would_send', 'status-page': 'not_routed',
                      'pagerduty': 'would_send', 'email': 'would_send'}, result['messages']
    body = result['messages'][0]['body']
    assert result['template'] == 'task_scheduler_p0'
    assert 'P0 CRITICAL INCIDENT - Task Scheduling System' in body
    assert 'INCIDENT: TaskSchedulerAPIDown - Task scheduler API down' in body
    assert 'Incident Commander: Alice Oncall' in body and 'Bridge: #inc-api' in body
    assert '- bridge opened on #inc-api' in body
    assert '[' not in body, body  # every placeholder has a value
    assert http.received() == [] and smtp.messages == []
    assert store_digest(store_path) == before
    assert all(a['done'] is False for a in result['actions'])

    # 2. apply: sent on each routed channel, recorded in the timeline
    rc, result, out = ansible.module('incident_notify', args, env=env)
    assert rc == 0, out
    assert result['changed'] is True and sorted(result['sent_channels']) == ['email', 'ops-webhook', 'pagerduty', 'slack']
    slack = http.received('/slack/')
    assert len(slack) == 1 and 'Alice Oncall' in slack[0]['json']['text'] and incident_id in slack[0]['json']['text']
    hook = http.received('/webhook/%s' % WEBHOOK_TOKEN)
    assert len(hook) == 1 and hook[0]['json']['incident_id'] == incident_id
    assert hook[0]['json']['severity'] == 'SEV1' and hook[0]['json']['template'] == 'task_scheduler_p0'
    assert hook[0]['headers']['Authorization'] == HEADER_TOKEN  # the stand-in got the header; it is nowhere else
    assert http.received('/webhook/%s' % STATUS_TOKEN) == []  # the status page gets the status page template only
    pd = http.received('/v2/enqueue')
    assert len(pd) == 1
    assert pd[0]['json']['event_action'] == 'trigger' and pd[0]['json']['dedup_key'] == incident_id
    assert pd[0]['json']['routing_key'] == ROUTING_KEY and pd[0]['json']['payload']['severity'] == 'critical'
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail['rcpt_tos'] == ['incident-team@example.com']
    assert mail['subject'] == 'P0 CRITICAL INCIDENT - Task Scheduling System: Task scheduler API down (%s)' % incident_id
    assert 'IMPACT: No scheduled task runs; the API answers 502' in mail['body']
    assert smtp.auth_attempts == [True]  # AUTH after STARTTLS, with the right password
    events = notifications(store, incident_id)
    assert sorted(e['channel'] for e in events) == ['email', 'ops-webhook', 'pagerduty', 'slack']
    assert all(e['delivered'] and e['error'] is None and e['template'] == 'initial' and e['update_number'] == 0
               for e in events)
    assert sorted(e['key'] for e in events) == ['notify:initial:0:%s' % c for c in
                                                ('email', 'ops-webhook', 'pagerduty', 'slack')]

    # 3. idempotent check, 4. idempotent apply: nothing sent twice
    snapshot, mails, digest = http.snapshot(), smtp.snapshot(), store_digest(store_path)
    rc, result, out = ansible.module('incident_notify', args, check=True, env=env)
    assert rc == 0 and result['changed'] is False, out
    rc, result, out = ansible.module('incident_notify', args, env=env)
    assert rc == 0 and result['changed'] is False, out
    assert set(m['state'] for m in result['messages']) == {'already_sent', 'not_routed'}
    assert http.snapshot() == snapshot and smtp.snapshot() == mails and store_digest(store_path) == digest

    # no secret in the store, the results or the messages received (other than where it belongs: the
    # stand-in saw the webhook's own URL path and header, PagerDuty its routing key)
    assert_no_secret(store_text(store_path), result, out, [m['raw'] for m in smtp.messages],
                     [r['json'].get('text') for r in slack], hook[0]['json'])


def test_routing_by_severity(ansible, env, store, http, smtp):
    incident_id = 'INC-T-notify-sev3'
    open_incident(store, incident_id, severity='SEV3', system='schedule_generator')
    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='initial',
                                                             channels=channels(http, smtp)), env=env)
    assert rc == 0, out
    states = dict((m['channel'], m['state']) for m in result['messages'])
    # SEV-3: "Notification to engineering team" only: the team's Slack and webhook, no pager, no management mail
    assert states == {'slack': 'sent', 'ops-webhook': 'sent', 'status-page': 'not_routed', 'pagerduty': 'not_routed',
                      'email': 'not_routed'}, result['messages']
    assert http.received('/v2/enqueue') == [] and smtp.messages == []
    assert http.received('/slack/')[0]['json']['text'].startswith('*[SEV-3] Incident: Task scheduler API down*')

    incident_id = 'INC-T-notify-sev4'
    open_incident(store, incident_id, severity='SEV4', system='schedule_generator')
    before = http.snapshot()
    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='initial',
                                                             channels=channels(http, None)), env=env)
    assert rc == 0 and result['changed'] is False, out
    assert 'no channel routed for SEV4' in result['summary']
    assert http.snapshot() == before


def test_status_page_update_and_resolution(ansible, env, store, http, smtp):
    incident_id = 'INC-T-notify-sg'
    open_incident(store, incident_id, system='schedule_generator', minutes_ago=40)
    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='status_page',
                                                             channels=channels(http, smtp)), env=env)
    assert rc == 0, out
    assert result['sent_channels'] == ['status-page']
    page = http.received('/webhook/%s' % STATUS_TOKEN)[0]['json']['text']
    assert page.startswith(u'\U0001F534 Schedule Generator - Major Outage')
    assert 'We are currently experiencing issues with Task scheduler API down.' in page
    assert 'every 15 minutes.' in page

    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='update',
                                                             channels=channels(http, smtp)), env=env)
    assert_clean_failure(rc, result, out, 'update_number is required')

    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='update',
                                                             update_number=2, channels=channels(http, smtp)), env=env)
    assert rc == 0, out
    assert store.get(incident_id)['updates_sent'] == 2
    mail = smtp.messages[-1]
    assert mail['subject'] == '[SEV-1] Update: Task scheduler API down'
    assert 'INCIDENT UPDATE #2' in mail['body'] and 'Duration: 41 minutes' in mail['body']  # since the fault began

    store.update(incident_id, dict(status='resolved', root_cause='a bad deploy of the API image',
                                   resolution='rolled back to the previous image',
                                   times=dict(resolved=ago(1), mitigated=ago(5))))
    rc, result, out = ansible.module('incident_notify', dict(
        incident_id=incident_id, template='resolution', channels=channels(http, smtp),
        vars=dict(prevention='image smoke test before rollout', review_scheduled='2026-12-03 10:00 UTC')), env=env)
    assert rc == 0, out
    assert http.received('/v2/enqueue')[-1]['json']['event_action'] == 'resolve'
    assert http.received('/v2/enqueue')[-1]['json']['dedup_key'] == incident_id
    mail = smtp.messages[-1]
    assert mail['subject'] == '[RESOLVED] [SEV-1]: Task scheduler API down'
    for text in ('ROOT CAUSE:\na bad deploy of the API image', 'RESOLUTION:\nrolled back to the previous image',
                 'Scheduled for: 2026-12-03 10:00 UTC', 'Participants: Alice Oncall, Bob Dba, Carol Dev'):
        assert text in mail['body'], mail['body']


def test_failing_channels_recorded_and_warned(ansible, env, store, http):
    incident_id = 'INC-T-notify-fail'
    open_incident(store, incident_id, severity='SEV2', system='insights')
    dead_port = free_port()
    chans = [
        dict(name='slack', type='slack', url='%s/slack/%s' % (http.url, SLACK_TOKEN)),
        dict(name='broken-hook', type='webhook', url='%s/fail/%s' % (http.url, WEBHOOK_TOKEN)),
        dict(name='email', type='email', audience='team', smtp_host='127.0.0.1', smtp_port=dead_port,
             smtp_username='bot',
             smtp_password='smtp-Secret-Pa55', mail_from='bot@example.com', mail_to=['team@example.com'], timeout=5),
    ]
    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='update',
                                                             update_number=1, channels=chans), env=env)
    assert rc == 0, out
    assert result['sent_channels'] == ['slack'] and sorted(result['failed_channels']) == ['broken-hook', 'email']
    errors = dict((m['channel'], m['error']) for m in result['messages'])
    assert 'HTTP 500' in errors['broken-hook']
    assert 'SMTP 127.0.0.1:%d' % dead_port in errors['email'] and 'refused' in errors['email'].lower()
    assert '[WARNING]: incident %s: insights_slack_update on channel broken-hook (webhook) failed: HTTP 500' \
        % incident_id in out, out
    events = dict((e['channel'], e) for e in notifications(store, incident_id))
    assert events['broken-hook']['delivered'] is False and 'HTTP 500' in events['broken-hook']['error']
    assert events['broken-hook']['key'].startswith('failed:claim:notify:update:1:broken-hook')  # not the retry's key
    assert events['email']['delivered'] is False
    assert store.get(incident_id)['updates_sent'] == 1  # delivered on one channel: update #1 is sent
    assert http.received('/slack/')[0]['json']['text'].startswith('*Incident Update - %s' % incident_id)

    # a re-run tries the failed channels again, not the one that delivered
    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='update',
                                                             update_number=1, channels=chans), env=env)
    assert rc == 0, out
    assert sorted(result['failed_channels']) == ['broken-hook', 'email'] and result['sent_channels'] == []
    assert len(http.received('/slack/')) == 1 and len(http.received('/fail/')) == 2

    # a required channel that fails fails the task with one message, after recording
    chans[2]['required'] = True
    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='update',
                                                             update_number=1, channels=chans), env=env)
    assert_clean_failure(rc, result, out, 'required channel email (email) failed', 'SMTP 127.0.0.1')
    assert len([e for e in notifications(store, incident_id) if e['channel'] == 'email']) == 3
    assert_no_secret(store_text(env['INCIDENT_STORE_PATH']), result, out)


def test_unreachable_webhook_and_bad_input(ansible, env, store, store_path, http, tmp_path):
    incident_id = 'INC-T-notify-bad'
    open_incident(store, incident_id, system='pg_tviews')
    dead = 'http://127.0.0.1:%d/slack/%s' % (free_port(), SLACK_TOKEN)
    rc, result, out = ansible.module('incident_notify', dict(
        incident_id=incident_id, template='initial', channels=[dict(type='slack', url=dead, required=True)]), env=env)
    assert_clean_failure(rc, result, out, 'required channel slack (slack) failed', 'cannot reach the endpoint')
    assert_no_secret(result, out)

    bad = tmp_path / 'bad.txt'
    bad.write_text('Subject: ${incident_id}\n\nStatus: ${status\nImpact: ${impact}\n')
    unknown = tmp_path / 'unknown.txt'
    unknown.write_text('Status: ${stauts}\n')
    good = tmp_path / 'good.txt'
    good.write_text('Subject: TVIEW ${incident_id} costs $$0\n\nOur own text: ${tview_status} / ${impact}\n')
    before, received = store_digest(store_path), http.snapshot()
    chans = [dict(type='slack', url='%s/slack/%s' % (http.url, SLACK_TOKEN))]
    for path, fragment in ((bad, 'malformed placeholder'), (unknown, 'unknown placeholder ${stauts}')):
        rc, result, out = ansible.module('incident_notify', dict(
            incident_id=incident_id, template='initial', channels=chans,
            template_overrides=dict(initial=str(path))), env=env)
        assert_clean_failure(rc, result, out, str(path), fragment)
    rc, result, out = ansible.module('incident_notify', dict(
        incident_id=incident_id, template='initial', channels=chans,
        template_overrides=dict(initial=str(tmp_path / 'missing.txt'))), env=env)
    assert_clean_failure(rc, result, out, 'missing.txt', 'cannot be read')
    for args, fragment in (
            (dict(incident_id='../etc', template='initial'), 'invalid incident id'),
            (dict(incident_id='INC-T-nope', template='initial'), 'does not exist'),
            (dict(incident_id=incident_id, template='weekly'), "unknown template 'weekly'"),
            (dict(incident_id=incident_id, template='initial', channels=[dict(type='webhook')]), 'url is required'),
            (dict(incident_id=incident_id, template='initial', channels=[dict(type='pagerduty')]),
             'routing_key is required'),
            (dict(incident_id=incident_id, template='initial', channels=[dict(chans[0], templates=['weekly'])]),
             "templates: unknown template 'weekly'"),
            (dict(incident_id=incident_id, template='initial', channels=chans,
                  template_overrides=dict(weekly=str(good))), 'template_overrides: unknown template weekly'),
            (dict(incident_id=incident_id, template='initial', channels=chans + chans), 'is used twice'),
            (dict(incident_id=incident_id, template='initial', vars={'Bad Name': 1}), 'not a valid placeholder')):
        rc, result, out = ansible.module('incident_notify', args, env=env)
        assert_clean_failure(rc, result, out, fragment)
    assert store_digest(store_path) == before and http.snapshot() == received

    rc, result, out = ansible.module('incident_notify', dict(
        incident_id=incident_id, template='initial', channels=chans, template_overrides=dict(initial=str(good))),
        env=env)
    assert rc == 0, out
    text = http.received('/slack/')[-1]['json']['text']
    assert text == '*TVIEW %s costs $0*\nOur own text: ACTIVE / No scheduled task runs; the API answers 502\n' \
        % incident_id


def test_diff(ansible, env, store, http):
    incident_id = 'INC-T-notify-diff'
    open_incident(store, incident_id, severity='SEV2')
    chans = [dict(type='slack', url='%s/slack/%s' % (http.url, SLACK_TOKEN))]
    rc, result, out = ansible.module('incident_notify', dict(incident_id=incident_id, template='update',
                                                             update_number=1, channels=chans),
                                     check=True, diff=True, env=env)
    assert rc == 0, out
    assert '-    updates_sent: 0' in out and '+    updates_sent: 1' in out and '+    - notify:update:1:slack' in out
    assert http.received() == [] and store.get(incident_id)['updates_sent'] == 0


# ------------------------------------------------------------------------------------------------ timers
def test_timers_info(ansible, env, store):
    incident_id = 'INC-T-timers-1'
    open_incident(store, incident_id, severity='SEV2', system='schedule_generator', minutes_ago=5)
    rc, result, out = ansible.module('incident_timers_info', dict(incident_id=incident_id), env=env)
    assert rc == 0, out
    info = result['incidents'][0]
    assert result['status'] == 'ok' and info['update_due'] is False and info['next_update_number'] == 1
    assert info['update_interval_minutes'] == 30 and info['escalation_due'] is None
    assert info['next_escalation']['target'] == 'engineering lead'

    # the clock moves: detected 35 minutes ago -> update #1 due, SEV-2 not resolved in 30 min -> engineering lead
    store.update(incident_id, dict(times=dict(detected=ago(35), started=ago(36))))
    rc, result, out = ansible.module('incident_timers_info', dict(incident_id=incident_id), env=env)
    assert rc == 0, out
    info = result['incidents'][0]
    assert result['status'] == 'critical'
    assert info['update_due'] is True and info['next_update_number'] == 1
    assert info['escalation_due']['level'] == 1 and info['escalation_due']['target'] == 'engineering lead'
    assert 'SEV-2 not resolved within 30 minutes' in info['escalation_due']['reasons']
    assert [d['kind'] for d in result['due']] == ['update', 'escalation']

    # resolved: nothing due any more
    store.update(incident_id, dict(status='resolved', times=dict(resolved=ago(0), mitigated=ago(1))))
    rc, result, out = ansible.module('incident_timers_info', dict(incident_id=incident_id), env=env)
    assert rc == 0 and result['status'] == 'ok' and result['due'] == [], out

    # P0 of the task scheduler down for more than 15 minutes: all hands
    incident_id = 'INC-T-timers-p0'
    open_incident(store, incident_id, severity='SEV1', system='task_scheduler', minutes_ago=16, root_cause='known')
    rc, result, out = ansible.module('incident_timers_info', {}, env=env)
    assert rc == 0, out
    assert [i['incident_id'] for i in result['incidents']] == [incident_id]  # only the open ones
    info = result['incidents'][0]
    assert info['escalation_due']['target'] == 'all hands'
    assert info['update_due'] is True and info['next_update_number'] == 1

    rc, result, out = ansible.module('incident_timers_info', dict(incident_id='../x'), env=env)
    assert_clean_failure(rc, result, out, 'invalid incident id')


def test_incident_updates_playbook(ansible, env, store, store_path, http, smtp):
    incident_id = 'INC-T-updates-1'
    open_incident(store, incident_id, severity='SEV2', system='schedule_generator', minutes_ago=35)
    other = 'INC-T-updates-quiet'
    open_incident(store, other, severity='SEV3', system='schedule_generator', minutes_ago=3, root_cause='known')
    extra = dict(incident_notify_channels=channels(http, smtp))

    before = store_digest(store_path)
    run = ansible.playbook('playbooks/incident_updates.yml', extra, check=True, env=env)
    assert run.rc == 0, run
    assert 'would send' in run.output
    assert 'INCIDENT UPDATE #1' in run.output and 'ESCALATION REQUEST' in run.output  # the messages, rendered
    assert http.received() == [] and smtp.messages == [] and store_digest(store_path) == before

    run = ansible.playbook('playbooks/incident_updates.yml', extra, env=env)
    assert run.rc == 0, run
    record = store.get(incident_id)
    assert record['updates_sent'] == 1 and record['escalation_level'] == 1
    assert store.get(other)['updates_sent'] == 0
    subjects = sorted(m['subject'] for m in smtp.messages)
    assert subjects == ['ESCALATION NEEDED: [SEV-2] Task scheduler API down', '[SEV-2] Update: Task scheduler API down']
    escalation = [m for m in smtp.messages if m['subject'].startswith('ESCALATION')][0]['body']
    assert 'REQUESTING:\nengineering lead' in escalation
    assert 'SEV-2 not resolved within 30 minutes' in escalation
    assert [e['key'] for e in store.events(incident_id) if e['type'] == 'escalation'] == ['escalation:1']
    sent = http.snapshot()

    # a second scheduled run: nothing is due, nothing is sent (exactly once)
    run = ansible.playbook('playbooks/incident_updates.yml', extra, env=env)
    assert run.rc == 0, run
    assert http.snapshot() == sent and len(smtp.messages) == 2
    assert run.changed == 0, run

    # 30 more minutes pass (the record's times move back): update #2 is due; one incident only with incident_id
    store.update(incident_id, dict(times=dict(detected=ago(65), started=ago(66))))
    run = ansible.playbook('playbooks/incident_updates.yml', dict(extra, incident_id=incident_id), env=env)
    assert run.rc == 0, run
    assert store.get(incident_id)['updates_sent'] == 2
    assert 'INCIDENT UPDATE #2' in smtp.messages[-1]['body']
    assert_no_secret(store_text(store_path), run.output)


# ------------------------------------------------------------------------------------------------ PostgreSQL store
@pytest.fixture
def pg_store(lab_env):
    """The PostgreSQL store (AWX's) on the lab's cluster, in a schema of its own, dropped afterwards."""
    import uuid  # pylint: disable=import-outside-toplevel
    import psycopg2  # pylint: disable=import-outside-toplevel
    schema = 'notify_%s' % uuid.uuid4().hex[:10]
    old = dict(os.environ)
    os.environ.update(lab_env)
    try:
        store = _incident.get_store(dict(store='postgres', store_schema=schema))
    finally:
        os.environ.clear()
        os.environ.update(old)
    yield store, schema
    store.close()
    conn = psycopg2.connect(host=lab_env['PGHOST'], port=int(lab_env['PGPORT']), user=lab_env['PGUSER'],
                            password=lab_env['PGPASSWORD'], dbname=lab_env['PGDATABASE'])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % schema)
    conn.close()


def pg_digest(lab, schema):
    return lab.query('SELECT count(*), md5(coalesce(string_agg(e.event::text, \'|\' ORDER BY e.seq), \'\')) '
                     'FROM "%s".incident_event e' % schema) + \
        lab.query('SELECT md5(string_agg(i.record::text, \'|\' ORDER BY i.id)) FROM "%s".incident i' % schema)


def test_postgres_store_notify_and_scheduled_updates(ansible, lab, pg_store, http):
    store, schema = pg_store
    env = dict(INCIDENT_STORE='postgres', INCIDENT_STORE_SCHEMA=schema)
    incident_id = 'INC-T-notify-pg'
    open_incident(store, incident_id, severity='SEV2', system='schedule_generator', minutes_ago=35)
    chans = [c for c in channels(http, None) if c['type'] in ('slack', 'pagerduty')]

    before = pg_digest(lab, schema)
    run = ansible.playbook('playbooks/incident_updates.yml', dict(incident_notify_channels=chans), check=True,
                           env=env)
    assert run.rc == 0, run
    assert http.received() == [] and pg_digest(lab, schema) == before

    run = ansible.playbook('playbooks/incident_updates.yml', dict(incident_notify_channels=chans), env=env)
    assert run.rc == 0, run
    record = store.get(incident_id)
    assert record['updates_sent'] == 1 and record['escalation_level'] == 1
    pd = [r['json'] for r in http.received('/v2/enqueue')]
    assert [p['event_action'] for p in pd] == ['trigger', 'trigger'] and {p['dedup_key'] for p in pd} == {incident_id}
    assert sorted(p['payload']['summary'] for p in pd) == ['ESCALATION NEEDED: [SEV-2] Task scheduler API down',
                                                           '[SEV-2] Update: Task scheduler API down']
    keys = sorted(e['key'] for e in store.events(incident_id) if e.get('key'))
    assert 'notify:update:1:slack' in keys and 'notify:escalation:1:pagerduty' in keys and 'escalation:1' in keys

    sent, digest = http.snapshot(), pg_digest(lab, schema)
    run = ansible.playbook('playbooks/incident_updates.yml', dict(incident_notify_channels=chans), env=env)
    assert run.rc == 0 and run.changed == 0, run
    assert http.snapshot() == sent and pg_digest(lab, schema) == digest


def test_overlapping_runs_send_once_and_a_stale_claim_is_retried(ansible, env, store, http):
    import threading  # pylint: disable=import-outside-toplevel
    incident_id = 'INC-T-notify-race'
    open_incident(store, incident_id, severity='SEV3', system='schedule_generator')
    # the stand-in takes 8 s to answer: two runs started together overlap whatever their start-up times
    chans = [dict(name='slow-slack', type='slack', url='%s/slow/8/%s' % (http.url, SLACK_TOKEN), timeout=30)]
    args = dict(incident_id=incident_id, template='initial', channels=chans)
    results = []

    def one_run():
        results.append(ansible.module('incident_notify', args, env=env))
    threads = [threading.Thread(target=one_run) for _index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2 and all(rc == 0 for rc, _result, _out in results), results
    assert len(http.received('/slow/')) == 1  # sent once
    states = sorted(result['messages'][0]['state'] for _rc, result, _out in results)
    assert states in (['already_sent', 'sent'], ['in_progress', 'sent']), states
    delivered = [e for e in notifications(store, incident_id) if e['delivered']]
    assert [e['key'] for e in delivered] == ['notify:initial:0:slow-slack']

    # a run that died after claiming: after the stale time the next run records it as failed and sends
    chans = [dict(name='slack', type='slack', url='%s/slack/%s' % (http.url, SLACK_TOKEN))]
    store.append_event(incident_id, dict(type='notification', key='claim:notify:initial:0:slack:0', claim='dead-run',
                                         attempt_of='notify:initial:0:slack', delivered=None, state='sending',
                                         channel='slack', time=ago(10)))
    rc, result, out = ansible.module('incident_notify', dict(args, channels=chans), env=env)
    assert rc == 0 and result['messages'][0]['state'] == 'sent', out
    stale = [e for e in store.events(incident_id) if (e.get('key') or '').startswith('stale:')]
    assert [e['key'] for e in stale] == ['stale:claim:notify:initial:0:slack:0'] and stale[0]['delivered'] is False
    assert len(http.received('/slack/')) == 1
