"""HTC-Grid's QuantLib portfolio pricer, as a Lambda-style handler.

``lambda_handler({"portfolio": [trade, ...]}, context)`` returns
``{"results": [npv_or_error, ...]}`` in portfolio order. European trades are
priced as calls, American trades as puts. A trade that cannot be priced yields
an error string in its slot, so one bad trade never fails the whole task.
"""

import traceback
from collections.abc import Callable
from typing import Any

from american_options import price_american_put
from european_options import price_european_call
from ql_common import Trade

PRICERS: dict[str, Callable[[Trade], float]] = {
    "European": price_european_call,
    "American": price_american_put,
}


def price_trade(trade: Trade) -> float:
    pricer = PRICERS.get(trade.get("exercise", ""))
    if pricer is None:
        raise ValueError(
            f"unsupported exercise {trade.get('exercise')!r}; expected European or American"
        )
    return pricer(trade)


def price_or_describe_error(trade: Trade) -> float | str:
    try:
        return price_trade(trade)
    except Exception as exc:
        # The error travels in the results so the other trades of the task still count.
        return (
            f"Error in processing option [{trade}] error: [{exc!r}] "
            f"trace: [{traceback.format_exc()}]"
        )


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, list[float | str]]:
    return {"results": [price_or_describe_error(trade) for trade in event["portfolio"]]}
