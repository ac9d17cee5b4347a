"""The incident record's core: ids, validation, the severity mapping, redaction, and the files store."""
import json
import os
import stat

import pytest

from ansible_collections.incident.response.plugins.module_utils import _incident as inc
from ansible_collections.incident.response.plugins.module_utils._incident import (
    SEVERITY,
    FileStore,
    IncidentError,
    get_store,
    normalize_severity,
    priority_for,
    redact_value,
    severity_policy,
    store_argument_spec,
    validate_incident_id,
)


# --- ids ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('value', ['INC-2026-12-01-001', 'ops.42', 'a', 'A_b-c.d', 'x' * 64])
def test_valid_ids_are_used_as_is(value):
    assert validate_incident_id(value) == value


@pytest.mark.parametrize('value', ['../etc/passwd', '..', 'a..b', 'a/b', 'a\\b', '', None, '-x', '.hidden',
                                   'x' * 65, 'with space', 'semi;colon', 'nul\x00', 42])
def test_invalid_ids_are_refused_with_one_message(value):
    with pytest.raises(IncidentError) as info:
        validate_incident_id(value)
    assert 'incident id' in str(info.value)


def test_id_format():
    assert inc.format_id('2026-12-01', 7) == 'INC-2026-12-01-007'
    assert inc.format_id('2026-12-01', 1234) == 'INC-2026-12-01-1234'


# --- severity -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('value, scale, expected', [
    ('SEV1', None, 'SEV1'), ('SEV 1', None, 'SEV1'), ('SEV-2', None, 'SEV2'), ('sev_3', None, 'SEV3'),
    ('Sev4', None, 'SEV4'), (1, None, 'SEV1'), ('2', None, 'SEV2'), ('critical', None, 'SEV1'),
    ('LOW', None, 'SEV4'),
    ('P0', None, 'SEV1'), ('P1', None, 'SEV2'), ('P3', None, 'SEV4'),
    ('P0', 'task_scheduler', 'SEV1'), ('P3', 'task_scheduler', 'SEV4'),
    ('P1', 'schedule_generator', 'SEV1'), ('P4', 'schedule_generator', 'SEV4'),
    ('P1', 'insights', 'SEV1'), ('P3', 'insights', 'SEV3'),
    ('SEV 1', 'pg_tviews', 'SEV1'),
])
def test_severity_aliases(value, scale, expected):
    assert normalize_severity(value, scale) == expected


@pytest.mark.parametrize('value, scale', [
    ('SEV5', None), ('SEV0', None), ('urgent', None), ('', None), (None, None), (True, None),
    ('P4', None), ('P4', 'insights'), ('P0', 'schedule_generator'), ('P1', 'nonsense'),
])
def test_unknown_severity_is_one_clear_message(value, scale):
    with pytest.raises(IncidentError) as info:
        normalize_severity(value, scale)
    assert info.value.args[0]
    assert 'Traceback' not in str(info.value)


def test_bare_p4_says_which_scale_has_it():
    with pytest.raises(IncidentError, match='schedule_generator'):
        normalize_severity('P4')


def test_priority_is_the_canonical_p0_scale():
    assert [priority_for(s) for s in inc.SEVERITIES] == ['P0', 'P1', 'P2', 'P3']
    assert [SEVERITY[s]['priority'] for s in inc.SEVERITIES] == ['P0', 'P1', 'P2', 'P3']
    assert priority_for('SEV1', 'schedule_generator') == 'P1'
    assert priority_for('SEV4', 'schedule_generator') == 'P4'
    assert priority_for('SEV4', 'insights') is None


def test_every_runbook_alias_maps_back_to_its_level():
    for sev, level in SEVERITY.items():
        for runbook, own in level['runbooks'].items():
            assert normalize_severity(own['label'], runbook) == sev, (runbook, own['label'])
            if own.get('priority'):
                assert normalize_severity(own['priority'], runbook) == sev


def test_runbook_values_from_the_runbooks():
    # schedule generator: SEV-2 < 15 min response, updates every 30 min, < 4 h resolution, lead after 30 min
    policy = severity_policy('SEV-2', 'schedule_generator')
    assert (policy['response_minutes'], policy['update_minutes'], policy['resolution_minutes']) == (15, 30, 240)
    assert dict(when='unresolved', after_minutes=30, to='engineering lead', level=1) in policy['escalation']
    # task scheduler: P0 down > 15 min -> all hands; 30 min resolution SLA
    policy = severity_policy('P0', 'task_scheduler')
    assert policy['resolution_minutes'] == 30
    assert any(r['to'] == 'all hands' and r['after_minutes'] == 15 for r in policy['escalation'])
    # pg_tviews checklist: SEV 1 immediate (15 min), executive notification; critical updates every 15 min
    policy = severity_policy('SEV 1', 'pg_tviews')
    assert (policy['response_minutes'], policy['audience'], policy['update_minutes']) == (15, 'executive', 15)
    assert severity_policy('SEV4', 'pg_tviews')['audience'] == 'document'
    # insights: P1 immediate (< 15 min); its templates say next update in 30 minutes
    policy = severity_policy('SEV1', 'insights')
    assert (policy['response_minutes'], policy['update_minutes']) == (15, 30)
    # unknown runbook: the canonical values
    policy = severity_policy('SEV3')
    assert policy['runbook'] is None and policy['update_minutes'] == 60


def test_http_check_and_tviews_use_the_one_table():
    from ansible_collections.incident.response.plugins.module_utils import _tviews
    assert _tviews.SEV_PRIORITY == dict((s, SEVERITY[s]['priority']) for s in inc.SEVERITIES)


# --- redaction ------------------------------------------------------------------------------------------

def test_redact_value_masks_secret_keys_and_text():
    value = dict(password='hunter2', login_password='x1', webhook_url='https://hooks.slack.test/T/B/abc',
                 token='t0k', nested=dict(api_key='k', fine='ok'), note='connect with password=hunter2 now',
                 url='postgresql://app:s3cr3t@db/app', items=['PASSWORD \'abc\'', 3], empty_password='')
    clean = redact_value(value)
    text = json.dumps(clean)
    for secret in ('hunter2', 'x1"', 'hooks.slack.test', 't0k', 's3cr3t', "'abc'"):
        assert secret not in text
    assert clean['nested']['fine'] == 'ok'
    assert clean['items'][1] == 3
    assert clean['empty_password'] == ''


def test_redact_value_replaces_literal_secrets():
    clean = redact_value(dict(message='bridge opened with Wh1sper-Pass in chat'), secrets=['Wh1sper-Pass'])
    assert 'Wh1sper-Pass' not in clean['message']
    assert inc.MASK in clean['message']


# --- options --------------------------------------------------------------------------------------------

def test_store_argument_spec():
    spec = store_argument_spec()
    assert set(spec) == {'store', 'store_path', 'store_dsn', 'store_schema', 'store_timeout'}
    assert spec['store_dsn']['no_log'] is True
    assert spec['store']['choices'] == ['files', 'postgres']


def test_get_store_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('INCIDENT_STORE', 'files')
    monkeypatch.setenv('INCIDENT_STORE_PATH', str(tmp_path / 'env-store'))
    store = get_store({})
    assert isinstance(store, FileStore)
    assert store.path == str(tmp_path / 'env-store')


def test_get_store_refuses_unknown_kind():
    with pytest.raises(IncidentError, match='files or postgres'):
        get_store(dict(store='redis'))


# --- files store ----------------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    return FileStore(str(tmp_path / 'incidents'))


def test_reads_of_a_missing_store_write_nothing(store):
    assert store.get('INC-2026-12-01-001') is None
    assert store.list() == []
    assert store.events('INC-2026-12-01-001') == []
    assert store.allocate_id('2026-12-01') == 'INC-2026-12-01-001'
    assert not os.path.exists(store.path)


def test_create_allocates_gap_free_ids_per_day(store):
    ids = [store.create(dict(title='t%d' % n, times=dict(detected='2026-12-01T10:00:00Z')))['id']
           for n in range(3)]
    assert ids == ['INC-2026-12-01-001', 'INC-2026-12-01-002', 'INC-2026-12-01-003']
    other = store.create(dict(title='next day', times=dict(detected='2026-12-02T00:00:01Z')))
    assert other['id'] == 'INC-2026-12-02-001'
    assert store.allocate_id('2026-12-01') == 'INC-2026-12-01-004'


def test_files_are_private(store):
    record = store.create(dict(id='ops-1', title='x'))
    store.append_event('ops-1', dict(type='note', message='bridge opened'))
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.record_path('ops-1')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.events_path('ops-1')).st_mode) == 0o600
    assert record['revision'] == 1
    assert record['evidence_dir'] == os.path.join(store.path, 'ops-1', 'evidence')


def test_create_refuses_an_existing_id(store):
    store.create(dict(id='ops-1', title='x'))
    with pytest.raises(IncidentError, match='already exists'):
        store.create(dict(id='ops-1', title='y'))
    assert store.get('ops-1')['title'] == 'x'


def test_open_or_join_joins_by_id_and_by_fingerprint(store):
    first, created = store.open_or_join(dict(title='api down', alert=dict(name='A', fingerprint='fp1')))
    assert created
    again, created = store.open_or_join(dict(title='api down again', alert=dict(name='A', fingerprint='fp1')))
    assert not created and again['id'] == first['id']
    by_id, created = store.open_or_join(dict(id=first['id'], title='other'))
    assert not created and by_id['title'] == 'api down'
    store.update(first['id'], dict(status='resolved'))
    new, created = store.open_or_join(dict(title='api down, later', alert=dict(name='A', fingerprint='fp1')))
    assert created and new['id'] != first['id']
    assert store.find_open_by_fingerprint('fp1')['id'] == new['id']


def test_update_is_atomic_and_idempotent(store):
    store.create(dict(id='ops-1', title='x'))
    after = store.update('ops-1', dict(status='identified', times=dict(acknowledged='2026-12-01T10:00:00Z')))
    assert after['revision'] == 2 and after['times']['acknowledged'] == '2026-12-01T10:00:00Z'
    assert after['times']['detected']  # merged, not replaced
    same = store.update('ops-1', dict(status='identified'))
    assert same['revision'] == 2
    with pytest.raises(IncidentError, match='changed meanwhile'):
        store.update('ops-1', dict(status='mitigating'), expected_revision=1)
    with pytest.raises(IncidentError, match='does not exist'):
        store.update('nope', dict(status='mitigating'))
    assert not [n for n in os.listdir(store.path) if n.endswith('.tmp')]


def test_events_are_append_only_with_seq(store):
    store.create(dict(id='ops-1'))
    first = store.append_event('ops-1', dict(type='note', message='bridge opened'))
    second = store.append_event('ops-1', dict(type='notification', key='notify:update:1:slack', channel='slack'))
    assert (first['seq'], second['seq']) == (1, 2)
    assert [e['seq'] for e in store.events('ops-1')] == [1, 2]
    assert store.has_event('ops-1', 'notify:update:1:slack')
    assert not store.has_event('ops-1', 'notify:update:2:slack')
    assert not store.has_event('ops-1', None)
    with pytest.raises(IncidentError, match='event type'):
        store.append_event('ops-1', dict(type='bogus'))
    with pytest.raises(IncidentError, match='does not exist'):
        store.append_event('nope', dict(type='note'))


def test_events_appended_together_in_one_write(store, monkeypatch):
    store.create(dict(id='ops-1'))
    store.append_event('ops-1', dict(type='notification', key='notify:initial:slack'))
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync', lambda fd: syncs.append(fd) or real_fsync(fd))
    done = store.append_events('ops-1', [dict(type='task', task='one', host='db_01'),
                                         dict(type='notification', key='notify:initial:slack'),
                                         dict(type='task', task='one', host='db_02'),
                                         dict(type='note', key='k2', message='a'), dict(type='note', key='k2')])
    assert len(syncs) == 1
    assert [e['seq'] for e in done] == [2, 1, 3, 4, 4]
    assert [(e['seq'], e.get('host')) for e in store.events('ops-1')] == [(1, None), (2, 'db_01'), (3, 'db_02'),
                                                                          (4, None)]
    assert store.append_events('ops-1', []) == []
    with pytest.raises(IncidentError, match='event type'):
        store.append_events('ops-1', [dict(type='note'), dict(type='bogus')])
    assert len(store.events('ops-1')) == 4  # nothing of a refused batch is written


def test_a_line_cut_short_is_skipped_and_isolated(store):
    store.create(dict(id='ops-1'))
    store.append_event('ops-1', dict(type='note', message='one'))
    with open(store.events_path('ops-1'), 'ab') as handle:
        handle.write(b'{"type": "note", "message": "cut sh')
    assert [e['message'] for e in store.events('ops-1')] == ['one']
    third = store.append_event('ops-1', dict(type='note', message='three'))
    assert third['seq'] == 2
    assert [e['message'] for e in store.events('ops-1')] == ['one', 'three']


def test_secrets_never_reach_the_files(store):
    secret = 'Sup3r-S3cret-Lab-Pw'
    store = FileStore(store.path, secrets=[secret])
    store.create(dict(id='ops-1', title='db down', impact='login with password=%s fails' % secret,
                      labels=dict(token='abc123tok')))
    store.update('ops-1', dict(summary='rotated %s' % secret))
    store.append_event('ops-1', dict(type='note', message='used %s' % secret, webhook_url='https://hooks/x/y'))
    for name in os.listdir(store.path):
        path = os.path.join(store.path, name)
        if os.path.isfile(path):
            with open(path) as handle:
                text = handle.read()
            assert secret not in text and 'abc123tok' not in text and 'hooks/x/y' not in text


def test_list_filters(store):
    store.create(dict(id='a1', system='pg_tviews', severity='SEV1', times=dict(detected='2026-11-01T00:00:00Z')))
    store.create(dict(id='a2', system='insights', severity='SEV3', times=dict(detected='2026-12-01T00:00:00Z')))
    store.update('a2', dict(status='resolved'))
    assert [r['id'] for r in store.list(dict(system='pg_tviews'))] == ['a1']
    assert [r['id'] for r in store.list(dict(status=['resolved', 'closed']))] == ['a2']
    assert [r['id'] for r in store.list(dict(severity='SEV1'))] == ['a1']
    assert [r['id'] for r in store.list(dict(since='2026-11-15T00:00:00Z'))] == ['a2']
    assert [r['id'] for r in store.list(dict(until='2026-11-15T00:00:00Z'))] == ['a1']
    with pytest.raises(IncidentError, match='ISO 8601'):
        store.list(dict(since='yesterday-ish'))


def test_a_corrupt_record_is_one_message(store):
    store.create(dict(id='ops-1'))
    with open(store.record_path('ops-1'), 'w') as handle:
        handle.write('{not json')
    with pytest.raises(IncidentError, match='not a valid incident record'):
        store.get('ops-1')


def test_bad_ids_never_touch_the_disk(store, tmp_path):
    for bad in ('../escape', '../../etc/x', 'a/b'):
        with pytest.raises(IncidentError):
            store.create(dict(id=bad))
        with pytest.raises(IncidentError):
            store.get(bad)
        with pytest.raises(IncidentError):
            store.append_event(bad, dict(type='note'))
    assert not os.path.exists(str(tmp_path / 'escape.json'))
    assert not os.path.exists(store.path)


def test_lock_timeout_is_a_clear_message(store):
    import fcntl
    store.create(dict(id='ops-1'))
    store.timeout = 1
    with open(os.path.join(store.path, '.lock'), 'w') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(IncidentError, match='timed out after 1s'):
            store.create(dict(id='ops-2'))
    assert store.get('ops-2') is None


def test_a_wider_existing_directory_is_made_private(tmp_path):
    path = tmp_path / 'shared'
    path.mkdir(mode=0o755)
    os.chmod(str(path), 0o755)
    FileStore(str(path)).create(dict(id='ops-1'))
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o700


def test_a_store_path_that_is_a_file_is_one_message(tmp_path):
    path = tmp_path / 'file'
    path.write_text('x')
    store = FileStore(str(path))
    with pytest.raises(IncidentError, match='cannot'):
        store.create(dict(id='ops-1'))
    with pytest.raises(IncidentError, match='cannot'):
        store.list()
