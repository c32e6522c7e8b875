"""A throw-away CA with server and client certificates for the TLS servers (openssl)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import _rng


@dataclass(frozen=True)
class TLSFiles:
    """Paths of a throw-away CA plus server and client certificates (PEM, EC P-256)."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def redis_kwargs(self, *, client_cert: bool = True) -> dict[str, Any]:
        """redis-py connection kwargs for a ``rediss://`` connection verifying our CA."""
        kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": self.ca_cert}
        if client_cert:
            kwargs |= {"ssl_certfile": self.client_cert, "ssl_keyfile": self.client_key}
        return kwargs


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = cache-service-test
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def make_tls_files(directory: str | os.PathLike[str]) -> TLSFiles:
    """Create a CA and server/client certs for 127.0.0.1/localhost in ``directory``.

    Uses the openssl CLI with EC P-256 keys (fast, ~0.1 s).  Extensions satisfy
    OpenSSL/Python strict X.509 verification (key usage, SKI/AKI, SAN).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", "-config", str(config), "-extensions", "ca_ext", *ec,
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
        "-subj", "/CN=cache-service test CA", cwd=out,
    )  # fmt: skip
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=cache-service-client")):
        _openssl(
            "req", "-new", "-config", str(config), *ec,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=out,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(_rng.randint(1, 2**62)), "-days", "7",
            "-extfile", str(config), "-extensions", f"{name}_ext", "-out", f"{name}.crt",
            cwd=out,
        )  # fmt: skip
    return TLSFiles(
        ca_cert=str(out / "ca.crt"),
        server_cert=str(out / "server.crt"),
        server_key=str(out / "server.key"),
        client_cert=str(out / "client.crt"),
        client_key=str(out / "client.key"),
    )
