# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared Redis code: one connection argspec, one client (redis-py), Bull/BullMQ key layouts.

Private to the collection: the API may change without notice. The connection options are
documented once in the ``incident.response.redis`` doc fragment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.urllib.parse import urlparse, unquote, parse_qs

from ansible_collections.incident.response.plugins.module_utils._common import redact

REDIS_IMPORT_ERROR = None
try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    HAS_REDIS = True
except ImportError:
    redis = None
    REDIS_IMPORT_ERROR = traceback.format_exc()
    HAS_REDIS = False

DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 6379

# Commands a read-only module may send: nothing here writes, and no script runs.
READ_ONLY_COMMANDS = frozenset((
    'PING', 'INFO', 'SCAN', 'DBSIZE', 'TYPE', 'EXISTS', 'LLEN', 'LINDEX', 'LRANGE', 'ZCARD', 'ZRANGE',
    'ZRANGEBYSCORE', 'ZSCORE', 'ZCOUNT', 'HGET', 'HGETALL', 'HMGET', 'HEXISTS', 'GET', 'SCARD', 'XLEN', 'TIME',
))


def redis_common_argument_spec():
    """The connection options every Redis module accepts (doc fragment ``incident.response.redis``)."""
    return dict(
        url=dict(type='str', no_log=True, fallback=(env_fallback, ['REDIS_URL'])),
        host=dict(type='str'),
        port=dict(type='int'),
        db=dict(type='int'),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        unix_socket=dict(type='path'),
        tls=dict(type='bool'),
        ca_cert=dict(type='path'),
        validate_certs=dict(type='bool', default=True),
        timeout=dict(type='int', default=5),
    )


class RedisError(Exception):
    """Redis could not do what was asked; the message names the target, never the password."""


def ensure_redis(module):
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib('redis (redis-py)')
                         + ' It is needed on the host that runs the module (the target), not only on the controller.',
                         exception=REDIS_IMPORT_ERROR)


def parse_redis_url(url):
    """Split a redis://, rediss:// or unix:// URL into connection settings (ValueError when malformed)."""
    parsed = urlparse(url)
    scheme = (parsed.scheme or '').lower()
    if scheme not in ('redis', 'rediss', 'unix'):
        raise ValueError('url (or REDIS_URL) must start with redis://, rediss:// or unix://')
    settings = {}
    if parsed.username:
        settings['username'] = unquote(parsed.username)
    if parsed.password:
        settings['password'] = unquote(parsed.password)
    query = parse_qs(parsed.query)
    db = None
    if scheme == 'unix':
        if not parsed.path:
            raise ValueError('url (or REDIS_URL): a unix:// URL needs the socket path')
        settings['unix_socket'] = unquote(parsed.path)
    else:
        try:
            port = parsed.port
        except ValueError:
            raise ValueError('url (or REDIS_URL): the port is not a number')
        if parsed.hostname:
            settings['host'] = unquote(parsed.hostname)
        if port:
            settings['port'] = port
        settings['tls'] = scheme == 'rediss'
        path = (parsed.path or '').strip('/')
        if path:
            db = path
    if query.get('db'):
        db = query['db'][0]
    if db is not None:
        try:
            settings['db'] = int(db)
        except ValueError:
            raise ValueError('url (or REDIS_URL): the database number is not a number')
    return settings


def resolve_connection(params):
    """The connection settings: options given explicitly, then the URL (url or REDIS_URL), then defaults."""
    settings = dict(host=DEFAULT_HOST, port=DEFAULT_PORT, db=0, username=None, password=None, unix_socket=None,
                    tls=False)
    if params.get('url'):
        settings.update(parse_redis_url(params['url']))
    for key in ('host', 'port', 'db', 'username', 'password', 'unix_socket', 'tls'):
        if params.get(key) is not None:
            settings[key] = params[key]
    if params.get('host') is not None and params.get('unix_socket') is None:
        settings['unix_socket'] = None
    settings['ca_cert'] = params.get('ca_cert')
    settings['validate_certs'] = params.get('validate_certs', True)
    settings['timeout'] = params.get('timeout') or 5
    return settings


def describe_target(settings):
    """'127.0.0.1:6379 db 0 as app': where we connect, never the password."""
    if settings.get('unix_socket'):
        where = 'socket %s' % settings['unix_socket']
    else:
        where = '%s:%s' % (settings['host'], settings['port'])
    text = '%s db %s' % (where, settings['db'])
    if settings.get('username'):
        text += ' as %s' % settings['username']
    if settings.get('tls'):
        text += ' (TLS)'
    return text


def error_text(exc, password=None):
    """One line from a redis-py exception, with any password masked."""
    text = ' '.join(to_native(exc).split()) or exc.__class__.__name__
    if password:
        text = text.replace(password, '********')
    return redact(text)


class RedisClient(object):
    """One redis-py connection; every command goes through :meth:`call` or :meth:`pipeline`.

    No retries: a command is sent once and ``timeout`` bounds it (a retried write script could run twice).

    ``read_only=True`` refuses any command outside READ_ONLY_COMMANDS, so a diagnosis can never write
    or run a script. ``decode_responses=False`` returns bytes (DUMP payloads and binary key names).
    Every Redis error becomes :class:`RedisError` with a message naming the target.
    """

    def __init__(self, params, read_only=False, decode_responses=True):
        if params.get('timeout') is not None and params['timeout'] < 1:
            raise ValueError('timeout must be at least 1 second, got %s' % params['timeout'])
        if params.get('db') is not None and params['db'] < 0:
            raise ValueError('db must not be negative, got %s' % params['db'])
        if params.get('port') is not None and not 0 < params['port'] < 65536:
            raise ValueError('port must be between 1 and 65535, got %s' % params['port'])
        self.settings = resolve_connection(params)
        self.read_only = read_only
        self.target = describe_target(self.settings)
        self.commands = 0
        s = self.settings
        kwargs = dict(db=s['db'], username=s['username'], password=s['password'], socket_timeout=s['timeout'],
                      socket_connect_timeout=s['timeout'], decode_responses=decode_responses,
                      encoding_errors='replace',
                      client_name='incident.response', retry=Retry(NoBackoff(), 0))
        if s['unix_socket']:
            kwargs['unix_socket_path'] = s['unix_socket']
        else:
            kwargs.update(host=s['host'], port=s['port'])
            if s['tls']:
                kwargs.update(ssl=True, ssl_ca_certs=s['ca_cert'],
                              ssl_cert_reqs='required' if s['validate_certs'] else 'none',
                              ssl_check_hostname=bool(s['validate_certs']))
        try:
            self.conn = redis.Redis(**kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            raise RedisError('Unable to set up the Redis client for %s: %s' % (self.target, error_text(exc, s['password'])))

    def _check(self, name):
        if self.read_only and name.upper() not in READ_ONLY_COMMANDS:
            raise RedisError('refusing to send %s to %s: this module only reads' % (name.upper(), self.target))

    def _fail(self, what, exc):
        return RedisError('%s failed on Redis at %s: %s' % (what, self.target, error_text(exc, self.settings['password'])))

    def call(self, name, *args):
        self._check(name)
        self.commands += 1
        try:
            return self.conn.execute_command(name, *args)
        except redis.exceptions.RedisError as exc:
            raise self._fail(name.upper(), exc)
        except (OSError, ValueError) as exc:
            raise self._fail(name.upper(), exc)

    def pipeline(self, commands):
        """Send ``[(name, arg, ...), ...]`` in one round trip (no MULTI); returns the replies in order."""
        if not commands:
            return []
        for command in commands:
            self._check(command[0])
        pipe = self.conn.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        self.commands += len(commands)
        try:
            return pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._fail('%s (pipelined)' % commands[0][0].upper(), exc)
        except (OSError, ValueError) as exc:
            raise self._fail('%s (pipelined)' % commands[0][0].upper(), exc)

    def script(self, source, keys, args):
        """Run a Lua script (remediations only): EVAL, atomic on the server."""
        self._check('EVAL')
        self.commands += 1
        try:
            return self.conn.execute_command('EVAL', source, len(keys), *(list(keys) + list(args)))
        except redis.exceptions.RedisError as exc:
            raise self._fail('EVAL', exc)
        except (OSError, ValueError) as exc:
            raise self._fail('EVAL', exc)

    def ping_ms(self):
        start = time.monotonic()
        self.call('PING')
        return round((time.monotonic() - start) * 1000.0, 2)

    def server_time_ms(self):
        seconds, micros = self.call('TIME')
        return int(seconds) * 1000 + int(micros) // 1000

    def scan_count(self, pattern, max_keys, deadline, batch=1000, collect=0):
        """Count keys matching ``pattern`` with SCAN (never KEYS).

        Stops when the cursor comes back to 0 (complete), when about ``max_keys`` keys were examined
        (SCAN's COUNT per call, an upper bound), or at ``deadline`` (time.monotonic()). Returns
        ``(count, complete, examined, sample)``; ``sample`` holds up to ``collect`` matching keys.
        """
        cursor, count, examined, sample = '0', 0, 0, []
        while True:
            step = max(1, min(batch, max_keys - examined))
            cursor, keys = self.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', step)
            examined += step
            count += len(keys)
            if len(sample) < collect:
                sample.extend(keys[:collect - len(sample)])
            if str(cursor) == '0':
                return count, True, examined, sample
            if examined >= max_keys or time.monotonic() >= deadline:
                return count, False, examined, sample

    def close(self):
        try:
            self.conn.close()
        except Exception:  # pylint: disable=broad-except
            pass


def connect(module, read_only=False, decode_responses=True):
    """A RedisClient, or ``module.fail_json`` with one clear message (bad options, missing library)."""
    ensure_redis(module)
    try:
        return RedisClient(module.params, read_only=read_only, decode_responses=decode_responses)
    except (ValueError, RedisError) as exc:
        module.fail_json(msg=to_native(exc))
    return None


# ---------------------------------------------------------------- Bull (3/4) and BullMQ key layouts
QUEUE_SUFFIXES = ('id', 'wait', 'active', 'paused', 'delayed', 'failed', 'completed', 'meta', 'meta-paused',
                  'prioritized', 'priority', 'stalled', 'events', 'marker')


class BullQueue(object):
    """The keys of one Bull or BullMQ queue: ``<prefix>:<name>:<suffix>`` and job hashes ``<prefix>:<name>:<id>``."""

    def __init__(self, prefix, name, layout):
        self.prefix = prefix
        self.name = name
        self.layout = layout
        self.base = '%s:%s:' % (prefix, name)

    def key(self, suffix):
        return self.base + suffix

    def job_key(self, job_id):
        return self.base + str(job_id)

    def lock_key(self, job_id):
        return self.base + str(job_id) + ':lock'


def detect_layout(client, prefix, name, layout='auto'):
    """'bull' or 'bullmq' (given, or from the keys), or None when the queue has no keys at all."""
    queue = BullQueue(prefix, name, layout)
    replies = client.pipeline([('TYPE', queue.key(s)) for s in QUEUE_SUFFIXES])
    types = dict(zip(QUEUE_SUFFIXES, replies))
    present = [s for s, t in types.items() if t != 'none']
    if not present:
        return None
    if layout != 'auto':
        return layout
    if types['meta'] == 'hash':
        version = client.call('HGET', queue.key('meta'), 'version') or ''
        if version.startswith('bullmq') or types['events'] == 'stream':
            return 'bullmq'
    if types['prioritized'] != 'none' or types['marker'] != 'none' or types['events'] == 'stream':
        return 'bullmq'
    if types['meta'] == 'hash' and types['meta-paused'] == 'none' and types['priority'] == 'none':
        return 'bullmq'
    return 'bull'


def discover_queues(client, prefix, max_keys, deadline):
    """Queue names under ``prefix`` found with SCAN (bounded); returns (names, complete)."""
    names = set()
    cursor, examined = '0', 0
    while True:
        step = max(1, min(1000, max_keys - examined))
        cursor, keys = client.call('SCAN', cursor, 'MATCH', '%s:*' % prefix, 'COUNT', step)
        examined += step
        for key in keys:
            rest = key[len(prefix) + 1:]
            for suffix in QUEUE_SUFFIXES:
                if rest.endswith(':' + suffix):
                    name = rest[:-len(suffix) - 1]
                    if name and ':' not in name:
                        names.add(name)
                    break
        if str(cursor) == '0':
            return sorted(names), True
        if examined >= max_keys or time.monotonic() >= deadline:
            return sorted(names), False


def is_paused(client, queue):
    if queue.layout == 'bullmq':
        return bool(client.call('HEXISTS', queue.key('meta'), 'paused'))
    return bool(client.call('EXISTS', queue.key('meta-paused')))


def waiting_list(queue, paused):
    """Where waiting jobs are: the paused list while the queue is paused, the wait list otherwise."""
    return queue.key('paused') if paused else queue.key('wait')


def find_stalled(client, queue, max_active):
    """Active job ids (first ``max_active``) whose lock key is gone: no worker holds them."""
    ids = client.call('LRANGE', queue.key('active'), 0, max_active - 1) or []
    if not ids:
        return [], 0
    locks = client.pipeline([('EXISTS', queue.lock_key(i)) for i in ids])
    return [i for i, held in zip(ids, locks) if not held], len(ids)
