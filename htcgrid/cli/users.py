"""``htcgrid user``, ``htcgrid key``, ``htcgrid login`` and ``htcgrid logout``.

The user and key commands work through the API (``--url http://…``, as an admin) or straight
on a grid's backends (``--url sqlite:///…/grid.db --data-url file:///…/blobs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from htcgrid.auth.admin import Admin, DirectAdmin
from htcgrid.cli.options import FullHelpGroup
from htcgrid.cli.output import iso, json_option, table, to_json

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_API = "http://127.0.0.1:8080"


def open_admin(url: str, data_url: str | None = None, token: str | None = None) -> Admin:
    """Administration through the API for an ``http(s)://`` URL, else on the grid's data plane."""
    if url.startswith(("http://", "https://")):
        from htcgrid.client.admin import HTTPAdmin

        return HTTPAdmin(url, token=token)
    from htcgrid.backends import grid_data_url
    from htcgrid.client.direct import default_data_url
    from htcgrid.dataplane import open_data_plane

    data = open_data_plane(grid_data_url(url, data_url or default_data_url()))
    return DirectAdmin(data, store_url=url)


def _grid_options(fn: F) -> F:
    fn = click.option(
        "--token",
        envvar="HTCGRID_TOKEN",
        default=None,
        show_envvar=True,
        help="Bearer token or API key of an admin (API URLs only).",
    )(fn)
    fn = click.option(
        "--data-url",
        envvar="HTCGRID_DATA_URL",
        default=None,
        show_envvar=True,
        help="Data plane URL, where users live (backend URLs only; default: --url).",
    )(fn)
    return click.option(
        "--url",
        envvar="HTCGRID_URL",
        default=DEFAULT_API,
        show_default=True,
        show_envvar=True,
        help="Grid API URL, or a backend URL to work on the grid's data directly.",
    )(fn)


def _password_option(fn: F) -> F:
    return click.option(
        "--password",
        envvar="HTCGRID_PASSWORD",
        default=None,
        show_envvar=True,
        help="The password (prompted for when not given).",
    )(fn)


@contextmanager
def _admin(url: str, data_url: str | None, token: str | None) -> Iterator[Admin]:
    """The admin interface for ``url``; after a command that worked on a data plane no server
    has used yet, a note asks whether it is the right one (an error stays one line)."""
    admin = open_admin(url, data_url, token)
    unused = isinstance(admin, DirectAdmin) and not admin.started()
    try:
        yield admin
    finally:
        admin.close()
    if unused:
        click.echo(
            "htcgrid: note: no grid server has started on this data plane yet; make sure "
            "--data-url names the data plane your servers use.",
            err=True,
        )


def _new_password(given: str | None) -> str:
    if given is not None:
        return given
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@click.group(cls=FullHelpGroup)
def user() -> None:
    """Users of the API: add, list, remove, change passwords (admins only)."""


@user.command("add")
@click.argument("name")
@_password_option
@click.option(
    "--admin",
    "is_admin",
    is_flag=True,
    envvar="HTCGRID_USER_ADMIN",
    show_envvar=True,
    help="Give the user the admin role.",
)
@click.option(
    "--deployer",
    "is_deployer",
    is_flag=True,
    envvar="HTCGRID_USER_DEPLOYER",
    show_envvar=True,
    help="Give the user the deployer role: a user who may also deploy functions.",
)
@_grid_options
def user_add(
    name: str,
    password: str | None,
    is_admin: bool,
    is_deployer: bool,
    url: str,
    data_url: str | None,
    token: str | None,
) -> None:
    """Add user NAME (role 'user', 'admin' with --admin, 'deployer' with --deployer)."""
    if is_admin and is_deployer:
        raise click.UsageError("--admin and --deployer exclude each other (an admin may deploy)")
    role = "admin" if is_admin else "deployer" if is_deployer else "user"
    secret = _new_password(password)
    with _admin(url, data_url, token) as admin:
        added = admin.add_user(name, secret, role)
    click.echo(f"added {added['role']} {added['name']}")


@user.command("list")
@_grid_options
@json_option
def user_list(url: str, data_url: str | None, token: str | None, as_json: bool) -> None:
    """List users, their roles and when they were added."""
    with _admin(url, data_url, token) as admin:
        found = admin.users()
    if as_json:
        click.echo(to_json(found))
        return
    rows = [[u["name"], u["role"], iso(u.get("created_at"))] for u in found]
    click.echo(table(["user", "role", "added"], rows))


@user.command("remove")
@click.argument("name")
@_grid_options
def user_remove(name: str, url: str, data_url: str | None, token: str | None) -> None:
    """Remove user NAME and their API keys; their tokens stop working at once."""
    with _admin(url, data_url, token) as admin:
        admin.remove_user(name)
    click.echo(f"removed {name}")


@user.command("passwd")
@click.argument("name")
@_password_option
@_grid_options
def user_passwd(
    name: str, password: str | None, url: str, data_url: str | None, token: str | None
) -> None:
    """Set the password of NAME; tokens issued before stop working."""
    secret = _new_password(password)
    with _admin(url, data_url, token) as admin:
        admin.set_password(name, secret)
    click.echo(f"password of {name} changed")


@user.command("set")
@click.argument("name")
@click.option(
    "--share",
    type=click.FloatRange(min=0, min_open=True),
    envvar="HTCGRID_USER_SHARE",
    default=None,
    show_envvar=True,
    help="Weight of NAME's tasks against other owners' (default 1).",
)
@click.option(
    "--max-running",
    type=click.IntRange(min=0),
    envvar="HTCGRID_USER_MAX_RUNNING",
    default=None,
    show_envvar=True,
    help="Most tasks of NAME running at once (default: no quota).",
)
@click.option(
    "--no-max-running",
    is_flag=True,
    envvar="HTCGRID_USER_NO_MAX_RUNNING",
    help="Remove NAME's quota of running tasks.",
)
@_grid_options
def user_set(
    name: str,
    share: float | None,
    max_running: int | None,
    no_max_running: bool,
    url: str,
    data_url: str | None,
    token: str | None,
) -> None:
    """Set NAME's fair share of the grid's slots, and its quota of running tasks."""
    if max_running is not None and no_max_running:
        raise click.UsageError("--max-running and --no-max-running exclude each other")
    changes: dict[str, Any] = {} if share is None else {"share": share}
    if max_running is not None or no_max_running:
        changes["max_running"] = max_running
    if not changes:
        raise click.UsageError("give --share, --max-running or --no-max-running")
    with _admin(url, data_url, token) as admin:
        now = admin.set_share(name, changes)
    click.echo(f"{now['owner']}: share {now['share']:g}, {_quota(now['max_running'])}")


@user.command("shares")
@_grid_options
@json_option
def user_shares(url: str, data_url: str | None, token: str | None, as_json: bool) -> None:
    """List owners with a share or quota of their own (others: share 1, no quota)."""
    with _admin(url, data_url, token) as admin:
        found = admin.shares()
    if as_json:
        click.echo(to_json(found))
        return
    rows = [[s["owner"], f"{s['share']:g}", _quota(s["max_running"])] for s in found]
    click.echo(table(["owner", "share", "max running"], rows))


def _quota(max_running: int | None) -> str:
    return "no quota" if max_running is None else f"at most {max_running} running"


@click.group(cls=FullHelpGroup)
def key() -> None:
    """API keys for programs and agents (HTC-Grid's x-api-key)."""


@key.command("create")
@click.option(
    "--user",
    "owner",
    envvar="HTCGRID_KEY_USER",
    default=None,
    show_envvar=True,
    help="Whose key (default: the caller).",
)
@click.option(
    "--label",
    envvar="HTCGRID_KEY_LABEL",
    default="",
    show_envvar=True,
    help="A note on what the key is for.",
)
@_grid_options
def key_create(
    owner: str | None, label: str, url: str, data_url: str | None, token: str | None
) -> None:
    """Create an API key and print it; it is shown this once only."""
    with _admin(url, data_url, token) as admin:
        created = admin.create_key(owner, label)
    click.echo(f"key {created['key_id']} for {created['user']} (shown once):", err=True)
    click.echo(created["api_key"])


@key.command("list")
@_grid_options
@json_option
def key_list(url: str, data_url: str | None, token: str | None, as_json: bool) -> None:
    """List API keys (ids, owners, labels, never the secrets)."""
    with _admin(url, data_url, token) as admin:
        found = admin.api_keys()
    if as_json:
        click.echo(to_json(found))
        return
    rows = [[k["key_id"], k["user"], k["label"] or "-", iso(k.get("created_at"))] for k in found]
    click.echo(table(["key", "user", "label", "created"], rows))


@key.command("revoke")
@click.argument("key_id")
@_grid_options
def key_revoke(key_id: str, url: str, data_url: str | None, token: str | None) -> None:
    """Revoke an API key; it stops working at once."""
    with _admin(url, data_url, token) as admin:
        admin.revoke_key(key_id)
    click.echo(f"revoked {key_id}")


@click.command()
@click.option("--url", envvar="HTCGRID_URL", default=None, show_envvar=True, help="Grid API URL.")
@click.option("--user", "username", envvar="HTCGRID_USER", default=None, show_envvar=True)
@_password_option
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="HTCGRID_CREDENTIALS",
    show_envvar=True,
    default=None,
    help="Take URL, user and password from this file (as `htcgrid up` writes it).",
)
def login(
    url: str | None, username: str | None, password: str | None, credentials: Path | None
) -> None:
    """Log in and keep the token for later commands (in your config dir, mode 0600)."""
    from htcgrid.client.auth import TokenAuth
    from htcgrid.client.logins import LoginStore, read_admin_credentials

    if credentials is not None:
        found = read_admin_credentials(credentials)
        url = url or found.get("url")
        username = username or found.get("user")
        password = password or found.get("password")
    url = url or DEFAULT_API
    username = username or click.prompt("User")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    store = LoginStore()
    flow = TokenAuth(url, username=username, password=password)
    from htcgrid.client.http import HTTPTransport

    transport = HTTPTransport(url, auth=flow)
    try:
        who = transport.call("GET", "/v1/auth/whoami")
    finally:
        transport.close()
    assert flow.tokens is not None
    store.put(url, flow.tokens)
    click.echo(f"logged in to {url} as {who['user']} ({who['role']}); token in {store.path}")


@click.command()
@click.option("--url", envvar="HTCGRID_URL", default=DEFAULT_API, show_envvar=True)
def logout(url: str) -> None:
    """Forget the token `htcgrid login` kept for URL."""
    from htcgrid.client.logins import LoginStore

    forgotten = LoginStore().remove(url)
    click.echo(f"logged out of {url}" if forgotten else f"no login kept for {url}")


COMMANDS = [user, key, login, logout]
