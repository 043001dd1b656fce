"""The spec format: schema freshness, canonical round trip, identity, migrations."""

import json

import pytest

from rspnet_zoo.errors import SpecError
from rspnet_zoo.resources import data_dir, shipped_specs
from rspnet_zoo.spec.io import dump_spec, genotype_from_dict, load_spec, parse_spec, spec_sha256
from rspnet_zoo.spec.schema import SCHEMA_FILE, render_schema


def test_committed_schema_is_fresh():
    committed = (data_dir("schemas") / SCHEMA_FILE).read_text()
    assert committed == render_schema(), (
        f"schemas/{SCHEMA_FILE} is stale: regenerate it with "
        'python -c "from rspnet_zoo.spec.schema import render_schema, SCHEMA_FILE; '
        "open('schemas/'+SCHEMA_FILE,'w').write(render_schema())\""
    )


def test_schema_is_draft_2020_12_with_major_version_in_id():
    schema = json.loads(render_schema())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    major = SCHEMA_FILE.split(".")[1]
    assert schema["$id"].endswith(f"/genotype.{major}.json")


@pytest.mark.parametrize("path", shipped_specs(), ids=lambda p: p.stem)
def test_canonical_dump_round_trips(path):
    genotype = load_spec(path)
    text = dump_spec(genotype)
    again = parse_spec(text)
    assert again == genotype
    assert dump_spec(again) == text
    assert spec_sha256(again) == spec_sha256(genotype)


@pytest.mark.parametrize("path", shipped_specs(), ids=lambda p: p.stem)
def test_shipped_specs_are_stored_canonically(path):
    assert path.read_text() == dump_spec(load_spec(path))


def test_sha_ignores_formatting_but_not_content():
    path = shipped_specs()[0]
    doc = json.loads(path.read_text())
    reformatted = json.dumps(doc, indent=None, sort_keys=False)
    assert spec_sha256(parse_spec(reformatted)) == spec_sha256(load_spec(path))
    doc["description"] = doc.get("description", "") + " changed"
    assert spec_sha256(genotype_from_dict(doc)) != spec_sha256(load_spec(path))


def test_unknown_format_version_is_refused_by_name():
    doc = json.loads(shipped_specs()[0].read_text())
    doc["format_version"] = 99
    with pytest.raises(SpecError) as err:
        genotype_from_dict(doc)
    assert err.value.pointer == "/format_version"
    assert "unknown format_version 99" in err.value.reason
