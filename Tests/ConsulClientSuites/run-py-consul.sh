#!/usr/bin/env bash
# Runs py-consul's own test suite (from its PyPI source release) against the real `trellis registry`.
# Usage: TRELLIS_BIN=.build/debug/trellis Tests/ConsulClientSuites/run-py-consul.sh [pytest args…]
# Not part of `make test`: the suite covers features the registry does not have (see README).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${TRELLIS_BIN:=$here/../../.build/debug/trellis}"
export TRELLIS_BIN="$(cd "$(dirname "$TRELLIS_BIN")" && pwd)/$(basename "$TRELLIS_BIN")"
version="${PY_CONSUL_VERSION:-1.8.0}"
work="${WORK_DIR:-$(mktemp -d)}"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "py-consul==$version" pytest pytest-asyncio aiohttp requests
"$work/venv/bin/pip" download -q --no-deps --no-binary :all: "py-consul==$version" -d "$work"
tar xzf "$work/py_consul-$version.tar.gz" -C "$work"
suite="$work/py_consul-$version"
cp "$here/py_consul_conftest.py" "$suite/conftest.py"
cd "$suite"
# The installed package is the one under test; the source tree only provides the tests.
rm -rf consul
"$work/venv/bin/python" -m pytest tests -p no:cacheprovider -q -o addopts= -o asyncio_mode=auto "$@"
