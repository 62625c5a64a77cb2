"""Price a portfolio of QuantLib options on the grid, as HTC-Grid's portfolio client does.

The grid runs ``examples/workloads/quant_lib/portfolio_pricing_engine.lambda_handler``.
The agent config JSON is read from ``$AGENT_CONFIG_FILE`` and the credentials from
``$USERNAME`` / ``$PASSWORD``.

    python portfolio_pricing_client.py --workload_type random_portfolio \
        --portfolio_size 500 --trades_per_worker 10

Each task output is the JSON text ``{"results": [npv_or_error, ...]}``. The
portfolio value is the sum of every numeric result. Error strings, failed or
cancelled tasks, and tasks still missing at the timeout are reported, and the
script exits with status 1.
"""

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_AGENT_CONFIG_FILE = "/etc/agent/Agent_config.tfvars.json"
SAMPLE_PORTFOLIO_FILE = Path(__file__).resolve().parent / "sample_portfolio.json"

Trade = dict[str, Any]

SINGLE_TRADE: Trade = {
    "tradeType": "option",
    "exercise": "European",
    "engineName": "AnalyticEuropeanEngine",
    "engineParameters": {},
    "tradeParameters": {
        "evaluationDate": "15 5 1998",
        "exerciseDate": "17 5 1999",
        "payoff": 8.0,
        "underlying": 7.0,
        "dividendYield": 0.05,
        "volatility": 0.10,
        "riskFreeRate": 0.05,
    },
}


@dataclass
class PortfolioValue:
    """The sum of the priced trades and everything that kept it from being complete."""

    value: float = 0.0
    priced_trades: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.errors


def merge_results(outputs: list[str]) -> PortfolioValue:
    """Sum the ``results`` of every task output (JSON text), collecting non-numbers as errors."""
    merged = PortfolioValue()
    for output in outputs:
        for result in _results_of(output, merged.errors):
            if isinstance(result, int | float) and not isinstance(result, bool):
                merged.value += result
                merged.priced_trades += 1
            else:
                merged.errors.append(str(result))
    return merged


def _results_of(output: str, errors: list[str]) -> list[Any]:
    try:
        results = json.loads(output)["results"]
    except (ValueError, TypeError, KeyError) as exc:
        # An uncaught handler exception comes back as a Lambda error object, not results.
        errors.append(f"task output is not a pricing result ({exc!r}): {output}")
        return []
    if not isinstance(results, list):
        errors.append(f"task output has no results list: {output}")
        return []
    return results


def random_portfolio(trades: list[Trade], size: int, rng: random.Random) -> list[Trade]:
    """Draw ``size`` trades uniformly, with replacement."""
    return [rng.choice(trades) for _ in range(size)]


def load_portfolio(path: Path) -> list[Trade]:
    portfolio: list[Trade] = json.loads(path.read_text())["portfolio"]
    return portfolio


def split_into_tasks(
    portfolio: list[Trade], trades_per_worker: int
) -> list[dict[str, list[Trade]]]:
    """Chunk the portfolio: 5 trades at 2 per worker -> 3 tasks."""
    if trades_per_worker < 1:
        raise ValueError("trades_per_worker must be at least 1")
    return [
        {"portfolio": portfolio[start : start + trades_per_worker]}
        for start in range(0, len(portfolio), trades_per_worker)
    ]


def build_portfolio(args: argparse.Namespace) -> list[Trade]:
    if args.workload_type == "single_trade":
        return [SINGLE_TRADE]
    return random_portfolio(
        load_portfolio(args.portfolio_file), args.portfolio_size, random.Random()
    )


def unfinished_task_errors(response: dict[str, Any], submitted_tasks: int) -> list[str]:
    errors = [f"task {task_id} failed" for task_id in response.get("failed", [])]
    errors += [f"task {task_id} was cancelled" for task_id in response.get("cancelled", [])]
    missing = submitted_tasks - len(response.get("finished", [])) - len(errors)
    if missing > 0:
        errors.append(f"{missing} task(s) did not finish before the timeout")
    return errors


def connect() -> Any:
    # Imported here so that the merge logic above is importable without the grid client.
    from htcgrid.connector import AWSConnector

    config_file = os.environ.get("AGENT_CONFIG_FILE", DEFAULT_AGENT_CONFIG_FILE)
    config = json.loads(Path(config_file).read_text())
    connector = AWSConnector()
    connector.init(
        config,
        username=os.environ.get("USERNAME", ""),
        password=os.environ.get("PASSWORD", ""),
    )
    connector.authenticate()
    return connector


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload_type", choices=["single_trade", "random_portfolio"], default="single_trade"
    )
    parser.add_argument("--trades_per_worker", type=int, default=1, help="trades per task")
    parser.add_argument(
        "--portfolio_size", type=int, default=10, help="random trades (random_portfolio only)"
    )
    parser.add_argument("--timeout_sec", type=float, default=120, help="passed to get_results")
    parser.add_argument(
        "--portfolio_file",
        type=Path,
        default=SAMPLE_PORTFOLIO_FILE,
        help="trades to draw from (random_portfolio only); default: the sample beside this script",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = split_into_tasks(build_portfolio(args), args.trades_per_worker)
    connector = connect()
    submission = connector.send(tasks)
    print(f"Submitted session {submission['session_id']} with {len(tasks)} task(s)")
    response = connector.get_results(submission, timeout_sec=args.timeout_sec)
    merged = merge_results(response.get("finished_OUTPUT", []))
    merged.errors += unfinished_task_errors(response, len(tasks))
    print(f"Portfolio value: {merged.value}")
    for error in merged.errors:
        print(f"Error: {error}", file=sys.stderr)
    if not merged.complete:
        print(f"{len(merged.errors)} error(s); the value covers {merged.priced_trades} trade(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
