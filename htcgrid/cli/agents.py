"""``htcgrid agents``: who serves a grid, as the agents announce themselves."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from htcgrid.cli.options import backend_options, token_option


def _agents(url: str, token: str | None) -> list[dict[str, Any]]:
    if url.startswith(("http://", "https://")):
        from htcgrid.client.auth import choose_auth
        from htcgrid.client.http import HTTPTransport

        http = HTTPTransport(url, auth=choose_auth(url, token=token))
        try:
            return http.call("GET", "/v1/agents")["agents"]  # type: ignore[no-any-return]
        finally:
            http.close()
    from htcgrid.presence import list_agents
    from htcgrid.store import open_store

    store = open_store(url, create=False)
    try:
        return [a.as_dict() for a in list_agents(store, time.time())]
    finally:
        store.close()


@click.command(short_help="List the agents serving a grid.")
@backend_options("The grid: its API (http://…, as an admin) or its task store URL.")
@token_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="HTCGRID_JSON",
    show_envvar=True,
    help="Print JSON for programs.",
)
def agents(url: str, data_url: str | None, token: str | None, as_json: bool) -> None:
    """List the agents seen on the grid in the last day, most recently seen first."""
    found = _agents(url, token)
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    if not found:
        click.echo(
            f"no agent has been seen on this grid; start one with `htcgrid agent --url {url}`"
        )
        return
    now = time.time()
    click.echo(
        f"{'AGENT':<36} {'HOST':<20} {'PID':>7} {'SLOTS':>5} {'SEEN':>8} {'PYTHON':>7}  FUNCTIONS"
    )
    for a in found:
        seen = f"{now - a['last_seen']:.0f}s ago"
        functions = ",".join(a["functions"]) if a["functions"] is not None else "all"
        python = a.get("runtimes", {}).get("python", "?")
        click.echo(
            f"{a['agent_id']:<36} {a['host']:<20} {a['pid']:>7} {a['slots']:>5} {seen:>8} "
            f"{python:>7}  {functions}"
        )


COMMANDS = [agents]
