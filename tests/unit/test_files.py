"""File entity extraction: hashes by entity id, host, device id, OS and skips."""

import copy
import json
from pathlib import Path

import pytest

from enrichment.files import extract_files, os_family

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "entities"
WS = (
    "/subscriptions/s/resourceGroups/r/providers/Microsoft.OperationalInsights/"
    "workspaces/w/providers/Microsoft.SecurityInsights/Entities/"
)
SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
SHA1 = "3395856ce81f2b7382dee72602f798b642f14140"


def entity(guid, kind, **properties):
    return {"id": WS + guid, "kind": kind, "properties": properties}


def linux_eicar():
    return [
        entity(
            "h1",
            "Host",
            hostName="lx-0042",
            dnsDomain="corp.example.net",
            osFamily="Unknown",
            additionalData={"MdatpDeviceId": "0" * 32 + "deadbeef"},
        ),
        entity(
            "f1",
            "File",
            directory="/home/azureuser",
            fileName="eicar.com",
            fileHashEntityIds=[WS.replace("Entities", "entities") + "fh1", WS + "fh2"],
            additionalData={"MdatpDeviceId": "0" * 32 + "deadbeef"},
        ),
        entity("fh1", "FileHash", algorithm="SHA1", hashValue=SHA1),
        entity("fh2", "FileHash", algorithm="SHA256", hashValue=SHA256.upper()),
    ]


def test_hashes_resolved_by_entity_id():
    objects, skipped = extract_files(linux_eicar())
    assert skipped == []
    assert objects[0]["sha256"] == SHA256
    assert objects[0]["sha1"] == SHA1


def test_device_and_path():
    item = extract_files(linux_eicar())[0][0]
    assert item["device_id"] == "0" * 32 + "deadbeef"
    assert item["object"] == "/home/azureuser/eicar.com"
    assert item["host_fqdn"] == "lx-0042.corp.example.net"


def test_unknown_os_left_for_defender():
    assert extract_files(linux_eicar())[0][0]["os_family"] is None


def test_windows_path_joined_with_backslash():
    entities = linux_eicar()
    entities[1]["properties"]["directory"] = "C:\\Users\\j.doe\\Downloads"
    assert (
        extract_files(entities)[0][0]["object"]
        == "C:\\Users\\j.doe\\Downloads\\eicar.com"
    )


def test_missing_directory_kept_for_hunting():
    entities = linux_eicar()
    del entities[1]["properties"]["directory"]
    item = extract_files(entities)[0][0]
    assert item["directory"] == ""
    assert item["object"] == "eicar.com"


@pytest.mark.parametrize(
    ("index", "value", "reason"),
    [
        (2, "abc", "not a SHA1"),
        (3, "z" * 64, "not a SHA256"),
        (3, 42, "not a SHA256"),
    ],
)
def test_bad_hash_value_is_skipped(index, value, reason):
    entities = linux_eicar()
    entities[index]["properties"]["hashValue"] = value
    objects, skipped = extract_files(entities)
    assert objects == []
    assert reason in skipped[0]["reason"]


def test_no_hash_is_skipped():
    entities = linux_eicar()[:2]
    objects, skipped = extract_files(entities)
    assert objects == []
    assert "no SHA-256 or SHA-1" in skipped[0]["reason"]


def test_md5_only_is_skipped():
    entities = linux_eicar()[:2] + [
        entity("fh1", "FileHash", algorithm="MD5", hashValue="a" * 32)
    ]
    assert "only an MD5" in extract_files(entities)[1][0]["reason"]


def test_no_host_is_skipped():
    entities = copy.deepcopy(linux_eicar())
    entities = [e for e in entities if e["kind"] != "Host"]
    entities[0]["properties"].pop("additionalData")
    objects, skipped = extract_files(entities)
    assert objects == []
    assert "no host" in skipped[0]["reason"]


def test_host_entity_id_preferred():
    entities = linux_eicar()
    entities.append(entity("h2", "Host", hostName="other", osFamily="Windows"))
    entities[1]["properties"]["hostEntityId"] = WS + "h2"
    entities[1]["properties"].pop("additionalData")
    item = extract_files(entities)[0][0]
    assert item["host_name"] == "other"
    assert item["os_family"] == "windows"


def test_unnamed_file_is_skipped():
    entities = linux_eicar()
    del entities[1]["properties"]["fileName"]
    assert "fileName is missing" in extract_files(entities)[1][0]["reason"]


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("Windows10", "windows"),
        ("Windows", "windows"),
        ("Linux", "linux"),
        ("Ubuntu", "linux"),
        ("macOS", None),
        ("Unknown", None),
        (None, None),
    ],
)
def test_os_family(name, family):
    assert os_family(name) == family


def test_published_linux_sample_extracts():
    path = (
        Path(__file__).resolve().parents[2]
        / "samples"
        / "incidents"
        / "file-linux-quarantined.json"
    )
    body = json.loads(path.read_text())
    objects, skipped = extract_files(body["object"]["properties"]["relatedEntities"])
    assert skipped == []
    assert objects[0]["sha256"] == SHA256
