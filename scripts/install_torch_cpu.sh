#!/usr/bin/env bash
# Install the CPU build of torch (no CUDA, no nvidia-* packages, no triton) into a venv, without waiting long on a
# host that cannot be reached.
#
#   scripts/install_torch_cpu.sh [VENV_PYTHON] [TORCH_VERSION]   (defaults: .venv/bin/python, 2.13.0)
#
# 1. Already installed at that version: nothing to do.
# 2. Ask pip (dry run, nothing downloaded but metadata) what a plain `pip install torch==VERSION` would install.
#    When that is a CPU build -- no nvidia-*/triton packages in the plan (a machine whose pip finds a local +cpu
#    wheel, or macOS/Windows, where PyPI's torch is CPU-only) -- install exactly that.
# 3. Else install from PyTorch's CPU index, with a short timeout and no retries ($PIE_TORCH_CPU_INDEX,
#    $PIE_TORCH_INDEX_TIMEOUT seconds, default 15):
#        pip install torch==VERSION --index-url https://download.pytorch.org/whl/cpu
# 4. Else (no network to that host) fall back to the plain install, with a warning that it is the CUDA build.
set -euo pipefail

PY="${1:-.venv/bin/python}"
VERSION="${2:-2.13.0}"
CPU_INDEX="${PIE_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
TIMEOUT="${PIE_TORCH_INDEX_TIMEOUT:-15}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { echo "[install_torch_cpu] $*" >&2; }

installed=$("$PY" -c "from importlib import metadata as m; print(m.version('torch'))" 2>/dev/null || true)
if [ "${installed%%+*}" = "$VERSION" ]; then
    say "torch $installed is already installed"
    exit 0
fi

# What the plain install would bring: "cpu" when no CUDA package is in the plan, else "cuda" (or "unknown").
plan=$("$PY" -m pip install --dry-run --ignore-installed --quiet --report - "torch==$VERSION" 2>/dev/null | "$PY" -c '
import json, sys
try:
    names = [i["metadata"]["name"].lower() for i in json.load(sys.stdin)["install"]]
except Exception:
    print("unknown"); sys.exit()
print("cuda" if any(n.startswith("nvidia-") or n == "triton" for n in names) else "cpu")
' || echo unknown)

if [ "$plan" = "cpu" ]; then
    say "pip resolves torch==$VERSION to a CPU build here; installing it"
    exec "$PY" -m pip install "torch==$VERSION"
fi
say "a plain 'pip install torch==$VERSION' would be the CUDA build ($plan); trying the CPU index $CPU_INDEX (timeout ${TIMEOUT}s)"
if "$PY" -m pip install --timeout "$TIMEOUT" --retries 0 "torch==$VERSION" --index-url "$CPU_INDEX"; then
    exit 0
fi
say "WARNING: $CPU_INDEX is not reachable; installing torch==$VERSION as pip resolves it (the CUDA build on Linux:"
say "         several GB of nvidia-* packages). For the CPU build later: pip install torch==$VERSION --index-url $CPU_INDEX"
exec "$PY" -m pip install "torch==$VERSION"
