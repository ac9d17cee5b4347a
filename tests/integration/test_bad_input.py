"""Bad input and unreachable services end in one clear message, never a traceback."""
import os
import subprocess

import pytest

from conftest import assert_clean_failure

pytestmark = pytest.mark.integration


def test_unreachable_server(ansible):
    rc, result, out = ansible.module('pg_activity_info', dict(login_host='127.0.0.1', login_port=1))
    assert_clean_failure(rc, result, out, 'Unable to connect to PostgreSQL at 127.0.0.1:1', 'Connection refused')


def test_wrong_password_is_named_and_not_echoed(ansible):
    rc, result, out = ansible.module('pg_backends', dict(action='terminate', states=['idle']),
                                     env=dict(PGPASSWORD='definitely-wrong-pw'))
    assert_clean_failure(rc, result, out, 'Unable to connect to PostgreSQL', 'password authentication failed')
    assert 'definitely-wrong-pw' not in out


def test_unknown_database(ansible):
    rc, result, out = ansible.module('pg_activity_info', dict(login_db='no_such_database'))
    assert_clean_failure(rc, result, out, 'database no_such_database', 'does not exist')


@pytest.mark.parametrize('args, fragment', [
    (dict(action='terminate', states=['waiting']), 'value of states must be one or more of'),
    (dict(action='terminate', min_state_age='-30m'), 'min_state_age: must not be negative'),
    (dict(action='cancel', query_pattern='pg_sleep('), 'is not a valid regular expression'),
    (dict(action='terminate'), 'needs at least one filter'),
])
def test_bad_filters(ansible, args, fragment):
    rc, result, out = ansible.module('pg_backends', args)
    assert_clean_failure(rc, result, out, fragment)


def test_psycopg2_missing_on_the_target(ansible, tmp_path):
    bare = tmp_path / 'bare'
    subprocess.run(['python3', '-m', 'venv', '--without-pip', str(bare)], check=True)
    python = str(bare / 'bin' / 'python')
    assert subprocess.run([python, '-c', 'import psycopg2'], capture_output=True, check=False).returncode != 0
    rc, result, out = ansible.module('pg_activity_info', {}, extra=['-e', 'ansible_python_interpreter=%s' % python])
    assert_clean_failure(rc, result, out, 'psycopg2', 'on the host that runs the module')
    assert os.path.basename(python) in result['msg']
