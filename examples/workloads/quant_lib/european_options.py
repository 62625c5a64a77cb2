"""European call options, with every engine of the HTC-Grid sample portfolio."""

from collections.abc import Callable
from typing import Any

import QuantLib as ql
from ql_common import Market, Trade, binomial_engine, build_market, finite_difference_engine, price

# The Heston model is degenerate (v0 = theta = vol^2, almost no vol-of-vol),
# so Heston engines reproduce Black-Scholes for the sample's 10% volatility.
HESTON_V0 = 0.01
HESTON_KAPPA = 1.0
HESTON_THETA = 0.01
HESTON_SIGMA = 0.0001
HESTON_RHO = 0.0


def _heston_model(market: Market) -> Any:
    process = ql.HestonProcess(
        market.risk_free_curve,
        market.dividend_curve,
        market.spot,
        HESTON_V0,
        HESTON_KAPPA,
        HESTON_THETA,
        HESTON_SIGMA,
        HESTON_RHO,
    )
    return ql.HestonModel(process)


def _monte_carlo_engine(market: Market, parameters: dict[str, Any]) -> Any:
    source = parameters["random_source"]
    steps = int(parameters["timeSteps"])
    if source == "pseudorandom":
        return ql.MCEuropeanEngine(
            market.process,
            source,
            timeSteps=steps,
            requiredTolerance=float(parameters["requiredTolerance"]),
            seed=int(parameters["seed"]),
        )
    if source == "lowdiscrepancy":
        return ql.MCEuropeanEngine(
            market.process,
            source,
            timeSteps=steps,
            requiredSamples=int(parameters["requiredSamples"]),
        )
    raise ValueError(f"unknown random_source {source!r}; expected pseudorandom or lowdiscrepancy")


EngineFactory = Callable[[Market, dict[str, Any]], Any]

ENGINES: dict[str, EngineFactory] = {
    "AnalyticEuropeanEngine": lambda m, _: ql.AnalyticEuropeanEngine(m.process),
    "AnalyticHestonEngine": lambda m, _: ql.AnalyticHestonEngine(_heston_model(m)),
    "COSHestonEngine": lambda m, _: ql.COSHestonEngine(_heston_model(m)),
    "IntegralEngine": lambda m, _: ql.IntegralEngine(m.process),
    "FdBlackScholesVanillaEngine": finite_difference_engine,
    "BinomialVanillaEngine": binomial_engine,
    "MCEuropeanEngine": _monte_carlo_engine,
}


def price_european_call(trade: Trade) -> float:
    """NPV of a European call; raises ``ValueError`` for an engine not in ``ENGINES``."""
    market = build_market(trade["tradeParameters"])
    factory = ENGINES.get(trade["engineName"])
    if factory is None:
        raise ValueError(f"unknown European engine {trade['engineName']!r}")
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(ql.Option.Call, market.strike),
        ql.EuropeanExercise(market.exercise_date),
    )
    return price(option, factory(market, trade.get("engineParameters") or {}))
