"""Market setup shared by the European and American pricers.

A trade is a dict with ``exercise``, ``engineName``, ``engineParameters`` and
``tradeParameters``; the trade parameters carry ``evaluationDate`` and
``exerciseDate`` as ``"D M YYYY"`` strings and ``payoff`` (the strike),
``underlying`` (spot), ``dividendYield``, ``volatility`` and ``riskFreeRate``.
"""

from dataclasses import dataclass
from typing import Any

import QuantLib as ql

Trade = dict[str, Any]


@dataclass(frozen=True)
class Market:
    """The QuantLib objects every engine is built from."""

    evaluation_date: Any
    exercise_date: Any
    strike: float
    spot: Any
    dividend_curve: Any
    risk_free_curve: Any
    process: Any


def parse_date(text: str) -> Any:
    """``"15 5 1998"`` -> ``ql.Date(15, 5, 1998)``."""
    day, month, year = (int(part) for part in text.split())
    return ql.Date(day, month, year)


def build_market(trade_parameters: dict[str, Any]) -> Market:
    """Build the Black-Scholes-Merton market of one trade.

    Sets the QuantLib global evaluation date: it is process-global state,
    so every trade sets its own before it is priced.
    """
    evaluation_date = parse_date(trade_parameters["evaluationDate"])
    ql.Settings.instance().evaluationDate = evaluation_date
    day_count = ql.Actual365Fixed()
    spot = ql.QuoteHandle(ql.SimpleQuote(float(trade_parameters["underlying"])))
    dividend_curve = _flat_curve(evaluation_date, trade_parameters["dividendYield"], day_count)
    risk_free_curve = _flat_curve(evaluation_date, trade_parameters["riskFreeRate"], day_count)
    volatility = ql.BlackVolTermStructureHandle(
        ql.BlackConstantVol(
            evaluation_date, ql.TARGET(), float(trade_parameters["volatility"]), day_count
        )
    )
    process = ql.BlackScholesMertonProcess(spot, dividend_curve, risk_free_curve, volatility)
    return Market(
        evaluation_date=evaluation_date,
        exercise_date=parse_date(trade_parameters["exerciseDate"]),
        strike=float(trade_parameters["payoff"]),
        spot=spot,
        dividend_curve=dividend_curve,
        risk_free_curve=risk_free_curve,
        process=process,
    )


def _flat_curve(reference_date: Any, rate: float, day_count: Any) -> Any:
    return ql.YieldTermStructureHandle(ql.FlatForward(reference_date, float(rate), day_count))


BINOMIAL_TREES = frozenset({"JR", "CRR", "EQP", "Trigeorgis", "Tian", "LR", "Joshi4"})


def binomial_engine(market: Market, parameters: dict[str, Any]) -> Any:
    """``BinomialVanillaEngine`` on one of the seven trees of ``BINOMIAL_TREES``."""
    tree = parameters["tree"]
    if tree not in BINOMIAL_TREES:
        raise ValueError(
            f"unknown binomial tree {tree!r}; expected one of {sorted(BINOMIAL_TREES)}"
        )
    return ql.BinomialVanillaEngine(market.process, tree, int(parameters["timeSteps"]))


def finite_difference_engine(market: Market, parameters: dict[str, Any]) -> Any:
    return ql.FdBlackScholesVanillaEngine(
        market.process, int(parameters["timeSteps"]), int(parameters["gridPoints"])
    )


def price(option: Any, engine: Any) -> float:
    option.setPricingEngine(engine)
    return float(option.NPV())
