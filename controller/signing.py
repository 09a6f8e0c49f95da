"""Signed commits: only commits signed by a trusted key are applied.

Trust is what the operator hands the controller, nothing else: an SSH `allowed_signers`
file (the format of ssh-keygen(1) ALLOWED SIGNERS, which `git log --show-signature` uses
too; the principal is the committer's e-mail) and/or a GPG keyring (every key in it is
trusted). The user's own ~/.gnupg and git configuration are never consulted: GPG runs in a
throw-away GNUPGHOME holding only the given keyring.

`verify_commit` returns None for a trusted commit, else one line saying why not; it is
what `Controller(verify_commit=...)` expects (`Verifier` binds the trust files and caches
verdicts per commit).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

SSH_HEADER = b"-----BEGIN SSH SIGNATURE-----"
PGP_HEADER = b"-----BEGIN PGP SIGNATURE-----"
NAMESPACE = "git"           # what `git commit -S` signs SSH signatures under
TIMEOUT = 30


class SigningSetupError(Exception):
    """The trust configuration itself is unusable (a missing file, no ssh-keygen): an
    operator error, reported when the controller starts, not per commit."""


def check_setup(allowed_signers: str | None = None, gpg_keyring: str | None = None) -> None:
    """Raise SigningSetupError unless the trust files and the tools they need exist."""
    if not allowed_signers and not gpg_keyring:
        raise SigningSetupError("signed commits need --allowed-signers FILE and/or --gpg-keyring FILE")
    for flag, path, tool, package in (("--allowed-signers", allowed_signers, "ssh-keygen", "openssh-client"),
                                      ("--gpg-keyring", gpg_keyring, "gpg", "gpg")):
        if not path:
            continue
        if not os.path.isfile(path):
            raise SigningSetupError(f"{flag} {path}: no such file")
        if shutil.which(tool) is None:
            raise SigningSetupError(f"{flag} needs {tool} (Debian package {package})")
    if gpg_keyring:
        with _gnupg_home(gpg_keyring) as (_, problem):
            if problem:
                raise SigningSetupError(f"--gpg-keyring {gpg_keyring}: {problem}")


def verify_commit(commit, allowed_signers: str | None = None, gpg_keyring: str | None = None) -> str | None:
    """None if `commit` (a pygit2.Commit) carries a good signature by a trusted key, else
    the reason in one line."""
    short = str(commit.id)[:12]
    signature, payload = commit.gpg_signature
    if not signature:
        return f"commit {short} is not signed"
    if signature.lstrip().startswith(SSH_HEADER):
        if not allowed_signers:
            return f"commit {short} has an SSH signature but no --allowed-signers file is configured"
        return _verify_ssh(short, commit, signature, payload, allowed_signers)
    if signature.lstrip().startswith(PGP_HEADER):
        if not gpg_keyring:
            return f"commit {short} has a GPG signature but no --gpg-keyring is configured"
        return _verify_gpg(short, signature, payload, gpg_keyring)
    return f"commit {short} has a signature of an unsupported kind (only SSH and OpenPGP are verified)"


class Verifier:
    """`verify_commit` bound to the trust files, with verdicts cached per commit id for a
    minute at most. The cache is keyed on the trust files' mtime too: removing a key from
    allowed_signers takes effect at the next reconcile, without a restart."""

    def __init__(self, allowed_signers: str | None = None, gpg_keyring: str | None = None):
        self.allowed_signers = allowed_signers
        self.gpg_keyring = gpg_keyring
        self._cache: dict[tuple, str | None] = {}

    def _stamp(self) -> tuple:
        stamp = []
        for path in (self.allowed_signers, self.gpg_keyring):
            try:
                st = os.stat(path) if path else None
                stamp.append((st.st_mtime_ns, st.st_size) if st else None)
            except OSError:
                stamp.append("missing")
        return tuple(stamp)

    def __call__(self, commit) -> str | None:
        # verdicts hold for a minute at most: a key's valid-before is judged at verification time
        key = (str(commit.id), self._stamp(), int(time.time() // 60))
        if key not in self._cache:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = verify_commit(commit, self.allowed_signers, self.gpg_keyring)
        return self._cache[key]


# -- SSH ------------------------------------------------------------------------------
def _run(argv: list[str], payload: bytes, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=payload, capture_output=True, timeout=TIMEOUT, env=env)


def _verify_ssh(short: str, commit, signature: bytes, payload: bytes, allowed_signers: str) -> str | None:
    principal = commit.committer.email
    with tempfile.TemporaryDirectory(prefix="tg-sig-") as tmp:
        sig_file = os.path.join(tmp, "commit.sig")
        with open(sig_file, "wb") as f:
            f.write(signature)
        # Keys in allowed_signers may carry valid-after/valid-before: judge them now. git
        # judges them at the committer's time, which whoever signs writes as they like: a
        # key that expired (or was retired by valid-before) could sign "in the past".
        try:
            verified = _run(["ssh-keygen", "-Y", "verify", "-f", allowed_signers, "-I", principal,
                             "-n", NAMESPACE, "-s", sig_file], payload)
        except FileNotFoundError:
            return "cannot verify SSH signatures: ssh-keygen is not installed (Debian package openssh-client)"
        except subprocess.TimeoutExpired:
            return f"commit {short}: ssh-keygen did not answer within {TIMEOUT} s"
        if verified.returncode == 0:
            return None
        # Tell an altered commit from a good signature by a key we do not trust.
        alone = _run(["ssh-keygen", "-Y", "check-novalidate", "-n", NAMESPACE, "-s", sig_file], payload)
    if alone.returncode != 0:
        return f"commit {short} has a bad SSH signature (the commit does not match what was signed)"
    key = re.search(rb"key (\S+)", alone.stdout)
    fingerprint = key.group(1).decode() if key else "unknown key"
    return (f"commit {short} is signed by an untrusted key ({fingerprint} is not allowed for "
            f"committer {principal} in {allowed_signers})")


# -- GPG ------------------------------------------------------------------------------
class _gnupg_home:
    """A temporary GNUPGHOME holding only the trusted keyring; yields (env, problem)."""

    def __init__(self, keyring: str):
        self.keyring = keyring

    def __enter__(self):
        # short, under /tmp: gpg puts sockets in GNUPGHOME (108-byte limit on their paths)
        self.home = tempfile.mkdtemp(prefix="tg-gpg-", dir="/tmp" if os.path.isdir("/tmp") else None)
        os.chmod(self.home, 0o700)
        self.env = {**os.environ, "GNUPGHOME": self.home, "LC_ALL": "C"}
        problem = None
        try:
            imported = _run(["gpg", "--batch", "--no-autostart", "--status-fd", "1", "--import",
                             self.keyring], b"", env=self.env)
            counted = re.search(rb"IMPORT_RES (\d+)", imported.stdout)
            if counted is None or counted.group(1) == b"0":
                problem = "holds no OpenPGP public key" + (
                    f" ({_last_line(imported.stderr)})" if imported.returncode else "")
        except FileNotFoundError:
            problem = "gpg is not installed (Debian package gpg)"
        except subprocess.TimeoutExpired:
            problem = f"gpg did not answer within {TIMEOUT} s"
        return self.env, problem

    def __exit__(self, *exc):
        shutil.rmtree(self.home, ignore_errors=True)


def _last_line(data: bytes) -> str:
    lines = [ln for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].removeprefix("gpg: ") if lines else "gpg failed"


def _verify_gpg(short: str, signature: bytes, payload: bytes, keyring: str) -> str | None:
    with _gnupg_home(keyring) as (env, problem):
        if problem:
            return f"cannot verify commit {short}: --gpg-keyring {keyring}: {problem}"
        sig_file = os.path.join(env["GNUPGHOME"], "commit.sig")
        with open(sig_file, "wb") as f:
            f.write(signature)
        try:
            # --trust-model always: membership in the keyring IS the trust decision
            result = _run(["gpg", "--batch", "--no-autostart", "--trust-model", "always", "--status-fd", "1",
                           "--verify", sig_file, "-"], payload, env=env)
        except subprocess.TimeoutExpired:
            return f"commit {short}: gpg did not answer within {TIMEOUT} s"
    status = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith("[GNUPG:] "):
            word, _, rest = line[9:].partition(" ")
            status.setdefault(word, rest)
    if "BADSIG" in status:
        return f"commit {short} has a bad GPG signature (the commit does not match what was signed)"
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        key = (status.get("NO_PUBKEY") or status.get("ERRSIG", "")).split(" ")[0] or "unknown key"
        return f"commit {short} is signed by an untrusted key (GPG key {key} is not in {keyring})"
    if "EXPKEYSIG" in status:
        return f"commit {short} is signed by an expired GPG key ({status['EXPKEYSIG'].split(' ')[0]})"
    if "REVKEYSIG" in status:
        return f"commit {short} is signed by a revoked GPG key ({status['REVKEYSIG'].split(' ')[0]})"
    if "EXPSIG" in status:
        return f"commit {short} has an expired GPG signature"
    if result.returncode == 0 and "GOODSIG" in status and "VALIDSIG" in status:
        return None
    return f"commit {short}: GPG signature not verified ({_last_line(result.stderr)})"
