"""Layer 2 rules about secrets: no password in plain text, every reference resolves,
every secret file is age and encrypted to the cloud's recipients (validators.secrets)."""
from __future__ import annotations

import posixpath
import re

from . import secrets
from .load import MAX_CONFIG_BYTES, MAX_CONFIG_TOTAL
from .rules import Hit, rule

# Every quantifier is bounded and lines longer than MAX_LINE are not scanned: a config file
# of 1 MiB without a newline must not cost the check quadratic time (a password sits on
# a short line). `password = x`, `admin_pass: x`, `secret=x` in an ini / yaml / properties file:
_ASSIGNMENT = re.compile(r"^\s{0,64}[\w.-]{0,64}?(password|passwd|_pass|secret)\s{0,8}[=:]\s{0,8}(?P<value>\S.{0,1024}?)\s*$",
                         re.I)
# a URL with credentials: mysql+pymysql://keystone:PASS@host/db, amqp://u:PASS@h
_URL = re.compile(r"[a-z][a-z0-9+.-]{0,31}://[^\s:/@]{1,128}:(?P<value>[^\s@/]{1,512})@", re.I)
MAX_LINE = 4096
_SQL = re.compile(r"IDENTIFIED\s+BY\s+(?P<value>'[^']*'|\"[^\"]*\")", re.I)
_ENV = re.compile(r"(^|_)(PASSWORD|PASSWD|PASS|SECRET|SECRET_KEY|TOKEN)$")
_ARG = re.compile(r"^--?[\w-]*(password|passwd|secret)$", re.I)


def _literal(value: str) -> bool:
    """A value that is the secret itself, not a reference to where it is kept."""
    value = value.strip().strip("'\"")
    return bool(value) and not value.startswith(("$", "<", "%(")) and value.lower() not in ("none", "null", "")


def _policy_severity(ctx) -> str:
    return "error" if ctx.cloud.policy.secrets == "required" else "warning"


def _config_files(tree, path: str, rel: str = ""):
    kind = tree.kind(path)
    if kind == "file":
        yield path
    elif kind == "dir":
        for name in tree.listdir(path):
            yield from _config_files(tree, f"{path}/{name}")


def mounted_files(ctx):
    """(service, mount index, mount, repository path) of every config file a service mounts;
    none while a file or the total is over its size limit (semantic.config-too-large
    refuses the cloud, and such files are never read)."""
    found, sizes = [], {}
    for svc in ctx.cloud.services.values():
        for i, mount in enumerate(svc.config):
            source = posixpath.normpath(mount.source)
            if source.startswith(("/", "..")):
                continue                    # semantic.config-outside reports it
            for path in _config_files(ctx.tree, f"{ctx.cloud.folder}/{source}"):
                sizes[path] = ctx.tree.size(path)
                found.append((svc, i, mount, path))
    if any(s > MAX_CONFIG_BYTES for s in sizes.values()) or sum(sizes.values()) > MAX_CONFIG_TOTAL:
        return []
    return found


def content(ctx, path: str) -> bytes:
    """A config file's bytes, read once per check (several rules and services read it)."""
    cache = ctx.__dict__.setdefault("_config_content", {})
    if path not in cache:
        cache[path] = ctx.tree.read(path)
    return cache[path]


def plain_text_lines(text: str):
    """(line number, what) of each password-looking literal in a config file's text."""
    for n, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE or line.lstrip().startswith(("#", ";", "--", "//")) or "${secret:" in line:
            continue
        m = _ASSIGNMENT.match(line)
        if m and _literal(m.group("value")):
            yield n, f"{m.group(1).lower()} in plain text"
            continue
        m = _URL.search(line) or _SQL.search(line)
        if m and _literal(m.group("value")):
            yield n, "a URL with a literal password" if m.re is _URL else "an SQL password in plain text"


@rule("semantic.secret-plain-text", "semantic", "warning",
      "no password in plain text in a config file, environment value or job argument "
      "(an error under policy.secrets: required): refer to a secret")
def plain_text(ctx):
    severity = _policy_severity(ctx)
    hint = ("keep it encrypted in secrets/<name>.age (tidegate secrets add NAME) and refer to it: "
            "${secret:NAME} in a config file marked template: true, {secret: NAME} in the environment")
    seen = set()
    for svc, _i, _mount, path in mounted_files(ctx):
        if path in seen:
            continue
        seen.add(path)
        text = content(ctx, path).decode("utf-8", "replace")
        for line, what in plain_text_lines(text):
            yield Hit(path, line=line, message=f"{what} (used by {svc.name})", hint=hint, severity=severity)
    for svc in ctx.cloud.services.values():
        for name, value in svc.environment:
            if isinstance(value, str) and _ENV.search(name.upper()) and _literal(value):
                yield Hit(svc.file, ("environment", name), f"environment {name} holds a password in plain text",
                          hint, severity=severity)
        jobs = [("bootstrap", i, j) for i, j in enumerate(svc.bootstrap)]
        jobs += [(phase, i, j) for phase, js in svc.upgrade.jobs for i, j in enumerate(js)]
        for phase, i, job in jobs:
            words = list(job.command or ())
            if words[:2] == ["/bin/sh", "-c"]:
                words = words[2:3][0].split() if len(words) > 2 else []
            for k, word in enumerate(words[:-1]):
                if _ARG.match(word) and _literal(words[k + 1]):
                    where = ("bootstrap", i, "command") if phase == "bootstrap" else ("upgrade", "jobs", phase, i, "command")
                    yield Hit(svc.file, where, f"job {job.name}: {word} is given a password in plain text",
                              "read it from a template file that refers to a secret, e.g. "
                              f"sh -c '... {word} \"$(cat /etc/<svc>/admin-password)\"'", severity=severity)
                    break


@rule("semantic.secret-unknown", "semantic", "error",
      "every ${secret:NAME} and {secret: NAME} names a file secrets/NAME.age of the cloud")
def unknown(ctx):
    known = secrets.files(ctx.tree, ctx.cloud.folder)
    have = f"secrets here: {', '.join(sorted(known))}" if known else "the cloud has no secrets/ folder"
    for svc, i, mount, path in mounted_files(ctx):
        if not mount.template:
            continue
        for name in secrets.references(content(ctx, path)):
            if name not in known:
                yield Hit(path, message=f"${{secret:{name}}}: no secret {name!r} ({svc.name})",
                          hint=f"add it with `tidegate secrets add {name}` ({have})" if secrets.NAME.match(name)
                          else "a secret's name is lowercase letters, digits and '-'")
    for svc in ctx.cloud.services.values():
        for where, name in secrets.service_references(svc):
            if name not in known:
                yield Hit(svc.file, where, f"{where[0]}: no secret {name!r}",
                          f"add it with `tidegate secrets add {name}` ({have})")


@rule("semantic.secret-not-template", "semantic", "warning",
      "a config file that writes ${secret:NAME} is marked template: true (else it is delivered as written)")
def not_template(ctx):
    for svc, i, mount, path in mounted_files(ctx):
        if not mount.template and secrets.references(content(ctx, path)):
            yield Hit(svc.file, ("config", i, "source"),
                      f"{path.removeprefix(ctx.cloud.folder + '/')} refers to secrets but is not a template: "
                      "the container would get the reference, not the value",
                      "add template: true to the config entry")


@rule("semantic.secret-invalid", "semantic", "error",
      "every secrets/*.age file is an age file named after its secret, at most 64 KiB")
def invalid(ctx):
    for name, path in sorted(secrets.files(ctx.tree, ctx.cloud.folder).items()):
        if not secrets.NAME.match(name):
            yield Hit(path, message=f"{name!r} is not a secret name",
                      hint="rename it: lowercase letters, digits and '-', e.g. keystone-db.age")
            continue
        if ctx.tree.size(path) > secrets.MAX_SECRET_BYTES:
            yield Hit(path, message=f"a secret of {ctx.tree.size(path):,} bytes, more than {secrets.MAX_SECRET_BYTES:,}",
                      hint="a secret is a password, key or certificate")
            continue
        try:
            secrets.header(content(ctx, path))
        except secrets.SecretFormatError as err:
            yield Hit(path, message=str(err), hint="write it again with `tidegate secrets add --force`")


@rule("semantic.secret-recipients", "semantic", "error",
      "a cloud whose services use secrets lists the controller's key among its recipients, "
      "and every secret is encrypted to each recipient")
def recipients(ctx):
    used = _used(ctx)
    cloud_file = f"{ctx.cloud.folder}/cloud.yaml"
    names = dict(ctx.cloud.recipients)
    if used and "controller" not in names:
        yield Hit(cloud_file, ("secrets",) if names else (),
                  f"services use secrets ({', '.join(sorted(used))}) but the controller's key is not a recipient",
                  "add secrets: {recipients: {controller: age1…}} (the controller's public key: "
                  "age-keygen -y KEYFILE), then `tidegate secrets reencrypt`")
    distinct = len(set(names.values()))
    if not distinct:
        return
    for name, path in sorted(secrets.files(ctx.tree, ctx.cloud.folder).items()):
        try:
            head = secrets.header(content(ctx, path))
        except secrets.SecretFormatError:
            continue                        # semantic.secret-invalid reports it
        if len(head.stanzas) != distinct or any(s != "X25519" for s in head.stanzas):
            yield Hit(path, message=f"encrypted to {len(head.stanzas)} key(s), but cloud.yaml lists {distinct} "
                                    "recipient(s): some recipient cannot decrypt it, or a removed one still can",
                      hint="tidegate secrets reencrypt (with a key that can decrypt it)")


def _used(ctx) -> set[str]:
    used = set()
    for _svc, _i, mount, path in mounted_files(ctx):
        if mount.template:
            used.update(secrets.references(content(ctx, path)))
    for svc in ctx.cloud.services.values():
        used.update(name for _where, name in secrets.service_references(svc))
    return used
