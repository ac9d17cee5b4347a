"""The incident role's entry points (open, record, close) in a real playbook run, on the files store and on the
lab's PostgreSQL 15 (a database of its own, dropped after)."""
import json
import os
import textwrap

import pytest

from test_incident_store import StoreUnderTest, pg_database  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration

PLAY = textwrap.dedent('''
    - name: An incident playbook, thin
      hosts: localhost
      gather_facts: false
      tasks:
        - name: Open or join
          ansible.builtin.include_role:
            name: incident.response.incident
            tasks_from: open
          vars:
            incident_title: pg_tviews emergency on db1
            incident_system: pg_tviews
        - name: Record the assessment
          ansible.builtin.include_role:
            name: incident.response.incident
            tasks_from: record
          vars:
            incident_severity: SEV 2
            incident_status: mitigating
            incident_fields: {workaround: reports read from the replica}
        - name: Record the end state
          ansible.builtin.include_role:
            name: incident.response.incident
            tasks_from: close
          vars:
            incident_end_state: "{{ end_state | default('monitoring') }}"
        - name: Show the incident
          ansible.builtin.debug:
            msg: "RESULT {{ {'id': incident_id, 'status': incident_record.status, 'opened': incident_opened} | to_json }}"
''')


@pytest.fixture(params=['files', 'postgres'])
def role_store(request, lab_env, tmp_path):
    database = request.getfixturevalue('pg_database') if request.param == 'postgres' else None
    store = StoreUnderTest(request.param, lab_env, tmp_path, database)
    yield store
    store.cleanup()


# The timeline callback (enabled in ansible.cfg) records every run into the incident by design; these tests
# compare the store before and after idempotent runs of the module itself, so they run without it (the
# timeline has its own tests: test_incident_timeline.py).
NO_TIMELINE = dict(ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.default')


def store_env(store):
    env = dict(NO_TIMELINE, INCIDENT_STORE=store.kind)
    if store.kind == 'files':
        env['INCIDENT_STORE_PATH'] = store.path
    else:
        env.update(INCIDENT_STORE_DSN=store.options['store_dsn'], INCIDENT_STORE_SCHEMA=store.schema)
    return env


def result_of(run):
    marker = 'RESULT '
    text = run.output[run.output.rindex(marker) + len(marker):]
    return json.loads(text[:text.index('}') + 1].replace('\\"', '"'))


def test_role_open_record_close_check_apply_rerun(ansible, role_store, tmp_path):
    play = str(tmp_path / 'play.yml')
    with open(play, 'w') as handle:
        handle.write(PLAY)
    env = store_env(role_store)
    before = role_store.digest()

    run = ansible.playbook(play, check=True, env=env)
    assert run.rc == 0, run
    assert role_store.digest() == before  # check mode: not even the directory or the schema

    run = ansible.playbook(play, env=env)
    assert run.rc == 0, run
    first = result_of(run)
    assert first['status'] == 'monitoring' and first['opened'] is True
    record = role_store.open().get(first['id'])
    assert (record['severity'], record['priority']) == ('SEV2', 'P1')
    assert record['workaround'] == 'reports read from the replica'
    assert record['times']['mitigated']
    applied = role_store.digest()

    # the same incident again (incident_id given): joins; check mode and a real re-run change nothing
    run = ansible.playbook(play, check=True, env=env, extra_vars=dict(incident_id=first['id']))
    assert run.rc == 0 and run.changed == 0, run
    assert role_store.digest() == applied
    run = ansible.playbook(play, env=env, extra_vars=dict(incident_id=first['id'], end_state='monitoring'))
    assert run.rc == 0 and run.changed == 0, run
    again = result_of(run)
    assert again['id'] == first['id'] and again['opened'] is False
    assert role_store.digest() == applied
    assert len(role_store.open().list()) == 1

    # AWX passes incident_id as an extra var, empty for "open a new one": set_fact cannot override an extra var,
    # record and close still find the incident that open opened
    run = ansible.playbook(play, env=env, extra_vars=dict(incident_id=''))
    assert run.rc == 0, run
    assert len(role_store.open().list(dict(status='monitoring'))) == 2

    # a failed run keeps the status and says so in the timeline
    run = ansible.playbook(play, env=env, extra_vars=dict(incident_id=first['id'], end_state='failed'))
    assert run.rc == 0, run
    store = role_store.open()
    assert store.get(first['id'])['status'] == 'monitoring'
    assert store.events(first['id'])[-1]['message'] == 'the run ended failed'


def test_role_refuses_a_bad_id_with_one_message(ansible, tmp_path):
    play = str(tmp_path / 'play.yml')
    with open(play, 'w') as handle:
        handle.write(PLAY)
    path = str(tmp_path / 'incidents')
    run = ansible.playbook(play, env=dict(NO_TIMELINE, INCIDENT_STORE='files', INCIDENT_STORE_PATH=path),
                           extra_vars=dict(incident_id='../../etc/x'))
    assert run.rc != 0
    assert 'invalid incident id' in run.output and 'Traceback' not in run.output
    assert not os.path.exists(path)
