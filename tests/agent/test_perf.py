"""The sample stage (netatlas/agent/perf.py): two looks at a /proc tree -> InsightsMetrics, Perf
and Heartbeat records, every value computed by hand from the files written here; and the live
host's /proc read as the same numbers its own files say."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netatlas.agent import perf
from netatlas.agent.model import MachineInfo
from netatlas.agent.perf import Sampler, heartbeat_columns, read_proc

MEMINFO = "MemTotal:       {total} kB\nMemFree:         1000 kB\nMemAvailable:   {avail} kB\n"
NETDEV = ("Inter-|   Receive                                                |  Transmit\n"
          " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
          "    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0\n"
          "  eth0: {rx} 10 0 0 0 0 0 0 {tx} 10 0 0 0 0 0 0\n")
# major minor name reads merged sectors ms writes merged sectors ms inflight io_ms weighted
DISKSTATS = "   8       0 sda {r} 0 {rs} {rms} {w} 0 {ws} {wms} 0 0 0 0 0 0 0 0 0\n   7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n"


def tree(root: Path, *, user, idle, iowait, avail, rx, tx, r, rs, rms, w, ws, wms) -> None:
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/net").mkdir(parents=True, exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    (root / "proc/stat").write_text(f"cpu  {user} 0 0 {idle} {iowait} 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n"
                                    f"cpu1 1 0 0 1 0 0 0 0 0 0\ncpu2 1 0 0 1 0 0 0 0 0 0\nbtime 1700000000\n")
    (root / "proc/meminfo").write_text(MEMINFO.format(total=8 * 1024 * 1024, avail=avail))
    (root / "proc/net/dev").write_text(NETDEV.format(lo=999999, rx=rx, tx=tx))
    (root / "proc/diskstats").write_text(DISKSTATS.format(r=r, rs=rs, rms=rms, w=w, ws=ws, wms=wms))
    # the root is "/" of this tree (a disk file system: statvfs of the tree); a tmpfs and a bind
    # mount of the same disk are not LogicalDisks of their own
    (root / "proc/self/mounts").write_text("/dev/sda / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n"
                                           "/dev/sda /srv/bind ext4 rw 0 0\nproc /proc proc rw 0 0\n")


def test_two_looks_give_vm_insights_metrics_computed_from_the_files(tmp_path):
    tree(tmp_path, user=1000, idle=3000, iowait=0, avail=4 * 1024 * 1024, rx=10_000, tx=5_000,
         r=100, rs=800, rms=50, w=10, ws=80, wms=40)
    first = read_proc(tmp_path)
    tree(tmp_path, user=1300, idle=3600, iowait=100, avail=2 * 1024 * 1024, rx=70_000, tx=11_000,
         r=160, rs=2_800, rms=110, w=30, ws=480, wms=140)
    second = read_proc(tmp_path)
    first.at, second.at = 1_800_000_000.0, 1_800_000_060.0        # one minute apart
    st = os.statvfs(tmp_path)
    assert list(second.space) == ["/"] and list(second.disks) == ["/"] and list(second.net) == ["eth0"]

    s = Sampler("host1.example", "agent-1", lambda: None, perf=True)
    recs = s.records(first, second)
    got = {(r["Namespace"], r["Name"]): r for r in recs["InsightsMetrics"]}
    assert all(r["Origin"] == "vm.azm.ms" and r["Computer"] == "host1.example" and r["AgentId"] == "agent-1"
               and r["TimeGenerated"] == "2027-01-15T08:01:00Z" for r in recs["InsightsMetrics"])
    tags = {k: json.loads(r["Tags"]) for k, r in got.items()}

    def val(ns, name):
        return got[(ns, name)]["Val"]

    # cpu: busy 300 of 300 + 600 + 100 jiffies
    assert val("Processor", "UtilizationPercentage") == pytest.approx(100 * 300 / 1000)
    assert tags[("Processor", "UtilizationPercentage")] == {"vm.azm.ms/totalCpus": 3}
    assert val("Memory", "AvailableMB") == 2048.0
    assert tags[("Memory", "AvailableMB")] == {"vm.azm.ms/memorySizeMB": 8192}
    assert val("Network", "ReadBytesPerSecond") == pytest.approx(60_000 / 60)
    assert val("Network", "WriteBytesPerSecond") == pytest.approx(6_000 / 60)
    assert tags[("Network", "ReadBytesPerSecond")] == {"vm.azm.ms/networkDeviceId": "eth0",
                                                       "vm.azm.ms/bytesReceived": 60_000}
    assert tags[("Network", "WriteBytesPerSecond")] == {"vm.azm.ms/networkDeviceId": "eth0",
                                                        "vm.azm.ms/bytesSent": 6_000}
    # the disk: 60 reads of 2,000 sectors in 60 ms, 20 writes of 400 sectors in 100 ms
    assert val("LogicalDisk", "ReadsPerSecond") == pytest.approx(1.0)
    assert val("LogicalDisk", "WritesPerSecond") == pytest.approx(20 / 60)
    assert val("LogicalDisk", "TransfersPerSecond") == pytest.approx(80 / 60)
    assert val("LogicalDisk", "ReadBytesPerSecond") == pytest.approx(2_000 * 512 / 60)
    assert val("LogicalDisk", "WriteBytesPerSecond") == pytest.approx(400 * 512 / 60)
    assert val("LogicalDisk", "BytesPerSecond") == pytest.approx(2_400 * 512 / 60)
    assert val("LogicalDisk", "ReadLatencyMs") == pytest.approx(1.0)
    assert val("LogicalDisk", "WriteLatencyMs") == pytest.approx(5.0)
    assert val("LogicalDisk", "TransferLatencyMs") == pytest.approx(160 / 80)
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert val("LogicalDisk", "FreeSpaceMB") == pytest.approx(free / 2 ** 20, rel=1e-3)
    assert val("LogicalDisk", "FreeSpacePercentage") == pytest.approx(100 * free / (free + used), rel=1e-3)
    assert tags[("LogicalDisk", "FreeSpaceMB")] == {"vm.azm.ms/mountId": "/",
                                                    "vm.azm.ms/diskSizeMB": round(st.f_blocks * st.f_frsize / 2 ** 20)}
    assert all(t.get("vm.azm.ms/mountId") == "/" for (ns, _), t in tags.items() if ns == "LogicalDisk")
    assert set(got) == {(m.namespace, m.name) for m in perf.METRICS}

    # Perf: the same values under the Log Analytics agent's names, latencies in seconds
    p = {(r["ObjectName"], r["CounterName"], r["InstanceName"]): r for r in recs["Perf"]}
    assert p[("Processor", "% Processor Time", "_Total")]["CounterValue"] == val("Processor", "UtilizationPercentage")
    assert p[("Memory", "Available MBytes", "Memory")]["CounterValue"] == 2048.0
    assert p[("Memory", "% Available Memory", "Memory")]["CounterValue"] == pytest.approx(25.0)
    assert p[("Memory", "% Used Memory", "Memory")]["CounterValue"] == pytest.approx(75.0)
    assert p[("Logical Disk", "% Free Space", "/")]["CounterValue"] == val("LogicalDisk", "FreeSpacePercentage")
    assert p[("Logical Disk", "Avg. Disk sec/Write", "/")]["CounterValue"] == pytest.approx(0.005)
    assert p[("Network Adapter", "Bytes Total/sec", "eth0")]["CounterValue"] == pytest.approx(66_000 / 60)
    row = p[("Network Adapter", "Bytes Received/sec", "eth0")]
    assert row["CounterPath"] == "\\\\host1.example\\Network Adapter(eth0)\\Bytes Received/sec"
    assert row["SampleCount"] == 1 and row["Min"] == row["Max"] == row["CounterValue"] == pytest.approx(1000.0)


def test_the_first_look_gives_only_gauges_and_a_counter_that_went_back_no_rate(tmp_path):
    tree(tmp_path, user=1000, idle=3000, iowait=0, avail=4 * 1024 * 1024, rx=10_000, tx=5_000,
         r=100, rs=800, rms=50, w=10, ws=80, wms=40)
    first = read_proc(tmp_path)
    s = Sampler("h", "a", lambda: None)
    names = {r["Name"] for r in s.records(None, first)["InsightsMetrics"]}
    assert names == {"AvailableMB", "FreeSpaceMB", "FreeSpacePercentage"}
    tree(tmp_path, user=1000, idle=3000, iowait=0, avail=4 * 1024 * 1024, rx=5, tx=5_000,     # eth0 reset
         r=100, rs=800, rms=50, w=10, ws=80, wms=40)
    second = read_proc(tmp_path)
    second.at = first.at + 60
    recs = s.records(first, second)["InsightsMetrics"]
    assert not [r for r in recs if r["Name"] == "ReadBytesPerSecond" and r["Namespace"] == "Network"]
    assert [r["Val"] for r in recs if r["Name"] == "WriteBytesPerSecond" and r["Namespace"] == "Network"] == [0.0]
    assert not [r for r in recs if r["Name"] == "UtilizationPercentage"]     # no jiffy went by
    assert "Perf" not in recs                                                  # Perf is off by default


def test_once_a_minute_with_a_heartbeat(tmp_path):
    tree(tmp_path, user=1000, idle=3000, iowait=0, avail=4 * 1024 * 1024, rx=10_000, tx=5_000,
         r=100, rs=800, rms=50, w=10, ws=80, wms=40)
    info = MachineInfo(hostname="h", fqdn="h.example", ipv4=["10.0.0.5", "192.168.1.5"], ipv6=[], macs=[],
                       dns_names=[], os_family="Linux", os_full_name="Debian GNU/Linux 12 (bookworm)",
                       bitness="64-bit", cpus=3, cpu_speed_mhz=0, memory_mb=8192, boot_time=0.0, timezone="UTC",
                       virtualization="virtual", hypervisor="kvm", os_name="Debian GNU/Linux", os_version="12",
                       vm_uuid="4c4c4544-0000-1111-2222-333344445555")
    tags = {"AzureSubscriptionId": "sub-1", "AzureResourceGroup": "rg-1", "AzureResourceName": "vm-1"}
    s = Sampler("h.example", "a", lambda: read_proc(tmp_path), heartbeat=lambda: heartbeat_columns(info, tags, "1.2.3"))
    t = 1_800_000_000.0
    first = s(t)
    assert s(t + 30) == {}                          # the same minute: nothing
    second = s(t + 61)
    for out in (first, second):
        assert [r["Name"] for r in out["InsightsMetrics"] if r["Namespace"] == "Computer"] == ["Heartbeat"]
        assert len(out["Heartbeat"]) == 1
    hb = second["Heartbeat"][0]
    assert hb["Computer"] == "h.example" and hb["TimeGenerated"] == "2027-01-15T08:01:01Z"
    assert (hb["ComputerIP"], hb["ComputerPrivateIPs"]) == ("10.0.0.5", ["10.0.0.5", "192.168.1.5"])
    assert (hb["OSType"], hb["OSName"], hb["OSMajorVersion"], hb["OSMinorVersion"]) == ("Linux", "Debian GNU/Linux", "12", "")
    assert (hb["Version"], hb["Category"], hb["SCAgentChannel"], hb["IsGatewayInstalled"]) == ("1.2.3", "Direct Agent", "Direct", False)
    assert hb["ComputerEnvironment"] == "Azure" and hb["Resource"] == "vm-1" and hb["ResourceGroup"] == "rg-1"
    assert hb["ResourceId"] == "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-1"
    assert hb["VMUUID"] == "4c4c4544-0000-1111-2222-333344445555"
    assert heartbeat_columns(info, {}, "1")["ComputerEnvironment"] == "Non-Azure"


def test_the_live_host_reads_as_its_own_files_say():
    c = read_proc("/")
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert c.mem_total == int(meminfo["MemTotal"].split()[0]) * 1024
    assert c.cpus == sum(1 for line in Path("/proc/stat").read_text().splitlines()
                         if line.startswith("cpu") and not line.startswith("cpu "))
    st = os.statvfs("/")
    assert "/" in c.space and c.space["/"].size == st.f_blocks * st.f_frsize
    devs = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    assert set(c.net) == devs - {"lo"}


def test_records_are_accepted_by_a_workspace_as_azures_tables(tmp_path):
    import netatlas
    tree(tmp_path, user=1000, idle=3000, iowait=0, avail=4 * 1024 * 1024, rx=10_000, tx=5_000,
         r=100, rs=800, rms=50, w=10, ws=80, wms=40)
    a = read_proc(tmp_path)
    tree(tmp_path, user=1300, idle=3600, iowait=100, avail=2 * 1024 * 1024, rx=70_000, tx=11_000,
         r=160, rs=2_800, rms=110, w=30, ws=480, wms=140)
    b = read_proc(tmp_path)
    b.at = a.at + 60
    info = MachineInfo("h", "h", ["10.0.0.5"], [], [], [], "Linux", "Debian", "64-bit", 1, 0, 1, 0.0, "UTC",
                       "physical", "")
    s = Sampler("h", "a", lambda: None, heartbeat=lambda: heartbeat_columns(info, {}, "1"), perf=True)
    recs = s.records(a, b)
    recs["Heartbeat"] = [dict(heartbeat_columns(info, {}, "1"), TimeGenerated=perf.iso(b.at), Computer="h")]
    with netatlas.connect(tmp_path / "ws") as ws:
        for table, rows in recs.items():
            report = ws.ingest(table, rows)
            assert report.records == len(rows), (table, report)
        res = ws.query("InsightsMetrics | where Namespace == 'Network' and Name == 'ReadBytesPerSecond' "
                       "| extend Dev = tostring(todynamic(Tags)['vm.azm.ms/networkDeviceId']) "
                       "| project Dev, Val, Type, SourceSystem")
        assert res.rows == [["eth0", 1000.0, "InsightsMetrics", "Insights"]]
        res = ws.query("Perf | where CounterName == '% Processor Time' | project InstanceName, CounterValue, SourceSystem")
        assert res.rows == [["_Total", 30.0, "Linux"]]
        res = ws.query("Heartbeat | project Computer, ComputerIP, OSType, Category, Type, _ResourceId")
        assert res.rows == [["h", "10.0.0.5", "Linux", "Direct Agent", "Heartbeat", res.rows[0][5]]]
        assert res.rows[0][5].endswith("/machines/h")
