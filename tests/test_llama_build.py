"""How llama-cpp-python is built for a machine: the AMX guard, the build key, what doctor reads."""

from __future__ import annotations

import shlex

from localspec import llama_build as lb

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8
"""
EPYC = "flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 sse4a avx f16c avx2 bmi1 bmi2 sha_ni\n"


def test_cpu_flags_keep_only_what_a_native_build_turns_into_code():
    assert lb.host_cpu_flags(SAPPHIRE_RAPIDS) == sorted(
        ["sse2", "ssse3", "fma", "sse4_1", "sse4_2", "avx", "f16c", "avx2", "bmi1", "bmi2", "avx512f",
         "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8"]
    )  # fmt: skip
    assert "amx_tile" not in lb.host_cpu_flags(EPYC) and "fpu" not in lb.host_cpu_flags(EPYC)


def test_gcc_versions_are_read_from_cc_and_from_elf_comments():
    assert lb.gcc_major("cc (Debian 12.2.0-14+deb12u1) 12.2.0") == 12
    assert lb.gcc_major("gcc (GCC) 13.2.1 20231011 (Red Hat 13.2.1-4)") == 13
    assert lb.gcc_major("x86_64-linux-gnu-gcc-11 (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0") == 11
    assert lb.gcc_major("GCC: (Debian 12.2.0-14) 12.2.0") == 12
    assert lb.gcc_major("Apple clang version 15.0.0 (clang-1500.3.9.4)") is None
    assert lb.gcc_major("") is None


def test_the_guard_is_for_x86_gcc_before_13_only():
    assert lb.needs_amx_guard("x86_64", "cc (Debian 12.2.0-14) 12.2.0")
    assert not lb.needs_amx_guard("x86_64", "gcc (GCC) 13.2.1")
    assert not lb.needs_amx_guard("x86_64", "Ubuntu clang version 18.1.3")
    assert not lb.needs_amx_guard("aarch64", "cc (Debian 12.2.0-14) 12.2.0")
    assert not lb.needs_amx_guard("arm64", "Apple clang version 15.0.0")


def test_guard_flags_join_the_users_cmake_args():
    merged = shlex.split(lb.merge_cmake_args("-DGGML_CUDA=on", lb.AMX_OFF))
    assert merged[0] == "-DGGML_CUDA=on"
    assert "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in merged
    assert "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in merged
    # A user's own flags are kept and the guard appended once, however often it runs.
    user = "-DGGML_METAL=on '-DCMAKE_C_FLAGS=-O3 -g'"
    once = lb.merge_cmake_args(user, lb.AMX_OFF)
    assert lb.merge_cmake_args(once, lb.AMX_OFF) == once
    assert "-DCMAKE_C_FLAGS=-O3 -g -mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in shlex.split(once)
    assert lb.merge_cmake_args("-DGGML_CUDA=on", ()) == "-DGGML_CUDA=on"


def test_the_build_key_changes_with_cpu_compiler_and_cmake_args():
    gcc12 = "cc (Debian 12.2.0-14) 12.2.0"
    xeon = lb.plan("", "x86_64", gcc12, lb.host_cpu_flags(SAPPHIRE_RAPIDS), "cp311")
    epyc = lb.plan("", "x86_64", gcc12, lb.host_cpu_flags(EPYC), "cp311")
    cuda = lb.plan("-DGGML_CUDA=on", "x86_64", gcc12, lb.host_cpu_flags(EPYC), "cp311")
    gcc13 = lb.plan("", "x86_64", "gcc (GCC) 13.2.1", lb.host_cpu_flags(SAPPHIRE_RAPIDS), "cp311")
    assert len({xeon["signature"], epyc["signature"], cuda["signature"], gcc13["signature"]}) == 4
    assert xeon["amx_guard"] and epyc["amx_guard"] and not gcc13["amx_guard"]
    assert "-mno-amx-tile" in xeon["cmake_args"] and "-mno-amx-tile" not in gcc13["cmake_args"]
    assert lb.plan("", "x86_64", gcc12, lb.host_cpu_flags(EPYC), "cp311") == epyc  # stable


def test_a_build_is_current_only_if_we_installed_it_and_nothing_replaced_it():
    want = lb.plan("", "x86_64", "cc 12.2.0", [], "cp311")
    mine = dict(want, fingerprint="abc")
    assert lb.up_to_date(want, mine, "abc")
    assert not lb.up_to_date(want, mine, "def")  # pip reinstalled it from its own cache
    assert not lb.up_to_date(want, None, "abc")  # never built by us
    assert not lb.up_to_date(want, dict(mine, signature="other"), "abc")  # another CPU's build
    assert not lb.up_to_date(want, mine, None)  # not installed


def test_doctor_reads_features_and_the_crash_risk():
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
    features = lb.system_features(info)
    assert features["AVX2"] and features["AMX_INT8"]
    xeon = lb.host_cpu_flags(SAPPHIRE_RAPIDS)
    assert lb.amx_crash_risk(features, "GCC: (Debian 12.2.0-14) 12.2.0", xeon)
    assert not lb.amx_crash_risk(features, "GCC: (GNU) 13.2.0", xeon)
    assert not lb.amx_crash_risk(features, "GCC: (Debian 12.2.0-14) 12.2.0", lb.host_cpu_flags(EPYC))
    guarded = lb.system_features(info.replace("AMX_INT8 = 1 | ", ""))
    assert not lb.amx_crash_risk(guarded, "GCC: (Debian 12.2.0-14) 12.2.0", xeon)


def test_the_load_time_check_reads_the_library_only_where_amx_is_in_play(tmp_path, monkeypatch):
    info = "CPU : AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
    lib = tmp_path / "libggml-cpu.so"
    lib.write_bytes(b"\x7fELF...GCC: (Debian 12.2.0-14) 12.2.0\x00...")
    read = []
    monkeypatch.setattr(lb, "cpu_library", lambda: read.append(lib) or lib)
    monkeypatch.setattr(lb, "host_cpu_flags", lambda: EPYC_FLAGS)
    assert not lb.crashes_here(info) and read == []  # no AMX on the CPU: the library is not opened
    monkeypatch.setattr(lb, "host_cpu_flags", lambda: XEON_FLAGS)
    assert lb.crashes_here(info) and read == [lib]
    assert not lb.crashes_here(info.replace("AMX_INT8 = 1 | ", ""))  # the guarded build


EPYC_FLAGS = lb.host_cpu_flags(EPYC)
XEON_FLAGS = lb.host_cpu_flags(SAPPHIRE_RAPIDS)
