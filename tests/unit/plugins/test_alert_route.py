import os

import pytest
import yaml

from ansible_collections.incident.response.plugins.modules.alert_route_info import (
    RouteError, alerts_of, check_entry, fingerprint, incident_alert, route)

MAP = dict(ServiceDown=dict(playbook='service_down.yml', mode='act', labels=dict(service_down_service='service')),
           NoActiveWorkers=dict(playbook='no_active_workers.yml', mode='act',
                                optional_labels=dict(workers_down_service='service')))
DEFAULT = dict(playbook='alert_triage.yml', mode='act')


def test_fingerprint_is_alertmanagers():
    # read from the lab's Alertmanager (GET /api/v2/alerts) for this label set
    assert fingerprint(dict(alertname='IRProbe', irtest='manual1', service='worker')) == '3462e7eac0404b36'


def test_route_takes_labels_and_passes_the_incident():
    alert = incident_alert(dict(labels=dict(alertname='ServiceDown', service='api'), startsAt='t'), 0)
    result = route(alert, MAP, DEFAULT, 'INC-1')
    assert result['playbook'] == 'service_down.yml' and result['mode'] == 'act' and result['known']
    assert result['extra_vars']['service_down_service'] == 'api'
    assert result['extra_vars']['incident_id'] == 'INC-1'
    assert result['extra_vars']['incident_alert']['fingerprint'] == alert['fingerprint']


def test_optional_label_absent_is_fine_and_unknown_gets_triage():
    alert = incident_alert(dict(labels=dict(alertname='NoActiveWorkers')), 0)
    assert 'workers_down_service' not in route(alert, MAP, DEFAULT, None)['extra_vars']
    alert = incident_alert(dict(labels=dict(alertname='Whatever')), 0)
    assert route(alert, MAP, DEFAULT, None)['playbook'] == 'alert_triage.yml'


def test_missing_required_label_refused():
    alert = incident_alert(dict(labels=dict(alertname='ServiceDown')), 0)
    with pytest.raises(RouteError, match='lacks the label.s. service that service_down.yml needs'):
        route(alert, MAP, DEFAULT, None)


@pytest.mark.parametrize('payload, message', [
    ('{', 'not JSON'), (42, 'neither'), (dict(alerts=[]), 'no alerts'), (dict(version='3', alerts=[{}]), 'version'),
])
def test_bad_payloads(payload, message):
    with pytest.raises(RouteError, match=message):
        alerts_of(payload)


@pytest.mark.parametrize('entry, message', [
    (dict(playbook='x.yml', mode='maybe'), 'mode must be act or check'),
    (dict(playbook='../etc/passwd', mode='act'), 'is neither a file name'),
    (dict(playbook='x.yml', mode='act', labels=dict(incident_id='x')), 'not a usable extra var name'),
    (dict(playbook='x.yml', mode='act', extra=1), 'unknown keys extra'),
])
def test_bad_map_entries(entry, message):
    with pytest.raises(RouteError, match=message):
        check_entry('X', entry)


ROLE_DEFAULTS = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'alert_dispatch', 'defaults', 'main.yml')


@pytest.mark.parametrize('name, playbook', [
    ('HighErrorRate', 'high_error_rate.yml'), ('HighResponseTime', 'slow_responses.yml'),
    ('ScheduleGeneratorHighQueueDepth', 'queue_backlog.yml'),
])
def test_the_schedule_generators_alerts_run_their_playbooks_in_check_mode(name, playbook):
    # their playbooks have gated steps: check mode (the plan), a person approves
    defaults = yaml.safe_load(open(ROLE_DEFAULTS))
    for entry_name, entry in defaults['alert_dispatch_map'].items():
        check_entry(entry_name, entry)
    alert = incident_alert(dict(labels=dict(alertname=name, project='schedulegen2', severity='warning')), 0)
    result = route(alert, defaults['alert_dispatch_map'], defaults['alert_dispatch_map_default'], 'INC-SG')
    assert result['known'] and result['playbook'] == playbook and result['mode'] == 'check'
    assert os.path.exists(os.path.join(os.path.dirname(ROLE_DEFAULTS), '..', '..', '..', 'playbooks', playbook))
    assert result['extra_vars']['incident_id'] == 'INC-SG'
    project = 'queue_backlog_worker_project' if playbook == 'queue_backlog.yml' else 'schedule_generator_project'
    assert result['extra_vars'][project] == 'schedulegen2'
    if playbook == 'queue_backlog.yml':
        assert result['extra_vars']['queue_backlog_worker_service'] == 'pdf-worker'
    # the task scheduler keeps its HighQueueDepth
    alert = incident_alert(dict(labels=dict(alertname='HighQueueDepth')), 0)
    assert route(alert, defaults['alert_dispatch_map'], defaults['alert_dispatch_map_default'], None)['playbook'] == \
        'scale_workers.yml'


def test_shipped_map_scopes_the_pool_remediation_to_the_alerts_database():
    """DatabaseConnectionPoolExhausted{database=scheduler} ends sessions in that database only: the shipped map
    passes the label as pg_connections_databases too (a string; the role's list option splits it), not only as
    the database connected to (else an alert on one database ends sessions in every database)."""
    import os  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel
    path = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'alert_dispatch', 'defaults', 'main.yml')
    with open(path) as handle:
        defaults = yaml.safe_load(handle)
    shipped = defaults['alert_dispatch_map']
    for entry in shipped.values():
        check_entry('x', entry)
    alert = incident_alert(dict(labels=dict(alertname='DatabaseConnectionPoolExhausted', database='scheduler')), 0)
    extra = route(alert, shipped, defaults['alert_dispatch_map_default'], None)['extra_vars']
    assert extra['pg_login_db'] == 'scheduler' and extra['pg_connections_databases'] == 'scheduler'
    alert = incident_alert(dict(labels=dict(alertname='DatabaseConnectionPoolExhausted')), 0)
    assert 'pg_connections_databases' not in route(alert, shipped, defaults['alert_dispatch_map_default'], None)['extra_vars']
