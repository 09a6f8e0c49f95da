"""Credentials a set-up of test hosts makes for itself: one root login key for the
controller, one host key per host (and the known_hosts file naming them), and a small
certificate authority for docker's TLS port (a server certificate per host, one client
certificate for the controller). Nothing here is reused across set-ups."""
from __future__ import annotations

import subprocess
from pathlib import Path


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}…: {proc.stderr.strip()[-300:]}")


def ssh_key(path: Path, comment: str) -> str:
    """An ed25519 key pair at `path` (private) and `path`.pub; returns the public line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return Path(f"{path}.pub").read_text().strip()


def known_hosts_line(address: str, port: int, public_line: str) -> str:
    """A known_hosts entry: bare address on port 22, [address]:port otherwise."""
    who = address if port == 22 else f"[{address}]:{port}"
    kind, key = public_line.split()[:2]
    return f"{who} {kind} {key}"


def certificate_authority(directory: Path) -> tuple[Path, Path]:
    """ca.pem and ca-key.pem in `directory` (made once)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, key = directory / "ca.pem", directory / "ca-key.pem"
    if not ca.exists():
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-days", "2", "-subj", "/CN=tidegate test hosts CA",
              "-keyout", str(key), "-out", str(ca)])
    return ca, key


def signed_certificate(ca_dir: Path, out_dir: Path, common_name: str, *, server_ip: str | None = None) -> dict[str, str]:
    """cert.pem/key.pem in `out_dir`, signed by the set-up's CA: a server certificate for
    `server_ip` (its subjectAltName) or a client certificate. Returns {ca, cert, key}."""
    ca, ca_key = certificate_authority(ca_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key, csr, cert, ext = (out_dir / n for n in ("key.pem", "req.csr", "cert.pem", "ext.cnf"))
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(csr)])
    if server_ip:
        ext.write_text(f"subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth\n")
    else:
        ext.write_text("extendedKeyUsage=clientAuth\n")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
          "-days", "2", "-extfile", str(ext), "-out", str(cert)])
    csr.unlink()
    ext.unlink()
    (out_dir / "ca.pem").write_bytes(ca.read_bytes())
    return {"ca": str(out_dir / "ca.pem"), "cert": str(cert), "key": str(key)}
