"""Non-blocking socket reads that keep the GIL (for ``PushConnection``: the near cache's links).

``socket.recv`` releases the GIL around the system call even when it returns at once; with
other threads busy, getting it back takes a switch interval (5 ms), and a thread that holds
a lock meanwhile makes everyone wait. Calling libc's ``recv`` through ``ctypes.PyDLL`` (which,
unlike ``CDLL``, keeps the GIL) with ``MSG_DONTWAIT`` reads what the kernel has, at once, as
one uninterrupted step. Not for TLS sockets (their bytes must go through OpenSSL):
``reader_for`` returns None for those, and for platforms without a usable libc.
"""

from __future__ import annotations

import ctypes
import errno
import socket
from collections.abc import Callable

__all__ = ["CHUNK", "reader_for"]

CHUNK = 16384  # bytes per read
try:
    _libc = ctypes.PyDLL(None, use_errno=True)
    _recv = _libc.recv
    _recv.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _recv.restype = ctypes.c_ssize_t
    _DONTWAIT: int | None = socket.MSG_DONTWAIT
except (AttributeError, OSError):  # no libc symbols (or no MSG_DONTWAIT) here
    _DONTWAIT = None

_AGAIN = {errno.EAGAIN, errno.EWOULDBLOCK}
try:
    from ssl import SSLSocket as _TLS
except ImportError:  # a Python built without ssl has no TLS sockets to refuse
    _TLS = ()  # type: ignore[assignment,misc]


def reader_for(sock: socket.socket) -> Callable[[], bytes | None] | None:
    """A function returning the bytes waiting on ``sock`` (b"" when the peer closed it,
    None when nothing is waiting), never releasing the GIL; None if ``sock`` is TLS or the
    platform cannot."""
    if _DONTWAIT is None or isinstance(sock, _TLS):
        return None
    fd = sock.fileno()
    buffer = ctypes.create_string_buffer(CHUNK)
    flags = _DONTWAIT

    def read() -> bytes | None:
        while True:
            n = _recv(fd, buffer, CHUNK, flags)
            if n >= 0:
                return ctypes.string_at(buffer, n)
            code = ctypes.get_errno()
            if code in _AGAIN:
                return None
            if code != errno.EINTR:
                raise OSError(code, f"recv: {errno.errorcode.get(code, code)}")

    return read
