# Sourced by scripts/demo and scripts/test: a virtualenv with this package installed at the exact
# versions of uv.lock (or, with CACHE_SERVICE_NEWEST=1, the newest releases of everything).
# Usage: bootstrap EXTRAS   (e.g. "", "test" or "test bench")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NEWEST="${CACHE_SERVICE_NEWEST:-0}"
if [ "$NEWEST" = "1" ]; then VENV="$ROOT/.venv-newest"; else VENV="$ROOT/.venv"; fi

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

quiet() {  # run a command, showing its output only when it fails
    local log; log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        grep -v "is ignored" "$log" >&2; rm -f "$log"
        echo "error: $* failed" >&2; exit 1
    fi
    rm -f "$log"
}

ensure_uv() {  # uv itself, pinned by hash in scripts/uv-requirements.txt, in .tools/
    local python="$1" reqs="$ROOT/scripts/uv-requirements.txt" home
    home="$ROOT/.tools/uv-$(sha1sum < "$reqs" | cut -c1-12)"
    if [ ! -x "$home/bin/uv" ]; then
        echo "==> installing uv (scripts/uv-requirements.txt) into .tools/"
        rm -rf "$home"
        "$python" -m venv "$home" 2>/dev/null || { rm -rf "$home"; as_root_apt python3-venv; "$python" -m venv "$home"; }
        quiet "$home/bin/python" -m pip install --disable-pip-version-check --no-deps \
            --require-hashes -r "$reqs"
    fi
    UV="$home/bin/uv"
}

bootstrap() {
    local extras="$1" python="${PYTHON:-python3}" flags=() extra
    for extra in $extras; do flags+=(--extra "$extra"); done
    command -v "$python" >/dev/null || as_root_apt python3
    ensure_uv "$python"
    export UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="$VENV"
    if [ "$NEWEST" = "1" ]; then
        echo "==> installing the newest releases of every dependency into .venv-newest"
        quiet "$UV" venv --allow-existing --python "$python" "$VENV"
        quiet "$UV" pip install --python "$VENV/bin/python" --upgrade --refresh \
            -e "$ROOT${extras:+[${extras// /,}]}"
        "$UV" pip list --python "$VENV/bin/python" 2>/dev/null \
            | grep -iE "^(redis|hiredis|orjson|django|flask|cachelib|dogpile|fastapi|mypy|ruff|pytest) " || true
    elif [ -n "$extras" ]; then
        # exact: the venv holds the locked versions of these extras, nothing else
        quiet "$UV" sync --locked --python "$python" "${flags[@]}"
    else
        # the demo keeps whatever else the venv holds (the test extra), at locked versions
        quiet "$UV" sync --locked --inexact --python "$python"
    fi
}
