"""The QuantLib portfolio pricer against HTC-Grid's reference values, and the client's merge."""

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("QuantLib")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path[:0] = [str(EXAMPLES / "workloads" / "quant_lib"), str(EXAMPLES / "client")]

import portfolio_pricing_client as client  # noqa: E402
from portfolio_pricing_engine import lambda_handler  # noqa: E402

SAMPLE = json.loads((EXAMPLES / "client" / "sample_portfolio.json").read_text())["portfolio"]

# HTC-Grid's self-test values, rounded to 6 decimals, in sample order.
EUROPEAN_REFERENCE = [0.030334] * 5 + [
    0.030287,  # Binomial JR
    0.030342,  # CRR
    0.030392,  # EQP
    0.030342,  # Trigeorgis
    0.030303,  # Tian
    0.030334,  # LR
    0.030334,  # Joshi4
    0.033163,  # MC pseudorandom
    0.030293,  # MC lowdiscrepancy
]
AMERICAN_REFERENCE = [
    4.462235,  # Barone-Adesi-Whaley
    4.455663,  # Bjerksund-Stensland
    4.488701,  # finite differences
    4.489087,  # Binomial JR
    4.489040,  # CRR
    4.482594,  # EQP
    4.489087,  # Trigeorgis
    4.489066,  # Tian
    4.488663,  # LR
    4.488663,  # Joshi4
]
REFERENCE = EUROPEAN_REFERENCE + AMERICAN_REFERENCE


def trade_id(trade: dict[str, Any]) -> str:
    parameters = trade["engineParameters"]
    variant = parameters.get("tree") or parameters.get("random_source")
    return "-".join(filter(None, [trade["exercise"], trade["engineName"], variant]))


def price(portfolio: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = lambda_handler({"portfolio": portfolio}, None)["results"]
    return results


@pytest.fixture(scope="module")
def sample_results() -> list[Any]:
    return price(SAMPLE)


def test_sample_portfolio_shape() -> None:
    exercises = [trade["exercise"] for trade in SAMPLE]
    assert exercises == ["European"] * 14 + ["American"] * 10
    assert {trade["tradeType"] for trade in SAMPLE} == {"option"}


@pytest.mark.parametrize("index", range(len(REFERENCE)), ids=[trade_id(t) for t in SAMPLE])
def test_npv_matches_reference(sample_results: list[Any], index: int) -> None:
    assert isinstance(sample_results[index], float), sample_results[index]
    assert sample_results[index] == pytest.approx(REFERENCE[index], abs=1e-6, rel=0)


def test_results_are_json_serialisable(sample_results: list[Any]) -> None:
    assert json.loads(json.dumps({"results": sample_results}))["results"] == sample_results


def test_order_is_preserved(sample_results: list[Any]) -> None:
    assert price(SAMPLE[::-1]) == sample_results[::-1]


def test_evaluation_date_is_set_per_trade() -> None:
    later = copy.deepcopy(SAMPLE[0])
    later["tradeParameters"]["evaluationDate"] = "15 11 1998"
    first, moved, again = price([SAMPLE[0], later, SAMPLE[0]])
    assert first == again
    assert moved != first


def with_changes(trade: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(trade)
    changed.update(changes)
    return changed


@pytest.mark.parametrize(
    "bad_trade",
    [
        with_changes(SAMPLE[0], exercise="Bermudan"),
        with_changes(SAMPLE[0], engineName="NoSuchEngine"),
        with_changes(SAMPLE[-1], engineName="AnalyticEuropeanEngine"),
        with_changes(SAMPLE[5], engineParameters={"tree": "Oak", "timeSteps": 801}),
        with_changes(SAMPLE[0], tradeParameters={}),
    ],
    ids=[
        "unknown-exercise",
        "unknown-engine",
        "european-engine-on-american",
        "unknown-tree",
        "no-params",
    ],
)
def test_a_bad_trade_becomes_an_error_string(bad_trade: dict[str, Any]) -> None:
    good, error, also_good = price([SAMPLE[0], bad_trade, SAMPLE[-1]])
    assert good == pytest.approx(REFERENCE[0], abs=1e-6)
    assert also_good == pytest.approx(REFERENCE[-1], abs=1e-6)
    assert isinstance(error, str)
    assert error.startswith("Error in processing option [")
    assert "] error: [" in error and "] trace: [" in error


def test_merge_sums_every_result_of_every_task() -> None:
    merged = client.merge_results(['{"results": [1.5, 2.0]}', '{"results": [0.25]}'])
    assert merged.value == 3.75
    assert merged.priced_trades == 3
    assert merged.complete


def test_merge_reports_error_strings_without_crashing() -> None:
    outputs = ['{"results": [1.0, "Error in processing option [x] error: [y] trace: [z]"]}']
    merged = client.merge_results(outputs)
    assert merged.value == 1.0
    assert merged.priced_trades == 1
    assert merged.errors == ["Error in processing option [x] error: [y] trace: [z]"]
    assert not merged.complete


def test_merge_reports_outputs_that_are_not_results() -> None:
    lambda_error = '{"errorMessage": "boom", "errorType": "KeyError"}'
    merged = client.merge_results([lambda_error, "not json", '{"results": [2.0]}'])
    assert merged.value == 2.0
    assert len(merged.errors) == 2


def test_merge_of_real_handler_output(sample_results: list[Any]) -> None:
    output = json.dumps(lambda_handler({"portfolio": SAMPLE}, None))
    assert client.merge_results([output]).value == pytest.approx(sum(sample_results))


def test_portfolio_is_split_into_tasks_of_trades_per_worker() -> None:
    tasks = client.split_into_tasks(SAMPLE[:5], trades_per_worker=2)
    assert [len(task["portfolio"]) for task in tasks] == [2, 2, 1]
    assert [t for task in tasks for t in task["portfolio"]] == SAMPLE[:5]


def test_unfinished_tasks_are_reported() -> None:
    response = {"finished": ["s_0"], "failed": ["s_1"], "cancelled": []}
    errors = client.unfinished_task_errors(response, submitted_tasks=3)
    assert errors == ["task s_1 failed", "1 task(s) did not finish before the timeout"]


def test_default_portfolio_file_is_beside_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    args = client.parse_args(["--workload_type", "random_portfolio", "--portfolio_size", "7"])
    portfolio = client.build_portfolio(args)
    assert len(portfolio) == 7
    assert all(trade in SAMPLE for trade in portfolio)
