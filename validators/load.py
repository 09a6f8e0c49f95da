"""Load one cloud from a repository tree: YAML (strict) → JSON Schema → model.

Files that fail YAML or schema validation are reported and left out of the model;
rules then run on what is valid, so one bad file does not hide findings in others.
"""
from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass, field, replace

from . import schema as schema_layer
from .findings import Finding
from .model import Cloud, build_cloud
from .tree import Tree
from .yamlload import MAX_FILE_BYTES, Document, YamlError, load

CLOUDS = "clouds"
SERVICE_NAME = re.compile(schema_layer.schema("service")["properties"]["name"]["pattern"])
CLOUD_NAME = re.compile(schema_layer.schema("cloud")["properties"]["name"]["pattern"])
MAX_HOST_FILE = 1 << 20          # a known_hosts file or a certificate: far below a megabyte


class RepoError(Exception):
    """The repository cannot be read as asked (missing cloud, bad revision…): exit 2."""


@dataclass
class LoadedCloud:
    name: str
    folder: str
    tree: Tree
    cloud: Cloud | None = None
    docs: dict[str, Document] = field(default_factory=dict)
    service_data: dict[str, dict] = field(default_factory=dict)   # name -> raw YAML data
    rules: dict = field(default_factory=dict)                      # rules.yaml data
    findings: list[Finding] = field(default_factory=list)


def list_clouds(tree: Tree) -> list[str]:
    return [name for name in tree.listdir(CLOUDS)
            if tree.kind(f"{CLOUDS}/{name}/cloud.yaml") == "file"]


@functools.lru_cache(maxsize=8192)
def _parse(path: str, kind: str, content: bytes):
    """(document or None, findings) for one file's content. Cached by content: a base
    and a head commit share most files, and the controller re-reads the same blobs."""
    try:
        doc = load(content, path)
    except YamlError as err:
        return None, (err.finding,)
    return doc, tuple(doc.duplicates) + tuple(schema_layer.validate(doc, kind))


def _read(tree: Tree, path: str, kind: str, loaded: LoadedCloud) -> Document | None:
    size = tree.size(path)
    if size > MAX_FILE_BYTES:
        loaded.findings.append(Finding(
            path, None, None, "error", "yaml.too-large",
            f"file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} allowed",
            "a cloud file describes services, not data; split or trim it"))
        return None
    content = tree.read(path)
    doc, problems = _parse(path, kind, content)
    loaded.findings += problems
    if doc is None:
        return None
    loaded.docs[path] = doc
    return None if any(f.severity == "error" for f in problems) else doc


# Config files are mounted into containers, and the controller holds a commit's config in
# memory while it converges it: OpenStack's largest (policy files, api-paste.ini, CA
# bundles) stay well under 1 MiB each.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_TOTAL = 32 << 20          # every config file of one cloud together
_NOT_FOLLOWED = {"link": ("semantic.symlink", "a symbolic link"),
                 "submodule": ("semantic.submodule", "a git submodule")}


def _not_followed(tree: Tree, folder: str) -> list[Finding]:
    """Every symbolic link and submodule under the cloud folder: a commit's link can point
    anywhere (/etc/shadow) on the machine that follows it, and a submodule's files are
    not in the commit that is judged."""
    findings, stack = [], [folder]
    while stack:
        current = stack.pop()
        for entry in tree.listdir(current):
            path = f"{current}/{entry}"
            kind = tree.kind(path)
            if kind == "dir":
                stack.append(path)
            elif kind == "link":
                findings.append(Finding(path, None, None, "error", "semantic.symlink",
                                        f"a symbolic link (to {tree.link_target(path)!r}); tidegate never follows one",
                                        "commit the file itself in its place: `git rm` the link, copy the content in"))
            elif kind == "submodule":
                findings.append(Finding(path, None, None, "error", "semantic.submodule",
                                        "a git submodule: its files are not part of the commit judged here",
                                        "commit the files into the cloud folder instead of the submodule"))
    return findings


def _config_files(tree: Tree, path: str):
    """(path, size) of the regular files at or under `path`, sizes read without the content."""
    kind = tree.kind(path)
    if kind == "file":
        yield path, tree.size(path)
    elif kind == "dir":
        for entry in tree.listdir(path):
            yield from _config_files(tree, f"{path}/{entry}")


def _config_sizes(loaded: LoadedCloud) -> list[Finding]:
    findings, seen = [], {}
    for svc in loaded.cloud.services.values():
        doc = loaded.docs.get(svc.file)
        for i, mount in enumerate(svc.config):
            source = posixpath.normpath(mount.source)
            if source.startswith(("/", "..")) or doc is None:
                continue                    # semantic.config-outside reports it
            for path, size in _config_files(loaded.tree, f"{loaded.folder}/{source}"):
                seen[path] = size
                if size > MAX_CONFIG_BYTES:
                    findings.append(doc.finding(
                        ("config", i, "source"), "error", "semantic.config-too-large",
                        f"config file {path.removeprefix(loaded.folder + '/')} is {size:,} bytes, "
                        f"more than the {MAX_CONFIG_BYTES:,} allowed",
                        "config files are configuration: keep data (images, databases, archives) out of the repository"))
    total = sum(seen.values())
    if total > MAX_CONFIG_TOTAL and not findings:
        findings.append(Finding(f"{loaded.folder}/cloud.yaml", None, None, "error", "semantic.config-too-large",
                                f"the services' config files are {total:,} bytes in all, more than the "
                                f"{MAX_CONFIG_TOTAL:,} allowed per cloud",
                                "mount fewer or smaller files; keep data out of the repository"))
    return findings


def _read_host_files(loaded: LoadedCloud) -> None:
    """The contents of the credential files hosts name relative to the cloud folder
    (known_hosts, TLS): the controller reads them from the commit, as config files. A
    missing or misplaced one is left out here; semantic.host-file reports it."""
    for name, host in list(loaded.cloud.hosts.items()):
        files = []
        for key, path in host.access_paths():
            normal = posixpath.normpath(path)
            if path.startswith("/") or normal.startswith(".."):
                continue
            full = f"{loaded.folder}/{normal}"
            if loaded.tree.kind(full) == "file" and (loaded.tree.size(full) or 0) <= MAX_HOST_FILE:
                files.append((key, loaded.tree.read(full)))
        if files:
            loaded.cloud.hosts[name] = replace(host, files=tuple(files))


def load_cloud(tree: Tree, name: str) -> LoadedCloud:
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise RepoError(f"invalid cloud name {name!r}: a cloud is one folder clouds/<name>/")
    folder = f"{CLOUDS}/{name}"
    for path in (folder, f"{folder}/cloud.yaml"):
        if tree.kind(path) in _NOT_FOLLOWED:
            raise RepoError(f"{path} is {_NOT_FOLLOWED[tree.kind(path)][1]}: tidegate never follows one; "
                            "commit the cloud's files themselves")
    if tree.kind(f"{folder}/cloud.yaml") != "file":
        known = ", ".join(list_clouds(tree)) or "none"
        raise RepoError(f"no cloud {name!r}: {folder}/cloud.yaml does not exist (clouds here: {known})")
    loaded = LoadedCloud(name, folder, tree)
    loaded.findings += _not_followed(tree, folder)
    cloud_doc = _read(tree, f"{folder}/cloud.yaml", "cloud", loaded)

    services: dict[str, tuple[dict, str]] = {}
    for entry in tree.listdir(f"{folder}/services"):
        path = f"{folder}/services/{entry}"
        if tree.kind(path) != "file":
            continue
        if not entry.endswith((".yaml", ".yml")):
            loaded.findings.append(Finding(path, None, None, "warning", "semantic.stray-file",
                                           "not a .yaml file; ignored",
                                           "service files are services/<name>.yaml"))
            continue
        service = entry.rsplit(".", 1)[0]
        if not SERVICE_NAME.fullmatch(service):
            # the name becomes container names, DNS aliases and labels: never let one in
            loaded.findings.append(Finding(path, None, None, "error", "semantic.service-file-name",
                                           f"{service!r} is not a service name; the file is ignored",
                                           "name the file services/<name>.yaml with a lowercase letter first, "
                                           "then lowercase letters, digits or '-' (at most 40)"))
            continue
        doc = _read(tree, path, "service", loaded)
        if doc is None:
            continue
        if service in services:
            loaded.findings.append(doc.finding((), "error", "semantic.duplicate-service",
                                               f"service {service!r} is defined by two files",
                                               "keep one of services/<name>.yaml and .yml"))
            continue
        services[service] = (doc.data, path)
        loaded.service_data[service] = doc.data

    if tree.kind(f"{folder}/rules.yaml") == "file":
        rules_doc = _read(tree, f"{folder}/rules.yaml", "rules", loaded)
        if rules_doc is not None:
            loaded.rules = rules_doc.data or {}

    # the image recipes services build from: run as root by whoever builds them (the gate
    # on its CI runner), so their schema (files: confined to images/ and to the image) is
    # judged with the change, before anything is built
    for recipe in sorted({data["build"] for data, _ in services.values()
                          if isinstance(data, dict) and isinstance(data.get("build"), str)}):
        path = f"{folder}/images/{recipe}.yaml"
        if "/" not in recipe and tree.kind(path) == "file":
            _read(tree, path, "recipe", loaded)

    if cloud_doc is not None:
        loaded.cloud = build_cloud(folder, cloud_doc.data, services)
        loaded.findings += _config_sizes(loaded)
        _read_host_files(loaded)
    return loaded
