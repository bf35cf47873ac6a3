"""End to end: a short soak run, with faults of every kind injected throughout.

The same run as `make soak` (bench/soak.py), with fewer incidents so that it
fits the test suite's time. Each test checks one property of its report.
"""

import pytest

from bench.soak import (
    DEVICES,
    build_workload,
    fault_label,
    fault_plan,
    problems,
    run_soak,
)

pytestmark = pytest.mark.e2e

INCIDENTS = 36
SEED = 11
FAULT_RATE = 0.1


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    folder = tmp_path_factory.mktemp("soak")
    return run_soak(
        folder,
        incidents=INCIDENTS,
        fault_rate=FAULT_RATE,
        seed=SEED,
        timeout=420,
    )


def test_no_incident_lost(soak):
    assert soak["incidents"]["posted"] == INCIDENTS
    assert soak["incidents"]["runtime_status"] == {"Completed": INCIDENTS}
    assert soak["incidents"]["lost"] == 0


def test_no_effect_doubled(soak):
    assert soak["duplicates"] == {
        "submissions_per_object": [],
        "tasks_per_tag": [],
        "comments_per_incident": [],
        "labels_per_incident": [],
        "alert_comments_per_incident": [],
        "indicators_per_pattern": [],
    }
    assert soak["duplicated_effects"] == 0


def test_every_fault_kind_injected(soak):
    """Every rule of the plan fired: each status, reset, cut stream, token..."""
    for emulator, rules in fault_plan(FAULT_RATE, SEED).items():
        injected = soak["faults_injected"][emulator]
        labels = {fault_label(rule) for rule in rules}
        assert {label for label in labels if injected.get(label, 0) < 1} == set()
    assert soak["chaos"].get("azurite_restart", 0) >= 1
    assert soak["chaos"].get("daily_quota", 0) >= 1
    assert soak["chaos_errors"] == []
    assert soak["throttled_submissions"] >= 1


def test_faults_are_absorbed_by_retries(soak):
    assert soak["http_retries_total"] > 0
    services = {name.split(":")[0] for name in soak["http_retries"]}
    assert {"ANY.RUN", "Sentinel", "Defender"} <= services


def test_every_failed_result_has_a_reason(soak):
    for reason in soak["failed_results"]:
        status, _, text = reason.partition(": ")
        assert status in ("failed", "timed_out"), reason
        assert text and text != "None", reason


def test_indicators_stored_or_reported(soak):
    indicators = soak["indicators"]
    assert indicators["expected"] > 0
    assert indicators["missing_unreported"] == 0


def test_no_secret_in_any_output(soak):
    assert soak["secrets"]["scanned"] > 10
    assert soak["secrets"]["findings"] == []


def test_upload_container_empty(soak):
    assert soak["blobs_left"] == 0


def test_run_passes_its_own_checks(soak):
    assert problems(soak) == []


def test_workload_mixes_urls_and_files():
    workload = build_workload(INCIDENTS, SEED)
    files = [item for item in workload if item.file is not None]
    assert 0 < len(files) < INCIDENTS
    assert {item.file.device for item in files} == set(DEVICES)
    assert len({item.file.sha256 for item in files}) == len(files)
    assert build_workload(INCIDENTS, SEED)[5].urls == workload[5].urls


def test_fault_plan_shares_the_rate():
    plan = fault_plan(0.1, 3)
    for rules in plan.values():
        rolled = [rule for rule in rules if "probability" in rule]
        generic = [r for r in rolled if r.get("path_prefix") == "/"]
        assert 0.09 <= sum(r["probability"] for r in generic) <= 0.11
        once = [rule for rule in rules if rule["times"] == 1]
        assert len(once) == len(rolled)
