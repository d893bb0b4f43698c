"""What a benchmark ran on: machine, libraries, model files.

Numbers are only comparable between runs whose header matches, so the
report carries all of it.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from localspec.fetch import sha256_file
from localspec.host import cpu_name, memory_info

SHA_PREFIX = 12


def machine() -> dict:
    mem = memory_info()
    ram_gib = round(mem["MemTotal"] / 2**30, 1) if mem else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "ram_gib": ram_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def load_average() -> float | None:
    """1-minute load average. llama.cpp's threads spin while they wait for each
    other, so a second busy process on the same cores can slow decoding many
    times over, and a benchmark taken under load measures the neighbour."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def libraries() -> dict:
    import llama_cpp

    # llama.cpp's build number and commit live in libcommon, which the Python
    # package does not load; the ggml shared library's version and the CPU
    # features it was built with are what can be read.
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    ggml = None
    for p in sorted(lib_dir.glob("libggml.so.*")):
        m = re.fullmatch(r"libggml\.so\.(\d+\.\d+\.\d+)", p.name)
        if m:
            ggml = m.group(1)
    info = llama_cpp.llama_print_system_info()
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "ggml": ggml,
        "llama_system_info": (info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)).strip(),
        "numpy": __import__("numpy").__version__,
    }


def model_file(name: str, path: Path) -> dict:
    return {"name": name, "file": path.name, "size": path.stat().st_size, "sha256": sha256_file(path)[:SHA_PREFIX]}


def models(engine) -> dict:
    out = {"target": model_file(engine.target_name, engine.target.path)}
    if engine.draft_model is not None:
        out["draft"] = model_file(engine.draft_name or "draft", engine.draft_model.ctx.model.path)
    return out
