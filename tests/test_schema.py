"""The record contract: strictness, the exported JSON Schema, and the gold field names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import rules_record
from imr_extract.schema import Citation, Item, LetterRecord, json_schema, json_schema_text

SCHEMA_FILE = Path(__file__).parents[1] / "schemas" / "letter.schema.json"


def test_exported_schema_is_up_to_date():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        "schemas/letter.schema.json is stale: regenerate it with "
        "`imr-extract schema --out schemas/letter.schema.json` and commit it"
    )


def test_records_validate_against_the_exported_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    record = rules_record("CM16-0231706.pdf").model_dump(mode="json")
    jsonschema.validate(record, schema)
    record["items"][0]["decision"] = "denied"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record, schema)


def test_unknown_keys_are_rejected():
    with pytest.raises(ValidationError, match="extra"):
        Citation.model_validate({"kind": "MTUS", "source": "x", "volume": 3})


def test_no_silent_coercion():
    with pytest.raises(ValidationError):
        Citation.model_validate({"kind": "MTUS", "source": "x", "pages": ["46"]})
    with pytest.raises(ValidationError):
        Citation.model_validate({"kind": "MTUS", "source": "x", "pages": [0]})


def test_decision_is_a_closed_set():
    base = rules_record("CM16-0231706.pdf").items[0].model_dump(mode="json")
    base["decision"] = "partially upheld"
    with pytest.raises(ValidationError):
        Item.model_validate_json(json.dumps(base))


def test_record_round_trips_through_json():
    record = rules_record("CM17-0014449.pdf")
    again = LetterRecord.model_validate_json(record.model_dump_json())
    assert again == record


def test_provenance_sits_beside_the_data_not_around_it():
    record = rules_record("CM16-0231706.pdf").model_dump(mode="json")
    # Plain values under the gold names ...
    assert record["items"][0]["imr_guideline"]["citations"][0]["sections"] == [
        "Manual therapy & manipulation"
    ]
    # ... and provenance keyed by field path.
    prov = record["provenance"]["items[0].imr_guideline.citations[0].sections[0]"]
    assert prov["method"] == "rules"
    assert prov["spans"][0]["page"] == 2


def test_schema_documents_every_gold_field():
    props = json_schema()["properties"]
    for name in ("letter", "case_number", "dates", "priority", "reviewer", "patient", "items"):
        assert name in props
