"""``htcgrid pickled-code``: who may run pickled Python code on a grid (``htcgrid.Executor``),
and the Python and cloudpickle versions its agents run."""

from __future__ import annotations

import json

import click

from htcgrid.cli.options import _client, token_option, url_option

POLICIES = {
    "role": "only admins and deployers",
    "all": "every signed-in user",
    "off": "nobody",
    "unknown": "this server does not say",
}


@click.command("pickled-code", short_help="Show or set who may run pickled Python code.")
@click.argument("policy", required=False, type=click.Choice(["role", "all", "off"]))
@url_option()
@token_option
@click.option("--json", "as_json", is_flag=True, envvar="HTCGRID_JSON", help="Print JSON.")
def pickled_code(policy: str | None, url: str, token: str | None, as_json: bool) -> None:
    """Show who may send pickled Python calls (htcgrid.Executor) and the versions of the agents
    that run them; with POLICY (admins), set it for the whole grid: role (the default: admins
    and deployers), all, or off."""
    from htcgrid.client.executor import runtime_info, set_pickle_policy

    with _client(url, token, create=False) as grid:
        info = set_pickle_policy(grid, policy) if policy else runtime_info(grid)
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    allowed = "you may" if info["allowed"] else "you may not"
    click.echo(f"pickled Python code: {info['policy']} ({POLICIES[info['policy']]}); {allowed}")
    for agent in info["agents"]:
        python, cloudpickle = agent.get("python", "?"), agent.get("cloudpickle", "?")
        click.echo(f"  {agent['host']}: Python {python}, cloudpickle {cloudpickle}")


COMMANDS = [pickled_code]
