"""Decrypting, encrypting and rendering the cloud's secrets (age, through pyrage).

The file format and the references are validators.secrets'; this module holds the keys.
A decrypted value lives only in this process's memory: a `Vault` decrypts on first use
and keeps the plain value in a dict, never on disk, never in its repr. The controller's
key is an age identity file (`age-keygen -o KEYFILE`) named by `--age-key` or
`TIDEGATE_AGE_KEY_FILE` (the systemd env file); the gate's is the CI key.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import pyrage

from validators import secrets as fmt
from validators.findings import Finding

KEY_ENV = "TIDEGATE_AGE_KEY_FILE"


class SecretError(Exception):
    """A key or secret that cannot be used (one line naming the file)."""


def load_identities(path: str | os.PathLike) -> list:
    """The age identities of an identity file (`# comments` and blank lines skipped)."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as err:
        raise SecretError(f"age key {path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise SecretError(f"age key {path}:{n}: not an age secret key (AGE-SECRET-KEY-1…)") from None
    if not out:
        raise SecretError(f"age key {path}: holds no key")
    return out


def identities_from_env() -> list:
    """The key named by $TIDEGATE_AGE_KEY_FILE, or none."""
    path = os.environ.get(KEY_ENV)
    return load_identities(path) if path else []


def public_keys(identities) -> set[str]:
    return {str(i.to_public()) for i in identities}


def generate() -> tuple[str, str]:
    """(secret key text, public key) of a new age identity."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def encrypt(value: bytes, recipients) -> bytes:
    """`value` encrypted (armored, as `age -a` writes) to each distinct recipient."""
    keys = []
    for r in dict.fromkeys(recipients):
        try:
            keys.append(pyrage.x25519.Recipient.from_str(r))
        except pyrage.RecipientError:
            raise SecretError(f"recipient {r!r} is not an age public key (age1…)") from None
    if not keys:
        raise SecretError("no recipients: list them under secrets.recipients in cloud.yaml")
    return pyrage.encrypt(value, keys, armored=True)


def decrypt(ciphertext: bytes, identities, where: str) -> bytes:
    if not identities:
        raise SecretError(f"{where}: no age key to decrypt it with (--age-key or ${KEY_ENV})")
    try:
        fmt.header(ciphertext)
        return pyrage.decrypt(ciphertext, list(identities))
    except fmt.SecretFormatError as err:
        raise SecretError(f"{where}: {err}") from None
    except pyrage.DecryptError as err:
        reason = "this key is not one of its recipients" if "No matching keys" in str(err) else str(err)
        raise SecretError(f"{where}: cannot decrypt it ({reason})") from None


@dataclass(eq=False)
class Vault:
    """The secrets of one cloud at one commit: ciphertexts read from the tree, values
    decrypted on first use and kept in memory only."""
    folder: str
    ciphertexts: dict                                  # name -> bytes (age file)
    identities: list = field(default_factory=list, repr=False)
    _values: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, tree, folder: str, identities=()) -> "Vault":
        found = fmt.files(tree, folder)
        return cls(folder, {name: tree.read(path) for name, path in found.items()}, list(identities))

    def digest(self, name: str) -> str:
        """What the spec hash covers: the ciphertext, so a changed secret rolls its users."""
        return hashlib.sha256(self.ciphertexts[name]).hexdigest()

    def value(self, name: str) -> bytes:
        if name not in self._values:
            if name not in self.ciphertexts:
                raise SecretError(f"{fmt.path(self.folder, name)}: no such secret")
            self._values[name] = decrypt(self.ciphertexts[name], self.identities, fmt.path(self.folder, name))
        return self._values[name]

    def text(self, name: str) -> str:
        return self.value(name).decode("utf-8", "replace")

    def problems(self, names) -> list[Finding]:
        """One `semantic.secret-undecryptable` finding per secret of `names` this vault's
        key cannot decrypt (the controller's key is not a recipient, or no key at all)."""
        out = []
        for name in sorted(set(names)):
            try:
                self.value(name)
            except SecretError as err:
                out.append(Finding(fmt.path(self.folder, name), None, None, "error", "semantic.secret-undecryptable",
                                   str(err).removeprefix(fmt.path(self.folder, name) + ": "),
                                   "encrypt it to this controller's key too: add the key's public half to "
                                   "cloud.yaml secrets.recipients and run `tidegate secrets reencrypt`"))
        return out
