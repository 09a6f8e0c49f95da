"""Safe YAML loading that keeps where every value came from.

What a cloud repository may contain is data, so loading is strict:
- only plain YAML types (no `!!python/...` or other tags),
- no duplicate keys (YAML silently keeps the last one; an operator never means that),
- bounded size and bounded alias expansion (no "billion laughs"),
- every value's line and column kept (`Document.mark(path)`), so a finding from the
  schema or a rule points at the right line of the right file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .findings import Finding

MAX_FILE_BYTES = 1 << 20          # 1 MiB: a service file is a few hundred bytes
MAX_EXPANDED_NODES = 100_000      # nodes after expanding aliases
MAX_DEPTH = 64

Path = tuple  # of str | int


class YamlError(Exception):
    def __init__(self, finding: Finding):
        super().__init__(finding.render())
        self.finding = finding


@dataclass
class Document:
    """A loaded YAML file: its data and the (line, column) of every key and value."""
    file: str
    data: object
    marks: dict = field(default_factory=dict)        # path -> (line, col) of the value
    key_marks: dict = field(default_factory=dict)    # path -> (line, col) of its key
    duplicates: list = field(default_factory=list)   # Findings for duplicate keys

    def mark(self, path: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """Line/column of the value at `path` (of its key with key=True); walks up to
        the nearest ancestor that has a mark, so a missing field points at its parent."""
        path = tuple(path)
        table = self.key_marks if key else self.marks
        while True:
            if path in table:
                return table[path]
            if key and path in self.marks:
                return self.marks[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def finding(self, path: Path, severity: str, rule: str, message: str, hint: str = "",
                *, key: bool = False) -> Finding:
        line, col = self.mark(path, key=key)
        return Finding(self.file, line, col, severity, rule, message, hint)


# libyaml's parser when present (about 10x faster); the Python one otherwise.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):
    """SafeLoader without the timestamp resolver (2025-01-01 stays a string) and with
    no tags beyond the core schema."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_ALLOWED_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge",
}


def _mark(node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _check_nodes(root, file: str) -> None:
    """Reject foreign tags, excessive depth and alias expansion before constructing."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise YamlError(Finding(file, *_mark(node), "error", "yaml.too-deep",
                                    f"nesting deeper than {MAX_DEPTH} levels",
                                    "flatten the structure; no tidegate file needs this depth"))
        if node.tag not in _ALLOWED_TAGS:
            raise YamlError(Finding(file, *_mark(node), "error", "yaml.tag",
                                    f"tag {node.tag!r} is not allowed",
                                    "use plain YAML values; tags such as !!python/object are never executed"))
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlError(Finding(file, *_mark(node), "error", "yaml.recursive",
                                    "recursive alias", "an anchor may not contain an alias to itself"))
        active.add(key)
        if isinstance(node, ScalarNode):
            total = 1
        elif isinstance(node, SequenceNode):
            total = 1 + sum(size(item, depth + 1) for item in node.value)
        else:
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        active.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise YamlError(Finding(file, *_mark(node), "error", "yaml.alias-bomb",
                                    f"aliases expand to more than {MAX_EXPANDED_NODES} values",
                                    "write the values out or use fewer nested aliases"))
        sizes[key] = total
        return total

    size(root, 0)


def _walk_marks(node, path: Path, doc: Document) -> None:
    """Record marks of every value and detect duplicate keys, following the data's shape."""
    doc.marks.setdefault(path, _mark(node))
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _walk_marks(item, path + (i,), doc)
    elif isinstance(node, MappingNode):
        seen: dict[object, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # `<<: *defaults`: merged keys come from the anchor; explicit keys win.
                merged = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in merged:
                    if isinstance(source, MappingNode):
                        for k, v in source.value:
                            if isinstance(k, ScalarNode) and (path + (k.value,)) not in doc.marks:
                                _walk_marks(v, path + (k.value,), doc)
                continue
            if not isinstance(key_node, ScalarNode):
                continue
            key = key_node.value
            if key in seen:
                doc.duplicates.append(Finding(
                    doc.file, *_mark(key_node), "error", "yaml.duplicate-key",
                    f"duplicate key {key!r} (first at line {seen[key][0]})",
                    "YAML keeps only the last value; remove one of them"))
            seen[key] = _mark(key_node)
            doc.key_marks[path + (key,)] = _mark(key_node)
            doc.marks.pop(path + (key,), None)
            _walk_marks(value_node, path + (key,), doc)


def load(text: bytes | str, file: str) -> Document:
    """Parse one YAML document. Raises YamlError (carrying a Finding) on bad input."""
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise YamlError(Finding(file, None, None, "error", "yaml.too-large",
                                    f"file is {len(text):,} bytes, more than the {MAX_FILE_BYTES:,} allowed",
                                    "a cloud file describes services, not data; split or trim it"))
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            line = text.count(b"\n", 0, err.start) + 1
            column = err.start - (text.rfind(b"\n", 0, err.start) + 1) + 1
            raise YamlError(Finding(file, line, column, "error", "yaml.encoding",
                                    f"not UTF-8 text ({err.reason} at byte {err.start})",
                                    "save the file as UTF-8")) from None
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return Document(file, None)
        _check_nodes(root, file)
        doc = Document(file, None)
        _walk_marks(root, (), doc)
        doc.data = loader.construct_document(root)
        return doc
    except YamlError:
        raise
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = " ".join(p for p in (err.context, err.problem) if p)
        if "nesting depth" in problem:     # libyaml's own bound
            raise YamlError(Finding(file, line, col, "error", "yaml.too-deep",
                                    "nesting too deep to parse", "flatten the structure")) from None
        raise YamlError(Finding(file, line, col, "error", "yaml.syntax",
                                f"invalid YAML: {problem}",
                                "fix the syntax at this position (indentation, quotes, colons)")) from None
    except yaml.YAMLError as err:
        raise YamlError(Finding(file, None, None, "error", "yaml.syntax",
                                f"invalid YAML: {err}", "fix the file's syntax")) from None
    except RecursionError:
        raise YamlError(Finding(file, None, None, "error", "yaml.too-deep",
                                "nesting too deep to parse", "flatten the structure")) from None
    finally:
        loader.dispose()
