"""Stage 2, inventory: ``Environment`` -> VMComputer, ServiceMapComputer_CL, VMProcess, ServiceMapProcess_CL.

As the Map feature reports them: one record per machine and process when monitoring starts (the
first minute of the window), one an hour after that, and one when a machine boots or a process
starts within the window. Scheduled processes (package updates) get one record per run.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import numpy as np

from . import catalog as C
from .environment import Environment, Machine, Process


def _iso(t: datetime) -> str:
    """ISO 8601 UTC to the second (times here are whole seconds, UTC): 2024-05-02T11:30:52Z."""
    return t.isoformat()[:19] + "Z"


def _json_list(values) -> str:
    return json.dumps(list(values))


def _sec(env: Environment, t: datetime) -> int:
    """Seconds since the window's start (times here are whole seconds)."""
    return int((t - env.start).total_seconds())


def machine_seconds(env: Environment, m: Machine, lo: int = 0, hi: int | None = None) -> list[int]:
    """When the machine reports within the minutes [lo, hi) (default: the window), in seconds since
    the window's start: at the start of the window, every hour, and once it is back from a reboot."""
    hi = env.minutes if hi is None else hi
    second = (m.idx * 13) % 60
    minutes = [0] + [h * 60 + m.phase for h in range(lo // 60, hi // 60 + 1)]
    secs = sorted({x * 60 + second for x in minutes})
    if m.reboot:
        down, _up, boot = m.reboot
        back = _sec(env, boot) + 40
        secs = sorted([s for s in secs if not down * 60 <= s < back] + [back])
    return [s for s in secs if lo * 60 <= s < hi * 60]


def machine_times(env: Environment, m: Machine, lo: int = 0, hi: int | None = None) -> list[datetime]:
    """``machine_seconds`` as datetimes."""
    return [env.start + timedelta(seconds=s) for s in machine_seconds(env, m, lo, hi)]


def process_seconds(env: Environment, p: Process, lo: int = 0,
                    hi: int | None = None) -> list[tuple[int, int, int]]:
    """(TimeGenerated, FirstPid, StartTime) of each record of a process within the minutes [lo, hi),
    times in seconds since the window's start."""
    hi = env.minutes if hi is None else hi
    s_lo, s_hi = lo * 60, hi * 60
    m = p.machine
    if p.daily is not None:
        midnight = env.start.hour * 60 + env.start.minute
        first = (p.daily[0] - midnight) % 1440
        out = []
        for x in range(first + max(0, (lo - first + 1439) // 1440) * 1440, hi, 1440):
            rng = random.Random(f"{env.seed}/{m.idx}/{p.slot}/{x}")   # each run from (seed, machine, process, minute)
            t = x * 60 + rng.randrange(1, 50)
            out.append((t, rng.randrange(1000, 60000), t))
        return [r for r in out if s_lo <= r[0] < s_hi]
    offset = (m.phase + 1 + p.slot % 15) % 60
    minutes = [p.from_minute] + [h * 60 + offset for h in range(lo // 60, hi // 60 + 1)
                                 if h * 60 + offset > p.from_minute]
    start = _sec(env, p.start) if p.from_minute == 0 else p.from_minute * 60
    seconds = (p.slot * 7) % 60
    out = [(x * 60 + seconds, p.first_pid, start) for x in dict.fromkeys(minutes)]
    if p.restart:
        down, _up, _boot = m.reboot
        first_pid, restarted = p.restart
        r = _sec(env, restarted)
        out = [(t, pid, st) for t, pid, st in out if t < down * 60] + [(r, first_pid, r)] + [
            (t, first_pid, r) for t, _pid, _st in out if t > r]
    return [x for x in out if s_lo <= x[0] < s_hi]


def process_times(env: Environment, p: Process, lo: int = 0,
                  hi: int | None = None) -> list[tuple[datetime, int, datetime]]:
    """``process_seconds`` with datetimes."""
    at = lambda s: env.start + timedelta(seconds=s)  # noqa: E731
    return [(at(t), pid, at(st)) for t, pid, st in process_seconds(env, p, lo, hi)]


def boot_time(m: Machine, t: datetime) -> datetime:
    if m.reboot and t >= m.reboot[2]:
        return m.reboot[2]
    return m.boot


def machine_bases(env: Environment, m: Machine) -> tuple[dict, dict]:
    """The static part of a machine's ServiceMapComputer_CL and VMComputer records."""
    osinfo = C.OPERATING_SYSTEMS[m.os]
    a = m.azure
    base = dict(Computer=m.name, ResourceId=m.id, ResourceName_s=m.id, ComputerName_s=m.name,
                Ipv4Addresses_s=_json_list([m.ip]), Ipv6Addresses_s=_json_list(m.ipv6),
                DnsNames_s=_json_list([m.fqdn]), OperatingSystemFamily_s=m.family,
                OperatingSystemFullName_s=osinfo["name"], Bitness_s="64bit", PhysicalMemory_d=float(m.memory),
                Cpus_d=float(m.cpus), CpuSpeed_d=float(m.cpu_speed), VirtualizationState_s=m.virt,
                VirtualMachineType_s=m.vm_type, VirtualMachineName_s=m.vm_name)
    if m.native_id:
        base["VirtualMachineNativeMachineId_g"] = m.native_id
    vbase = dict(AgentId=m.guid, Computer=m.name, Cpus=m.cpus, CpuSpeed=m.cpu_speed,
                 DependencyAgentVersion=C.DEPENDENCY_AGENT, DisplayName=m.name, DnsNames=[m.fqdn],
                 FullDisplayName=m.fqdn, HostingProvider="azure" if a else "", HostName=m.fqdn.split(".")[0],
                 HypervisorType=m.vm_type, Ipv4Addresses=[m.ip],
                 Ipv4DefaultGateways=[m.ip.rsplit(".", 1)[0] + ".1"], Ipv4SubnetMasks=["255.255.255.0"],
                 Ipv6Addresses=list(m.ipv6), MacAddresses=[m.mac], Machine=m.id, OperatingSystemFamily=m.family,
                 OperatingSystemFullName=osinfo["name"], PhysicalMemoryMB=m.memory, _ResourceId=m.resource_id,
                 _SubscriptionId=env.subscription, TimeZone=m.timezone, VirtualizationState=m.virt,
                 VirtualMachineNativeId=m.native_id, VirtualMachineNativeName=m.vm_name,
                 VirtualMachineType=m.vm_type)
    if a:
        base.update(AzureLocation_s=a["location"], AzureImagePublisher_s=a["publisher"],
                    AzureImageOffering_s=a["offer"], AzureImageSku_s=a["sku"], AzureImageVersion_s=a["version"],
                    AzureVMSize_s=a["size"], AzureResourceGroup_s=a["rg"], AzureResourceName_s=m.fqdn.split(".")[0],
                    AzureSubscriptionId_g=env.subscription, AzureVmId_g=a["vm_id"])
        vbase.update(AzureImageOffering=a["offer"], AzureImagePublisher=a["publisher"], AzureImageSku=a["sku"],
                     AzureImageVersion=a["version"], AzureLocation=a["location"], AzureResourceGroup=a["rg"],
                     AzureResourceName=m.fqdn.split(".")[0], AzureSize=a["size"],
                     AzureSubscriptionId=env.subscription, AzureVmId=a["vm_id"],
                     AzureFaultDomain=str(m.rank % 2), AzureUpdateDomain=str(m.rank % 5))
    return base, vbase


def process_bases(env: Environment, m: Machine, p: Process) -> tuple[dict, dict]:
    """The static part of a process's ServiceMapProcess_CL and VMProcess records."""
    f = p.fields
    base = dict(Computer=m.name, ResourceId=f"{m.id}/{p.pid}", ResourceName_s=p.pid, MachineResourceName_s=m.id,
                ExecutableName_s=f["exe"], Description_s=f["description"], CompanyName_s=f["company"],
                InternalName_s=f["internal"], ProductName_s=f["product"], ProductVersion_s=f["version"],
                FileVersion_s=f["file_version"], CommandLine_s=f["cmd"], ExecutablePath_s=f["path"],
                WorkingDirectory_s=f["cwd"], UserName=f["user"], UserDomain=f["domain"])
    vbase = dict(AgentId=m.guid, CommandLine=f["cmd"], CompanyName=f["company"], Computer=m.name,
                 Description=f["description"], DisplayName=f["display"], ExecutableName=f["exe"],
                 ExecutablePath=f["path"], FileVersion=f["file_version"], Group=f["group"],
                 InternalName=f["internal"], Machine=m.id, Process=p.pid, ProductName=f["product"],
                 ProductVersion=f["version"], _ResourceId=m.resource_id, Role=f["role"],
                 Services=list(f["services"]), _SubscriptionId=env.subscription, UserDomain=f["domain"],
                 UserName=f["user"], WorkingDirectory=f["cwd"])
    return base, vbase


def computers(env: Environment, lo: int = 0, hi: int | None = None):
    """Yields (table, record) for ServiceMapComputer_CL and VMComputer within the minutes [lo, hi)."""
    for m in env.machines:
        base, vbase = machine_bases(env, m)
        for t in machine_times(env, m, lo, hi):
            boot = _iso(boot_time(m, t))
            yield "ServiceMapComputer_CL", dict(base, TimeGenerated=_iso(t), BootTime_t=boot)
            yield "VMComputer", dict(vbase, TimeGenerated=_iso(t), BootTime=boot)


def processes(env: Environment, lo: int = 0, hi: int | None = None):
    """Yields (table, record) for ServiceMapProcess_CL and VMProcess within the minutes [lo, hi)."""
    for m in env.machines:
        for p in m.processes.values():
            base, vbase = process_bases(env, m, p)
            for t, first_pid, start in process_times(env, p, lo, hi):
                ts, ss = _iso(t), _iso(start)
                yield "ServiceMapProcess_CL", dict(base, TimeGenerated=ts, StartTime_t=ss, FirstPid_d=float(first_pid))
                yield "VMProcess", dict(vbase, TimeGenerated=ts, StartTime=ss, FirstPid=first_pid)


class Frames:
    """The inventory records of any minutes as frames (ingest.py: a batch as columns): the same
    records as ``computers`` and ``processes``, with the static columns built once."""

    def __init__(self, env: Environment):
        from .traffic import base_frame
        self.env = env
        machines = [machine_bases(env, m) for m in env.machines]
        self.procs = [(m, p) for m in env.machines for p in m.processes.values()]
        procs = [process_bases(env, m, p) for m, p in self.procs]
        self.bases = {"ServiceMapComputer_CL": base_frame("ServiceMapComputer_CL", [b for b, _ in machines]),
                      "VMComputer": base_frame("VMComputer", [v for _, v in machines]),
                      "ServiceMapProcess_CL": base_frame("ServiceMapProcess_CL", [b for b, _ in procs]),
                      "VMProcess": base_frame("VMProcess", [v for _, v in procs])}

    def window(self, lo: int, hi: int) -> dict[str, dict]:
        """{table: frame} of the inventory records within the minutes [lo, hi)."""
        from .traffic import _take
        env, out = self.env, {}
        start = np.datetime64(env.start.replace(tzinfo=None), "s")
        index, times, boots = [], [], []
        for i, m in enumerate(env.machines):
            rebooted = _sec(env, m.reboot[2]) if m.reboot else None
            boot, new_boot = _sec(env, m.boot), rebooted
            for t in machine_seconds(env, m, lo, hi):
                index.append(i)
                times.append(t)
                boots.append(new_boot if rebooted is not None and t >= rebooted else boot)
        if index:
            idx, tg, bt = np.array(index), start + np.array(times), start + np.array(boots)
            out["ServiceMapComputer_CL"] = _take(self.bases["ServiceMapComputer_CL"], idx,
                                                 dict(TimeGenerated=tg, BootTime_t=bt))
            out["VMComputer"] = _take(self.bases["VMComputer"], idx, dict(TimeGenerated=tg, BootTime=bt))
        index, rows = [], []
        for i, (_m, p) in enumerate(self.procs):
            for row in process_seconds(env, p, lo, hi):
                index.append(i)
                rows.append(row)
        if index:
            a = np.array(rows, dtype=np.int64)
            idx, tg, pid, st = np.array(index), start + a[:, 0], a[:, 1], start + a[:, 2]
            out["ServiceMapProcess_CL"] = _take(self.bases["ServiceMapProcess_CL"], idx,
                                                dict(TimeGenerated=tg, StartTime_t=st, FirstPid_d=pid.astype(np.float64)))
            out["VMProcess"] = _take(self.bases["VMProcess"], idx, dict(TimeGenerated=tg, StartTime=st, FirstPid=pid))
        return out
