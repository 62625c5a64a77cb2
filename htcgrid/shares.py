"""Fair-share records of a grid's owners, the admin side: ``htcgrid user set NAME --share N
--max-running M``, ``PUT /v1/users/{name}/share`` and ``GET /v1/shares`` all come here.

A record is grid metadata in the task store (``share/<owner>``, see ``htcgrid.store.share``),
where every claimer reads it within a second; an owner without one has share 1 and no quota.
An owner need not be a user yet: a share may be set before their first session.
"""

from __future__ import annotations

from htcgrid.auth.records import user_name
from htcgrid.store import TaskStore
from htcgrid.store.share import DEFAULT, PREFIX, Share, check_share, share_key

KEEP = object()  # an argument left as it is


def get_share(store: TaskStore, owner: str) -> Share:
    value = store.get_meta(share_key(user_name(owner)))
    return DEFAULT if value is None else Share.from_json(value)


def set_share(
    store: TaskStore, owner: str, share: object = KEEP, max_running: object = KEEP
) -> Share:
    """Set ``owner``'s share and/or quota (``KEEP``: as it is; ``max_running=None``: no
    quota); returns the record now in force. ValidationError for a bad name or value."""
    name = user_name(owner)
    current = get_share(store, name)
    record = check_share(
        current.share if share is KEEP else share,
        current.max_running if max_running is KEEP else max_running,
    )
    if record == DEFAULT:
        store.delete_meta(share_key(name))
    else:
        store.put_meta(share_key(name), record.to_json())
    return record


def list_shares(store: TaskStore) -> dict[str, Share]:
    """Every owner with a record of their own, by name."""
    records = store.list_meta(PREFIX)
    return {key[len(PREFIX) :]: Share.from_json(v) for key, v in sorted(records.items())}
