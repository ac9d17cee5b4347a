"""The review renderer (plugins/module_utils/_incident_review.py): deterministic, escaped, filled or TODO."""
import pytest

from ansible_collections.incident.response.plugins.module_utils import _incident_review as review


def record(**fields):
    base = dict(id='INC-2026-11-20-001', revision=3, title='pg_tviews errors', system='pg_tviews', severity='SEV2',
                priority='P1', status='resolved', commander='alice', responders=['bob'], alert=None,
                times=dict(started='2026-11-20T10:00:00.000Z', detected='2026-11-20T10:03:00.000Z',
                           acknowledged='2026-11-20T10:05:00.000Z', mitigated='2026-11-20T10:20:00.000Z',
                           resolved='2026-11-20T11:05:30.000Z', closed=None))
    base.update(fields)
    return base


EVENTS = [
    dict(seq=1, type='task', time='2026-11-20T10:08:00Z', start='2026-11-20T10:06:00Z', end='2026-11-20T10:08:00Z',
         task='Assess', module='incident.response.tview_info', outcome='ok', host='localhost'),
    dict(seq=2, type='check', time='2026-11-20T10:30:00Z', check='tview_info', status='critical', passed=False),
    dict(seq=3, type='notification', time='2026-11-20T10:31:00Z', channel='email', template='escalation',
         delivered=False, error='connection refused'),
]


def test_same_record_same_bytes():
    first = review.build_review(record(), EVENTS)
    second = review.build_review(record(), list(EVENTS))
    assert review.render_markdown(first) == review.render_markdown(second)
    assert review.render_html(first) == review.render_html(second)


def test_durations_and_phases():
    model = review.build_review(record(), EVENTS)
    assert review.human_duration(model['duration']) == '1 hour 5 minutes'
    assert [p['label'] for p in model['phases']] == ['Detection', 'Acknowledgement', 'Mitigation', 'Monitoring']
    text = review.render_markdown(model)
    assert '- **Duration**: 1 hour 5 minutes' in text
    assert '1 monitoring checks failed after the fix (regression)' in text
    assert '1 notifications were not delivered' in text
    assert 'Monitoring check tview_info FAILED :crit, milestone,' in text


def test_an_open_incident_is_ongoing():
    rec = record(status='mitigating')
    rec['times'].update(mitigated=None, resolved=None)
    model = review.build_review(rec, EVENTS)
    text = review.render_markdown(model)
    assert '- **Duration**: ongoing (not resolved)' in text
    assert model['phases'][-1]['label'] == 'Mitigation' and model['phases'][-1]['ongoing']
    assert 'Mitigation (ongoing) :active,' in text


def test_unknown_fields_are_todo_for_the_commander():
    text = review.render_markdown(review.build_review(record(root_cause=None, impact=None), []))
    assert '**Technical Root Cause**: **TODO(alice)**:' in text
    text = review.render_markdown(review.build_review(record(commander=None), []))
    assert '**TODO(incident commander)**: name the incident commander' in text


@pytest.mark.parametrize('value', ['<script>x</script>', '"><svg onload=alert(1)>', "a'b&c"])
def test_html_escaping(value):
    page = review.render_html(review.build_review(record(title=value, root_cause=value), [
        dict(type='note', time='2026-11-20T10:10:00Z', message=value, actor=value)]))
    assert value not in page
    assert '<script' not in page and '<svg onload' not in page


def test_mermaid_names_cannot_break_the_block():
    name = review.mermaid_text('a: b; c # d\n```\nend')
    assert ':' not in name and ';' not in name and '#' not in name and '`' not in name and '\n' not in name


def test_redaction_of_secrets_in_text():
    page = review.render_html(review.build_review(record(summary='psql postgresql://u:hunter22@db/x'), []))
    assert 'hunter22' not in page


def test_a_record_without_id():
    with pytest.raises(review.ReviewError):
        review.build_review({}, [])


def test_events_as_the_incident_module_writes_them():
    rows = review.build_review(record(), [
        {'type': 'opened', 'time': '2026-11-20T10:03:00Z', 'title': 'pg_tviews errors', 'severity': 'SEV2',
         'actor': 'awx-job-7'},
        {'type': 'status', 'time': '2026-11-20T10:20:00Z', 'from': 'mitigating', 'to': 'monitoring', 'actor': 'a'},
        {'type': 'severity', 'time': '2026-11-20T10:21:00Z', 'from': 'SEV3', 'to': 'SEV2', 'confirmed_by': 'alice'},
        {'type': 'escalation', 'time': '2026-11-20T10:22:00Z', 'level': 1, 'to': 'team lead', 'message': 'm'},
        {'type': 'updated', 'time': '2026-11-20T10:23:00Z', 'fields': ['impact'], 'values': {'impact': 'x'}},
    ])['rows']
    events = [r['event'] for r in rows if r['kind'] != 'time']
    assert events == ['Incident opened: pg_tviews errors', 'Status mitigating \u2192 monitoring',
                      'Severity SEV3 \u2192 SEV2 (confirmed by alice)', 'Escalation level 1 to team lead',
                      'Updated impact']


def test_fields_a_person_set_in_the_record():
    text = review.render_markdown(review.build_review(record(
        services_affected=['checkout', 'reports'], contributing_factors=['no alert on queue age'],
        lessons_learned=['test migrations on a copy'],
        action_items=[dict(action='alert on queue age', owner='bob', due='2026-11-27', priority='High')]), []))
    assert '- **Services Affected**: pg_tviews, checkout, reports' in text
    assert '- no alert on queue age' in text and '- test migrations on a copy' in text
    assert '| alert on queue age | bob | 2026-11-27 | High | Open |' in text
