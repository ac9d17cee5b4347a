#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: deployment_rollback
short_description: Roll a service back to its previous (or a given) deployed revision, on Kubernetes or Compose
version_added: 0.1.0
description:
  - Kubernetes rolls the Deployment back to the previous or the given revision (the insights runbook's
    C(kubectl rollout undo)), from its ReplicaSets.
  - "Compose has no revisions of its own: the runbooks' rollback means redeploying the previous image. This module
    keeps a deploy history per project (a JSON file, by default
    C(<project_dir>/.incident-response/<project>-deploy-history.json)): run it with O(state=recorded) after each
    deploy to record the image the service runs (the lab does so after C(lab up)). A rollback pins the older image
    in an override file next to the history (C(<project>-rollback.override.yml)) and recreates the service with
    C(up --detach --no-deps) through the Compose CLI. The next deploy of the project without that file replaces
    the pin. Images must still be present on the engine (or pullable). The project's compose files must be known
    (O(files), or the labels of its containers naming files that exist): without them the service would come back
    from the image alone, so the rollback is refused, in check mode too."
  - Without O(revision), rolls back one step from the revision running now (the entry before it in the history);
    this is a change each time it runs, like C(kubectl rollout undo). For idempotent runs give O(revision) or
    O(current_image) (roll back only while the service runs that image).
  - With O(wait=true), waits until every instance runs the target image and is ready.
  - A service without history fails with one message saying what is missing.
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.services
  - incident.response.compose
  - incident.response.kubernetes
  - incident.response.wait
attributes:
  check_mode:
    support: full
    description: Reports the revision and image it would roll back to; changes nothing.
  diff_mode:
    support: full
    description: Revision and image before and after.
  idempotent:
    support: partial
    description: Idempotent with O(revision) or O(current_image); a bare rollback steps back each run.
options:
  service:
    description: The service (Compose) or Deployment (Kubernetes).
    type: str
    required: true
  state:
    description:
      - V(rolled_back) rolls back.
      - V(recorded) records the image the service runs now as a new deploy in the Compose deploy history
        (nothing when it is already the last entry). Compose only.
    type: str
    default: rolled_back
    choices: [rolled_back, recorded]
  revision:
    description: The revision to roll back to (RV(history) lists them); default the one before the running one.
    type: int
  current_image:
    description:
      - Precondition that makes the rollback idempotent, the image the operator suspects. When the service does
        not run this image, nothing is done.
    type: str
'''

EXAMPLES = r'''
- name: Record the deploy (Compose), right after docker compose up
  incident.response.deployment_rollback:
    project: taskscheduler
    service: api
    state: recorded

- name: Roll the api back from the suspect image
  incident.response.deployment_rollback:
    project: taskscheduler
    service: api
    current_image: registry.example.com/api:2.4.0
    wait_timeout: 120

- name: kubectl rollout undo deployment/insights-api
  incident.response.deployment_rollback:
    platform: kubernetes
    namespace: insights
    service: insights-api
'''

RETURN = r'''
changed:
  description: Whether the service was (or would be) rolled back, or a deploy recorded.
  returned: always
  type: bool
actions:
  description: One C(rollback) or C(record) entry.
  returned: success
  type: list
  elements: dict
diff:
  description: Revision and image before and after.
  returned: success
  type: dict
  sample: {"before": {"revision": 3, "image": "api:2.4.0"}, "after": {"revision": 2, "image": "api:2.3.9"}}
summary:
  description: One line.
  returned: success
  type: str
  sample: "api rolled back from revision 3 (api:2.4.0) to revision 2 (api:2.3.9)"
history:
  description: The recorded revisions, oldest first, each with C(revision), C(image), C(deployed_at).
  returned: success
  type: list
  elements: dict
service:
  description: The service afterwards.
  returned: success
  type: dict
waited:
  description: Seconds spent waiting.
  returned: success
  type: float
'''

from ansible_collections.incident.response.plugins.module_utils._common import make_action
from ansible_collections.incident.response.plugins.module_utils._services import (
    Plan,
    Refused,
    ServiceRemediation,
    backend_class,
    instance_summary,
)


def choose_target(service, history, revision, hint=''):
    """The history entry to roll back to, or a message why there is none.

    ``hint`` (the backend's ``history_hint``) ends the message when there is no history: how to get one.
    """
    if revision is not None:
        # Kubernetes renumbers a ReplicaSet it rolls back to; its old numbers are in previous_revisions.
        found = [entry for entry in history
                 if entry['revision'] == revision or revision in (entry.get('previous_revisions') or [])]
        if not found:
            return None, 'service %s has no revision %s (recorded: %s)' % (
                service['name'], revision, ', '.join(str(e['revision']) for e in history) or 'none')
        return found[0], None
    if len(history) < 2:
        where = ' in namespace %s' % service['namespace'] if service.get('namespace') else ''
        return None, ('service %s%s has no earlier revision to roll back to: %d recorded%s'
                      % (service['name'], where, len(history), hint))
    current = service.get('revision')
    revisions = [entry['revision'] for entry in history]
    if current in revisions:
        index = revisions.index(current)
        if index == 0:
            return None, 'service %s runs revision %s, the oldest recorded' % (service['name'], current)
        return history[index - 1], None
    older = [entry for entry in history if entry['image'] != service['image']]
    if not older:
        return None, 'service %s: every recorded revision runs its current image %s' % (
            service['name'], service['image'])
    return older[-1], None


class Rollback(ServiceRemediation):
    options = dict(
        service=dict(type='str', required=True),
        state=dict(type='str', default='rolled_back', choices=['rolled_back', 'recorded']),
        revision=dict(type='int'),
        current_image=dict(type='str'),
    )

    @property
    def recording(self):
        return self.params['state'] == 'recorded'

    def validate(self):
        p = self.params
        platform = backend_class(p['platform'])
        if self.recording and not platform.records_deploys:
            raise Refused(platform.record_refusal)
        if p['revision'] is not None and p['revision'] < 1:
            raise Refused('revision must be at least 1, got %s' % p['revision'])

    def plan(self, backend, name):
        before = backend.service(name)
        history = backend.history(name)
        if self.recording:
            return self._plan_record(name, before, history)
        return self._plan_rollback(backend, name, before, history)

    def _plan_record(self, name, before, history):
        if not before['instances'] or not before['image']:
            raise Refused('service %s has no container to record the image of' % name)
        image_id = before['instances'][0].get('image_id')
        last = history[-1] if history else None
        changed = not last or last['image'] != before['image'] or last.get('image_id') != image_id
        actions = [make_action('record', name, dict(image=before['image'], image_id=image_id))] if changed else []
        summary = ('%s: would record deploy of %s' % (name, before['image']) if changed
                   else '%s: %s is already the last recorded deploy' % (name, before['image']))
        diff = dict(before=dict(entries=len(history)), after=dict(entries=len(history) + int(changed)))
        plan = Plan(before, actions, diff, summary, history=history)
        plan.record = (before['image'], image_id)
        return plan

    def _plan_rollback(self, backend, name, before, history):
        p = self.params
        now = dict(revision=before.get('revision'), image=before.get('image'))
        unchanged = dict(before=now, after=now)
        if p['current_image'] is not None and before['image'] != p['current_image']:
            return Plan(before, [], unchanged, '%s runs %s, not %s: nothing to roll back' % (
                name, before['image'], p['current_image']), history=history)
        target, problem = choose_target(before, history, p['revision'], backend.history_hint)
        if problem:
            raise Refused(problem, history=history, service=before)
        goal = dict(revision=target['revision'], image=target['image'])
        if p['revision'] is not None and target['image'] == before['image'] and \
                before.get('revision') in (None, target['revision']):
            return Plan(before, [], unchanged, '%s already runs revision %s (%s)' % (
                name, target['revision'], target['image']), history=history)
        # What the platform needs to roll back safely (Compose: the project's files), refused in check mode too.
        backend.check_rollback(name)
        actions = [make_action('rollback', name, dict(platform=backend.platform, **{'from': now, 'to': goal}))]
        summary = '%s would be rolled back from revision %s (%s) to revision %s (%s)' % (
            name, now['revision'], now['image'], goal['revision'], goal['image'])

        def ready(service):
            return (service['desired_replicas'] > 0 and service['ready_replicas'] == service['desired_replicas']
                    and all(i['image'] == target['image'] for i in service['instances']
                            if i['state'] in ('running', 'pending')))
        plan = Plan(before, actions, dict(before=now, after=goal), summary, ready=ready, history=history)
        plan.now, plan.goal = now, goal
        return plan

    def act(self, backend, name, plan):
        if self.recording:
            plan.entry = backend.record_deploy(name, *plan.record)
        else:
            backend.rollback(name, plan.goal['revision'])

    def finish(self, backend, name, plan, after):
        plan.result['history'] = backend.history(name)

    def done_summary(self, plan, after):
        name = self.params['service']
        if self.recording:
            return '%s: %s deploy of %s' % (name, 'recorded' if plan.entry else 'already recorded the',
                                            plan.record[0])
        return '%s rolled back from revision %s (%s) to revision %s (%s): %s' % (
            name, plan.now['revision'], plan.now['image'], plan.goal['revision'], plan.goal['image'],
            instance_summary(after))

    def not_ready(self, plan):
        return 'service %s was rolled back to revision %s but is not ready' % (
            self.params['service'], plan.goal['revision'])


def main():
    Rollback().run()


if __name__ == '__main__':
    main()
