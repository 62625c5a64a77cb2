"""American put options, with every engine of the HTC-Grid sample portfolio."""

from collections.abc import Callable
from typing import Any

import QuantLib as ql
from ql_common import Market, Trade, binomial_engine, build_market, finite_difference_engine, price

EngineFactory = Callable[[Market, dict[str, Any]], Any]

ENGINES: dict[str, EngineFactory] = {
    "BaroneAdesiWhaleyApproximationEngine": (
        lambda m, _: ql.BaroneAdesiWhaleyApproximationEngine(m.process)
    ),
    "BjerksundStenslandApproximationEngine": (
        lambda m, _: ql.BjerksundStenslandApproximationEngine(m.process)
    ),
    "FdBlackScholesVanillaEngine": finite_difference_engine,
    "BinomialVanillaEngine": binomial_engine,
}


def price_american_put(trade: Trade) -> float:
    """NPV of an American put exercisable from the evaluation date to the exercise date.

    Raises ``ValueError`` for an engine not in ``ENGINES``.
    """
    market = build_market(trade["tradeParameters"])
    factory = ENGINES.get(trade["engineName"])
    if factory is None:
        raise ValueError(f"unknown American engine {trade['engineName']!r}")
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(ql.Option.Put, market.strike),
        ql.AmericanExercise(market.evaluation_date, market.exercise_date),
    )
    return price(option, factory(market, trade.get("engineParameters") or {}))
