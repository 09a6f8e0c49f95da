"""Load one cloud from a repository tree: YAML (strict) → JSON Schema → model.

Files that fail YAML or schema validation are reported and left out of the model;
rules then run on what is valid, so one bad file does not hide findings in others.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import schema as schema_layer
from .findings import Finding
from .model import Cloud, build_cloud
from .tree import Tree
from .yamlload import MAX_FILE_BYTES, Document, YamlError, load

CLOUDS = "clouds"


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


def load_cloud(tree: Tree, name: str) -> LoadedCloud:
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise RepoError(f"invalid cloud name {name!r}: a cloud is one folder clouds/<name>/")
    folder = f"{CLOUDS}/{name}"
    if tree.kind(f"{folder}/cloud.yaml") != "file":
        known = ", ".join(list_clouds(tree)) or "none"
        raise RepoError(f"no cloud {name!r}: {folder}/cloud.yaml does not exist (clouds here: {known})")
    loaded = LoadedCloud(name, folder, tree)
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
        doc = _read(tree, path, "service", loaded)
        if doc is None:
            continue
        service = entry.rsplit(".", 1)[0]
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

    if cloud_doc is not None:
        loaded.cloud = build_cloud(folder, cloud_doc.data, services)
    return loaded
