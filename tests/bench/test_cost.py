"""The cost benchmark on a small workload: its figures meet the connector's targets.

The full run (500 incidents) is `make bench-cost`, recorded in
docs/benchmarks.md. This run of 12 incidents keeps the script working and
checks the same targets. They are at most 4 ANY.RUN calls per analysis, a
median lag of at most 5 durable seconds and below both waiting baselines, one
submission per unique object, and at most 40 history events per URL analysis.
"""

import pytest

from bench.cost import build_workload, check, parse_arguments, run, unique_objects

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    output = tmp_path_factory.mktemp("cost") / "cost.json"
    args = parse_arguments(
        [
            "--incidents", "12",
            "--time-scale", "10",
            "--rate", "30",
            "--files", "0",
            "--timeout", "120",
            "--output", str(output),
        ]
    )  # fmt: skip
    return run(args)


def test_targets_met(figures):
    assert check(figures["results"]) == []


def test_calls_per_analysis_at_most_four(figures):
    assert figures["results"]["remaining"]["anyrun_calls_per_analysis_total"] <= 4


def test_submissions_equal_unique_objects(figures):
    own = figures["results"]["remaining"]
    assert own["submissions"] == own["unique_objects"]
    assert own["sandbox_tasks"] == own["unique_objects"]


def test_no_tag_lookup_without_redelivery(figures):
    assert figures["results"]["remaining"]["anyrun_calls"].get("tag_lookup", 0) == 0


def test_median_lag_below_baselines(figures):
    lags = {name: r["lag_seconds"]["median"] for name, r in figures["results"].items()}
    assert lags["remaining"] <= 5
    assert lags["remaining"] < lags["fixed"]
    assert lags["remaining"] < lags["poll"]


def test_url_history_at_most_forty_events(figures):
    assert figures["results"]["remaining"]["history_events"]["url"]["max"] <= 40


def test_poll_baseline_costs_more_calls(figures):
    assert figures["ratios"]["poll"]["calls_per_analysis"] > 1


def test_workload_repeats_share_of_objects():
    workload = build_workload(100, 3, 0.3, 0, seed=7)
    slots = sum(len(items) for items in workload)
    assert slots == 300
    assert unique_objects(workload) == 300 - 90 + 18
    assert all(len({str(item) for item in items}) == 3 for items in workload)
