"""Secrets without an engine: templating, references, the spec hash, the findings, the
controller's and the gate's key, and files the real `age` tool wrote."""
from __future__ import annotations

import shutil
import subprocess

import pyrage
import pytest

from controller import secrets
from controller.desired import desired_state
from controller.spec import replica_spec, secret_files
from validators import secrets as fmt
from validators.check import check_state
from validators.load import load_cloud
from validators.tree import MemoryTree

from ..validators.helpers import BASE_CLOUD, files, service

KEY, PUBLIC = secrets.generate()
OTHER, OTHER_PUBLIC = secrets.generate()
IDS = [pyrage.x25519.Identity.from_str(KEY)]
CONF = "clouds/c/config/ks/ks.conf"


def cloud(recipients=None, policy=None) -> dict:
    data = {**BASE_CLOUD, "secrets": {"recipients": recipients or {"controller": PUBLIC}}}
    if policy:
        data["policy"] = {"secrets": policy}
    return data


def tree(conf: bytes, secret_values: dict, template=True, env=None, recipients=None, policy=None, other=None):
    keys = list((recipients or {"controller": PUBLIC}).values())
    extra = {CONF: conf, **{fmt.path("clouds/c", n): secrets.encrypt(v, keys) for n, v in secret_values.items()}}
    svc = {"ks": service(config=[{"source": "config/ks/ks.conf", "target": "/etc/keystone/keystone.conf",
                                  "template": template, "owner": "keystone"}], environment=env)}
    svc.update(other or {})
    return MemoryTree(files(svc, cloud(recipients, policy), extra))


def desired(t, identities=IDS):
    loaded = load_cloud(t, "c")
    assert loaded.cloud is not None, loaded.findings
    return desired_state(loaded.cloud, t, "c0", secrets.Vault.of(t, "clouds/c", identities))


def test_template_renders_references_and_keeps_escaped_literals():
    out = fmt.render(b"a=${secret:db} b=$${secret:db} c=${secret:db}", lambda n: b"V-" + n.encode())
    assert out == b"a=V-db b=${secret:db} c=V-db"
    assert fmt.references(b"x ${secret:a} $${secret:b} ${secret:a} ${secret:c}") == ["a", "c"]


def test_a_secret_file_is_rendered_in_memory_and_delivered_with_owner_and_mode(tmp_path):
    d = desired(tree(b"connection = mysql://ks:${secret:ks-db}@db/ks\n", {"ks-db": b"p4ss"}))
    ds = d.services["ks"]
    (delivered,) = secret_files(d, ds)
    assert delivered.content == b"connection = mysql://ks:p4ss@db/ks\n"
    assert (delivered.target, delivered.mode, delivered.owner) == ("/etc/keystone/keystone.conf", 0o440, "keystone")
    spec = replica_spec(d, ds, 0)
    assert spec.mounts == () and [f.target for f in spec.files] == ["/etc/keystone/keystone.conf"]
    assert "p4ss" not in repr(spec)


def test_environment_reference_is_decrypted_into_the_spec(tmp_path):
    d = desired(tree(b"x\n", {"admin": b"adm1n"}, env={"OS_PASSWORD": {"secret": "admin"}, "OS_USER": "admin"}))
    spec = replica_spec(d, d.services["ks"], 0)
    assert spec.environment == {"OS_PASSWORD": "adm1n", "OS_USER": "admin"}
    assert "adm1n" not in repr(spec)


def test_a_changed_secret_changes_only_the_hash_of_the_services_that_use_it():
    other = {"web": service(project="web")}
    one = desired(tree(b"p=${secret:ks-db}\n", {"ks-db": b"a", "unused": b"x"}, other=other))
    two = desired(tree(b"p=${secret:ks-db}\n", {"ks-db": b"b", "unused": b"y"}, other=other))
    assert one.services["ks"].hash != two.services["ks"].hash
    assert one.services["web"].hash == two.services["web"].hash


def test_a_cloud_without_secrets_keeps_its_hashes():
    t = MemoryTree(files({"ks": service(config=[{"source": "config/ks/ks.conf", "target": "/etc/ks.conf"}])},
                         extra={CONF: b"plain\n"}))
    from controller.desired import container_hash
    loaded = load_cloud(t, "c")
    d = desired_state(loaded.cloud, t, "c0")
    assert d.services["ks"].hash == container_hash(loaded.cloud.services["ks"], d.services["ks"].config)


def test_plain_text_password_is_a_warning_and_an_error_under_required_policy():
    conf = b"[database]\nconnection = mysql+pymysql://ks:hunter2@db/ks\n[auth]\npassword = hunter2\n"
    found = check_state(load_cloud(tree(conf, {}, template=False), "c"))
    plain = [(f.file, f.line, f.severity) for f in found if f.rule == "semantic.secret-plain-text"]
    assert plain == [(CONF, 2, "warning"), (CONF, 4, "warning")]
    found = check_state(load_cloud(tree(conf, {}, template=False, policy="required"), "c"))
    assert {f.severity for f in found if f.rule == "semantic.secret-plain-text"} == {"error"}


def test_plain_text_in_environment_and_job_argument_is_found():
    svc = service(environment={"DB_PASSWORD": "x1", "OS_PASSWORD_FILE": "/run/p", "NOVA_SECRET": "$FROM_ENV"},
                  bootstrap=[{"command": ["keystone-manage", "bootstrap", "--bootstrap-password", "admin"]}])
    found = [f for f in check_state(load_cloud(MemoryTree(files({"ks": svc})), "c"))
             if f.rule == "semantic.secret-plain-text"]
    assert sorted(f.message.split(" ")[1] for f in found) == ["DB_PASSWORD", "bootstrap-1:"]


def test_reference_to_a_missing_secret_is_an_error_naming_it():
    found = check_state(load_cloud(tree(b"p=${secret:nope}\n", {"ks-db": b"a"}), "c"))
    (f,) = [f for f in found if f.rule == "semantic.secret-unknown"]
    assert f.severity == "error" and "'nope'" in f.message and "ks-db" in f.hint


def test_a_secret_file_that_is_not_age_is_a_finding_naming_the_file():
    t = tree(b"p=${secret:ks-db}\n", {})
    t.files[fmt.path("clouds/c", "ks-db")] = b"password123\n"
    (f,) = [f for f in check_state(load_cloud(t, "c")) if f.rule == "semantic.secret-invalid"]
    assert f.file == "clouds/c/secrets/ks-db.age" and "not an age file" in f.message


def test_controller_not_a_recipient_is_an_error_at_check_time():
    found = check_state(load_cloud(tree(b"p=${secret:a}\n", {"a": b"v"}, recipients={"alice": PUBLIC}), "c"))
    assert [f.rule for f in found if f.severity == "error"] == ["semantic.secret-recipients"]


def test_a_secret_not_encrypted_to_every_recipient_is_found():
    t = tree(b"p=${secret:a}\n", {"a": b"v"}, recipients={"controller": PUBLIC, "gate": OTHER_PUBLIC})
    t.files[fmt.path("clouds/c", "a")] = secrets.encrypt(b"v", [PUBLIC])
    (f,) = [f for f in check_state(load_cloud(t, "c")) if f.rule == "semantic.secret-recipients"]
    assert "encrypted to 1 key(s)" in f.message and "lists 2" in f.message


def test_a_key_that_is_not_a_recipient_cannot_decrypt_and_says_so():
    d = desired(tree(b"p=${secret:a}\n", {"a": b"v"}), identities=[])
    (f,) = d.vault.problems(d.secrets_used())
    assert f.rule == "semantic.secret-undecryptable" and "no age key" in f.message
    other = pyrage.x25519.Identity.from_str(OTHER)
    d = desired(tree(b"p=${secret:a}\n", {"a": b"v"}), identities=[other])
    (f,) = d.vault.problems(d.secrets_used())
    assert "not one of its recipients" in f.message and "v" not in f.message.split("(")[0].split()


def test_key_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "k"
    bad.write_text("# comment\nnot-a-key\n")
    with pytest.raises(secrets.SecretError, match=r"k:2: not an age secret key"):
        secrets.load_identities(bad)
    with pytest.raises(secrets.SecretError, match="cannot read"):
        secrets.load_identities(tmp_path / "missing")


@pytest.mark.skipif(shutil.which("age") is None, reason="the age tool is installed by scripts/setup.sh")
def test_files_written_by_the_age_tool_decrypt_and_the_tool_decrypts_ours(tmp_path):
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(KEY + "\n")
    for armor in ([], ["-a"]):
        made = subprocess.run(["age", *armor, "-r", PUBLIC], input=b"from-age", capture_output=True, check=True).stdout
        assert fmt.header(made).stanzas == ("X25519",)
        assert secrets.decrypt(made, secrets.load_identities(keyfile), "x") == b"from-age"
    ours = secrets.encrypt(b"from-tidegate", [PUBLIC])
    assert subprocess.run(["age", "-d", "-i", str(keyfile)], input=ours, capture_output=True,
                          check=True).stdout == b"from-tidegate"


def test_shipped_clouds_have_no_plain_text_password():
    from validators.tree import DirTree
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    for name in ("demo", "minimal", "multihost"):
        found = check_state(load_cloud(DirTree(root), name))
        assert not [f for f in found if f.rule.startswith("semantic.secret")], (name, found)


# -- Keystone key repositories ---------------------------------------------------------

def test_staged_rotation_promotes_the_staged_key_and_keeps_the_old_primary():
    from controller import keyrepo
    first = keyrepo.create()
    second = keyrepo.rotate(first)
    assert second[2] == first[0] and second[1] == first[1] and second[0] not in first.values()
    third = keyrepo.rotate(second)
    assert sorted(third) == [0, 2, 3] and third[3] == second[0] and third[2] == first[0]   # key 1 purged
    assert keyrepo.parse(keyrepo.dump(third)) == third


def test_a_key_repository_secret_becomes_one_file_per_key_on_every_replica(tmp_path):
    from controller import keyrepo
    keys = keyrepo.create()
    svc = service(secrets=[{"name": "ks-fernet", "target": "/etc/keystone/fernet-keys", "owner": "keystone",
                            "mode": "0400", "layout": "key-repository"}])
    t = MemoryTree(files({"ks": svc}, cloud(), {fmt.path("clouds/c", "ks-fernet"): secrets.encrypt(keyrepo.dump(keys), [PUBLIC])}))
    assert not [f for f in check_state(load_cloud(t, "c")) if f.rule.startswith("semantic.secret")]
    d = desired(t)
    delivered = {f.target: (f.content, f.mode, f.owner) for f in secret_files(d, d.services["ks"])}
    assert delivered == {f"/etc/keystone/fernet-keys/{i}": (k.encode(), 0o400, "keystone") for i, k in keys.items()}
    t.files[fmt.path("clouds/c", "ks-fernet")] = secrets.encrypt(keyrepo.dump(keyrepo.rotate(keys)), [PUBLIC])
    assert desired(t).services["ks"].hash != d.services["ks"].hash


def test_a_value_that_is_not_a_key_repository_fails_without_showing_it():
    from controller import keyrepo
    with pytest.raises(keyrepo.KeyRepositoryError) as err:
        keyrepo.parse(b'{"0": "hunter2hunter2", "1": "x"}')
    assert "hunter2" not in str(err.value)
