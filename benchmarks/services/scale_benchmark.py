#!/usr/bin/env python
"""Scale a worker service 2 -> 20 -> 2 with service_scale and with the raw Compose CLI; print times and ratio.

    benchmarks/services/scale_benchmark.py [--rounds 5] [--high 20] [--low 2]

Run with the lab's environment sourced (lab.env: DOCKER_HOST, LAB_COMPOSE_FILE; make benchmark-services and
make benchmark do it). The benchmark never scales the lab's own services: it copies the definition of the lab's
worker (image, command, network_mode, volumes, restart policy, grace period; not HEARTBEAT_ADDR, so no heartbeat
reaches the lab's relay) into a compose file of its own under build/scalebench/, brings that project
(``scalebench``, or --project) up at --low replicas, times the runs, and removes the project at the end, also when
a run fails or is interrupted.

Each round runs service_scale (``ansible`` ad hoc, so Ansible's own start-up and the module's wait are included:
the module returns once the replicas run and are ready) and the Compose CLI
(``up --detach --no-deps --no-recreate --scale worker=N worker``), interleaved and in alternating order so that
the load of a shared machine falls on both alike; a run counts once the engine shows the expected number of
running workers. It prints each round, the medians, the ratio and the goal (1.2x), the load average before and
after, and Ansible's own start-up (ansible.builtin.ping) for reference. Exit status: 0 when every run worked
(whatever the ratio; --max-ratio makes a ratio above it fail), 1 when a run failed.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
GOAL = 1.2
SERVICE = 'worker'


def load_average():
    try:
        with open('/proc/loadavg') as handle:
            return ' '.join(handle.read().split()[:3])
    except OSError:
        return 'unknown'


class Failed(Exception):
    pass


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd, env, what, cpu=None):
    """Run ``cmd``: its wall time (and, into the list ``cpu``, the CPU seconds of its process tree)."""
    start, start_cpu = time.monotonic(), children_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900)
    elapsed = time.monotonic() - start
    if cpu is not None:
        cpu.append(children_cpu() - start_cpu)
    if proc.returncode != 0:
        raise Failed('%s failed (rc=%s): %s\n%s%s' % (what, proc.returncode, ' '.join(cmd), proc.stdout[-2000:],
                                                      proc.stderr[-2000:]))
    return elapsed, proc.stdout


def worker_definition(lab_file, directory, project):
    """The lab's worker service, as a compose file of its own (no heartbeat to the lab, labels of its own)."""
    with open(lab_file) as handle:
        lab = yaml.safe_load(handle)
    worker = dict((lab.get('services') or {}).get(SERVICE) or {})
    if not worker.get('image'):
        raise Failed('%s has no %s service with an image to copy' % (lab_file, SERVICE))
    for key in ('scale', 'deploy', 'container_name', 'depends_on', 'ports', 'healthcheck'):
        worker.pop(key, None)
    environment = worker.get('environment') or {}
    if isinstance(environment, list):
        environment = [item for item in environment if not str(item).startswith('HEARTBEAT_ADDR')]
    else:
        environment = dict((k, v) for k, v in environment.items() if k != 'HEARTBEAT_ADDR')
    worker['environment'] = environment
    worker['labels'] = {'incident.response.benchmark': project}
    data = {'version': lab.get('version', '2.4'), 'services': {SERVICE: worker}}
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, 'docker-compose.yml')
    with open(path, 'w') as handle:
        handle.write('# Written by benchmarks/services/scale_benchmark.py from the worker of %s; removed with\n'
                     '# the project at the end of each run.\n' % lab_file)
        yaml.safe_dump(data, handle, default_flow_style=False, sort_keys=False)
    return path, worker['image']


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--high', type=int, default=20)
    parser.add_argument('--low', type=int, default=2)
    parser.add_argument('--project', default='scalebench',
                        help='the compose project of the benchmark (never one of the lab)')
    parser.add_argument('--max-ratio', type=float, help='exit 1 when the median ratio is above this')
    parser.add_argument('--compare-collections', metavar='PATH',
                        help='also time service_scale from another copy of the collection (a collections path '
                             'holding ansible_collections/incident/response, e.g. an earlier commit): before/after '
                             'figures in the same rounds')
    args = parser.parse_args()
    env = dict(os.environ)
    for key in ('LAB_COMPOSE_FILE', 'DOCKER_HOST'):
        if key not in env:
            sys.exit('%s is not set: source the lab.env of a running lab first' % key)
    lab_projects = set(env.get(key) for key in ('LAB_COMPOSE_PROJECT', 'LAB_SCHEDGEN_PROJECT'))
    if args.project in lab_projects:
        sys.exit('--project %s is a project of the lab: the benchmark scales a project of its own' % args.project)
    env.setdefault('ANSIBLE_CONFIG', os.path.join(ROOT, 'ansible.cfg'))
    ansible = shutil.which('ansible', path=os.path.join(ROOT, '.venv', 'bin')) or 'ansible'
    inventory = os.path.join(ROOT, 'inventory', 'lab.yml')
    compose = ['docker', 'compose'] if subprocess.run(['docker', 'compose', 'version'], capture_output=True,
                                                      check=False).returncode == 0 else ['docker-compose']
    directory = os.path.join(ROOT, 'build', args.project)
    path, image = worker_definition(env['LAB_COMPOSE_FILE'], directory, args.project)
    if subprocess.run(['docker', 'image', 'inspect', image], env=env, capture_output=True,
                      check=False).returncode != 0:
        sys.exit('image %s is not on this engine (the lab builds it): no registry is used' % image)
    base = compose + ['--project-name', args.project, '--file', path]

    def running():
        out = subprocess.run(['docker', 'ps', '--quiet', '--filter', 'label=com.docker.compose.project=%s'
                              % args.project, '--filter', 'label=com.docker.compose.service=%s' % SERVICE,
                              '--filter', 'status=running'], env=env, capture_output=True, text=True, check=True)
        return len(out.stdout.split())

    def module(replicas, collections=None):
        module_args = dict(project=args.project, service=SERVICE, replicas=replicas,
                           max_replicas=max(args.high, 20), wait_timeout=300)
        cmd = [ansible, 'localhost', '-i', inventory, '-m', 'incident.response.service_scale',
               '-a', json.dumps(module_args)]
        return ['env', 'ANSIBLE_COLLECTIONS_PATH=%s' % collections] + cmd if collections else cmd

    def cli(replicas):
        return base + ['up', '--detach', '--no-deps', '--no-recreate', '--scale', '%s=%d' % (SERVICE, replicas),
                       SERVICE]

    def timed(name, build, replicas):
        elapsed, _out = run(build(replicas), env, '%s to %d' % (name, replicas), cpu[name])
        found = running()
        if found != replicas:
            raise Failed('%s to %d: %d workers run afterwards' % (name, replicas, found))
        return elapsed

    contenders = [('service_scale', module), ('compose CLI', cli)]
    if args.compare_collections:
        contenders.append(('compared', lambda replicas: module(replicas, os.path.abspath(args.compare_collections))))
    results = dict((name, []) for name, _build in contenders)
    cpu = dict((name, []) for name, _build in contenders)
    startup = []
    load_before = load_average()
    status = 0
    try:
        run(base + ['down', '--remove-orphans', '--timeout', '5'], env, 'removing a stale %s project' % args.project)
        run(base + ['up', '--detach', '--scale', '%s=%d' % (SERVICE, args.low)], env, 'creating the project')
        print('project %s: %s (%d %s of %s, network_mode %s); load average %s' % (
            args.project, path, args.low, SERVICE, image, yaml.safe_load(open(path))['services'][SERVICE].get(
                'network_mode', 'default'), load_before))
        ping = [ansible, 'localhost', '-i', inventory, '-m', 'ansible.builtin.ping']
        for index in range(args.rounds):
            startup.append(run(ping, env, 'ansible ping')[0])
            for name, build in (contenders if index % 2 == 0 else contenders[::-1]):
                up = timed(name, build, args.high)
                down = timed(name, build, args.low)
                results[name].append(up + down)
                print('round %d %-14s %d -> %d: %6.2fs   %d -> %d: %6.2fs   total %6.2fs   (CPU %.2fs)' % (
                    index + 1, name, args.low, args.high, up, args.high, args.low, down, up + down,
                    sum(cpu[name][-2:])), flush=True)
    except Failed as exc:
        print('benchmark failed: %s' % exc, file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    finally:
        subprocess.run(base + ['down', '--remove-orphans', '--timeout', '5'], env=env, capture_output=True,
                       check=False, timeout=300)
        shutil.rmtree(directory, ignore_errors=True)
    if status:
        return status
    module_median = statistics.median(results['service_scale'])
    cli_median = statistics.median(results['compose CLI'])
    ratio = module_median / cli_median
    print('')
    print('median of %d rounds, %d -> %d -> %d, the wait included: service_scale %.2fs, compose CLI (%s) %.2fs, '
          'ratio %.2f (goal %.1fx: %s)' % (
              args.rounds, args.low, args.high, args.low, module_median, ' '.join(compose), cli_median, ratio, GOAL,
              'met' if ratio <= GOAL else 'NOT met'))
    cpu_median = dict((name, statistics.median([a + b for a, b in zip(values[::2], values[1::2])]))
                      for name, values in cpu.items())
    print('CPU seconds of the client processes per round (the engine\'s own work not counted; what load cannot '
          'stretch): service_scale %.2fs, compose CLI %.2fs, ratio %.2f' % (
              cpu_median['service_scale'], cpu_median['compose CLI'],
              cpu_median['service_scale'] / cpu_median['compose CLI']))
    if args.compare_collections:
        compared = statistics.median(results['compared'])
        print('compared (%s): %.2fs, ratio %.2f, CPU %.2fs' % (
            args.compare_collections, compared, compared / cli_median, cpu_median['compared']))
    floor = statistics.median(startup)
    print('ansible ad hoc start-up (ansible.builtin.ping) %.2fs per run, two runs per round: service_scale less '
          'two start-ups %.2fs, ratio %.2f; load average before %s, after %s' % (
              floor, module_median - 2 * floor, (module_median - 2 * floor) / cli_median, load_before,
              load_average()))
    if args.max_ratio is not None and ratio > args.max_ratio:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
