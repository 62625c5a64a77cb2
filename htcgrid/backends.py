"""Opening a grid's task store together with the data plane that grid uses.

A grid is named by its task store URL. The servers and agents that run a grid record their
data-plane URL in the store (metadata key ``data_url``) the first time they start, so every
command and client that opens the store by URL afterwards reads and writes blobs in that same
data plane, without being told. Naming another one is refused with an error naming both: a
payload or a package put where the agents do not look is a silent wrong answer.

With nothing recorded and nothing given, the store URL serves both roles (the documented
default); file and SQLite URLs are compared by absolute path.
"""

from __future__ import annotations

from htcgrid.dataplane import DataPlane, open_data_plane
from htcgrid.errors import ConfigurationError
from htcgrid.store import TaskStore, open_store
from htcgrid.urls import local_path, redact, scheme_of

DATA_URL_KEY = "data_url"
PATH_SCHEMES = ("file", "sqlite")


def canonical(url: str) -> str:
    """``url`` with a file or SQLite path made absolute, so two spellings of one place match."""
    scheme = scheme_of(url)
    if scheme not in PATH_SCHEMES:
        return url
    _, sep, options = url.partition("?")
    return f"{scheme}://{local_path(url).resolve()}" + (sep + options if sep else "")


def data_url_of(store: TaskStore, given: str | None = None, record: bool = False) -> str:
    """The data-plane URL of the grid in ``store``: the recorded one, else ``given``, else the
    store's own URL. ``record`` (servers and agents) records it when nothing is recorded yet.
    Raises ConfigurationError when ``given`` differs from the recorded one."""
    recorded = store.get_meta(DATA_URL_KEY)
    chosen = canonical(given or store.url)
    if recorded is None and record:
        recorded = store.set_meta_if_absent(DATA_URL_KEY, chosen)
    if recorded is None:
        return chosen
    if given is not None and chosen != recorded:
        raise ConfigurationError(
            f"this grid records its data plane as {redact(recorded)}, not {redact(given)}: "
            "leave out --data-url (and HTCGRID_DATA_URL) to use the grid's own"
        )
    return recorded


def open_grid(
    url: str, data_url: str | None = None, *, create: bool = True, record: bool = False
) -> tuple[TaskStore, DataPlane]:
    """The task store at ``url`` and the grid's data plane (see ``data_url_of``).

    ``create`` False (read commands) refuses a store that does not exist yet."""
    store = open_store(url, create=create)
    try:
        return store, open_data_plane(data_url_of(store, data_url, record))
    except BaseException:
        store.close()
        raise


def grid_data_url(url: str, data_url: str | None = None, *, create: bool = True) -> str:
    """The data-plane URL of the grid at task store ``url``, for commands that need only blobs."""
    store = open_store(url, create=create)
    try:
        return data_url_of(store, data_url)
    finally:
        store.close()
