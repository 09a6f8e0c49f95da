"""The history reader's view of refs/notes/tidegate: the controller writes
{"clouds": {cloud: {"contract": [service, …], …}}}; anyone can write a note by hand, so a
note of any other shape counts as no record — never a crash."""
import json

import pytest
import yaml

from controller.source import Source

from .helpers import files, service
from .test_cli_check import tidegate


def ks(release):
    return yaml.safe_dump(service(release=release, image=f"tidegate/keystone:{release}"))


@pytest.fixture
def reverted(repo):
    """keystone 2025.1 → 2025.2 (the upgrade, returned) → git revert of it (head)."""
    repo.commit(files({"keystone": service()}), "keystone 2025.1")
    up = repo.commit({"clouds/c/services/keystone.yaml": ks("2025.2")}, "keystone 2025.2")
    repo.git("revert", "--no-edit", up)
    return repo, up


def annotate(repo, commit, text):
    note = repo.path.parent / "note.txt"
    note.write_text(text)
    repo.git("notes", "--ref", "tidegate", "add", "-f", "-F", str(note), commit)


MALFORMED = [
    '{"clouds": ["c"]}',
    "contract ran for keystone",
    '["c"]',
    '{"clouds": {"c": ["keystone"]}}',
    '{"clouds": {"c": {"contract": "keystone"}}}',
    '{"clouds": {"c": {"contract": [1, null, {"x": 1}]}}}',
    '{"clouds": null}',
    "[" * 20_000 + "]" * 20_000,          # deeper than json's recursion allows
]


@pytest.mark.parametrize("note", MALFORMED)
def test_a_malformed_note_is_no_record_of_a_contract(reverted, note):
    repo, up = reverted
    annotate(repo, up, note)
    prior = Source(repo.path).prior_states("c", "HEAD~1", ["keystone"])["keystone"]
    assert prior.commit == up and prior.contract_ran is False
    proc = tidegate("check", "--repo", str(repo.path), "--base", up)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_well_formed_note_records_the_contract(reverted):
    repo, up = reverted
    annotate(repo, up, json.dumps({"clouds": {"c": {"result": "applied", "contract": ["keystone"]}}}))
    assert Source(repo.path).prior_states("c", "HEAD~1", ["keystone"])["keystone"].contract_ran is True
    proc = tidegate("check", "--repo", str(repo.path), "--base", up)
    assert proc.returncode == 1 and "[transition.downgrade]" in proc.stdout


def test_a_contract_of_another_service_whose_name_contains_this_one_does_not_count(reverted):
    repo, up = reverted
    annotate(repo, up, json.dumps({"clouds": {"c": {"contract": "keystone-api"}}}))
    assert Source(repo.path).contracted(up, "c") == set()
    annotate(repo, up, json.dumps({"clouds": {"c": {"contract": ["keystone-api"]}}}))
    assert Source(repo.path).contracted(up, "c") == {"keystone-api"}


def test_recording_on_a_malformed_note_replaces_it(reverted):
    repo, up = reverted
    annotate(repo, up, '{"clouds": ["c"], "by": "hand"}')
    source = Source(repo.path)
    source.add_note(up, "c", {"result": "applied", "contract": ["keystone"]})
    assert source.note(up) == {"clouds": {"c": {"result": "applied", "contract": ["keystone"]}}, "by": "hand"}
    assert source.contracted(up, "c") == {"keystone"}
