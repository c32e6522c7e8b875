"""Where and how to connect: one frozen settings object, shared by both drivers.

``WireSettings`` holds the address (TCP host/port or a unix socket path), TLS, credentials, db,
client name, RESP version and the two deadlines (connect, request; 0.25 s by default, as the
service's). ``ssl_context`` builds the ``ssl.SSLContext`` a TLS connection uses; it reads the
certificate files, so drivers call it when they connect, never at import.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

__all__ = ["TLSSettings", "WireSettings", "ssl_context"]


@dataclass(frozen=True)
class TLSSettings:
    """TLS for a connection: CA to verify the server with (None: the system's), an optional
    client certificate and key, and whether the server's name must match its certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    server_hostname: str | None = None  # None: the host connected to


@dataclass(frozen=True)
class WireSettings:
    """Everything a connection needs; ``unix_path`` wins over host/port when set."""

    host: str = "127.0.0.1"
    port: int = 6379
    unix_path: str | None = None
    tls: TLSSettings | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    client_name: str | None = None
    protocol: int = 2
    connect_timeout: float = 0.25
    request_timeout: float = 0.25

    def __post_init__(self) -> None:
        if self.protocol not in (2, 3):
            raise ValueError(f"protocol must be 2 or 3, not {self.protocol!r}")
        if self.connect_timeout <= 0 or self.request_timeout <= 0:
            raise ValueError("connect_timeout and request_timeout must be positive seconds")
        if self.db < 0:
            raise ValueError(f"db must be >= 0, not {self.db!r}")
        if self.username is not None and self.password is None:
            raise ValueError("username needs a password (ACL users authenticate with both)")

    @property
    def where(self) -> str:
        """The address for messages: ``host:port`` or ``unix:path`` (never credentials)."""
        return f"unix:{self.unix_path}" if self.unix_path else f"{self.host}:{self.port}"

    @property
    def server_hostname(self) -> str | None:
        """The name TLS checks the certificate against (None without TLS or for unix sockets)."""
        if self.tls is None:
            return None
        return self.tls.server_hostname or (None if self.unix_path else self.host)


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """A client context verifying the server with ``tls.ca_file`` (or the system's CAs),
    presenting the client certificate when one is given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    context.check_hostname = tls.check_hostname
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context
