"""`tidegate images build|list`: build a cloud's images offline from its recipes."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller import engine_option
from controller.errors import CommandError


def register(sub):
    p = sub.add_parser("images", help="build a cloud's images offline (mmdebstrap + engine), or list recipes",
                       description="Build images from clouds/<cloud>/images/<name>.yaml recipes (Debian suite, "
                                   "packages, files, command) or <name>/Containerfile contexts, without a registry. "
                                   "Images are tagged with their recipe hash and rebuilt only when it changes.")
    actions = p.add_subparsers(dest="action", metavar="build|list", required=True)
    # one sub-parser per action: `images build NAME --cloud C` and `images build --cloud C NAME` both parse
    for action, text in (("build", "build recipes onto an engine (cached by recipe hash)"),
                         ("list", "list recipes: name, image, suite, recipe hash")):
        a = actions.add_parser(action, help=text, description=text)
        a.add_argument("names", nargs="*", help="recipe names (default: every recipe of the cloud)")
        a.add_argument("--repo", default=".", help="working tree holding clouds/ (default: current directory)")
        a.add_argument("--cloud", required=True)
        if action == "build":
            engine_option.add(a, default="podman", help="the engine to build on: podman or docker, optionally "
                              "=URL (else $TIDEGATE_<KIND>_URL, else the engine `tidegate engine up` started)")
            a.add_argument("--url", help=argparse.SUPPRESS)      # the older spelling of --engine KIND=URL
            a.add_argument("--force", action="store_true", help="rebuild even when the recipe hash matches")
        a.set_defaults(func=run)


def run(args) -> int:
    from controller import images
    from controller.engines import EngineError, connect

    folder = Path(args.repo) / "clouds" / args.cloud / "images"
    if not (Path(args.repo) / "clouds" / args.cloud / "cloud.yaml").is_file():
        raise CommandError(f"no cloud {args.cloud!r} under {args.repo}/clouds/", 2)
    names = args.names or images.list_recipes(folder)
    if args.action == "list":
        for name in names:
            try:
                recipe = images.load_recipe(folder, name)
            except images.BuildError as err:
                print(f"{name}: {err}")
                continue
            on = f"  (on {', '.join(b.name for b in recipe.bases)})" if recipe.bases else ""
            print(f"{name:<24} {recipe.image:<44} {recipe.suite or 'Containerfile':<10} {recipe.hash()}{on}")
        return 0
    if not names:
        raise CommandError(f"no image recipes in {folder}", 2)
    try:
        # every base before the recipes whose FROM names its image (the named ones and their bases)
        order = images.build_order(folder, names)
    except images.BuildError as err:
        raise CommandError(str(err), 2) from None
    specs = list(args.engine)
    if args.url:
        specs.append(f"{engine_option.parse(specs[-1])[0] if specs else args.engine_default}={args.url}")
    kind, url = engine_option.one(specs, args.engine_default)
    engine = connect(kind, url, "local")
    failed: list[str] = []
    for recipe in order:
        print(f"== {recipe.name} → {recipe.image}", flush=True)
        broken = [b.name for b in recipe.bases if b.name in failed]
        if broken:
            failed.append(recipe.name)
            print(f"tidegate: {recipe.name} not built: its base {', '.join(broken)} failed", file=sys.stderr)
            continue
        try:
            info, built = images.build(engine, recipe, force=args.force and recipe.name in names, bases=False,
                                       log=lambda line: print(f"   {line}", flush=True))
            print(f"   {'built' if built else 'up to date'}: {info.id[:19]}")
        except images.BuildError as err:
            failed.append(recipe.name)
            print(f"tidegate: {err}", file=sys.stderr)
            for line in err.log.splitlines()[-25:]:
                print(f"   | {line}", file=sys.stderr)
        except EngineError as err:
            raise CommandError(str(err), 2) from None
    return 1 if failed else 0
