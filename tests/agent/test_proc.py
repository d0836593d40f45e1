"""proc.py: a captured /proc tree (tests/agent/fixtures/proc-root), variants of it, then the live
system for the current process."""
from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netatlas.agent.model import MachineInfo, ProcessInfo
from netatlas.agent.proc import Proc

ROOT = Path(__file__).parent / "fixtures" / "proc-root"

# From tests/agent/fixtures/capture.py's output (see fixtures/README.md).
BTIME = 1795628138
SERVER, SLEEPER = 12334, 12335
SERVER_INODES = {147475, 147476, 147477}
SERVER_CMDLINE = ("/usr/bin/python3.11 -c import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\n"
                  "s.listen()\nc = socket.create_connection(s.getsockname())\na, _ = s.accept()\ntime.sleep(60)"
                  " --name fixture server")


def without_start(info: ProcessInfo) -> ProcessInfo:
    return dataclasses.replace(info, start_time=0.0)


def test_processes_from_the_fixture_tree():
    procs = Proc(ROOT).processes()
    assert sorted(procs) == [2, SERVER, SLEEPER]
    server = procs[SERVER]
    assert server.start_time == pytest.approx(BTIME + 617689 / 100)     # stat field 22, in clock ticks
    assert without_start(server) == ProcessInfo(
        pid=SERVER, ppid=12292, name="python3.11", exe="/usr/bin/python3.11", cmdline=SERVER_CMDLINE,
        cwd="/tmp/netatlas-capture-cwd", uid=0, user="root", start_time=0.0, inodes=SERVER_INODES,
        display="python3.11")     # python -c: code, not a script, so the interpreter's name
    assert without_start(procs[SLEEPER]) == ProcessInfo(
        pid=SLEEPER, ppid=12292, name="sleep", exe="/usr/bin/sleep", cmdline="/usr/bin/sleep 1000",
        cwd="/tmp/netatlas-capture-cwd", uid=65534, user="nobody", start_time=0.0, inodes=set(), display="sleep")
    # a kernel thread: no exe, no command line, named by comm
    kthreadd = procs[2]
    assert (kthreadd.name, kthreadd.exe, kthreadd.cmdline, kthreadd.ppid, kthreadd.user) == \
        ("kthreadd", "", "", 0, "root")
    assert kthreadd.start_time == pytest.approx(BTIME + 0.26)


def test_socket_owners_from_the_fixture_tree():
    assert Proc(ROOT).socket_owners() == {inode: SERVER for inode in SERVER_INODES}


def test_machine_from_the_fixture_tree():
    assert Proc(ROOT).machine() == MachineInfo(
        hostname="vm", fqdn="vm", ipv4=["192.0.2.2"], ipv6=["fd00::2", "fe80::fc:ff:fe00:1"],
        macs=["02:fc:00:00:00:01", "46:a4:09:2e:a8:ab", "d2:46:98:cb:dc:94"], dns_names=["vm"],
        os_family="Linux", os_full_name="Debian GNU/Linux 12 (bookworm)", bitness="64-bit", cpus=2,
        cpu_speed_mhz=2596, memory_mb=24105, boot_time=float(BTIME), timezone="Etc/UTC",
        virtualization="virtual", hypervisor="kvm",      # kvm-clock among the clock sources
        os_name="Debian GNU/Linux", os_version="12")


def test_package_version_from_the_fixture_dpkg_database():
    proc = Proc(ROOT)
    assert proc.package_version("/usr/bin/python3.11") == ("python3.11-minimal", "3.11.2-6+deb12u6")
    assert proc.package_version("/usr/bin/sleep") == ("coreutils", "9.1-1")   # listed as /bin/sleep (merged /usr)
    assert proc.package_version("/opt/app/bin/server") == ("", "")
    assert proc.package_version("/usr/bin/slee") == ("", "")                  # whole lines only


@pytest.fixture
def tree(tmp_path) -> Path:
    """A writable copy of the fixture tree (symlinks kept as links)."""
    root = tmp_path / "root"
    shutil.copytree(ROOT, root, symlinks=True)
    return root


HELLO_SPEC = """Name: hello-netatlas
Version: 1.2
Release: 3
Summary: an executable for the RPM test
License: MIT
BuildArch: noarch
%description
an executable for the RPM test
%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\\necho hi\\n' > %{buildroot}/usr/bin/hello-netatlas
chmod 755 %{buildroot}/usr/bin/hello-netatlas
%files
/usr/bin/hello-netatlas
"""


def test_package_version_from_an_rpm_database(tmp_path):
    """A root without dpkg, with an RPM database at var/lib/rpm as RPM systems keep it: a package
    built by rpmbuild and installed into it by rpm."""
    if shutil.which("rpm") is None or shutil.which("rpmbuild") is None:
        print("skipping: rpm and rpmbuild are not installed (Debian package rpm)")
        pytest.skip("rpm and rpmbuild are not installed (Debian package rpm)")
    top, root = tmp_path / "build", tmp_path / "root"
    (top / "SPECS").mkdir(parents=True)
    (top / "SPECS" / "hello.spec").write_text(HELLO_SPEC)
    subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", str(top / "SPECS" / "hello.spec")],
                   check=True, capture_output=True)
    [package] = (top / "RPMS" / "noarch").glob("*.rpm")
    (root / "var/lib/rpm").mkdir(parents=True)
    db = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    subprocess.run([*db, "--initdb"], check=True, capture_output=True)
    subprocess.run([*db, "-i", "--nodeps", "--noscripts", str(package)], check=True, capture_output=True)
    proc = Proc(root)
    assert proc.package_version("/usr/bin/hello-netatlas") == ("hello-netatlas", "1.2-3")
    assert proc.package_version("/usr/bin/not-packaged") == ("", "")
    assert Proc(tmp_path / "empty").package_version("/usr/bin/hello-netatlas") == ("", "")   # no database


def test_package_version_follows_an_upgrade(tree):
    proc = Proc(tree)
    assert proc.package_version("/usr/bin/sleep") == ("coreutils", "9.1-1")
    status = tree / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace("Version: 9.1-1", "Version: 9.1-2"))
    os.utime(status, (time.time() + 5, time.time() + 5))
    assert proc.package_version("/usr/bin/sleep") == ("coreutils", "9.1-2")
    (tree / "var/lib/dpkg/status").unlink()
    assert proc.package_version("/usr/bin/sleep") == ("", "")                 # no dpkg: nothing to say


def test_processes_that_vanish_mid_read_are_left_out(tree, monkeypatch):
    proc = Proc(tree)
    monkeypatch.setattr(Proc, "pids", lambda self: [2, 999_999, SERVER, SLEEPER])   # 999999 exited after listdir
    (tree / f"proc/{SLEEPER}/status").unlink()                                      # gone between two reads
    assert sorted(proc.processes()) == [2, SERVER]
    shutil.rmtree(tree / f"proc/{SERVER}/fd")                                       # gone after its stat was read
    assert proc.processes()[SERVER].inodes == set()
    assert proc.socket_owners() == {}


def test_a_deleted_executable_is_reported_by_its_path(tree):
    exe = tree / f"proc/{SLEEPER}/exe"
    exe.unlink()
    exe.symlink_to("/usr/bin/sleep (deleted)")
    assert Proc(tree).processes()[SLEEPER].exe == "/usr/bin/sleep"


def test_an_unknown_uid_is_shown_as_a_number(tree):
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert Proc(tree).processes()[SLEEPER].user == "65534"


@pytest.mark.parametrize("vendor, product, expected", [
    ("VMware, Inc.", "VMware Virtual Platform", ("virtual", "vmware")),
    ("Microsoft Corporation", "Virtual Machine", ("virtual", "hyperv")),
    ("QEMU", "Standard PC (Q35 + ICH9, 2009)", ("virtual", "kvm")),
    ("innotek GmbH", "VirtualBox", ("virtual", "virtualbox")),
    ("Xen", "HVM domU", ("virtual", "xen")),
    ("Dell Inc.", "PowerEdge R740", ("virtual", "kvm")),      # DMI says nothing; the clock source does
])
def test_virtualization_from_dmi(tree, vendor, product, expected):
    dmi = tree / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text(vendor + "\n")
    (dmi / "product_name").write_text(product + "\n")
    machine = Proc(tree).machine()
    assert (machine.virtualization, machine.hypervisor) == expected


def test_virtualization_from_cpu_flags_alone(tree):
    (tree / "sys/devices/system/clocksource/clocksource0/available_clocksource").write_text("tsc hpet acpi_pm\n")
    machine = Proc(tree).machine()
    assert (machine.virtualization, machine.hypervisor) == ("virtual", "")     # the cpu's hypervisor flag
    cpuinfo = tree / "proc/cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace(" hypervisor", ""))
    machine = Proc(tree).machine()
    assert (machine.virtualization, machine.hypervisor) == ("physical", "")
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")                 # no flags line (arm64)
    machine = Proc(tree).machine()
    assert (machine.virtualization, machine.cpus, machine.cpu_speed_mhz) == ("unknown", 1, 0)


def test_fqdn_and_dns_names_from_etc_hosts(tree):
    (tree / "etc/hosts").write_text("127.0.0.1 localhost\n192.0.2.2 vm.corp.example.net vm vm-alias  # the host\n")
    machine = Proc(tree).machine()
    assert (machine.fqdn, machine.dns_names) == ("vm.corp.example.net", ["vm.corp.example.net", "vm-alias"])


def test_timezone_from_the_localtime_link_without_etc_timezone(tree):
    (tree / "etc/timezone").unlink()
    (tree / "etc/localtime").unlink()
    (tree / "etc/localtime").symlink_to("../usr/share/zoneinfo/Europe/Paris")
    assert Proc(tree).machine().timezone == "Europe/Paris"
    (tree / "etc/localtime").unlink()
    assert Proc(tree).machine().timezone == "UTC"


def test_os_release_falls_back_to_usr_lib_and_bitness_to_cpu_flags(tree):
    (tree / "etc/os-release").rename(tree / "os-release")
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text('NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n')
    (tree / "proc/sys/kernel/arch").unlink()
    machine = Proc(tree).machine()
    assert (machine.os_full_name, machine.bitness) == ("Ubuntu 24.04.1 LTS", "64-bit")     # the "lm" flag


# --- the live system ---

def test_the_current_process_on_the_live_root():
    proc = Proc("/")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        inode = os.fstat(sock.fileno()).st_ino
        me = proc.processes()[os.getpid()]
        owners = proc.socket_owners()
    assert me.pid == os.getpid() and me.ppid == os.getppid()
    assert me.exe == os.path.realpath(sys.executable)
    assert me.name == os.path.basename(me.exe)
    assert me.cmdline == " ".join(Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").decode().split("\0"))
    assert "pytest" in me.cmdline
    assert me.cwd == os.getcwd()
    assert (me.uid, me.user) == (os.geteuid(), pwd.getpwuid(os.geteuid()).pw_name)
    assert proc.boot_time() < me.start_time <= time.time()
    assert inode in me.inodes and owners[inode] == os.getpid()


def test_the_live_machine():
    machine = Proc("/").machine()
    assert machine.hostname == socket.gethostname()
    assert machine.fqdn.split(".")[0] == machine.hostname.split(".")[0]
    assert machine.cpus == os.cpu_count()
    assert machine.memory_mb > 0 and machine.os_family == "Linux" and machine.os_full_name
    assert machine.boot_time < time.time()
    assert machine.virtualization in ("physical", "virtual", "unknown")
    assert all("." in a for a in machine.ipv4) and "127.0.0.1" not in machine.ipv4


@pytest.mark.skipif(not Path("/var/lib/dpkg/status").exists(), reason="not a Debian system (no dpkg database)")
def test_package_version_on_the_live_root():
    proc = Proc("/")
    package, version = proc.package_version(os.path.realpath("/usr/bin/env"))
    assert package == "coreutils" and version
