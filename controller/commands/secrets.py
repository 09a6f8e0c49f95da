"""`tidegate secrets`: the operator's side of a cloud's secrets, on the working tree.

    tidegate secrets keygen --out KEYFILE            # a new age key (prints its public key)
    tidegate secrets add NAME --cloud C < value      # encrypt to cloud.yaml's recipients
    tidegate secrets reencrypt --cloud C --age-key K # after the recipients changed
    tidegate secrets list --cloud C [--json]         # which services use which secret
    tidegate secrets show NAME --cloud C --age-key K --reveal
    tidegate secrets rotate keystone-fernet --cloud C --age-key K [--create]

A value is printed only by `show --reveal`; everything else names secrets, never values.
Commit what `add` and `reencrypt` write: the pull request shows which secret changed (its
ciphertext), and merging it rolls exactly the services that use it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from controller.errors import CommandError
from validators import secrets as fmt
from validators.load import RepoError, load_cloud
from validators.tree import DirTree


def register(sub):
    p = sub.add_parser("secrets", help="add, re-encrypt, list or show a cloud's age-encrypted secrets",
                       description=__doc__.split("\n")[0])
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    k = verbs.add_parser("keygen", help="make an age key (the controller's, the gate's or yours)")
    k.add_argument("--out", required=True, metavar="FILE", help="where to write the key (mode 0600; never commit it)")
    k.set_defaults(func=run_keygen)

    def cloud_args(q, key=False):
        q.add_argument("--repo", default=".", help="the repository's working tree (default: current directory)")
        q.add_argument("--cloud", required=True, help="cloud name (clouds/<name>/)")
        if key:
            q.add_argument("--age-key", metavar="FILE", help="a key that can decrypt (default $TIDEGATE_AGE_KEY_FILE)")

    a = verbs.add_parser("add", help="encrypt a value (stdin, or --from-file) as secrets/NAME.age")
    a.add_argument("name", help="the secret's name (lowercase letters, digits, '-')")
    cloud_args(a)
    a.add_argument("--from-file", metavar="FILE", help="read the value from FILE (default: stdin; one trailing newline dropped)")
    a.add_argument("--force", action="store_true", help="replace an existing secret (a rotation)")
    a.set_defaults(func=run_add)

    r = verbs.add_parser("reencrypt", help="encrypt every secret again to cloud.yaml's current recipients")
    cloud_args(r, key=True)
    r.set_defaults(func=run_reencrypt)

    s = verbs.add_parser("list", help="the cloud's secrets and the services that use each")
    cloud_args(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_list)

    o = verbs.add_parser("rotate", help="rotate a Keystone fernet/credential key repository secret (staged)")
    o.add_argument("name", help="the secret, e.g. keystone-fernet")
    cloud_args(o, key=True)
    o.add_argument("--create", action="store_true", help="make a new repository (staged key 0 and primary 1)")
    o.add_argument("--max-active", type=int, default=3, metavar="N",
                   help="keys kept in all, as keystone's max_active_keys (default 3)")
    o.set_defaults(func=run_rotate)

    v = verbs.add_parser("show", help="decrypt one secret (prints the value only with --reveal)")
    v.add_argument("name")
    cloud_args(v, key=True)
    v.add_argument("--reveal", action="store_true", help="print the value itself")
    v.set_defaults(func=run_show)


def _loaded(args):
    try:
        loaded = load_cloud(DirTree(args.repo), args.cloud)
    except RepoError as err:
        raise CommandError(str(err), 2) from None
    if loaded.cloud is None:
        raise CommandError(f"{loaded.folder}/cloud.yaml does not load: run `tidegate check --worktree`", 2)
    return loaded


def _recipients(loaded) -> list[str]:
    keys = [key for _name, key in loaded.cloud.recipients]
    if not keys:
        raise CommandError(f"{loaded.folder}/cloud.yaml: no secrets.recipients to encrypt to "
                           "(add secrets: {recipients: {controller: age1…}})", 2)
    return keys


def _identities(args):
    from controller.commands.converge import identities
    found = identities(args)
    if not found:
        raise CommandError("no age key to decrypt with: --age-key FILE or $TIDEGATE_AGE_KEY_FILE", 2)
    return found


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_keygen(args) -> int:
    from controller.secrets import generate
    out = Path(args.out)
    if out.exists():
        raise CommandError(f"{out}: exists; a key is never overwritten", 2)
    secret, public = generate()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# public key: {public}\n{secret}\n")
    print(public)
    return 0


def run_add(args) -> int:
    from controller.secrets import SecretError, encrypt
    if not fmt.NAME.match(args.name):
        raise CommandError(f"{args.name!r} is not a secret name: lowercase letters, digits and '-'", 2)
    loaded = _loaded(args)
    path = Path(args.repo) / fmt.path(loaded.folder, args.name)
    if path.exists() and not args.force:
        raise CommandError(f"{path}: exists; --force replaces it (a rotation: its services roll)", 2)
    try:
        value = Path(args.from_file).read_bytes() if args.from_file else sys.stdin.buffer.read()
    except OSError as err:
        raise CommandError(f"{args.from_file}: {err.strerror}", 2) from None
    value = value[:-1] if value.endswith(b"\n") else value
    if not value:
        raise CommandError(f"secret {args.name}: empty value", 2)
    try:
        _write(path, encrypt(value, _recipients(loaded)))
    except SecretError as err:
        raise CommandError(str(err), 2) from None
    print(f"wrote {path} (encrypted to {len(set(_recipients(loaded)))} recipient(s)); commit it")
    return 0


def run_reencrypt(args) -> int:
    from controller.secrets import SecretError, decrypt, encrypt
    loaded = _loaded(args)
    keys, identities = _recipients(loaded), _identities(args)
    found = fmt.files(loaded.tree, loaded.folder)
    try:
        for name, rel in sorted(found.items()):
            value = decrypt(loaded.tree.read(rel), identities, rel)
            _write(Path(args.repo) / rel, encrypt(value, keys))
    except SecretError as err:
        raise CommandError(str(err), 2) from None
    print(f"re-encrypted {len(found)} secret(s) to {len(set(keys))} recipient(s); commit them "
          "(every service using a secret rolls)")
    return 0


def usage(loaded) -> dict[str, list[str]]:
    """secret name -> ["service: where", …] for every secret of the cloud folder."""
    from validators.secretrules import mounted_files
    from validators.check import StateContext
    out: dict[str, list[str]] = {name: [] for name in fmt.files(loaded.tree, loaded.folder)}
    for svc, _i, mount, path in mounted_files(StateContext(loaded)):
        if mount.template:
            for name in fmt.references(loaded.tree.read(path)):
                out.setdefault(name, []).append(f"{svc.name}: {path.removeprefix(loaded.folder + '/')}")
    for svc in loaded.cloud.services.values():
        for where, name in fmt.service_references(svc):
            what = f"environment {where[1]}" if where[0] == "environment" else \
                f"file {svc.secret_files[where[1]].target}"
            out.setdefault(name, []).append(f"{svc.name}: {what}")
    return out


def run_list(args) -> int:
    loaded = _loaded(args)
    used = usage(loaded)
    present = fmt.files(loaded.tree, loaded.folder)
    if args.json:
        print(json.dumps({"cloud": args.cloud, "recipients": dict(loaded.cloud.recipients),
                          "secrets": [{"name": n, "file": present.get(n), "used_by": used[n]} for n in sorted(used)]},
                         indent=2))
        return 0
    print(f"recipients: {', '.join(name for name, _ in loaded.cloud.recipients) or 'none'}")
    for name in sorted(used):
        where = "; ".join(used[name]) or "not used"
        print(f"  {name:<24} {where}" + ("" if name in present else "  (MISSING: no secrets/%s.age)" % name))
    return 0


def run_rotate(args) -> int:
    from controller import keyrepo
    from controller.secrets import SecretError, decrypt, encrypt
    if not fmt.NAME.match(args.name):
        raise CommandError(f"{args.name!r} is not a secret name: lowercase letters, digits and '-'", 2)
    loaded = _loaded(args)
    rel = fmt.path(loaded.folder, args.name)
    path = Path(args.repo) / rel
    try:
        if args.create:
            if path.exists():
                raise CommandError(f"{path}: exists; rotate it without --create", 2)
            keys = keyrepo.create()
        else:
            if not path.exists():
                raise CommandError(f"{path}: no such secret (make one with --create)", 2)
            keys = keyrepo.rotate(keyrepo.parse(decrypt(path.read_bytes(), _identities(args), rel)), args.max_active)
        _write(path, encrypt(keyrepo.dump(keys), _recipients(loaded)))
    except (SecretError, keyrepo.KeyRepositoryError) as err:
        raise CommandError(f"{rel}: {err}" if isinstance(err, keyrepo.KeyRepositoryError) else str(err), 2) from None
    print(f"wrote {path}: keys {', '.join(str(i) for i in sorted(keys))} (primary {max(keys)}, staged 0); "
          "commit it: the services using it roll, and tokens issued before stay valid")
    return 0


def run_show(args) -> int:
    from controller.secrets import SecretError, decrypt
    loaded = _loaded(args)
    rel = fmt.files(loaded.tree, loaded.folder).get(args.name)
    if rel is None:
        raise CommandError(f"no secret {args.name!r} in {loaded.folder}/{fmt.FOLDER}/", 2)
    try:
        value = decrypt(loaded.tree.read(rel), _identities(args), rel)
    except SecretError as err:
        raise CommandError(str(err), 2) from None
    if args.reveal:
        sys.stdout.buffer.write(value + b"\n")
    else:
        print(f"{rel}: decrypts ({len(value)} bytes); --reveal prints the value")
    return 0
