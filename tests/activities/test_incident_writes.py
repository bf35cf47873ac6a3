"""Writes to Sentinel against the Sentinel emulator."""

from activities.incident_writes import update_incident_labels

from .conftest import activity

UPDATE_LABELS = activity(update_incident_labels)
MISSING_INCIDENT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    "/providers/Microsoft.OperationalInsights/workspaces/ws"
    "/providers/Microsoft.SecurityInsights/incidents/"
    "00000000-0000-0000-0000-0000000000ff"
)


def test_labels_on_missing_incident_fail_as_data(connector):
    answer = UPDATE_LABELS({"incident_id": MISSING_INCIDENT, "labels": ["ANY.RUN"]})
    assert answer["status"] == "failed"
    assert "404" in answer["reason"]
