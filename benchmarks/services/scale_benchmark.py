#!/usr/bin/env python
"""Scale the lab's workers 2 -> 20 -> 2 with service_scale and with the raw Compose CLI; print times and ratio.

Run with the lab up and lab.env sourced (make benchmark-services does both). Not a test: it prints figures.
    benchmarks/services/scale_benchmark.py [--rounds 2] [--high 20] [--low 2]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def run(cmd, env):
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit('failed (rc=%s): %s\n%s%s' % (proc.returncode, ' '.join(cmd), proc.stdout[-2000:], proc.stderr[-2000:]))
    return elapsed


def running_workers(env):
    out = subprocess.run(['docker', 'ps', '--quiet', '--filter', 'label=com.docker.compose.project=%s' % env['LAB_COMPOSE_PROJECT'],
                          '--filter', 'label=com.docker.compose.service=worker', '--filter', 'status=running'],
                         env=env, capture_output=True, text=True, check=True)
    return len(out.stdout.split())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--high', type=int, default=20)
    parser.add_argument('--low', type=int, default=2)
    args = parser.parse_args()
    env = dict(os.environ)
    for key in ('LAB_COMPOSE_PROJECT', 'LAB_COMPOSE_FILE', 'DOCKER_HOST'):
        if key not in env:
            sys.exit('%s is not set: source the lab.env of a running lab first' % key)
    env.setdefault('ANSIBLE_CONFIG', os.path.join(ROOT, 'ansible.cfg'))
    ansible = shutil.which('ansible', path=os.path.join(ROOT, '.venv', 'bin')) or 'ansible'
    compose = ['docker', 'compose'] if subprocess.run(['docker', 'compose', 'version'], capture_output=True,
                                                      check=False).returncode == 0 else ['docker-compose']

    def module(replicas):
        module_args = dict(project=env['LAB_COMPOSE_PROJECT'], service='worker', replicas=replicas,
                           max_replicas=max(args.high, 20), wait_timeout=300)
        return [ansible, 'localhost', '-i', os.path.join(ROOT, 'inventory', 'lab.yml'),
                '-m', 'incident.response.service_scale', '-a', json.dumps(module_args)]

    def cli(replicas):
        return compose + ['--project-name', env['LAB_COMPOSE_PROJECT'], '--file', env['LAB_COMPOSE_FILE'],
                          'up', '--detach', '--no-deps', '--no-recreate', '--scale', 'worker=%d' % replicas, 'worker']

    results = {'service_scale': [], 'compose CLI': []}
    ping = [ansible, 'localhost', '-i', os.path.join(ROOT, 'inventory', 'lab.yml'), '-m', 'ansible.builtin.ping']
    startup = []
    for index in range(args.rounds):
        startup.append(run(ping, env))
        for name, build in (('service_scale', module), ('compose CLI', cli)):
            up = run(build(args.high), env)
            assert running_workers(env) == args.high, 'expected %d workers' % args.high
            down = run(build(args.low), env)
            assert running_workers(env) == args.low, 'expected %d workers' % args.low
            results[name].append(up + down)
            print('round %d %-14s %d -> %d: %6.2fs   %d -> %d: %6.2fs' % (index + 1, name, args.low, args.high, up,
                                                                          args.high, args.low, down))
    module_median = statistics.median(results['service_scale'])
    cli_median = statistics.median(results['compose CLI'])
    print('')
    print('median %d -> %d -> %d: service_scale %.2fs, compose CLI (%s) %.2fs, ratio %.2f' % (
        args.low, args.high, args.low, module_median, ' '.join(compose), cli_median, module_median / cli_median))
    # What any module run pays before the module starts (two runs per round): the floor of the ratio.
    floor = statistics.median(startup)
    print('ansible ad hoc start-up (ansible.builtin.ping) %.2fs per run; service_scale less two start-ups %.2fs, '
          'ratio %.2f' % (floor, module_median - 2 * floor, (module_median - 2 * floor) / cli_median))
    return 0


if __name__ == '__main__':
    sys.exit(main())
