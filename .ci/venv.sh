# Sourced by ./branchflow.sh and .ci/run: create or reuse the project venv (.venv) with the system Python and
# install the project into it. Works on a stock Debian 12 / Ubuntu 24.04, whose system Python refuses
# `pip install` outside a venv (PEP 668, "externally-managed-environment").
#
#   bf_venv [PROJECT [REQ...]]   PROJECT: the project with its extras, installed editable (default `.`, e.g.
#                                `.[test]`); REQ: more pip requirements beside it, e.g. 'ruff>=0.17,<0.18'
#
# Settings: PYTHON (default python3; must be ≥ 3.11), BRANCHFLOW_VENV (default .venv in the source tree).
# The install is redone only when pyproject.toml or the requested extras change (a stamp in the venv).

bf_apt_install() {  # bf_apt_install PACKAGE... — as root, or through sudo; otherwise say what to run
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"
    else
      echo "缺少系统软件包：$*。请以 root 身份运行：apt-get install $*" >&2
      return 1
    fi
  fi
  echo "安装系统软件包：$*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

bf_venv() {
  local py="${PYTHON:-python3}" venv="${BRANCHFLOW_VENV:-.venv}"
  case "$venv" in /*) ;; *) venv="$(pwd)/$venv" ;; esac
  if ! command -v "$py" >/dev/null 2>&1; then
    echo "找不到 Python（$py）：请先安装 python3（≥ 3.11）" >&2
    return 1
  fi
  if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "branchflow 需要 Python ≥ 3.11，而 $py 是 $("$py" -c 'import platform; print(platform.python_version())')" >&2
    return 1
  fi
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
      # Debian/Ubuntu ship venv/ensurepip separately; python3-venv pulls the one matching python3
      bf_apt_install python3-venv || return 1
    fi
    echo "创建虚拟环境 $venv（$("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')）"
    rm -rf "$venv"
    "$py" -m venv "$venv" || return 1
  fi
  local stamp="$venv/.branchflow-install" want
  want="$( { cat pyproject.toml; printf '%s\n' "$@"; } | "$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$venv/bin/branchflow" ]; then
    echo "安装 branchflow 及其依赖到 $venv ……"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "${1:-.}" "${@:2}" || return 1
    echo "$want" > "$stamp"
  fi
  BF_PY="$venv/bin/python"
  BF_BIN="$venv/bin"
}
