"""Images without a registry: Debian packages → rootfs (mmdebstrap) → image, on any engine.

A recipe is `clouds/<cloud>/images/<name>.yaml`:

    name: localhost/tidegate/keystone:2025.1     # the image reference services use
    suite: trixie                                 # bookworm | trixie | forky
    packages: [keystone, python3-pymysql, uwsgi, uwsgi-plugin-python3]
    files: {/usr/local/bin/entry.sh: entry.sh}    # destination: source (relative to images/)
    run: ["mkdir -p /var/lib/keystone"]           # shell commands run in the rootfs (chroot)
    env: {LANG: C.UTF-8}
    workdir: /
    user: keystone
    command: [uwsgi, --http-socket, ":5000", ...]

or a build context `clouds/<cloud>/images/<name>/Containerfile` (its first line may name
the image: `# image: localhost/tidegate/app:1`) whose FROM may name another recipe's image:
that recipe is its base, built first, and its hash is part of the context's hash (a
changed base rebuilds its dependants).

Everything happens offline: mmdebstrap installs the packages from the Debian mirror this
machine already uses, files are copied in and `run` commands run in a chroot, so no
container is needed to build. The rootfs is imported, and a metadata-only Containerfile
(ENV, WORKDIR, USER, CMD, LABEL — no RUN) gives the image its command on both engines.

Every image is tagged twice: with its name (what services use) and with its recipe's hash
(`<repo>:recipe-<hash>`), and carries the hash as the `tidegate.recipe-hash` label. The
hash tag decides "up to date": two recipes that name the same image with different
contents (two clouds' keystone:2025.1 on one engine) each keep their own build, and
building the other one again only moves the name tag back. The rootfs tarball is cached
on disk by the hash of what it depends on.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import yaml

from validators.schema import InvalidFile, load_checked

from .engines.base import Engine, EngineError, EngineUnreachable, ImageInfo
from .engines.common import split_ref

BUILDER_VERSION = "1"          # bump to rebuild every image
LABEL_RECIPE = "tidegate.recipe-hash"
HASH_TAG = "recipe-"           # <repo>:recipe-<hash>: the tag that says which recipe built an image
# Per-suite mmdebstrap options: facts about the mirrors we meet.
SUITES = {
    "bookworm": {"aptopts": []},
    "trixie": {"aptopts": []},
    # forky's Release file is past its Valid-Until on the mirror; there is no forky-security.
    "forky": {"aptopts": ['Acquire::Check-Valid-Until "false"']},
}
Log = Callable[[str], None]


class BuildError(Exception):
    """A recipe could not be built; the message is one line, `log` the tail."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


def cache_dir() -> Path:
    path = Path(os.environ.get("TIDEGATE_CACHE", "/var/tmp/tidegate-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (or $TIDEGATE_DEBIAN_MIRROR)."""
    env = os.environ.get("TIDEGATE_DEBIAN_MIRROR")
    if env:
        return env
    candidates = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        candidates += re.findall(r"^URIs:\s*(\S+)", text, re.M)
        candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M)
    for uri in candidates:
        if "security" not in uri and "debian" in uri:
            return uri.rstrip("/")
    raise BuildError("no Debian mirror found in /etc/apt sources; set TIDEGATE_DEBIAN_MIRROR")


@dataclass(frozen=True)
class Recipe:
    name: str                       # recipe name (file stem)
    image: str                      # image reference
    folder: str                     # the images/ folder (sources of files)
    suite: str | None = None
    packages: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()     # (destination, source path)
    run: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    user: str | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    containerfile: str | None = None            # a Containerfile context instead
    bases: tuple["Recipe", ...] = ()             # recipes whose images the context's FROM names
    data: dict = field(default_factory=dict, compare=False)

    def rootfs_hash(self) -> str:
        """What the rootfs tarball depends on."""
        h = hashlib.sha256(json.dumps([BUILDER_VERSION, self.suite, sorted(self.packages), list(self.run),
                                       SUITES.get(self.suite or "", {}), debian_mirror()]).encode())
        for dest, src in self.files:
            h.update(f"\0{dest}\0".encode())
            h.update(Path(self.folder, src).read_bytes())
        return h.hexdigest()[:16]

    def hash(self) -> str:
        """What the image depends on (rootfs and metadata, or the whole context and the
        hashes of the recipes its FROM names)."""
        h = hashlib.sha256(BUILDER_VERSION.encode())
        if self.containerfile:
            ctx = Path(self.containerfile).parent
            for p in sorted(ctx.rglob("*")):
                if p.is_file():
                    h.update(str(p.relative_to(ctx)).encode() + b"\0" + p.read_bytes())
            h.update(self.image.encode())
            for base in self.bases:
                h.update(f"\0base\0{base.name}\0{base.hash()}".encode())
        else:
            h.update(self.rootfs_hash().encode())
            h.update(json.dumps([self.image, list(self.env), self.workdir, self.user, self.command,
                                 self.entrypoint]).encode())
        return h.hexdigest()[:16]

    def hash_ref(self) -> str:
        """The image's second tag, naming the recipe hash that built it."""
        return f"{split_ref(self.image)[0]}:{HASH_TAG}{self.hash()}"


def _same_image(a: str, b: str) -> bool:
    return split_ref(a) == split_ref(b)


def _context_image(context: Path, name: str) -> str:
    first = context.read_text().split("\n", 1)[0]
    image = re.search(r"#\s*image:\s*(\S+)", first)
    return image.group(1) if image else f"localhost/tidegate/{name}:latest"


def _from_refs(containerfile: Path) -> list[str]:
    """The images a Containerfile's FROM lines name (flags such as --platform skipped)."""
    refs = []
    for line in containerfile.read_text().splitlines():
        m = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)", line, re.I)
        if m and m.group(1) not in refs:
            refs.append(m.group(1))
    return refs


def _image_of(folder: Path, name: str) -> str | None:
    """The image a recipe of `folder` makes, read cheaply (None when unreadable)."""
    context = folder / name / "Containerfile"
    path = folder / f"{name}.yaml"
    if context.is_file() and not path.exists():
        return _context_image(context, name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    return str(data["name"]) if isinstance(data, dict) and "name" in data else None


def load_recipe(images_dir: str | os.PathLike, name: str, _chain: tuple[str, ...] = ()) -> Recipe:
    folder = Path(images_dir)
    context = folder / name / "Containerfile"
    path = folder / f"{name}.yaml"
    if context.is_file() and not path.exists():
        image = _context_image(context, name)
        bases = []
        others = {other: _image_of(folder, other) for other in list_recipes(folder) if other != name}
        for ref in _from_refs(context):
            makers = [other for other, made in others.items() if made and _same_image(made, ref)]
            if len(makers) > 1:
                raise BuildError(f"{context}: FROM {ref} is the image of several recipes ({', '.join(makers)})")
            if makers:
                if makers[0] in _chain + (name,):
                    cycle = " → ".join(_chain + (name, makers[0]))
                    raise BuildError(f"{context}: recipes build on each other in a circle: {cycle}")
                bases.append(load_recipe(folder, makers[0], _chain + (name,)))
        return Recipe(name, image, str(folder), containerfile=str(context), bases=tuple(bases))
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"no image recipe {name!r} in {folder} (images/{name}.yaml or images/{name}/Containerfile)") from None
    try:
        data = load_checked(text, str(path), "recipe")
    except InvalidFile as err:
        raise BuildError(str(err)) from None
    for dest, src in (data.get("files") or {}).items():
        confine_file(folder, path, str(dest), str(src))
    def argv(value):
        if value is None:
            return None
        return ("/bin/sh", "-c", value) if isinstance(value, str) else tuple(str(v) for v in value)
    return Recipe(
        name=name, image=str(data["name"]), folder=str(folder), suite=data["suite"],
        packages=tuple(data.get("packages") or ()),
        files=tuple(sorted((str(k), str(v)) for k, v in (data.get("files") or {}).items())),
        run=tuple(data.get("run") or ()),
        env=tuple(sorted((str(k), str(v)) for k, v in (data.get("env") or {}).items())),
        workdir=data.get("workdir"), user=data.get("user"),
        command=argv(data.get("command")), entrypoint=argv(data.get("entrypoint")), data=data)


def confine_file(folder: Path, recipe: Path, dest: str, src: str) -> None:
    """A recipe's `files:` entry may copy only a file of the cloud's images/ folder, and
    only to a path inside the image: the builder runs as root on the CI runner, and a
    recipe from a pull request must not copy /etc/shadow (or `../../x`) into an image, nor
    write outside the root filesystem it builds."""
    where = f"{recipe}: files.{dest}"
    if not dest.startswith("/") or ".." in PurePosixPath(dest).parts:
        raise BuildError(f"{where}: the destination must be an absolute path inside the image, without '..'")
    root = folder.resolve()
    source = (folder / src).resolve()
    if PurePosixPath(src).is_absolute() or not source.is_relative_to(root):
        raise BuildError(f"{where}: the source {src!r} is outside the cloud's images/ folder; "
                         "copy the file into images/ and name it relative to that folder")
    if not source.is_file():
        raise BuildError(f"{where}: the source {src!r} is not a file in images/")


def list_recipes(images_dir: str | os.PathLike) -> list[str]:
    folder = Path(images_dir)
    if not folder.is_dir():
        return []
    names = {p.stem for p in folder.glob("*.yaml")}
    names |= {p.parent.name for p in folder.glob("*/Containerfile")}
    return sorted(names)


def build_order(images_dir: str | os.PathLike, names: list[str] | None = None) -> list[Recipe]:
    """The recipes `names` (default: all) and the bases they build on, every base before
    the recipes that build on it (otherwise alphabetical)."""
    order: list[Recipe] = []
    seen: set[str] = set()

    def visit(recipe: Recipe) -> None:
        if recipe.name in seen:
            return
        seen.add(recipe.name)
        for base in recipe.bases:
            visit(base)
        order.append(recipe)
    for name in names if names else list_recipes(images_dir):
        visit(load_recipe(images_dir, name))
    return order


@contextmanager
def _locked(path: Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_rootfs(recipe: Recipe, log: Log) -> Path:
    """The recipe's rootfs tarball, from the cache or made by mmdebstrap."""
    key = recipe.rootfs_hash()
    out = cache_dir() / f"rootfs-{recipe.suite}-{key}.tar"
    with _locked(cache_dir() / f"rootfs-{key}.lock"):
        if out.exists():
            log(f"rootfs {out.name}: cached")
            return out
        argv = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar", "--quiet",
                "--include=" + ",".join(recipe.packages) if recipe.packages else "--include=ca-certificates"]
        argv.append("--dpkgopt=path-exclude=/usr/share/{doc,man,locale}/*")
        for opt in SUITES[recipe.suite]["aptopts"]:
            argv.append(f"--aptopt={opt}")
        for dest, src in recipe.files:
            source = Path(recipe.folder, src).resolve()
            argv.append(f"--customize-hook=mkdir -p \"$1\"{shlex.quote(os.path.dirname(dest))}")
            argv.append(f"--customize-hook=copy-in {shlex.quote(str(source))} {shlex.quote(os.path.dirname(dest) or '/')}")
            if os.path.basename(dest) != source.name:
                argv.append(f"--customize-hook=mv \"$1\"{shlex.quote(os.path.dirname(dest).rstrip('/') + '/' + source.name)} \"$1\"{shlex.quote(dest)}")
        for command in recipe.run:
            argv.append(f"--customize-hook=chroot \"$1\" /bin/sh -ec {shlex.quote(command)}")
        # leave no apt lists behind: smaller images, same content
        argv.append("--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin")
        tmp = out.with_suffix(".tmp.tar")
        argv += [recipe.suite, str(tmp), debian_mirror()]
        log(f"rootfs: mmdebstrap {recipe.suite} with {len(recipe.packages)} package(s)…")
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            raise BuildError(f"mmdebstrap {recipe.suite} failed (exit {proc.returncode}) for recipe {recipe.name}", tail)
        os.replace(tmp, out)
        log(f"rootfs {out.name}: {out.stat().st_size / 1e6:.0f} MB in {time.monotonic() - t0:.0f}s")
        return out


def _metadata_containerfile(recipe: Recipe, base: str, recipe_hash: str) -> str:
    lines = [f"FROM {base}"]
    for k, v in recipe.env:
        lines.append(f"ENV {k}={json.dumps(v)}")
    if recipe.workdir:
        lines.append(f"WORKDIR {recipe.workdir}")
    if recipe.user:
        lines.append(f"USER {recipe.user}")
    if recipe.entrypoint:
        lines.append(f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}")
    if recipe.command:
        lines.append(f"CMD {json.dumps(list(recipe.command))}")
    lines.append(f"LABEL {LABEL_RECIPE}={recipe_hash} tidegate.recipe={json.dumps(recipe.name)}")
    return "\n".join(lines) + "\n"


def build(engine: Engine, recipe: Recipe, *, log: Log | None = None, force: bool = False,
          bases: bool = True) -> tuple[ImageInfo, bool]:
    """Build `recipe` on `engine` unless the image its hash names is there (then at most
    the name tag is moved back to it). The recipes it builds on are made up to date first
    (`bases=False`: the caller did, see build_order). Returns (image, built: False when
    it was there already). A failed build raises BuildError carrying the log's tail; an
    engine that does not answer, EngineUnreachable."""
    log = log or (lambda line: None)
    if bases:
        for base in recipe.bases:
            build(engine, base, log=log)
    recipe_hash = recipe.hash()
    by_hash = recipe.hash_ref()
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        log(line)
    try:
        if not force:
            found = _cached(engine, recipe, recipe_hash, by_hash, keep)
            if found is not None:
                return found, False
        if recipe.containerfile:
            ctx = Path(recipe.containerfile).parent
            engine.build(str(ctx), by_hash, containerfile="Containerfile",
                         labels={LABEL_RECIPE: recipe_hash, "tidegate.recipe": recipe.name}, log=keep)
        else:
            tar = build_rootfs(recipe, keep)
            base = f"localhost/tidegate-rootfs:{tar.stem.split('-')[-1]}"
            if engine.image(base) is None:
                keep(f"importing {tar.name} as {base}")
                engine.import_rootfs(str(tar), base)
            with tempfile.TemporaryDirectory(prefix="tidegate-build-") as ctx:
                Path(ctx, "Containerfile").write_text(_metadata_containerfile(recipe, base, recipe_hash))
                engine.build(ctx, by_hash, containerfile="Containerfile", log=keep)
        engine.tag(by_hash, recipe.image)
        info = engine.image(recipe.image)
        if info is None:
            raise engine.error(f"build {recipe.image}", "built, then missing")
        return info, True
    except EngineError as err:
        if isinstance(err, EngineUnreachable):    # the engine does not answer: not this recipe's fault
            raise
        raise BuildError(f"building {recipe.image} on host {engine.host}: {err.message}", "\n".join(lines[-25:])) from None


def _cached(engine: Engine, recipe: Recipe, recipe_hash: str, by_hash: str, log: Log) -> ImageInfo | None:
    """The image this recipe's hash names, its name tag pointing at it; None: build it."""
    hit = engine.image(by_hash)
    current = engine.image(recipe.image)
    if hit is None and current is not None and current.labels.get(LABEL_RECIPE) == recipe_hash:
        engine.tag(recipe.image, by_hash)           # built before images had hash tags: adopt it
        hit = engine.image(by_hash)
    if hit is None or hit.labels.get(LABEL_RECIPE) != recipe_hash:
        return None
    if current is None or current.id != hit.id:
        # the name was taken by another recipe's build (or removed): move it back, no rebuild
        engine.tag(by_hash, recipe.image)
        log(f"{recipe.image}: re-tagged to {by_hash}")
        return engine.image(recipe.image)
    log(f"{recipe.image}: up to date ({recipe_hash})")
    return current
