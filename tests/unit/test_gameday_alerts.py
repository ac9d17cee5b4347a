"""The gameday faults and the alert map agree (issue 10): every act-mapped alert is fired by a gameday fault with
the labels its map entry requires, and the alerts soak (benchmarks/alerts_soak.py) loops exactly those faults."""
import ast
import os

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def load(*path):
    with open(os.path.join(ROOT, *path)) as handle:
        return yaml.safe_load(handle)


ALERT_MAP = load('roles', 'alert_dispatch', 'defaults', 'main.yml')['alert_dispatch_map']
GAMEDAY = load('roles', 'gameday', 'defaults', 'main.yml')['gameday_alerts']
FAULT_FILES = set(name[:-4] for name in os.listdir(os.path.join(ROOT, 'roles', 'gameday', 'tasks', 'faults')))


def soak_faults():
    """Faults.FAULTS of the benchmark, read without importing it (it needs the lab's Python packages)."""
    with open(os.path.join(ROOT, 'benchmarks', 'alerts_soak.py')) as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == 'Faults':
            for item in node.body:
                if isinstance(item, ast.Assign) and item.targets[0].id == 'FAULTS':
                    return {kw.arg: ast.literal_eval(kw.value)[0] for kw in item.value.keywords}
    raise AssertionError('Faults.FAULTS not found')


def test_every_gameday_alert_is_of_a_known_fault():
    assert set(GAMEDAY) <= FAULT_FILES


def test_every_act_mapped_alert_has_a_fault_that_fires_it_with_the_labels_it_needs():
    acted = sorted(name for name, entry in ALERT_MAP.items() if entry['mode'] == 'act')
    assert acted == ['DatabaseConnectionPoolExhausted', 'HighQueueDepth', 'NoActiveWorkers', 'ServiceDown']
    for name in acted:
        needed = set((ALERT_MAP[name].get('labels') or {}).values())
        firing = [fault for fault, alert in GAMEDAY.items() if alert['labels']['alertname'] == name
                  and needed <= set(alert['labels'])]
        assert firing, '%s: no gameday fault fires it with the labels %s' % (name, sorted(needed))


def test_the_soak_loops_one_fault_per_act_mapped_alert_and_gameday_fires_its_alert():
    faults = soak_faults()
    assert sorted(faults.values()) == sorted(n for n, e in ALERT_MAP.items() if e['mode'] == 'act')
    for fault, alertname in faults.items():
        assert GAMEDAY[fault]['labels']['alertname'] == alertname, fault


def test_the_task_scheduler_worker_alert_is_not_fired_by_a_pg_tviews_fault():
    # HighQueueDepth runs scale_workers.yml (the task scheduler's workers): the pg_tviews refresh queue backlog
    # (queue_backlog) is a pg_tviews alert, which the map sends to the emergency procedures (check).
    assert GAMEDAY['queue_backlog']['labels']['alertname'] == 'PgTviewsQueueBacklog'
    assert ALERT_MAP['PgTviewsQueueBacklog']['mode'] == 'check'
    assert [f for f, a in GAMEDAY.items() if a['labels']['alertname'] == 'HighQueueDepth'] == ['worker_shortage']
