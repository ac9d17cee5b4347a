"""The runbooks' templates, routing and timers (pure functions): _incident_render, _notify, _incident_timers."""
import datetime

import pytest

from ansible_collections.incident.response.plugins.module_utils import _incident_render as render
from ansible_collections.incident.response.plugins.module_utils import _incident_timers as timers
from ansible_collections.incident.response.plugins.module_utils import _notify

NOW = datetime.datetime(2026, 12, 1, 21, 0, tzinfo=datetime.timezone.utc)

FULL = dict(
    id='INC-2026-12-01-007', title='Refresh errors on 12 of 20 TVIEWs', severity='SEV1', priority='P0',
    status='mitigating', commander='Alice Oncall', responders=['Bob Dba'], impact='Reports are stale',
    root_cause='a bad migration', summary='TVIEWs disabled, queue archived', resolution='re-enabled after the fix',
    alert=dict(name='TViewRefreshErrors'), updates_sent=1, escalation_level=0,
    times=dict(started='2026-12-01T20:10:00Z', detected='2026-12-01T20:12:00Z', resolved=None, mitigated=None),
)
VALUES = dict(eta='21:30 UTC', workaround='read the base tables', bridge='#inc-007', next_steps=['verify'],
              affected_users='all report users', affected_services='reports', prevention='migration review',
              review_scheduled='2026-12-03 10:00 UTC', ticket_system='JIRA OPS-1', data_integrity='intact',
              performance_impact='none', user_impact='stale reports', escalation_reason='needs a DBA',
              escalation_target='Database Administration')
EVENTS = [dict(seq=1, type='note', message='bridge opened'),
          dict(seq=2, type='task', outcome='changed', task='Disable TVIEWs', summary='disabled 20 TVIEWs')]


@pytest.mark.parametrize('name', sorted(render.TEMPLATES))
def test_every_template_renders_without_placeholder_when_the_record_has_the_values(name):
    systems = dict(tviews='pg_tviews', task='task_scheduler', insights='insights')
    system = systems.get(name.split('_')[0], 'schedule_generator')
    record = dict(FULL, system=system)
    if 'resolution' in name:
        record = dict(record, status='resolved', times=dict(FULL['times'], resolved='2026-12-01T20:55:00Z',
                                                            mitigated='2026-12-01T20:40:00Z'))
    out = render.render(name, record, events=EVENTS, values=VALUES, now=NOW, update_number=2)
    assert out['placeholders_left'] == [], (out['subject'], out['body'])
    for placeholder in render.PLACEHOLDERS.values():
        if placeholder.startswith('['):
            assert placeholder not in out['body'], out['body']
    assert '${' not in out['body'] and '${' not in out['subject']


def test_missing_values_keep_the_runbooks_placeholders():
    record = dict(id='INC-X', severity='SEV2', system='pg_tviews', status='investigating',
                  times=dict(detected='2026-12-01T20:50:00Z'))
    out = render.render('update', record, now=NOW)
    assert out['template'] == 'tviews_emergency'
    assert 'Impact: [Description of user/business impact]' in out['body']
    assert 'Contact: [Name]' in out['body'] and 'Status: ACTIVE' in out['body']
    assert '[Description of user/business impact]' in out['placeholders_left']


def test_template_choice_by_system_and_severity():
    assert render.template_name('initial', dict(system='task_scheduler', severity='SEV1')) == 'task_scheduler_p0'
    assert render.template_name('update', dict(system='task_scheduler', severity='SEV2')) == 'task_scheduler_p1'
    assert render.template_name('resolution', dict(system='task_scheduler')) == 'task_scheduler_resolution'
    assert render.template_name('status_page', dict(system='insights')) == 'insights_status_page'
    assert render.template_name('escalation', dict(system='billing')) == 'schedule_generator_escalation'
    with pytest.raises(render.TemplateError, match='unknown template'):
        render.template_name('weekly', {})


@pytest.mark.parametrize('text,fragment', [
    ('${impact', 'malformed placeholder'), ('cost $5', 'malformed placeholder'), ('${Impact}', 'malformed'),
    ('${nope}', 'unknown placeholder ${nope}'), ('{{ lookup("pipe", "id") }} ${__class__}', 'unknown placeholder'),
])
def test_malformed_templates_fail_with_one_message(text, fragment):
    with pytest.raises(render.TemplateError, match='template my.txt: ') as info:
        render.substitute(text, dict(impact='x'), 'my.txt')
    assert fragment in str(info.value)


def test_override_file_subject_and_dollar(tmp_path):
    path = tmp_path / 'mine.txt'
    path.write_text('Subject: [${severity_label}] ${incident_id}\n\nCosts $$0: ${impact}\n')
    out = render.render('initial', dict(FULL, system='pg_tviews'), now=NOW,
                        override=render.load_template_file(str(path)) + (str(path),))
    assert out['subject'] == '[SEV-1] INC-2026-12-01-007'
    assert out['body'] == 'Costs $0: Reports are stale\n'


def test_routing():
    slack = dict(type='slack', url='https://hooks.example/x')
    mail = dict(type='email')
    pager = dict(type='pagerduty')
    public = dict(type='webhook', audience='public')
    assert _notify.routed(slack, 'SEV3', 'initial', 'x', 'schedule_generator')[0] is True
    assert _notify.routed(mail, 'SEV3', 'initial', 'x', 'schedule_generator')[0] is False
    assert _notify.routed(pager, 'SEV2', 'update', 'x', 'schedule_generator')[0] is True
    assert _notify.routed(pager, 'SEV3', 'update', 'x', 'schedule_generator')[0] is False
    assert _notify.routed(public, 'SEV1', 'status_page', 'x')[0] is True
    assert _notify.routed(public, 'SEV2', 'status_page', 'x')[0] is False
    assert _notify.routed(public, 'SEV1', 'update', 'x')[0] is False
    assert _notify.routed(slack, 'SEV1', 'status_page', 'x')[0] is False
    assert _notify.routed(slack, 'SEV4', 'initial', 'x') == (False, 'SEV4: document only, no notification')
    assert _notify.routed(dict(slack, severities=['SEV4']), 'SEV4', 'initial', 'x')[0] is True


def test_pagerduty_actions():
    assert _notify.pagerduty_action('initial', dict(status='investigating')) == 'trigger'
    assert _notify.pagerduty_action('update', dict(status='mitigating')) == 'acknowledge'
    assert _notify.pagerduty_action('resolution', dict(status='resolved')) == 'resolve'
    assert _notify.pagerduty_action('update', dict(status='investigating'), 'resolve') == 'resolve'


def test_secrets_are_scrubbed():
    channel = dict(type='slack', url='https://hooks.slack.com/services/T000/B000/SeCrEt123', headers=dict(A='tok-99999'))
    secrets = _notify.secrets_of(channel)
    text = _notify.scrub('failed POST https://hooks.slack.com/services/T000/B000/SeCrEt123 with tok-99999', secrets)
    assert 'SeCrEt123' not in text and 'tok-99999' not in text


def _record(severity, system, detected_min, **fields):
    detected = NOW - datetime.timedelta(minutes=detected_min)
    record = dict(id='INC-T', severity=severity, system=system, status='investigating', updates_sent=0,
                  escalation_level=0, times=dict(detected=timers.iso(detected),
                                                 started=timers.iso(detected - datetime.timedelta(minutes=1))))
    record.update(fields)
    return record


def test_update_slots_are_sent_once_and_never_in_a_burst():
    record = _record('SEV1', 'schedule_generator', 50)
    out = timers.timers(record, NOW)
    assert out['update_due'] and out['next_update_number'] == 3  # 50 min / 15: the current slot, not #1, #2, #3
    out = timers.timers(dict(record, updates_sent=3), NOW)
    assert not out['update_due'] and out['next_update_number'] == 4
    assert out['next_update_due'] == timers.iso(NOW + datetime.timedelta(minutes=10))
    assert not timers.timers(dict(record, status='resolved'), NOW)['update_due']
    assert timers.timers(_record('SEV4', 'schedule_generator', 500), NOW)['update_interval_minutes'] is None


def test_escalation_rules_of_the_runbooks():
    out = timers.timers(_record('SEV2', 'schedule_generator', 31, root_cause='known'), NOW)
    assert out['escalation_due']['target'] == 'engineering lead'
    assert out['escalation_due']['reasons'] == ['SEV-2 not resolved within 30 minutes']
    out = timers.timers(_record('SEV2', 'schedule_generator', 20, root_cause='known'), NOW)
    assert out['escalation_due'] is None and out['next_escalation']['after_minutes'] == 30
    out = timers.timers(_record('SEV2', 'schedule_generator', 20), NOW)  # root cause unclear after 15 min
    assert out['escalation_due']['reasons'] == ['SEV-2: root cause unclear after 15 minutes of investigation']
    out = timers.timers(_record('SEV1', 'task_scheduler', 15, root_cause='known'), NOW)  # started 16 min ago
    assert out['escalation_due']['target'] == 'all hands'
    out = timers.timers(_record('SEV1', 'pg_tviews', 70, escalation_level=1), NOW)
    assert out['escalation_due']['level'] == 2  # the highest due above the level already requested
    out = timers.timers(_record('SEV1', 'task_scheduler', 30, status='monitoring',
                                times=dict(detected=timers.iso(NOW), mitigated=timers.iso(NOW))), NOW)
    assert out['escalation_due'] is None
    with pytest.raises(timers.TimerError, match='unknown severity'):
        timers.timers(dict(severity='P9'), NOW)


def test_progress_is_what_changed_since_the_last_update():
    record = dict(id='INC-1', title='x', system='schedule_generator', severity='SEV2', status='mitigating',
                  times=dict(started='2026-12-01T20:00:00Z'))
    events = [dict(seq=1, type='note', message='before the last update'),
              dict(seq=2, type='notification', delivered=True, template='update'),
              dict(seq=3, type='status', **{'from': 'identified', 'to': 'mitigating'}),
              dict(seq=4, type='severity', confirmed_by='Alice', **{'from': 'SEV3', 'to': 'SEV2'})]
    body = render.render('update', record, events=events, now=NOW, update_number=2)['body']
    assert 'PROGRESS:\n- status identified -> mitigating\n- severity SEV3 -> SEV2 (confirmed by Alice)\n' in body
    assert 'before the last update' not in body.split('CURRENT STATUS')[0]
