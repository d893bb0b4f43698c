"""localspec.host: the CPU's identity and memory, read from /proc-style files."""

from localspec import host

ROME = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
stepping\t: 0
processor\t: 1
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
stepping\t: 0
"""


def test_cpu_name_tells_two_generations_of_one_marketing_name_apart(tmp_path):
    rome = tmp_path / "rome"
    rome.write_text(ROME)
    milan = tmp_path / "milan"
    milan.write_text(ROME.replace(": 23", ": 25").replace(": 49", ": 1"))
    assert host.cpu_name(str(rome)) == "AMD EPYC (family 23, model 49, stepping 0)"
    assert host.cpu_name(str(milan)) == "AMD EPYC (family 25, model 1, stepping 0)"


def test_cpu_name_without_the_numbers_is_the_model_name(tmp_path):
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nmodel name\t: Apple M2\n")
    assert host.cpu_name(str(arm)) == "Apple M2"


def test_memory_info(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    600 kB\n")
    assert host.memory_info(str(meminfo)) == {"MemTotal": 1024000, "MemAvailable": 614400}
    assert host.memory_info(str(tmp_path / "absent")) is None
