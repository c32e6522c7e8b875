# Sourced by scripts/demo and scripts/test: a virtualenv in .venv with this package installed.
# Usage: bootstrap EXTRAS   (e.g. "" or "test")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

as_root_apt() {  # apt-get install the given Debian packages when we are root
    if [ "$(id -u)" != "0" ]; then
        echo "error: missing $*; install it (e.g. sudo apt-get install -y $*) and re-run" >&2
        exit 1
    fi
    echo "==> apt-get install -y $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "$@" >/dev/null
}

bootstrap() {
    local extras="$1" python="${PYTHON:-python3}" stamp target="$ROOT"
    command -v "$python" >/dev/null || as_root_apt python3
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating virtualenv in .venv"
        "$python" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; as_root_apt python3-venv; "$python" -m venv "$VENV"; }
    fi
    [ -n "$extras" ] && target="$ROOT[$extras]"
    stamp="$VENV/.installed-$(sha1sum < "$ROOT/pyproject.toml" | cut -c1-12)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        echo "==> installing cache_service${extras:+ with [$extras]} into .venv"
        if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip &&
               "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$target"; } \
               >"$VENV/pip.log" 2>&1; then
            grep -v "is ignored" "$VENV/pip.log" >&2; echo "error: pip install failed" >&2; exit 1
        fi
        touch "$stamp"
    fi
}
