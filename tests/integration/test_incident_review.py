"""The post-incident review (issue 8, section 6): playbooks/post_incident_review.yml and incident_review.

Records are written into a files store of the test's own (tmp_path) through the store API; the HTML report is
opened in a real headless Chromium (Debian's ``chromium``) and its screenshot read with Pillow.
"""
import datetime
import os
import re
import shutil
import stat
import subprocess
import uuid

import pytest

from conftest import assert_clean_failure
from incident_helpers import ago, drop_schema, files_store, iso, make_incident, pg_store, tree_digest

pytestmark = pytest.mark.integration

# The colours of the SVG's phase bars (plugins/module_utils/_incident_review.py PHASES).
MITIGATION_BLUE = (0x2b, 0x6c, 0xb0)
MONITORING_GREEN = (0x27, 0xae, 0x60)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def timeline_events(started):
    def at(seconds):
        return iso(started + datetime.timedelta(seconds=seconds))
    return [
        dict(type='note', time=at(200), actor='alice', message='bridge opened'),
        dict(type='task', time=at(330), start=at(310), end=at(330), host='localhost', play='Emergency disable',
             task='Assess pg_tviews', module='incident.response.tview_info', outcome='ok', check_mode=False,
             summary='12 of 20 TVIEWs failing'),
        dict(type='task', time=at(600), start=at(420), end=at(600), host='localhost', play='Emergency disable',
             task='Disable the failing TVIEWs', module='incident.response.tview_state', outcome='changed',
             check_mode=False, summary='disabled 12 TVIEWs'),
        dict(type='notification', time=at(610), actor='incident_notify', channel='slack', template='update',
             update_number=1, delivered=True, error=None),
        dict(type='check', time=at(1200), actor='incident_monitor', check='tview_info', status='ok', passed=True,
             reasons=[]),
    ]


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / 'incidents'


@pytest.fixture
def incident(store_dir):
    store = files_store(store_dir)
    started = ago(days=2)
    return make_incident(store, started=started, title='pg_tviews refresh errors on db1', root_cause='a bad migration',
                         alert=dict(name='TViewRefreshErrors', fingerprint='f00dfeed', labels=dict(service='db1'),
                                    starts_at=iso(started)),
                         events=timeline_events(started))


# The timeline callback (enabled in ansible.cfg) records every run into the incident by design; these tests
# compare the store before and after idempotent runs of the module itself, so they run without it (the
# timeline has its own tests: test_incident_timeline.py).
NO_TIMELINE = dict(ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.default')


def review_env(store_dir):
    return dict(NO_TIMELINE, INCIDENT_STORE='files', INCIDENT_STORE_PATH=str(store_dir))


def test_review_four_steps(ansible, store_dir, incident):
    env = review_env(store_dir)
    before = tree_digest(store_dir)
    check = ansible.playbook('playbooks/post_incident_review.yml', dict(incident_id=incident['id']), check=True,
                             env=env)
    assert check.rc == 0 and check.changed == 1, check
    assert 'would write the review of %s' % incident['id'] in check.output, check
    assert tree_digest(store_dir) == before  # check mode wrote nothing

    run = ansible.playbook('playbooks/post_incident_review.yml', dict(incident_id=incident['id']), env=env)
    assert run.rc == 0 and run.changed == 1, run
    review_dir = store_dir / incident['id']
    assert stat.S_IMODE(os.stat(review_dir).st_mode) == 0o700
    for name in ('review.md', 'review.html'):
        assert stat.S_IMODE(os.stat(review_dir / name).st_mode) == 0o600, name
    text = (review_dir / 'review.md').read_text()
    # The runbook template's sections, filled where the record knows.
    for heading in ('# Post-Incident Review: %s' % incident['id'], '## Incident Summary', '## Timeline',
                    '## Root Cause', '## Contributing Factors', '## What Went Well', '## What Could Be Improved',
                    '## Action Items', '## Lessons Learned'):
        assert heading in text, heading
    assert '- **Duration**: 30 minutes' in text
    assert '- **Severity**: SEV2' in text
    assert '- **Services Affected**: pg_tviews, db1' in text
    assert '**Technical Root Cause**: a bad migration' in text
    assert '**TODO(alice)**: who and how many were affected' in text  # impact unknown: a person writes it
    assert '| Disable the failing TVIEWs | disabled 12 TVIEWs | localhost | changed |' in text
    assert '| Notification update #1 | via slack | incident_notify | delivered |' in text
    assert '```mermaid\ngantt\n' in text and 'Mitigation :done,' in text
    due = (datetime.datetime.fromisoformat(incident['times']['resolved'].replace('Z', '+00:00'))
           + datetime.timedelta(days=7)).strftime('%Y-%m-%d')
    assert '| TODO(alice) | %s | High | Open |' % due in text

    after = tree_digest(store_dir)
    again_check = ansible.playbook('playbooks/post_incident_review.yml', dict(incident_id=incident['id']),
                                   check=True, env=env)
    assert again_check.rc == 0 and again_check.changed == 0, again_check
    again = ansible.playbook('playbooks/post_incident_review.yml', dict(incident_id=incident['id']), env=env)
    assert again.rc == 0 and again.changed == 0, again
    assert 'is up to date' in again.output
    assert tree_digest(store_dir) == after


def test_a_new_event_refreshes_the_review(ansible, store_dir, incident):
    env = review_env(store_dir)
    assert ansible.playbook('playbooks/post_incident_review.yml', dict(incident_id=incident['id']), env=env).rc == 0
    files_store(store_dir).append_event(incident['id'], dict(type='note', actor='bob',
                                                             message='customer support informed'))
    run = ansible.playbook('playbooks/post_incident_review.yml', dict(incident_id=incident['id']), env=env)
    assert run.rc == 0 and run.changed == 1, run
    assert 'customer support informed' in (store_dir / incident['id'] / 'review.md').read_text()


def test_an_edited_review_is_never_overwritten(ansible, store_dir, incident):
    env = review_env(store_dir)
    args = dict(incident_id=incident['id'])
    assert ansible.playbook('playbooks/post_incident_review.yml', args, env=env).rc == 0
    review = store_dir / incident['id'] / 'review.md'
    edited = review.read_text().replace('**TODO(alice)**: what happened, in two or three sentences',
                                        'A migration broke twelve TVIEWs.')
    review.write_text(edited)
    files_store(store_dir).append_event(incident['id'], dict(type='note', actor='bob', message='later note'))
    before = tree_digest(store_dir)

    refused = ansible.playbook('playbooks/post_incident_review.yml', args, env=env)
    assert refused.rc != 0, refused
    assert 'edited by a person since it was generated: nothing written' in refused.output, refused
    assert 'Traceback' not in refused.output
    assert tree_digest(store_dir) == before and review.read_text() == edited

    forced = ansible.playbook('playbooks/post_incident_review.yml', dict(args, incident_review_force=True), env=env)
    assert forced.rc == 0 and forced.changed == 1, forced
    copies = [p for p in os.listdir(str(review.parent)) if re.match(r'^review\.\d{8}T\d{6}Z(-\d+)?\.md$', p)]
    assert len(copies) == 1, os.listdir(str(review.parent))
    assert (review.parent / copies[0]).read_text() == edited  # the person's text is kept
    assert 'later note' in review.read_text()


def test_check_mode_returns_the_review(ansible, store_dir, incident):
    before = tree_digest(store_dir)
    rc, result, out = ansible.module('incident_review', dict(incident_id=incident['id'], store_path=str(store_dir)),
                                     check=True, diff=True)
    assert rc == 0 and result['changed'] is True, out
    assert result['markdown'].startswith('# Post-Incident Review: %s' % incident['id'])
    assert [a['done'] for a in result['actions']] == [False, False]
    assert '+++ after: %s' % result['files']['markdown'] in out and '+# Post-Incident Review: ' in out  # --diff
    assert tree_digest(store_dir) == before


def test_html_escapes_every_value(ansible, store_dir, lab_env):
    store = files_store(store_dir)
    started = ago(days=1)
    events = timeline_events(started) + [
        dict(type='note', time=iso(started + datetime.timedelta(seconds=700)), actor=HOSTILE, message=HOSTILE),
        dict(type='note', time=iso(started + datetime.timedelta(seconds=710)), actor='bob',
             message='connected with password=%s' % lab_env['PGPASSWORD'])]
    record = make_incident(store, started=started, title=HOSTILE, system='insights " onload="alert(2)',
                           root_cause=HOSTILE, commander='<b>eve</b>', impact='| broken | table |', events=events)
    rc, result, out = ansible.module('incident_review', dict(incident_id=record['id'], store_path=str(store_dir)))
    assert rc == 0 and result['changed'] is True, out
    page = (store_dir / record['id'] / 'review.html').read_text()
    text = (store_dir / record['id'] / 'review.md').read_text()
    lowered = page.lower()
    assert '<script' not in lowered and '<img' not in lowered and '<b>' not in lowered
    assert 'onload="' not in lowered
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in page
    assert 'insights &quot; onload=&quot;alert(2)' in page
    assert "Content-Security-Policy\" content=\"default-src 'none'" in page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)  # nothing fetched from elsewhere
    assert '<script' not in text.lower() and '<img' not in text.lower() and '<b>' not in text
    assert '\\| broken \\| table \\|' in text  # a pipe of the record does not break the table
    for content in (page, text):
        assert lab_env['PGPASSWORD'] not in content


def chromium_binary():
    for name in ('chromium', 'chromium-browser'):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail('chromium is not installed: apt-get install -y chromium (bindep.txt, profile test)')
    return None


def screenshot(html_path, png_path, tmp_path, size=(1280, 1000)):
    profile = tmp_path / ('chromium-profile-%s' % os.path.basename(str(png_path)))
    cmd = [chromium_binary(), '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
           '--no-first-run', '--user-data-dir=%s' % profile, '--screenshot=%s' % png_path,
           '--window-size=%d,%d' % size, 'file://%s' % html_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0 and os.path.exists(str(png_path)), proc.stderr[-2000:]


def colour_pixels(image, box, colour, tolerance=12):
    region = image.crop(box)
    return sum(1 for pixel in region.getdata()
               if all(abs(channel - want) <= tolerance for channel, want in zip(pixel[:3], colour)))


def non_white_share(image, box):
    region = image.crop(box).convert('L')
    pixels = list(region.getdata())
    return sum(1 for value in pixels if value < 235) / float(len(pixels))


def test_html_report_shows_the_timeline_in_chromium(ansible, store_dir, incident, tmp_path):
    image_module = pytest.importorskip('PIL.Image')
    rc, result, out = ansible.module('incident_review', dict(incident_id=incident['id'], store_path=str(store_dir)))
    assert rc == 0, out
    html_path = result['files']['html']
    page = open(html_path).read()
    svg_height = int(re.search(r'<svg [^>]*id="timeline"[^>]*height="(\d+)"', page).group(1))
    png = tmp_path / 'review.png'
    screenshot(html_path, png, tmp_path)
    image = image_module.open(str(png)).convert('RGB')
    assert image.size == (1280, 1000)
    # The SVG sits under the 64 px header, at the top of the page.
    box = (0, 64, 1040, min(64 + svg_height + 16, image.size[1]))
    assert non_white_share(image, box) > 0.03, 'the timeline area is blank'
    assert colour_pixels(image, box, MITIGATION_BLUE) > 300, 'no mitigation bar drawn'
    assert colour_pixels(image, box, MONITORING_GREEN) > 300, 'no monitoring bar drawn'

    # Control: the same page without its timeline has no bar in that area (the checks above can fail).
    bare = tmp_path / 'bare.html'
    bare.write_text(re.sub(r'<section id="timeline-section">.*?</section>', '', page, flags=re.S))
    bare_png = tmp_path / 'bare.png'
    screenshot(str(bare), bare_png, tmp_path)
    bare_image = image_module.open(str(bare_png)).convert('RGB')
    assert colour_pixels(bare_image, box, MITIGATION_BLUE) < 20


@pytest.mark.parametrize('incident_id, fragment', [
    ('../etc', 'invalid incident id'),
    ('INC-2026-01-01-999', 'not found'),
])
def test_bad_incident_ids(ansible, store_dir, incident, incident_id, fragment):
    before = tree_digest(store_dir)
    rc, result, out = ansible.module('incident_review', dict(incident_id=incident_id, store_path=str(store_dir)))
    assert_clean_failure(rc, result, out)
    assert fragment in result['msg'], result['msg']
    assert tree_digest(store_dir) == before


def test_playbook_without_an_incident_id(ansible, store_dir):
    run = ansible.playbook('playbooks/post_incident_review.yml', {}, env=review_env(store_dir))
    assert run.rc != 0 and 'Give the incident: -e incident_id=' in run.output, run
    assert 'Traceback' not in run.output


def test_review_and_metrics_from_the_postgres_store(ansible, lab_env, tmp_path):
    schema = 'ir_review_%s' % uuid.uuid4().hex[:8]
    try:
        store = pg_store(lab_env, schema)
        started = ago(days=4)
        record = make_incident(store, started=started, title='API down', system='task_scheduler', severity='SEV1',
                               alert=dict(name='TaskSchedulerAPIDown', fingerprint='fp-api'),
                               events=timeline_events(started))
        store.close()
        env = dict(NO_TIMELINE, INCIDENT_STORE='postgres', INCIDENT_STORE_SCHEMA=schema)
        dest = tmp_path / 'review'
        args = dict(incident_id=record['id'], incident_review_dest=str(dest))
        run = ansible.playbook('playbooks/post_incident_review.yml', args, env=env)
        assert run.rc == 0 and run.changed == 1, run
        text = (dest / 'review.md').read_text()
        assert '# Post-Incident Review: %s' % record['id'] in text and 'Mitigation :done,' in text
        page = (dest / 'review.html').read_text()
        for content in (text, page, run.output):
            assert lab_env['PGPASSWORD'] not in content
        again = ansible.playbook('playbooks/post_incident_review.yml', args, env=env)
        assert again.rc == 0 and again.changed == 0, again

        rc, result, out = ansible.module('incident_metrics_info', dict(store='postgres', store_schema=schema))
        assert rc == 0 and result['count'] == 1 and result['by_system'] == dict(task_scheduler=1), out
        assert result['mttr']['mean_seconds'] == 1800.0
        # SEV1 of the task scheduler: resolved after 30 minutes, exactly its target: not missed
        assert result['resolution_targets_missed'] == [] and result['status'] == 'ok', result['reasons']
    finally:
        drop_schema(lab_env, schema)
