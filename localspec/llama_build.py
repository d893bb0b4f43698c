"""Building llama-cpp-python so that it runs on this machine, and telling how it was built.

Two facts force this module (stdlib only: `make install` runs it before the
package and its dependencies are installed):

- llama-cpp-python compiles llama.cpp with GGML_NATIVE, i.e. for the CPU it is
  built on. On x86 with AMX (Intel Sapphire Rapids and later), GCC before 13
  miscompiles `_tile_loadconfig` (the tile-config stores are dropped) and the
  first decode dies at `ldtilecfg` in ggml's AMX matmul. `-mno-amx-*` turns
  ggml's AMX path off at compile time; on a CPU without AMX the flags change
  nothing, so they are added on every x86 GCC < 13 build and every machine
  of that kind builds the same way.
- pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, the compiler or
  the CPU: a machine that once built a crashing (or another CPU's) wheel would
  keep installing it. So the wheel is built with pip's cache off into a folder
  of ours keyed by everything that decides the binary (`signature`), and the
  venv records what it holds (`RECORD_NAME` under sys.prefix).

The build has ggml's RPC backend (`GGML_RPC=ON`, part of the key), and next to
the wheel lies llama.cpp's own `rpc-server`, compiled from the same sdist's
`tools/rpc/rpc-server.cpp` and linked to the wheel's very ggml libraries
(copied beside it): both ends of `--rpc` speak one protocol version, and the
server costs seconds to build, not a second ggml compile.

`python -m localspec.llama_build` makes the venv's llama-cpp-python match this
machine, building only when the recorded build does not: a different CPU,
compiler, or `CMAKE_ARGS` (a user's `-DGGML_CUDA=on` is kept across later
plain `make` runs until CMAKE_ARGS names something else).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "0.3.36"
RECORD_NAME = "llama-build.json"
AMX_OFF = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
RPC_ON = "-DGGML_RPC=ON"
RPC_SERVER = "rpc-server"  # a folder in the wheel folder: the binary and the ggml libraries it runs on
# Flags that GGML_NATIVE (-march=native) turns into code: a wheel built where
# one of these is present can fault with SIGILL where it is absent.
NATIVE_FLAGS = re.compile(r"^(sse\d.*|ssse3|avx.*|fma|f16c|bmi\d|amx_.*|avx512.*|vnni|neon|asimd.*|sve.*|i8mm|dotprod)$")


def host_cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The instruction-set flags of this CPU that a native build may use (Linux; empty elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted({f for f in value.split() if NATIVE_FLAGS.match(f)})
    return []


def compiler_version(cc: str | None = None) -> str:
    """First line of `cc --version` for the C compiler CMake will pick (CC, else cc)."""
    cc = cc or os.environ.get("CC") or "cc"
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out else ""


def gcc_major(version_line: str) -> int | None:
    """GCC's major version from `cc --version` or an ELF .comment line; None for clang and others."""
    if "clang" in version_line.lower():
        return None
    m = re.search(r"(?:gcc|GCC|g\+\+|\bcc)\b.*?\s(\d+)\.\d+(?:\.\d+)?", version_line)
    return int(m.group(1)) if m else None


def needs_amx_guard(machine: str, compiler: str) -> bool:
    return machine.lower() in ("x86_64", "amd64") and (gcc_major(compiler) or 99) < 13


def merge_cmake_args(user_args: str, extra_flags: tuple[str, ...]) -> str:
    """`user_args` with `extra_flags` appended to CMAKE_C_FLAGS and CMAKE_CXX_FLAGS (added if absent)."""
    if not extra_flags:
        return user_args
    args = shlex.split(user_args)
    for var in ("CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"):
        prefix = f"-D{var}="
        hits = [i for i, a in enumerate(args) if a.startswith(prefix) or a.startswith(f"-D{var}:STRING=")]
        if hits:
            i = hits[-1]
            name, _, value = args[i].partition("=")
            have = value.split()
            args[i] = f"{name}={' '.join(have + [f for f in extra_flags if f not in have])}"
        else:
            args.append(prefix + " ".join(extra_flags))
    return shlex.join(args)


def with_rpc(user_args: str) -> str:
    """`user_args` with ggml's RPC backend on, unless the user set GGML_RPC themselves."""
    if any(a.startswith(("-DGGML_RPC=", "-DGGML_RPC:")) for a in shlex.split(user_args)):
        return user_args
    return f"{user_args} {RPC_ON}".strip()


def plan(user_args: str, machine: str, compiler: str, cpu_flags: list[str], python_tag: str) -> dict:
    """What to build: the CMAKE_ARGS to use and the signature that names the binary."""
    guard = AMX_OFF if needs_amx_guard(machine, compiler) else ()
    cmake_args = merge_cmake_args(with_rpc(user_args), guard)
    key = json.dumps([VERSION, cmake_args, compiler, machine, cpu_flags, python_tag])
    return {
        "version": VERSION,
        "user_cmake_args": user_args,
        "cmake_args": cmake_args,
        "amx_guard": bool(guard),
        "compiler": compiler,
        "machine": machine,
        "cpu_flags": cpu_flags,
        "python": python_tag,
        "signature": hashlib.sha256(key.encode()).hexdigest()[:16],
    }


def record_path(prefix: str | None = None) -> Path:
    return Path(prefix or sys.prefix) / RECORD_NAME


def read_record(prefix: str | None = None) -> dict | None:
    try:
        return json.loads(record_path(prefix).read_text())
    except (OSError, ValueError):
        return None


def installed_fingerprint() -> str | None:
    """Hash of the installed llama-cpp-python's RECORD: changes with every reinstall or rebuild."""
    from importlib import metadata

    try:
        text = metadata.distribution("llama_cpp_python").read_text("RECORD")
    except metadata.PackageNotFoundError:
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else None


def wheel_dir(signature: str) -> Path:
    base = os.environ.get("LOCALSPEC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "localspec"
    )
    return Path(base).expanduser() / "llama-wheels" / signature


def desired_plan() -> dict:
    """The build this machine should have: CMAKE_ARGS from the environment, else the recorded user's."""
    if "CMAKE_ARGS" in os.environ:
        user_args = os.environ["CMAKE_ARGS"]
    else:
        user_args = (read_record() or {}).get("user_cmake_args", "")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return plan(user_args, platform.machine(), compiler_version(), host_cpu_flags(), tag)


def up_to_date(want: dict, have: dict | None, fingerprint: str | None) -> bool:
    """The venv holds the build `want` names, installed by us and not replaced since."""
    return bool(have and fingerprint and have.get("signature") == want["signature"]
                and have.get("fingerprint") == fingerprint)  # fmt: skip


def ensure(force: bool = False) -> int:
    want = desired_plan()
    have = read_record()
    if not force and up_to_date(want, have, installed_fingerprint()) and rpc_server_path(have):
        print(f"llama-cpp-python {VERSION}: build {want['signature']} matches this machine")
        return 0
    pip = [sys.executable, "-m", "pip"]
    out = wheel_dir(want["signature"])
    wheels = sorted(out.glob("llama_cpp_python-*.whl")) if out.is_dir() else []
    if not wheels or not (out / RPC_SERVER / RPC_SERVER).is_file():
        print(f"building llama-cpp-python {VERSION} and rpc-server for this machine (build {want['signature']}, "
              f"{'AMX off, ' if want['amx_guard'] else ''}CMAKE_ARGS={want['cmake_args']!r}); "
              "about 10 minutes on 2 cores", flush=True)  # fmt: skip
        tmp = out.with_name(out.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        # One sdist for both ends: the wheel is built from it and rpc-server's source read from it.
        subprocess.run([*pip, "download", "-q", "--no-cache-dir", "--no-binary", ":all:", "--no-deps",
                        "-d", str(tmp / "sdist"), f"llama-cpp-python=={VERSION}"], check=True)  # fmt: skip
        sdist = next((tmp / "sdist").glob("llama_cpp_python-*.tar.gz"))
        env = dict(os.environ, CMAKE_ARGS=want["cmake_args"])
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run([*pip, "wheel", "-q", "--no-cache-dir", "--no-deps", "-w", str(tmp), str(sdist)],
                       env=env, check=True)  # fmt: skip
        build_rpc_server(sdist, next(tmp.glob("llama_cpp_python-*.whl")), tmp / RPC_SERVER)
        shutil.rmtree(tmp / "sdist")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        wheels = sorted(out.glob("llama_cpp_python-*.whl"))
    wheel = str(wheels[-1])
    subprocess.run([*pip, "install", "-q", "--no-deps", "--force-reinstall", wheel], check=True)
    subprocess.run([*pip, "install", "-q", wheel], check=True)  # its dependencies, nothing rebuilt
    record = dict(want, wheel=wheel, rpc_server=str(out / RPC_SERVER / RPC_SERVER), fingerprint=installed_fingerprint())
    record_path().write_text(json.dumps(record, indent=2) + "\n")
    print(f"llama-cpp-python {VERSION}: installed build {want['signature']} with {record['rpc_server']}")
    return 0


def build_rpc_server(sdist: Path, wheel: Path, dest: Path) -> Path:
    """Compile llama.cpp's tools/rpc/rpc-server.cpp from `sdist` against the ggml libraries in `wheel`.

    The libraries are copied into `dest` beside the binary (rpath $ORIGIN), so the server does not depend
    on any venv staying where it is, and runs exactly the ggml (and RPC protocol) the client loads.
    """
    import tarfile
    import zipfile

    dest.mkdir(parents=True, exist_ok=True)
    src = dest / "src"
    with tarfile.open(sdist) as tar:
        top = tar.getmembers()[0].name.split("/")[0]
        llama = f"{top}/vendor/llama.cpp"
        wanted = [m for m in tar.getmembers()
                  if m.isfile() and (m.name == f"{llama}/tools/rpc/rpc-server.cpp"
                                     or m.name.startswith(f"{llama}/ggml/include/"))]  # fmt: skip
        # The "data" filter exists from Python 3.11.4; the members are chosen by name above either way.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(src, members=wanted, **safe)
    with zipfile.ZipFile(wheel) as whl:
        for name in whl.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.startswith("llama_cpp/lib/") and base.startswith("libggml"):
                (dest / base).write_bytes(whl.read(name))
    cxx = os.environ.get("CXX") or "c++"
    root = src / llama
    binary = dest / RPC_SERVER
    subprocess.run([cxx, "-std=c++17", "-O2", f"-I{root / 'ggml' / 'include'}",
                    str(root / "tools" / "rpc" / "rpc-server.cpp"), "-o", str(binary),
                    f"-L{dest}", "-lggml", "-lggml-base", "-pthread", "-Wl,-rpath,$ORIGIN"], check=True)  # fmt: skip
    shutil.rmtree(src)
    return binary


def rpc_server_path(record: dict | None = None) -> Path | None:
    """The rpc-server built with the venv's llama-cpp-python, if there is one."""
    record = read_record() if record is None else record
    path = Path(record["rpc_server"]) if record and record.get("rpc_server") else None
    return path if path and path.is_file() else None


# --- what an installed build uses (doctor, load-time check) ---


def lib_dir() -> Path | None:
    from importlib.util import find_spec

    spec = find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


def built_by(lib: Path) -> str:
    """The compiler named in a shared library's ELF .comment section, e.g. 'GCC: (Debian 12.2.0-14) 12.2.0'."""
    try:
        data = lib.read_bytes()
    except OSError:
        return ""
    m = re.search(rb"GCC: \([^)]*\) [0-9.]+|clang version [0-9.]+", data)
    return m.group().decode() if m else ""


def system_features(system_info: str) -> dict[str, bool]:
    """llama.cpp's system-info string ('CPU : SSE3 = 1 | AVX2 = 1 | ...') as feature -> on."""
    found = re.findall(r"([A-Z][A-Z0-9_]+) = ([01])", system_info)
    return {name: value == "1" for name, value in found}


def amx_in_play(features: dict[str, bool], cpu_flags: list[str]) -> bool:
    """The build has AMX compiled in and this CPU has AMX."""
    return "amx_tile" in cpu_flags and any(on for name, on in features.items() if name.startswith("AMX"))


def amx_crash_risk(features: dict[str, bool], compiler: str, cpu_flags: list[str]) -> bool:
    """True when this build would fault at ldtilecfg: AMX compiled in by GCC < 13, on a CPU that has AMX."""
    return amx_in_play(features, cpu_flags) and (gcc_major(compiler) or 99) < 13


def cpu_library() -> Path | None:
    lib = lib_dir()
    return next(iter(sorted(lib.glob("libggml-cpu*"))), None) if lib and lib.is_dir() else None


def crashes_here(system_info: str) -> bool:
    """Whether the installed build would fault at ldtilecfg on this CPU.

    Runs once per process, before the first model loads: the compiler is read from the library (megabytes)
    only where the CPU and the build both have AMX, which most machines do not.
    """
    features, cpu_flags = system_features(system_info), host_cpu_flags()
    if not amx_in_play(features, cpu_flags):
        return False
    cpu_lib = cpu_library()
    return amx_crash_risk(features, built_by(cpu_lib) if cpu_lib else "", cpu_flags)


def describe(system_info: str) -> dict:
    """How the installed llama-cpp-python was built, and whether it is safe on this CPU."""
    cpu_lib = cpu_library()
    compiler = built_by(cpu_lib) if cpu_lib else ""
    features = system_features(system_info)
    cpu_flags = host_cpu_flags()
    record = read_record()
    return {
        "features": sorted(name for name, on in features.items() if on),
        "compiler": compiler,
        "amx_guard": bool(record and record.get("amx_guard")),
        "signature": record.get("signature") if record else None,
        "matches_this_machine": up_to_date(desired_plan(), record, installed_fingerprint()),
        "amx_crash_risk": amx_crash_risk(features, compiler, cpu_flags),
    }


if __name__ == "__main__":
    sys.exit(ensure(force="--force" in sys.argv[1:]))
