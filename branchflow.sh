#!/usr/bin/env bash
# branchflow from this source tree, with nothing installed by hand first: creates or reuses .venv (system
# Python ≥ 3.11; installs python3-venv by apt when it is missing and you are root), installs the project
# into it, then runs `branchflow ARGS…` — e.g. `./branchflow.sh demo`, `./branchflow.sh web`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
. .ci/venv.sh
bf_venv >&2
cd "$OLDPWD"
exec "$BF_BIN/branchflow" "$@"
