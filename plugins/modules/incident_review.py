#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) incident.response contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: incident_review
short_description: Write the post-incident review of an incident (Markdown with a Mermaid gantt, and HTML with SVG)
version_added: 0.2.0
description:
  - Reads the incident record and its timeline from the incident store and writes the post-incident review after
    the runbooks' PIR templates (summary, duration, severity, services affected, the timeline table, root cause and
    contributing factors, what went well and what could be improved, action items with owner and due date,
    lessons learned). What the record knows is filled in; what a person must write is marked C(TODO(owner)), the
    owner being the incident commander.
  - The Markdown (C(review.md)) carries the timeline as a Mermaid C(gantt) block; the HTML report (C(review.html))
    is self-contained, with the timeline drawn as inline SVG, no script and no external resource (its
    Content-Security-Policy forbids them). Every value from the record is escaped.
  - Files are written atomically, mode C(0600), in O(dest) (mode C(0700)). A file a person edited since it was
    generated (its checksum differs from the one recorded in C(review.meta.json)) is never overwritten; the module
    refuses unless O(force=true), and then keeps the edited file as C(review.<UTC time>.md) (or C(.html)) first.
  - The rendering depends on the record only, never on the clock, so the same record gives C(changed=false).
author:
  - incident.response developers (@incident-response)
extends_documentation_fragment:
  - incident.response.incident
attributes:
  check_mode:
    support: full
    description: Renders and returns the review (RV(markdown)) and the actions it would take; writes nothing.
  diff_mode:
    support: full
    description: The Markdown before and after.
  idempotent:
    support: full
    description: The same record renders the same bytes; nothing is written then.
options:
  incident_id:
    description: The incident, such as C(INC-2026-12-01-001).
    type: str
    required: true
  dest:
    description:
      - Directory to write the review to.
      - Defaults to C(<store_path>/<incident_id>), next to the record of the files store (with the PostgreSQL
        store too, under the default O(store_path) unless set).
    type: path
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [markdown, html]
    default: [markdown, html]
  force:
    description:
      - Write over a review a person edited, after keeping the edited file as a versioned copy.
    type: bool
    default: false
seealso:
  - module: incident.response.incident_metrics_info
notes:
  - The review's source is the record; edit the record (root cause, impact, summary, commander) and re-run to
    refresh a review nobody edited yet.
'''

EXAMPLES = r'''
- name: Write the review of an incident
  incident.response.incident_review:
    incident_id: INC-2026-12-01-001
  register: review

- name: Show where it is
  ansible.builtin.debug:
    msg: "{{ review.files }}"

- name: Only the Markdown, in a directory of its own, over an edited copy (kept as review.<time>.md)
  incident.response.incident_review:
    incident_id: INC-2026-12-01-001
    dest: /srv/reviews/INC-2026-12-01-001
    formats: [markdown]
    force: true
'''

RETURN = r'''
changed:
  description: Whether a file was written (or would be, in check mode).
  returned: always
  type: bool
incident_id:
  description: The incident.
  returned: success
  type: str
dest:
  description: The directory of the review.
  returned: success
  type: str
files:
  description: Path of each format written or up to date, by format (C(markdown), C(html)).
  returned: success
  type: dict
  sample: {markdown: /var/tmp/incident-response/incidents/INC-2026-12-01-001/review.md}
markdown:
  description: The Markdown review (also in check mode).
  returned: success
  type: str
html_bytes:
  description: Size of the HTML report, when O(formats) has V(html).
  returned: success
  type: int
sha256:
  description: Checksum of each rendered file, by format.
  returned: success
  type: dict
edited:
  description: Files a person edited since they were generated.
  returned: success
  type: list
  elements: str
kept_copies:
  description: Versioned copies of edited files kept before writing (O(force=true)).
  returned: success
  type: list
  elements: str
actions:
  description: One entry per file written, kept or re-moded (C(action), C(target), C(detail), C(done)).
  returned: always
  type: list
  elements: dict
summary:
  description: One line for the operator.
  returned: always
  type: str
diff:
  description: The Markdown before and after (with C(--diff)).
  returned: when diff mode is on and the Markdown changes
  type: dict
'''

import datetime
import json
import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.incident.response.plugins.module_utils._common import make_action, new_module
from ansible_collections.incident.response.plugins.module_utils._incident import (
    IncidentError, get_store, store_argument_spec, validate_incident_id)
from ansible_collections.incident.response.plugins.module_utils._incident_review import (
    ReviewError, build_review, digest, render_html, render_markdown)

FILES = dict(markdown='review.md', html='review.html')
META = 'review.meta.json'


def read_text(path):
    """Text of a file of the review, or None when absent; refuses links (the review is never written through one)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise ReviewError('%s is not a regular file (a link or a directory): refusing to read or replace it' % path)
    with open(path, 'rb') as handle:
        return handle.read().decode('utf-8', 'replace'), info


def write_atomic(path, text):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.review-', dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(text.encode('utf-8'))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def versioned_name(path, info):
    stamp = datetime.datetime.fromtimestamp(info.st_mtime, datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    base, ext = os.path.splitext(path)
    candidate, number = '%s.%s%s' % (base, stamp, ext), 1
    while os.path.lexists(candidate):
        number += 1
        candidate = '%s.%s-%d%s' % (base, stamp, number, ext)
    return candidate


def main():
    argument_spec = dict(
        incident_id=dict(type='str', required=True),
        dest=dict(type='path'),
        formats=dict(type='list', elements='str', choices=['markdown', 'html'], default=['markdown', 'html']),
        force=dict(type='bool', default=False),
    )
    argument_spec.update(store_argument_spec())
    module = new_module(AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = dict(changed=False, actions=[], summary='')
    if not p['formats']:
        module.fail_json(msg='formats: give markdown, html or both', **result)
    try:
        incident_id = validate_incident_id(p['incident_id'])
        store = get_store(p, secrets=module.no_log_values)
        try:
            record = store.get(incident_id)
            events = store.events(incident_id) if record is not None else []
        finally:
            store.close()
        if record is None:
            module.fail_json(msg='incident %s not found in the %s' % (incident_id, store.describe()), **result)
        model = build_review(record, events)
        rendered = dict(markdown=render_markdown(model) + '\n', html=render_html(model))
    except (IncidentError, ReviewError) as exc:
        module.fail_json(msg=to_native(exc), **result)

    dest = p['dest'] or os.path.join(p['store_path'] or '/var/tmp/incident-response/incidents', incident_id)
    if os.path.lexists(dest) and not os.path.isdir(dest):
        module.fail_json(msg='dest %s exists and is not a directory' % dest, **result)
    meta_path = os.path.join(dest, META)
    try:
        meta_text, _info = read_text(meta_path)
        meta = json.loads(meta_text) if meta_text else {}
        if not isinstance(meta, dict):
            meta = {}
    except (ReviewError, OSError) as exc:
        module.fail_json(msg=to_native(exc), **result)
    except ValueError:
        meta = {}
    written = dict(meta.get('sha256') or {})

    # Decide everything before writing anything: an edited file refuses the whole run.
    plan, edited, files, sums, diff = [], [], {}, {}, None
    for fmt in ('markdown', 'html'):
        if fmt not in p['formats']:
            continue
        path = os.path.join(dest, FILES[fmt])
        files[fmt] = path
        text = rendered[fmt]
        sums[fmt] = digest(text)
        try:
            current, info = read_text(path)
        except (ReviewError, OSError) as exc:
            module.fail_json(msg=to_native(exc), **result)
        if current == text:
            if stat.S_IMODE(info.st_mode) != 0o600:
                plan.append(('chmod', path, None, info))
            continue
        if current is not None and digest(current) != written.get(FILES[fmt]):
            edited.append(path)
            plan.append(('keep', path, text, info))
        plan.append(('write', path, text, info))
        if fmt == 'markdown' and module._diff:
            diff = dict(before=current or '', after=text, before_header=path, after_header=path)

    result.update(incident_id=incident_id, dest=dest, files=files, markdown=rendered['markdown'] if
                  'markdown' in p['formats'] else None, sha256=sums, edited=edited, kept_copies=[])
    if 'html' in p['formats']:
        result['html_bytes'] = len(rendered['html'].encode('utf-8'))
    if edited and not p['force']:
        module.fail_json(msg='%s edited by a person since it was generated: nothing written. Re-run with force=true '
                             'to write the new review (the edited file is kept as a versioned copy first).'
                             % ' and '.join(edited), **result)

    actions = []
    for kind, path, text, info in plan:
        if kind == 'chmod':
            actions.append(make_action('chmod', path, dict(mode='0600'), done=not module.check_mode))
        elif kind == 'keep':
            copy = versioned_name(path, info)
            actions.append(make_action('keep_edited_copy', path, dict(copy=copy), done=not module.check_mode))
            result['kept_copies'].append(copy)
        else:
            actions.append(make_action('write', path, dict(bytes=len(text.encode('utf-8')), sha256=digest(text),
                                                           replaces=info is not None), done=not module.check_mode))
    if not module.check_mode and plan:
        try:
            if not os.path.isdir(dest):
                os.makedirs(dest, mode=0o700)
            os.chmod(dest, 0o700)
            for kind, path, text, _info in plan:
                if kind == 'chmod':
                    os.chmod(path, 0o600)
                elif kind == 'keep':
                    os.rename(path, next(a['detail']['copy'] for a in actions
                                         if a['action'] == 'keep_edited_copy' and a['target'] == path))
                else:
                    write_atomic(path, text)
            for fmt, path in files.items():
                written[FILES[fmt]] = sums[fmt]
            write_atomic(meta_path, json.dumps(dict(incident_id=incident_id, revision=record.get('revision'),
                                                    events=len(events), sha256=written), indent=2, sort_keys=True)
                         + '\n')
        except OSError as exc:
            module.fail_json(msg='writing the review in %s failed: %s' % (dest, to_native(exc)), **result)

    writes = [a for a in actions if a['action'] == 'write']
    result['changed'] = bool(actions)
    result['actions'] = actions
    if writes:
        result['summary'] = '%s the review of %s (%s) in %s' % (
            'would write' if module.check_mode else 'wrote', incident_id,
            ', '.join(os.path.basename(a['target']) for a in writes), dest)
    elif actions:
        result['summary'] = '%s the mode of the review of %s to 0600' % (
            'would set' if module.check_mode else 'set', incident_id)
    else:
        result['summary'] = 'the review of %s in %s is up to date' % (incident_id, dest)
    if result['kept_copies']:
        result['summary'] += '; edited copies kept: %s' % ', '.join(result['kept_copies'])
    if diff is not None:
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
