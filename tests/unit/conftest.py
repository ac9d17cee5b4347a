"""Make ``ansible_collections.incident.response`` importable from the checkout.

The collection is imported through build/collections/ansible_collections/incident/response, a link to the
repository root that ``make setup`` creates (created here too, so ``pytest tests/unit`` works on its own).
"""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
COLLECTIONS = os.path.join(ROOT, 'build', 'collections')
LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'incident', 'response')

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
