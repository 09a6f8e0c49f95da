"""Signed commits: real SSH keys (ssh-keygen) and a real GPG key, commits signed by git
itself; the controller applies only what a trusted key signed."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pygit2
import pytest

from controller.signing import SigningSetupError, Verifier, check_setup, verify_commit

from .gitrepo import Repo, allowed_signers, files, service, ssh_key, ssh_signing

CLOUD = files({"keystone": service()})


@pytest.fixture
def keys(tmp_path):
    trusted, stranger = ssh_key(tmp_path / "keys", "trusted"), ssh_key(tmp_path / "keys", "stranger")
    signers = allowed_signers(tmp_path / "allowed_signers", [("op@example.net", trusted)])
    return trusted, stranger, signers


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


def commit_of(repo: Repo, sha: str) -> pygit2.Commit:
    return pygit2.Repository(str(repo.path)).get(sha)


def test_commit_signed_by_an_allowed_ssh_key_is_trusted(repo, keys):
    trusted, _, signers = keys
    sha = repo.commit(CLOUD, "signed", sign=ssh_signing(trusted))
    assert verify_commit(commit_of(repo, sha), allowed_signers=str(signers)) is None


def test_unsigned_commit_is_refused_with_a_one_line_reason(repo, keys):
    sha = repo.commit(CLOUD, "unsigned")
    reason = verify_commit(commit_of(repo, sha), allowed_signers=str(keys[2]))
    assert reason == f"commit {sha[:12]} is not signed"


def test_commit_signed_by_an_unknown_ssh_key_is_untrusted(repo, keys):
    _, stranger, signers = keys
    sha = repo.commit(CLOUD, "signed by someone else", sign=ssh_signing(stranger))
    reason = verify_commit(commit_of(repo, sha), allowed_signers=str(signers))
    assert "signed by an untrusted key" in reason and "SHA256:" in reason and "\n" not in reason


def test_trusted_key_signing_for_another_committer_is_untrusted(repo, keys):
    trusted, _, signers = keys
    sha = repo.commit(CLOUD, "signed, committed as mallory", sign=ssh_signing(trusted),
                      env={"GIT_COMMITTER_EMAIL": "mallory@example.net"})
    reason = verify_commit(commit_of(repo, sha), allowed_signers=str(signers))
    assert "untrusted key" in reason and "mallory@example.net" in reason


def test_commit_altered_after_signing_has_a_bad_signature(repo, keys):
    trusted, _, signers = keys
    sha = repo.commit(CLOUD, "the real message", sign=ssh_signing(trusted))
    raw = pygit2.Repository(str(repo.path))
    signature, payload = raw.get(sha).gpg_signature
    forged = raw.create_commit_with_signature(payload.decode().replace("the real message", "a forged message"),
                                              signature.decode())
    reason = verify_commit(raw.get(forged), allowed_signers=str(signers))
    assert "bad SSH signature" in reason


def test_ssh_signature_without_allowed_signers_is_not_trusted(repo, keys, tmp_path):
    sha = repo.commit(CLOUD, "signed", sign=ssh_signing(keys[0]))
    reason = verify_commit(commit_of(repo, sha), gpg_keyring=str(tmp_path / "unused.gpg"))
    assert "no --allowed-signers" in reason


def test_removing_a_key_from_allowed_signers_takes_effect_without_restart(repo, keys):
    trusted, _, signers = keys
    sha = repo.commit(CLOUD, "signed", sign=ssh_signing(trusted))
    verify = Verifier(allowed_signers=str(signers))
    assert verify(commit_of(repo, sha)) is None
    signers.write_text("# key revoked\n")
    assert "untrusted key" in verify(commit_of(repo, sha))


# -- GPG -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpg_keys(tmp_path_factory):
    """Two GPG keys in their own short GNUPGHOMEs; `keyring` exports the trusted one only."""
    made = []
    for name in ("trusted", "stranger"):
        home = tempfile.mkdtemp(prefix="tg-gk-")
        env = {**os.environ, "GNUPGHOME": home}
        subprocess.run(["gpg", "--batch", "-q", "--passphrase", "", "--quick-gen-key",
                        f"{name} <op@example.net>", "ed25519", "sign", "never"], env=env, check=True,
                       capture_output=True)
        listing = subprocess.run(["gpg", "--with-colons", "--list-keys"], env=env, check=True,
                                 capture_output=True, text=True).stdout
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        made.append((home, fpr))
    keyring = tmp_path_factory.mktemp("gpg") / "trusted.asc"
    keyring.write_bytes(subprocess.run(["gpg", "--armor", "--export", made[0][1]], check=True, capture_output=True,
                                       env={**os.environ, "GNUPGHOME": made[0][0]}).stdout)
    yield {"trusted": made[0], "stranger": made[1], "keyring": keyring}
    for home, _ in made:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": home}, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def gpg_commit(repo: Repo, key: tuple[str, str], message: str) -> str:
    home, fpr = key
    return repo.commit(CLOUD, message, sign=["-c", "gpg.format=openpgp", "-c", f"user.signingkey={fpr}"],
                       env={"GNUPGHOME": home})


def test_commit_signed_by_a_gpg_key_in_the_keyring_is_trusted(repo, gpg_keys):
    sha = gpg_commit(repo, gpg_keys["trusted"], "gpg signed")
    assert verify_commit(commit_of(repo, sha), gpg_keyring=str(gpg_keys["keyring"])) is None


def test_commit_signed_by_a_gpg_key_outside_the_keyring_is_untrusted(repo, gpg_keys):
    sha = gpg_commit(repo, gpg_keys["stranger"], "gpg signed by a stranger")
    reason = verify_commit(commit_of(repo, sha), gpg_keyring=str(gpg_keys["keyring"]))
    assert "untrusted key" in reason and gpg_keys["stranger"][1][-16:] in reason


def test_gpg_and_ssh_trust_can_be_combined(repo, gpg_keys, keys):
    a = gpg_commit(repo, gpg_keys["trusted"], "gpg")
    b = repo.commit(CLOUD, "ssh", sign=ssh_signing(keys[0]))
    verify = Verifier(allowed_signers=str(keys[2]), gpg_keyring=str(gpg_keys["keyring"]))
    assert verify(commit_of(repo, a)) is None and verify(commit_of(repo, b)) is None


def test_setup_errors_are_reported_once_at_start(tmp_path, keys):
    with pytest.raises(SigningSetupError, match="need --allowed-signers"):
        check_setup()
    with pytest.raises(SigningSetupError, match="no such file"):
        check_setup(allowed_signers=str(tmp_path / "missing"))
    (tmp_path / "junk.gpg").write_text("not a key\n")
    with pytest.raises(SigningSetupError, match="no OpenPGP public key"):
        check_setup(gpg_keyring=str(tmp_path / "junk.gpg"))
    check_setup(allowed_signers=str(keys[2]))


# -- plugged into the controller -----------------------------------------------------------
def test_controller_rejects_an_unsigned_commit_and_accepts_a_signed_one(repo, keys, tmp_path):
    from controller.reconcile import Controller
    from controller.source import Source

    trusted, _, signers = keys
    unsigned = repo.commit(CLOUD, "unsigned")
    signed = repo.commit({"README": "signed\n"}, "signed", sign=ssh_signing(trusted))
    ctl = Controller(Source(repo.path), "c", state_dir=tmp_path / "state", engines={},
                     verify_commit=Verifier(allowed_signers=str(signers)))
    rejected = ctl.target(unsigned)
    assert not rejected.valid
    assert [(f.rule, f.message) for f in rejected.findings] == [("source.unsigned", f"commit {unsigned[:12]} is not signed")]
    assert ctl.target(signed).valid


def test_a_cloud_whose_policy_requires_signatures_is_refused_by_a_controller_without_keys(repo, tmp_path):
    from controller.reconcile import Controller, trust_every_commit
    from controller.source import Source

    strict = dict(CLOUD)
    strict["clouds/c/cloud.yaml"] = CLOUD["clouds/c/cloud.yaml"] + "policy: {require_signed: true}\n"
    base = repo.commit(strict, "signatures required")
    ctl = Controller(Source(repo.path), "c", state_dir=tmp_path / "state", engines={})
    target = ctl.target(base)
    assert not target.valid
    assert [(f.file, f.rule) for f in target.findings] == [("clouds/c/cloud.yaml", "source.unsigned")]
    assert "no trusted keys" in target.findings[0].message
    # a change cannot switch the policy off for itself: the base's policy governs too
    lax = repo.commit(CLOUD, "signatures no longer required")
    assert not ctl.target(lax, base=base).valid
    assert ctl.target(lax).valid                      # judged alone (no base), it is a valid state
    # the gate applies only commits it made itself in its own repository
    assert Controller(Source(repo.path), "c", state_dir=tmp_path / "s2", engines={},
                      verify_commit=trust_every_commit).target(base).valid
