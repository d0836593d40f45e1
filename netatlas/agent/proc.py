"""Observe processes and the machine through a /proc tree: a root directory -> ``ProcessInfo``,
socket owners, ``MachineInfo``, package versions.

Everything is read under ``root`` (default "/"): ``root/proc``, ``root/sys``, ``root/etc``,
``root/var/lib/dpkg``, so tests run on captured trees (``tests/agent/fixtures/proc-root``).
Only a live root ("/") may ask the system beyond the files (``socket.getfqdn``, ``os.uname``).

| entry point | reads | product |
|---|---|---|
| ``Proc.processes()`` | proc/PID/{stat,status,cmdline,exe,cwd,fd/*}, proc/stat, etc/passwd | ``dict[pid, ProcessInfo]`` (its display name from ``names.py``) |
| ``Proc.socket_owners()`` | proc/PID/fd/* | ``dict[socket inode, pid]`` |
| ``Proc.machine()`` | proc/sys/kernel, proc/net, proc/cpuinfo, proc/meminfo, sys/class/net, sys/class/dmi, etc/{hosts,os-release,timezone,localtime} | ``MachineInfo`` |
| ``Proc.package_version(exe)`` | var/lib/dpkg/info/*.list, var/lib/dpkg/status; else the RPM database (usr/lib/sysimage/rpm or var/lib/rpm, through ``rpm --root``) | ``(package, version)`` |

A process that exits while it is read is left out (or keeps what was read before it went);
files a process hides from us (another user's exe, cwd and fds without root) read as empty.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from netatlas.agent.model import MachineInfo, ProcessInfo
from netatlas.agent.names import display_name

__all__ = ["Proc"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")      # USER_HZ: the unit of /proc/PID/stat times (100)
GONE = (FileNotFoundError, ProcessLookupError, NotADirectoryError)   # the process exited
HIDDEN = (PermissionError,)                                          # not ours to read
RPM_DATABASES = ("usr/lib/sysimage/rpm", "var/lib/rpm")              # where RPM systems keep it
RPM_QUERY = "%{NAME}\t%{VERSION}-%{RELEASE}\n"

# Hypervisors by DMI sys_vendor / product_name prefix (lower case), then by clock source.
DMI_HYPERVISORS = {
    "qemu": "kvm", "kvm": "kvm", "amazon ec2": "kvm", "google": "kvm", "openstack": "kvm",
    "red hat": "kvm", "nutanix": "kvm", "vmware": "vmware", "innotek": "virtualbox",
    "virtualbox": "virtualbox", "xen": "xen", "parallels": "parallels", "bochs": "bochs",
    "bhyve": "bhyve", "firecracker": "kvm",
}
MICROSOFT_VIRTUAL = ("microsoft corporation", "virtual machine")    # Hyper-V and Azure
CLOCKSOURCE_HYPERVISORS = {"kvm-clock": "kvm", "hyperv_clocksource_tsc_page": "hyperv",
                           "xen": "xen", "vmware-tsc": "vmware"}
ARCH_BITS = {"x86_64": "64-bit", "aarch64": "64-bit", "ppc64le": "64-bit", "ppc64": "64-bit",
             "s390x": "64-bit", "riscv64": "64-bit", "loongarch64": "64-bit", "mips64": "64-bit"}


def _read(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def _read_or(path: Path, default: str = "") -> str:
    try:
        return _read(path)
    except OSError:
        return default


def _link(path: Path) -> str:
    """A symlink's target ("" when hidden); a process that exited raises."""
    try:
        target = os.readlink(path)
    except HIDDEN:
        return ""
    return target[:-len(" (deleted)")] if target.endswith(" (deleted)") else target


def _key_values(text: str, sep: str = ":") -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found:
            out.setdefault(key.strip(), value.strip())
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


class Proc:
    """A /proc (and /sys, /etc) tree under ``root``."""

    def __init__(self, root: str | os.PathLike = "/"):
        self.root = Path(root)
        self.live = self.root.resolve() == Path("/")
        self.proc = self.root / "proc"
        self._users: tuple[float, dict[int, str]] | None = None
        self._packages: dict[str, tuple[str, str]] = {}
        self._packages_of: dict[str, str] | None = None     # the versions _packages was built on
        self._rpm_packages: dict[str, tuple[str, str]] = {}
        self._versions: tuple[float, dict[str, str]] | None = None

    # --- processes ---

    def pids(self) -> list[int]:
        return sorted(int(name) for name in os.listdir(self.proc) if name.isdigit())

    def boot_time(self) -> float:
        for line in _read(self.proc / "stat").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
        raise ValueError(f"no btime line in {self.proc / 'stat'}")

    def processes(self) -> dict[int, ProcessInfo]:
        """Every process (thread group) now, by pid; kernel threads included (exe "")."""
        btime = self.boot_time()
        users = self.users()
        out = {}
        for pid in self.pids():
            try:
                info = self.process(pid, btime, users)
            except GONE:
                continue
            out[pid] = info
        return out

    def process(self, pid: int, btime: float | None = None, users: dict[int, str] | None = None,
                sockets: bool = True) -> ProcessInfo:
        """One process (with the socket inodes it holds unless ``sockets`` is false: reading them is a
        readlink per open file); raises FileNotFoundError/ProcessLookupError when it is gone."""
        base = self.proc / str(pid)
        stat = _read(base / "stat")
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        ppid, starttime = int(rest[1]), int(rest[19])         # fields 4 and 22 of proc(5)
        uid = int(_key_values(_read(base / "status"))["Uid"].split()[1])   # effective uid
        exe = _link_or_gone(base / "exe")
        raw = _read_bytes_or_hidden(base / "cmdline")
        argv = raw.rstrip(b"\0").decode("utf-8", "replace").split("\0") if raw else []
        name = os.path.basename(exe) if exe else comm
        btime = self.boot_time() if btime is None else btime
        users = self.users() if users is None else users
        info = ProcessInfo(pid=pid, ppid=ppid, name=name, exe=exe, cmdline=" ".join(argv),
                           display=display_name(name, argv), cwd=_link_or_gone(base / "cwd"), uid=uid,
                           user=users.get(uid, str(uid)), start_time=btime + starttime / CLOCK_TICKS)
        try:
            if sockets:
                info.inodes = self._socket_inodes(base / "fd")
        except GONE:
            pass        # exited after its stat was read: keep what we have
        return info

    @staticmethod
    def _socket_inodes(fd_dir: Path) -> set[int]:
        inodes = set()
        try:
            names = os.listdir(fd_dir)
        except HIDDEN:
            return inodes
        for name in names:
            try:
                target = os.readlink(fd_dir / name)
            except (FileNotFoundError, PermissionError):
                continue            # closed between listdir and readlink
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
        return inodes

    def socket_owners(self) -> dict[int, int]:
        """Socket inode -> the pid holding it (the lowest pid when several share it: the parent
        of forked workers sharing a listener)."""
        owners: dict[int, int] = {}
        for pid in self.pids():
            try:
                inodes = self._socket_inodes(self.proc / str(pid) / "fd")
            except GONE:
                continue
            for inode in inodes:
                owners.setdefault(inode, pid)
        return owners

    def users(self) -> dict[int, str]:
        """uid -> user name from root/etc/passwd (re-read when it changes)."""
        path = self.root / "etc/passwd"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        if self._users is None or self._users[0] != mtime:
            names: dict[int, str] = {}
            for line in _read(path).splitlines():
                parts = line.split(":")
                if len(parts) >= 3 and parts[2].isdigit():
                    names.setdefault(int(parts[2]), parts[0])
            self._users = (mtime, names)
        return self._users[1]

    # --- the machine ---

    def machine(self) -> MachineInfo:
        hostname = _read_or(self.proc / "sys/kernel/hostname").strip()
        fqdn, dns_names = self._names(hostname)
        os_release = self._os_release()
        cpuinfo = _read_or(self.proc / "cpuinfo")
        virtualization, hypervisor = self._virtualization(cpuinfo)
        return MachineInfo(
            hostname=hostname, fqdn=fqdn, ipv4=self._ipv4(), ipv6=self._ipv6(), macs=self._macs(),
            dns_names=dns_names, os_family="Linux",
            os_full_name=os_release.get("PRETTY_NAME") or os_release.get("NAME", "Linux"),
            bitness=self._bitness(cpuinfo), cpus=_count_cpus(cpuinfo), cpu_speed_mhz=self._cpu_mhz(cpuinfo),
            memory_mb=_memory_mb(_read_or(self.proc / "meminfo")), boot_time=self.boot_time(),
            timezone=self._timezone(), virtualization=virtualization, hypervisor=hypervisor,
            os_name=os_release.get("NAME", "Linux"), os_version=os_release.get("VERSION_ID", ""),
            vm_uuid=_read_or(self.root / "sys/class/dmi/id/product_uuid").strip().lower())

    def _names(self, hostname: str) -> tuple[str, list[str]]:
        """The FQDN and DNS names: a dotted name for the host in root/etc/hosts, else (live root
        only) the resolver's, when it qualifies the hostname; else the hostname."""
        names: list[str] = []
        for line in _read_or(self.root / "etc/hosts").splitlines():
            fields = line.split("#", 1)[0].split()
            if hostname in fields[1:]:
                names += [n for n in fields[1:] if n not in names and not n.startswith("localhost")]
        short = hostname.split(".")[0]
        fqdn = next((n for n in names if "." in n and n.split(".")[0] == short), "")
        if not fqdn and "." in hostname:
            fqdn = hostname
        if not fqdn and self.live:
            resolved = socket.getfqdn(hostname)
            fqdn = resolved if resolved.startswith(short + ".") else ""
        fqdn = fqdn or hostname
        return fqdn, [fqdn] + [n for n in names if n != fqdn and n != hostname]

    def _ipv4(self) -> list[str]:
        """Local addresses from the routing trie ("/32 host LOCAL" leaves), loopback excluded."""
        out: list[str] = []
        last = ""
        for line in _read_or(self.proc / "net/fib_trie").splitlines():
            text = line.strip()
            if text.startswith("|-- "):
                last = text[4:]
            elif text.startswith("/32 host LOCAL") and last and not last.startswith("127.") and last not in out:
                out.append(last)
        return out

    def _ipv6(self) -> list[str]:
        """Addresses from proc/net/if_inet6, loopback excluded (link-local kept)."""
        out: list[str] = []
        for line in _read_or(self.proc / "net/if_inet6").splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[5] != "lo":
                address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0]))
                if address != "::1" and address not in out:
                    out.append(address)
        return out

    def _macs(self) -> list[str]:
        out: list[str] = []
        net = self.root / "sys/class/net"
        for name in sorted(os.listdir(net)) if net.is_dir() else ():
            mac = _read_or(net / name / "address").strip().lower()
            if mac and mac != "00:00:00:00:00:00" and name != "lo" and mac not in out:
                out.append(mac)
        return out

    def _os_release(self) -> dict[str, str]:
        text = _read_or(self.root / "etc/os-release") or _read_or(self.root / "usr/lib/os-release")
        return {k: _unquote(v) for k, v in _key_values(text, "=").items()}

    def _bitness(self, cpuinfo: str) -> str:
        arch = _read_or(self.proc / "sys/kernel/arch").strip()
        if not arch and self.live:
            arch = os.uname().machine
        if arch:
            return ARCH_BITS.get(arch, "32-bit")
        flags = _cpu_field(cpuinfo, "flags").split()
        return "64-bit" if "lm" in flags else "32-bit" if flags else ""

    def _cpu_mhz(self, cpuinfo: str) -> int:
        mhz = _cpu_field(cpuinfo, "cpu MHz")
        if mhz:
            return round(float(mhz))
        khz = _read_or(self.root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
        return int(khz) // 1000 if khz.isdigit() else 0

    def _timezone(self) -> str:
        name = _read_or(self.root / "etc/timezone").strip()
        if name:
            return name
        try:
            target = os.readlink(self.root / "etc/localtime")
        except OSError:
            return "UTC"            # glibc's default without /etc/localtime
        return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else os.path.basename(target)

    def _virtualization(self, cpuinfo: str) -> tuple[str, str]:
        """("virtual", hypervisor) from DMI or the clock sources, ("virtual", "") from the cpu's
        hypervisor flag alone, ("physical", "") when the flags say so, else ("unknown", "")."""
        dmi = self.root / "sys/class/dmi/id"
        vendor = _read_or(dmi / "sys_vendor").strip().lower()
        product = _read_or(dmi / "product_name").strip().lower()
        if vendor.startswith(MICROSOFT_VIRTUAL[0]) and product.startswith(MICROSOFT_VIRTUAL[1]):
            return "virtual", "hyperv"
        for prefix, hypervisor in DMI_HYPERVISORS.items():
            if vendor.startswith(prefix) or product.startswith(prefix):
                return "virtual", hypervisor
        clocks = _read_or(self.root / "sys/devices/system/clocksource/clocksource0/available_clocksource").split()
        for clock in clocks:
            if clock in CLOCKSOURCE_HYPERVISORS:
                return "virtual", CLOCKSOURCE_HYPERVISORS[clock]
        flags = _cpu_field(cpuinfo, "flags").split()
        if "hypervisor" in flags:
            return "virtual", ""
        return ("physical", "") if flags else ("unknown", "")

    # --- packages ---

    def package_version(self, exe_path: str) -> tuple[str, str]:
        """(package, version) of the package that installed ``exe_path``, ("", "") when none did.
        Debian: cached per path until dpkg's status file changes; the path is looked for as given
        and with /usr added or removed (merged-/usr systems list /bin/sleep for /usr/bin/sleep).
        Without dpkg, an RPM database under the root is asked (``rpm -qf``, cached per path)."""
        versions = self._dpkg_versions()
        if not versions:
            if exe_path not in self._rpm_packages:
                self._rpm_packages[exe_path] = self._rpm_package(exe_path)
            return self._rpm_packages[exe_path]
        if versions is not self._packages_of:
            self._packages, self._packages_of = {}, versions
        if exe_path not in self._packages:
            package = self._owning_package(exe_path) if versions else ""
            self._packages[exe_path] = (package, versions.get(package, "")) if package else ("", "")
        return self._packages[exe_path]

    def _rpm_package(self, path: str) -> tuple[str, str]:
        db = next((d for d in RPM_DATABASES if (self.root / d).is_dir() and any((self.root / d).iterdir())), None)
        rpm = shutil.which("rpm")
        if db is None or rpm is None:
            return "", ""
        try:
            out = subprocess.run([rpm, "--root", str(self.root), "--dbpath", "/" + db, "-qf", "--queryformat",
                                  RPM_QUERY, path], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "", ""
        name, _, version = out.stdout.partition("\n")[0].partition("\t")
        return (name, version) if out.returncode == 0 and name and version else ("", "")

    def _owning_package(self, path: str) -> str:
        """Scans every dpkg .list file (~7 MB on a full system) once per new path."""
        aliases = {path, path[4:] if path.startswith("/usr/") else "/usr" + path}
        needles = [f"\n{p}\n".encode() for p in aliases]
        info = self.root / "var/lib/dpkg/info"
        try:
            names = sorted(n for n in os.listdir(info) if n.endswith(".list"))
        except OSError:
            return ""
        for name in names:
            try:
                with open(info / name, "rb") as f:
                    data = b"\n" + f.read()
            except OSError:
                continue
            if not data.endswith(b"\n"):
                data += b"\n"
            if any(needle in data for needle in needles):
                return name[:-5].split(":")[0]          # libc6:amd64.list -> libc6
        return ""

    def _dpkg_versions(self) -> dict[str, str]:
        """Installed package -> version from root/var/lib/dpkg/status (re-read when it changes)."""
        path = self.root / "var/lib/dpkg/status"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            self._versions = None
            return {}
        if self._versions is None or self._versions[0] != mtime:
            versions: dict[str, str] = {}
            for stanza in _read(path).split("\n\n"):
                fields = _key_values("\n".join(ln for ln in stanza.splitlines() if not ln.startswith(" ")))
                if "Package" in fields and "Version" in fields and fields.get("Status", "").endswith(" installed"):
                    versions.setdefault(fields["Package"], fields["Version"])
            self._versions = (mtime, versions)
        return self._versions[1]


def _link_or_gone(path: Path) -> str:
    try:
        return _link(path)
    except FileNotFoundError:
        # exe/cwd of a kernel thread or zombie read as ENOENT while the process is still there
        if path.parent.is_dir():
            return ""
        raise


def _read_bytes_or_hidden(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except HIDDEN:
        return b""


def _cpu_field(cpuinfo: str, name: str) -> str:
    """The first value of ``name`` in /proc/cpuinfo ("" when absent)."""
    for line in cpuinfo.splitlines():
        key, found, value = line.partition(":")
        if found and key.strip() == name:
            return value.strip()
    return ""


def _count_cpus(cpuinfo: str) -> int:
    return sum(1 for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "processor") or 1


def _memory_mb(meminfo: str) -> int:
    total = _key_values(meminfo).get("MemTotal", "0 kB").split()[0]
    return int(total) // 1024
