"""The cloud's secrets as files and references — format only, no cryptography here.

A secret is one age-encrypted file, `clouds/<cloud>/secrets/<name>.age` (armored or
binary, as the `age` tool writes it), encrypted to every recipient of cloud.yaml's
`secrets.recipients`. Config files marked `template` refer to one as `${secret:NAME}`,
environment values as `{secret: NAME}`. What a reference costs a container is the
secret's ciphertext: the spec hash covers it, so a changed secret rolls exactly the
services that use it.

Without a private key nobody can tell which recipient an age stanza is for, so the
checks here are what the files themselves show (a valid age header, one X25519 stanza per
recipient); decrypting with the controller's or the gate's key is controller.secrets'.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

FOLDER = "secrets"
SUFFIX = ".age"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# `${secret:NAME}`; `$${secret:NAME}` is the literal text `${secret:NAME}`
REFERENCE = re.compile(rb"\$(\$?)\{secret:([^}\s]*)\}")
MAGIC = b"age-encryption.org/v1\n"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
MAX_SECRET_BYTES = 64 << 10          # a password, a key or a certificate: not data


class SecretFormatError(ValueError):
    """A secret file that is not an age file (one line: what is wrong)."""


@dataclass(frozen=True)
class Header:
    stanzas: tuple[str, ...]         # stanza types, e.g. ("X25519", "X25519")


def dearmor(data: bytes) -> bytes:
    """The binary age file of an armored one (binary input is returned as it is)."""
    text = data.strip()
    if not text.startswith(ARMOR_BEGIN):
        return data
    if not text.endswith(ARMOR_END):
        raise SecretFormatError("armored age file without its END line (cut short?)")
    body = b"".join(text[len(ARMOR_BEGIN):-len(ARMOR_END)].split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SecretFormatError(f"armored age file is not base64 ({err})") from None


def header(data: bytes) -> Header:
    """The recipient stanzas of an age file; SecretFormatError when it is not one."""
    raw = dearmor(data)
    if not raw.startswith(MAGIC):
        raise SecretFormatError("not an age file (it does not start with age-encryption.org/v1); "
                                "encrypt it with `tidegate secrets add` or `age -a -R recipients.txt`")
    stanzas = []
    for line in raw[len(MAGIC):].split(b"\n"):
        if line.startswith(b"---"):
            return Header(tuple(stanzas))
        if line.startswith(b"-> "):
            parts = line[3:].split(b" ")
            if not parts or not parts[0]:
                raise SecretFormatError("an age stanza without a type")
            kind = parts[0].decode("ascii", "replace")
            if not kind.endswith("-grease"):    # random stanzas an encryptor may add (age spec)
                stanzas.append(kind)
    raise SecretFormatError("age header without its MAC line (the file is cut short)")


def path(folder: str, name: str) -> str:
    return f"{folder}/{FOLDER}/{name}{SUFFIX}"


def files(tree, folder: str) -> dict[str, str]:
    """name -> repository path of every secrets/*.age file of the cloud folder."""
    base = f"{folder}/{FOLDER}"
    if tree.kind(base) != "dir":
        return {}
    return {entry[:-len(SUFFIX)]: f"{base}/{entry}" for entry in tree.listdir(base)
            if entry.endswith(SUFFIX) and tree.kind(f"{base}/{entry}") == "file"}


def references(content: bytes) -> list[str]:
    """Secret names a template refers to, in order of first use (literals `$${…}` are not)."""
    out = []
    for m in REFERENCE.finditer(content):
        name = m.group(2).decode("utf-8", "replace")
        if not m.group(1) and name not in out:
            out.append(name)
    return out


def render(content: bytes, value) -> bytes:
    """`content` with each `${secret:NAME}` replaced by `value(NAME)` (bytes) and each
    `$${secret:NAME}` by the literal `${secret:NAME}`."""
    def one(m):
        if m.group(1):
            return m.group(0)[1:]
        return value(m.group(2).decode())
    return REFERENCE.sub(one, content)


def env_references(svc) -> list[tuple[str, str]]:
    """(variable, secret name) of a service's `{secret: NAME}` environment values."""
    return [(k, v.secret) for k, v in svc.environment if not isinstance(v, str)]


def service_references(svc) -> list[tuple[tuple, str]]:
    """(YAML path, secret name) of every secret a service names in its own file:
    environment values and `secrets:` files (templates are read from their files)."""
    out = [(("environment", var, "secret"), name) for var, name in env_references(svc)]
    out += [(("secrets", i, "name"), s.name) for i, s in enumerate(svc.secret_files)]
    return out
