"""What a failed Redis request means: an outage, or an error reply to that one request.

``classify_error`` decides (pure): only connectivity (a connect refused or timed out, a reply
timed out, a connection reset or closed, a topology that moved) and settings that keep every
request out (credentials, TLS) are outages; an error *reply* (OOM, NOPERM, BUSY, LOADING, ...)
and a request the client could not encode concern that request only.
``misconfiguration_message`` and ``refusal_message`` say which setting to fix; the background
prober's ``diagnose`` tells a TLS mismatch from an outage by trying the other protocol.
Messages never contain a secret, nor a key (a pipeline's error quotes its command: cut off).
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Iterator

from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    BusyLoadingError,
    ClusterError,
    DataError,
    ExecAbortError,
    ModuleError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError

from cache_service.config import Location, TargetOptions

__all__ = ["OUTAGES", "SentinelsRefused", "classify_error", "describe_error", "diagnose",
           "misconfiguration_message", "refusal_message", "refused_by", "reply_code",
           "reply_text"]

_CLIENT_REPR = re.compile(r"<redis\.[\w.]*Redis\(.*?host=([^,)]+),port=(\d+).*?\)>\)>\)>")


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of a Redis error on one bounded line, for logs."""
    text = _CLIENT_REPR.sub(r"\1:\2", f"{type(exc).__name__}: {exc}").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- what went wrong: classification, messages, diagnosis --------------------------------------

_AUTH_CODES = ("NOAUTH", "WRONGPASS")
_AUTH_TEXTS = ("invalid username-password pair", "invalid password",
               "called without any password configured", "no password is set",
               "HELLO must be called with the client already authenticated")
# What ``diagnose`` reports: misconfigurations found by probing.
_DIAGNOSED = ("does not speak TLS", "speaks TLS", "requires a TLS client certificate")
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")
# TLS failures that a retry will not fix: the settings (CA, client certificate, scheme) are wrong.
_SSL_SETTINGS = ("CERTIFICATE", "WRONG_VERSION_NUMBER", "UNKNOWN_CA", "HANDSHAKE_FAILURE",
                 "UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER", "PACKET_LENGTH_TOO_LONG",
                 "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "TLSV1_ALERT", "TLSV13_ALERT",
                 "SSLV3_ALERT", "KEY_VALUES_MISMATCH", "PEM_LIB", "NO_CERTIFICATE")
_BROKEN_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_BROKEN_TEXTS = ("Connection closed by server", "Connection reset by peer", "Broken pipe",
                 "while writing to socket", "Connection lost")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _auth_code(exc: BaseException) -> str | None:
    """NOAUTH, WRONGPASS, AUTH (a rejected AUTH) or None: why the server refused us."""
    for err in _chain(exc):
        code = getattr(err, "status_code", None)
        text = str(err)
        if code in _AUTH_CODES:
            return str(code)
        if text.startswith(_AUTH_CODES):
            return text.split(" ", 1)[0]
        if isinstance(err, AuthenticationWrongNumberOfArgsError):
            return "AUTH"
        if isinstance(err, AuthenticationError) or any(t in text for t in _AUTH_TEXTS):
            if any(t in text for t in ("HELLO must be called", "NOAUTH", "Authentication req")):
                return "NOAUTH"
            if any(t in text for t in ("invalid username-password", "invalid password",
                                       "Invalid Username")):
                return "WRONGPASS"
            return "AUTH"  # e.g. a password sent to a server that has none
    return None


class SentinelsRefused(MasterNotFoundError):
    """No sentinel named the primary because those that answered refused our credentials or
    commands (``code``: WRONGPASS, NOAUTH, NOPERM or AUTH): ``sentinel_password=`` (the
    sentinels' own, not the data nodes') or the sentinels' ACL is wrong, not an outage."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def refused_by(exc: BaseException) -> str | None:
    """WRONGPASS, NOAUTH, AUTH or NOPERM when ``exc`` (a redis-py error) is a server refusing
    our credentials or a command to our user; None otherwise."""
    return _auth_code(exc) or ("NOPERM" if isinstance(exc, NoPermissionError) else None)


def _sentinels_refused(exc: BaseException) -> SentinelsRefused | None:
    return next((err for err in _chain(exc) if isinstance(err, SentinelsRefused)), None)


def _ssl_reason(exc: BaseException) -> str | None:
    """The OpenSSL reason (``CERTIFICATE_VERIFY_FAILED``...) of a TLS settings failure."""
    for err in _chain(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            return "CERTIFICATE_VERIFY_FAILED"
        reason = getattr(err, "reason", None) if isinstance(err, ssl.SSLError) else None
        found = _SSL_REASON.search(str(err))
        name = str(reason) if reason else (found.group(1) if found else None)
        if name and any(marker in name for marker in _SSL_SETTINGS):
            return name
    return None


def _is_broken(exc: BaseException) -> bool:
    """A pooled connection the server (or the network) closed or reset under us."""
    if isinstance(exc, RuntimeError):  # uvloop: write on a transport that is already closed
        text = str(exc)
        return "unable to perform operation on" in text and "closed=True" in text
    if isinstance(exc, (RedisTimeoutError, TimeoutError, socket.timeout)):
        return False
    if not isinstance(exc, (RedisConnectionError, OSError)) or "connecting to" in str(exc):
        return False  # a refused or failed connect is not a broken pooled connection
    for err in _chain(exc):
        if isinstance(err, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return True
        if isinstance(err, OSError) and err.errno in _BROKEN_ERRNOS:
            return True
    return any(text in str(exc) for text in _BROKEN_TEXTS)


def _is_wrong_type(exc: BaseException) -> bool:
    """A foreign value of another Redis type sits at one of our keys."""
    return isinstance(exc, ResponseError) and reply_text(exc).startswith("WRONGTYPE")


# The codes redis-py strips from the message of the exception class it raises for them.
_CODE_OF: tuple[tuple[type[BaseException], str], ...] = (
    (OutOfMemoryError, "OOM"), (NoPermissionError, "NOPERM"), (ReadOnlyError, "READONLY"),
    (NoScriptError, "NOSCRIPT"), (ExecAbortError, "EXECABORT"), (BusyLoadingError, "LOADING"),
    (TryAgainError, "TRYAGAIN"), (ModuleError, "ERR"))
_CODE = re.compile(r"[A-Z][A-Z0-9_]+")
_PIPELINE = " of pipeline caused error: "
# Replies that say the topology moved under us: ask again where the data is (an outage).
_MOVED = ("MOVED", "ASK", "CLUSTERDOWN", "MASTERDOWN")
# Replies that say the node is not (or no longer) a writable primary.
_NOT_PRIMARY = ("READONLY", "NOREPLICAS")
# An ACL denial met inside a script comes as ERR with one of these texts (Redis 7: "The user
# executing the script can't run this command or subcommand"; Valkey 8: "ACL failure in
# script: User u has no permissions to run the 'set' command"): read from the reply itself.
_SCRIPT_DENIED = ("user executing the script can't run this command", "ACL failure in script")


_SCRIPT_NAMED = re.compile(r" script: [0-9a-f]{40}\b.*")


def reply_text(exc: BaseException) -> str:
    """The server's error message, without the command a pipeline's error quotes (its key)."""
    text = str(exc)
    if text.startswith("Command # ") and _PIPELINE in text:
        text = text.rpartition(_PIPELINE)[2]
    return text


def reply_code(exc: BaseException) -> str | None:
    """The code of an error reply (``OOM``, ``NOPERM``, ``BUSY``, ``ERR``...), None if ``exc``
    is not one."""
    if not isinstance(exc, (ResponseError, BusyLoadingError)):
        return None
    if any(text in str(exc) for text in _SCRIPT_DENIED):
        return "NOPERM"
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and _CODE.fullmatch(code):
        return code
    for cls, name in _CODE_OF:
        if isinstance(exc, cls):
            return name
    first = reply_text(exc).split(" ", 1)[0]
    return first if _CODE.fullmatch(first) else "ERR"


def _reply_kind(exc: BaseException, topology: str) -> str | None:
    """``"denied"``, ``"reply"`` or ``"outage"`` for an error reply; None for anything else."""
    code = reply_code(exc)
    if code is None:
        return None
    if isinstance(exc, (ClusterError, AskError)) or code in _MOVED:
        return "outage"
    if code in _NOT_PRIMARY:
        # Sentinel and Cluster: the primary moved (a failover); ask again where it is. A
        # standalone location that is a replica is a setting to fix, not an outage.
        if topology in ("sentinel", "cluster"):
            return "outage"
        return "denied" if code == "READONLY" else "reply"
    return "denied" if code == "NOPERM" else "reply"


# The kinds that are connectivity: the breaker counts them (a broken connection, once retried).
OUTAGES = frozenset({"outage", "misconfigured", "broken"})


def classify_error(exc: BaseException, topology: str = "standalone") -> str:
    """What a failed Redis request means to a location of kind ``topology``.

    Outages (open the breaker): ``"outage"`` (refused or timed-out connects and replies,
    a topology that moved) and ``"misconfigured"`` (credentials or TLS settings: every
    request is refused). ``"broken"``: a pooled connection was closed or reset (one retry on
    a fresh one may succeed). For this request only, the breaker never moves:
    ``"wrongtype"`` (foreign data at our key), ``"denied"`` (an error reply naming a setting
    to fix: NOPERM, READONLY from a standalone replica), ``"reply"`` (any other error reply:
    OOM, BUSY, LOADING, out of range, NOSCRIPT...) and ``"input"`` (the client could not
    encode the request; nothing was sent). Anything unknown is an outage: the breaker and
    its journal never leave a stale value behind."""
    if _is_wrong_type(exc):
        return "wrongtype"
    if _sentinels_refused(exc) is not None or _auth_code(exc) is not None:
        return "misconfigured"
    if _ssl_reason(exc) is not None:
        return "misconfigured"
    if any(marker in str(err) for err in _chain(exc) for marker in _DIAGNOSED):
        return "misconfigured"
    kind = _reply_kind(exc, topology)
    if kind is not None:
        return kind
    if isinstance(exc, (DataError, UnicodeError)):
        return "input"
    if _is_broken(exc):
        return "broken"
    return "outage"


def refusal_message(exc: BaseException, location: Location) -> str:
    """One line for a ``"denied"`` reply: what Redis refuses and which setting to fix; never
    a key or a secret."""
    where = f"Redis at {location.describe()}"
    # one message per problem: without the script and line a denial inside a script names
    text = _SCRIPT_NAMED.sub("", reply_text(exc).replace("\n", " "))[:160]
    if reply_code(exc) == "READONLY":
        message = (f"{where} is a read-only replica (READONLY): point the location at the "
                   "primary; writes are refused until then")
    else:
        user = location.username or "default"
        message = (f"{where} refuses a command to user {user!r} (NOPERM {text}): allow it in "
                   "that user's ACL; those calls miss or are dropped until then")
    return _scrub(message, location)


_TLS_SCHEME = {"standalone": "rediss://", "cluster": "rediss+cluster://",
               "sentinel": "rediss+sentinel://"}
_PLAIN_SCHEME = {"standalone": "redis://", "cluster": "redis+cluster://",
                 "sentinel": "redis+sentinel://"}


def _scrub(text: str, location: Location) -> str:
    for secret in (location.password, location.sentinel_password):
        if secret:
            text = text.replace(secret, "***")
    return text


def misconfiguration_message(exc: BaseException, location: Location) -> str:
    """One line for a ``"misconfigured"`` error: what is wrong at ``location`` and which
    setting to fix; never contains a password."""
    where = f"Redis at {location.describe()}"
    refused = _sentinels_refused(exc)
    if refused is not None:
        return _scrub(_sentinel_message(refused, where), location)
    sentinel = " (or sentinel_password= for the sentinels)" if location.kind == "sentinel" else ""
    code = _auth_code(exc)
    reason = _ssl_reason(exc)
    if code == "NOAUTH":
        text = (f"{where} requires a password (NOAUTH): set password= (and username= for an "
                f"ACL user) or the URL's user:password{sentinel}")
    elif code == "WRONGPASS":
        text = (f"{where} rejected the credentials (WRONGPASS): check password=/username= or "
                f"the URL's user:password{sentinel}")
    elif code is not None:
        text = (f"{where} refused AUTH ({describe_error(exc, 120)}): the server may have no "
                f"password set; check password=/username={sentinel}")
    elif reason is not None and "CERTIFICATE_VERIFY_FAILED" in reason:
        text = (f"TLS to {where} failed certificate verification ({reason}): set "
                "ssl_ca_certs= to the CA that signed the server's certificate")
    elif reason is not None and ("CERTIFICATE_REQUIRED" in reason or "BAD_CERTIFICATE" in reason
                                 or "UNKNOWN_CA" in reason or "NO_CERTIFICATE" in reason):
        text = (f"{where} refused our TLS client certificate ({reason}): set "
                "ssl_certfile=/ssl_keyfile= to a certificate its tls-ca-cert-file trusts")
    elif reason is not None and "WRONG_VERSION_NUMBER" in reason:
        text = (f"{where} does not speak TLS ({reason}): use "
                f"{_PLAIN_SCHEME.get(location.kind, 'redis://')} (or ssl=False)")
    elif reason is not None:
        text = f"TLS to {where} failed ({reason}): check ssl=, ssl_ca_certs=, ssl_certfile="
    else:
        text = f"{where}: {describe_error(exc, 200)}"
    return _scrub(text.replace("\n", " "), location)


def _sentinel_message(refused: SentinelsRefused, where: str) -> str:
    """What the sentinels' refusal means and which setting fixes it."""
    own = "the sentinels' own password, not the data nodes'"
    if refused.code == "NOAUTH":
        return (f"The sentinels of {where} require a password (NOAUTH): set "
                f"sentinel_password= (or the URL's ?sentinel_password=; {own})")
    if refused.code == "WRONGPASS":
        return (f"The sentinels of {where} rejected sentinel_password (WRONGPASS): check "
                f"sentinel_password= (or the URL's ?sentinel_password=; {own})")
    if refused.code == "NOPERM":
        return (f"The sentinels of {where} refuse the discovery commands to our user (NOPERM): "
                "allow SENTINEL GET-MASTER-ADDR-BY-NAME and SENTINEL REPLICAS in their ACL, "
                "or check sentinel_password=")
    return (f"The sentinels of {where} refused AUTH: they may have no password set; check "
            "sentinel_password=")


def _answers_plain_redis(host: str, port: int, options: TargetOptions) -> bool:
    """A plain-TCP ``PING`` gets a Redis reply (``+PONG``, or ``-NOAUTH`` if it wants a
    password)."""
    try:
        with socket.create_connection((host, port), timeout=options.connect_timeout) as sock:
            sock.settimeout(options.socket_timeout)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def _completes_tls_handshake(host: str, port: int, options: TargetOptions) -> bool:
    """A TLS handshake (no verification) with ``host:port`` completes, or the server answers
    it with a TLS alert (it wants a client certificate): it speaks TLS."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=options.connect_timeout) as raw:
            raw.settimeout(options.socket_timeout)
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except ssl.SSLError as exc:
        return "ALERT" in str(getattr(exc, "reason", "") or "").upper()
    except OSError:
        return False


def _wants_client_certificate(location: Location, host: str, port: int,
                              options: TargetOptions) -> bool:
    """With ``location``'s own TLS settings, the server answers the handshake with a
    "certificate required" alert. Nothing is sent after the handshake: the alert comes on
    its own, and data sent to a closing server would turn it into a reset."""
    context = ssl.create_default_context(cafile=location.ssl_ca_certs)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verification failures are reported by classify_error
    if location.ssl_certfile:
        try:
            context.load_cert_chain(location.ssl_certfile, location.ssl_keyfile)
        except (OSError, ssl.SSLError):
            return False
    try:
        with socket.create_connection((host, port), timeout=options.connect_timeout) as raw:
            raw.settimeout(options.socket_timeout)
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.recv(1)
    except ssl.SSLError as exc:
        return "CERTIFICATE_REQUIRED" in str(getattr(exc, "reason", "") or "")
    except OSError:
        return False
    return False


def diagnose(location: Location, options: TargetOptions) -> str | None:
    """After a failure, look for a TLS mismatch (blocking, bounded by the connect and socket
    timeouts per node, at most three nodes): a message naming the fix, or None when nothing
    is learned.

    A ``rediss`` location whose server answers a plain ``PING`` does not speak TLS, and one
    whose server rejects the handshake for want of a client certificate needs
    ``ssl_certfile=``; a plain location whose server completes a TLS handshake speaks TLS.
    Sentinel data nodes and unix sockets are not checked (the sentinels name the nodes; a
    socket has no TLS).
    """
    if location.kind not in ("standalone", "cluster") or location.unix_socket is not None:
        return None
    for host, port in location.hosts[:3]:
        if location.ssl and _answers_plain_redis(host, port, options):
            return (f"the server at {host}:{port} does not speak TLS: use "
                    f"{_PLAIN_SCHEME[location.kind]} (or ssl=False)")
        if location.ssl and _wants_client_certificate(location, host, port, options):
            return (f"the server at {host}:{port} requires a TLS client certificate: set "
                    "ssl_certfile= and ssl_keyfile= to one its tls-ca-cert-file trusts")
        if not location.ssl and _completes_tls_handshake(host, port, options):
            return (f"the server at {host}:{port} speaks TLS: use "
                    f"{_TLS_SCHEME[location.kind]} (and ssl_ca_certs=...)")
    return None


