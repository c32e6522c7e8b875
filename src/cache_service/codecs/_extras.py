"""Optional packages behind the codec stages: imported on first use, never at import time,
so a missing extra is a ConfigurationError naming it when an option asks for it."""

from __future__ import annotations

import importlib
from types import ModuleType

from cache_service.errors import ConfigurationError

__all__ = ["EXTRAS", "available", "require"]

# module -> (the extra that installs it, the package's name)
EXTRAS = {
    "msgpack": ("msgpack", "msgpack"),
    "zstandard": ("zstd", "zstandard"),
    "lz4.frame": ("lz4", "lz4"),
    "cryptography.hazmat.primitives.ciphers.aead": ("encryption", "cryptography"),
    "cryptography.exceptions": ("encryption", "cryptography"),
}


def available(module: str) -> ModuleType | None:
    """``module`` if it imports, else None."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def require(module: str, setting: str) -> ModuleType:
    """``module``, or a ConfigurationError naming ``setting`` and the extra to install."""
    found = available(module)
    if found is None:
        extra, package = EXTRAS[module]
        raise ConfigurationError(
            f"{setting} needs the {package} package: pip install 'cache_service[{extra}]'")
    return found
