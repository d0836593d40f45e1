"""The demo's performance and health records (netatlas/demo/performance.py): VM insights'
performance queries and alert rules, the Log Analytics agent's Perf queries and the Heartbeat
queries people run, on the simulated datacenter, each returning rows; and the world they show: the
app servers whose payment calls fail run hot, a file server's data disk fills up, rebooting
machines stop their heartbeats."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas.agent import perf
from netatlas.demo import generate
from netatlas.demo import catalog as C
from netatlas.demo.pipeline import plan, silent_agent

END = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)
MACHINES, DAYS = 40, 4

# VM insights' documented alert-rule queries (performance data), as published; where the docs have
# placeholders for a resource id, the demo's subscription stands in for them
VM_INSIGHTS = {
    "cpu": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "Processor" and Name == "UtilizationPercentage"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId""",
    "memory_mb": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "Memory" and Name == "AvailableMB"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId""",
    "memory_percent": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "Memory" and Name == "AvailableMB"
| extend TotalMemory = toreal(todynamic(Tags)["vm.azm.ms/memorySizeMB"])
| extend AvailableMemoryPercentage = (toreal(Val) / TotalMemory) * 100.0
| summarize AggregatedValue = avg(AvailableMemoryPercentage) by bin(TimeGenerated, 15m), Computer, _ResourceId""",
    "disk_used_all": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "LogicalDisk" and Name == "FreeSpacePercentage"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId""",
    "disk_used_each": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "LogicalDisk" and Name == "FreeSpacePercentage"
| extend Disk=tostring(todynamic(Tags)["vm.azm.ms/mountId"])
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId, Disk""",
    # the docs' text has a stray ")" after bin(TimeGenerated, 15m) (an erratum, left out here)
    "disk_iops": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "LogicalDisk" and Name == "TransfersPerSecond"
| extend Disk=tostring(todynamic(Tags)["vm.azm.ms/mountId"])
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId, Disk""",
    "disk_rate": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "LogicalDisk" and Name == "BytesPerSecond"
| extend Disk=tostring(todynamic(Tags)["vm.azm.ms/mountId"])
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m) , Computer, _ResourceId, Disk""",
    "net_received_all": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "Network" and Name == "ReadBytesPerSecond"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId""",
    "net_received_each": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "Network" and Name == "ReadBytesPerSecond"
| extend NetworkInterface=tostring(todynamic(Tags)["vm.azm.ms/networkDeviceId"])
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId, NetworkInterface""",
    "net_sent_all": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "Network" and Name == "WriteBytesPerSecond"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId""",
    "net_sent_each": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where Namespace == "Network" and Name == "WriteBytesPerSecond"
| extend NetworkInterface=tostring(todynamic(Tags)["vm.azm.ms/networkDeviceId"])
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), Computer, _ResourceId, NetworkInterface""",
    "subscription": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where _ResourceId startswith "/subscriptions/{subscription}" and (_ResourceId contains "/providers/Microsoft.Compute/virtualMachines/" or _ResourceId contains "/providers/Microsoft.Compute/virtualMachineScaleSets/")
| where Namespace == "Processor" and Name == "UtilizationPercentage"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), _ResourceId""",
    "resource_group": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where _ResourceId startswith "/subscriptions/{subscription}/resourceGroups/rg-shop-prod/providers/Microsoft.Compute/virtualMachines/"
or _ResourceId startswith "/subscriptions/{subscription}/resourceGroups/rg-shop-prod/providers/Microsoft.Compute/virtualMachineScaleSets/"
| where Namespace == "Processor" and Name == "UtilizationPercentage"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m), _ResourceId
""",
    "one_machine": """InsightsMetrics
| where Origin == "vm.azm.ms"
| where _ResourceId =~ "{resource_id}"
| where Namespace == "Processor" and Name == "UtilizationPercentage"
| summarize AggregatedValue = avg(Val) by bin(TimeGenerated, 15m)""",
    # the Log Analytics tutorial's performance examples
    "tutorial_hourly": """InsightsMetrics
| where Computer startswith "app"
| where Namespace  == "Processor" and Name == "UtilizationPercentage"
| summarize avg(Val) by Computer, bin(TimeGenerated, 1h)""",
    "tutorial_chart": """InsightsMetrics
| where TimeGenerated > ago(1h)
| where Name == "UtilizationPercentage"
| summarize avg(Val) by bin(TimeGenerated, 5m), Computer
| render timechart""",
    "free_space_table": """InsightsMetrics
| where Origin == "vm.azm.ms" and Namespace == "LogicalDisk"
| where Name in ("FreeSpaceMB", "FreeSpacePercentage")
| extend Disk=tostring(todynamic(Tags)["vm.azm.ms/mountId"])
| summarize arg_max(TimeGenerated, Val) by Computer, Name, Disk, _ResourceId
| extend Packed = bag_pack(Name, Val)
| project TimeGenerated, Computer, Disk, _ResourceId, Packed
| summarize Packed = make_bag(Packed) by TimeGenerated, Computer, Disk, _ResourceId
| evaluate bag_unpack(Packed) : (TimeGenerated:datetime , Computer:string, Disk:string, _ResourceId:string, FreeSpaceMB:long, FreeSpacePercentage:decimal)
| extend FreeSpaceGB = FreeSpaceMB / 1024""",
}
HEARTBEAT = {
    "count": "Heartbeat | summarize count() by Computer",
    "availability": "Heartbeat | summarize dcount(ComputerIP) by bin(TimeGenerated, 8h) | render timechart",
    "not_reporting": "Heartbeat | summarize LastCall = max(TimeGenerated) by Computer | where LastCall < ago(-1h)",
    "os": "Heartbeat | summarize arg_max(TimeGenerated, *) by Computer | summarize count() by OSType, OSName, Version",
    "agent_category": "Heartbeat | where Category == 'Direct Agent' | distinct Computer, ComputerEnvironment, ResourceGroup",
    "minutes_ago": "Heartbeat | summarize LastHeartbeat = max(TimeGenerated) by _ResourceId "
                   "| extend MinutesAgo = datetime_diff('minute', now(), LastHeartbeat)",
}
PERF = {
    "cpu": 'Perf | where ObjectName == "Processor" and CounterName == "% Processor Time" and InstanceName == "_Total" '
           '| summarize AggregatedValue = avg(CounterValue) by bin(TimeGenerated, 1h), Computer',
    "memory": 'Perf | where ObjectName == "Memory" and CounterName == "Available MBytes" '
              '| summarize avg(CounterValue) by Computer',
    "disk": 'Perf | where ObjectName == "Logical Disk" and CounterName == "% Free Space" and InstanceName != "_Total" '
            '| summarize arg_min(CounterValue, *) by Computer, InstanceName',
    "network": 'Perf | where CounterName == "Bytes Total/sec" | summarize max(CounterValue) by Computer, InstanceName',
    "counters": "Perf | distinct ObjectName, CounterName",
}


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    generate(w, machines=MACHINES, days=DAYS, seed=3, end=END)
    yield w
    w.close()


@pytest.fixture(scope="module")
def env():
    return plan(MACHINES, DAYS, 3, END)


def run(ws, q: str):
    return ws.query(q, now=END)


@pytest.mark.parametrize("name", list(VM_INSIGHTS))
def test_vm_insights_performance_queries_return_rows(ws, env, name):
    m = next(m for m in env.machines if m.application == "shop" and m.azure)
    q = VM_INSIGHTS[name].format(subscription=env.subscription, resource_id=m.resource_id.upper())
    res = run(ws, q)
    assert res.rows, name


@pytest.mark.parametrize("name", list(HEARTBEAT))
def test_heartbeat_queries_return_rows(ws, name):
    assert run(ws, HEARTBEAT[name]).rows, name


@pytest.mark.parametrize("name", list(PERF))
def test_perf_queries_return_rows(ws, name):
    assert run(ws, PERF[name]).rows, name


def test_every_machine_has_every_vm_insights_counter_with_its_tags(ws, env):
    res = run(ws, "InsightsMetrics | summarize n = dcount(strcat(Namespace, '/', Name)) by Computer")
    assert len(res.rows) == MACHINES and {r[1] for r in res.rows} == {len(perf.METRICS) + 1}   # + Heartbeat
    res = run(ws, "InsightsMetrics | where Namespace == 'Processor' | summarize by Computer, "
                  "cpus = toint(todynamic(Tags)['vm.azm.ms/totalCpus'])")
    assert dict(res.rows) == {m.name: m.cpus for m in env.machines}
    res = run(ws, "InsightsMetrics | where Name == 'FreeSpaceMB' "
                  "| summarize by Computer, Disk = tostring(todynamic(Tags)['vm.azm.ms/mountId']), "
                  "Size = tolong(todynamic(Tags)['vm.azm.ms/diskSizeMB'])")
    windows = {m.name for m in env.machines if m.family == "windows"}
    assert {r[1] for r in res.rows if r[0] in windows} <= {"C:", "D:"}
    assert {r[1] for r in res.rows if r[0] not in windows} <= {"/", "/data"}
    assert all(r[2] > 0 for r in res.rows)


def test_the_payment_callers_run_hot_once_the_payment_api_fails(ws, env):
    hot = sorted({f.client[0].name for f in env.flows if f.client is not None and f.fail_from < 1 << 40})
    assert hot
    res = run(ws, f"""InsightsMetrics | where Name == 'UtilizationPercentage'
        | extend Failing = TimeGenerated >= datetime({env.time(env.last_day).isoformat()})
        | summarize avg(Val) by Hot = Computer in ({', '.join(repr(h) for h in hot)}), Failing""")
    cpu = {(r[0], r[1]): r[2] for r in res.rows}
    assert cpu[(True, True)] > 85 > 50 > cpu[(True, False)]
    assert cpu[(False, True)] < 50
    # the top of VM insights' Performance list (CPU, last hour) is the hot servers
    top = run(ws, """InsightsMetrics | where TimeGenerated > ago(1h) and Name == 'UtilizationPercentage'
        | summarize P95 = percentile(Val, 95) by Computer | top 3 by P95""").rows
    assert {r[0] for r in top} <= set(hot)


def test_a_file_servers_data_disk_fills_up(ws, env):
    server = next(m for m in env.machines if m.tier == C.FILLING_TIER)
    mount = C.DISKS[server.family][2]
    res = run(ws, f"""InsightsMetrics | where Name == 'FreeSpacePercentage' and Computer == '{server.name}'
        | where tostring(todynamic(Tags)['vm.azm.ms/mountId']) == '{mount}'
        | summarize arg_min(TimeGenerated, First = Val), arg_max(TimeGenerated, Last = Val)""")
    first, last = res.rows[0][1], res.rows[0][3]
    assert first > last and last < 10


def test_a_rebooting_machine_has_no_heartbeat_while_down(ws, env):
    m = next(m for m in env.machines if m.reboot)
    down, up = env.time(m.reboot[0]), env.time(m.reboot[1])
    res = run(ws, f"Heartbeat | where Computer == '{m.name}' | summarize "
                  f"during = countif(TimeGenerated >= datetime({down.isoformat()}) and TimeGenerated < datetime({up.isoformat()})), "
                  f"total = count()")
    assert res.rows[0][0] == 0 and res.rows[0][1] > 0
    # and every machine beats each minute of the window's last DENSE minutes, but the one whose
    # agent stopped 40 minutes before the end (pipeline.silent_agent)
    silent, since = silent_agent(env)
    res = run(ws, "Heartbeat | where TimeGenerated >= ago(1h) | summarize n = count() by Computer")
    assert len(res.rows) == MACHINES and all(r[1] == (20 if r[0] == silent else 60) for r in res.rows)


def test_one_agent_stops_and_the_map_says_its_heartbeat_stopped(ws, env):
    from netatlas import webmap
    silent, since = silent_agent(env)
    assert C.AGENT_STOPS[1] == 40 and since == (END - timedelta(minutes=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    last = run(ws, "union VMConnection, VMBoundPort, VMComputer, VMProcess, InsightsMetrics, Perf, Heartbeat "
                   f"| where Computer == '{silent}' | summarize max(TimeGenerated)").rows[0][0]
    assert last < END - timedelta(minutes=40)
    # the machines that call it still report those connections after it went quiet
    ip = next(m.ip for m in env.machines if m.name == silent)
    assert run(ws, f"VMConnection | where DestinationIp == '{ip}' and Computer != '{silent}' "
                   f"and TimeGenerated >= datetime({since}) | count").rows[0][0] > 0
    m = webmap.build_map(ws, webmap.Selection("all"), webmap.Span(END - timedelta(hours=1), END))
    machines = {n["id"]: n for n in m["machines"]}
    silent_id = next(x.id for x in env.machines if x.name == silent)
    assert {i for i, n in machines.items() if n["heartbeat_stopped"]} == {silent_id}
    assert machines[silent_id]["last_heartbeat"] == (END - timedelta(minutes=41)).strftime("%Y-%m-%dT%H:%M:%SZ")


# Microsoft Sentinel's "TI map IP entity to VMConnection" analytics rule, in its usual shape: every
# column it names is one of Sentinel's ThreatIntelligenceIndicator columns
TI_MAP_IP_TO_VMCONNECTION = """
let dt_lookBack = 1d;
let ioc_lookBack = 14d;
let IP_Indicators = ThreatIntelligenceIndicator
  | where TimeGenerated >= ago(ioc_lookBack) and ExpirationDateTime > now()
  | where Active == true and Action == "alert" and PassiveOnly == false
  | where isnotempty(NetworkIP) or isnotempty(EmailSourceIpAddress) or isnotempty(NetworkDestinationIP) or isnotempty(NetworkSourceIP)
  | extend TI_ipEntity = iff(isnotempty(NetworkIP), NetworkIP, NetworkDestinationIP)
  | extend TI_ipEntity = iff(isempty(TI_ipEntity) and isnotempty(NetworkSourceIP), NetworkSourceIP, TI_ipEntity)
  | extend TI_ipEntity = iff(isempty(TI_ipEntity) and isnotempty(EmailSourceIpAddress), EmailSourceIpAddress, TI_ipEntity)
  | summarize LatestIndicatorTime = arg_max(TimeGenerated, *) by IndicatorId;
IP_Indicators
| join kind=innerunique (
    VMConnection
    | where TimeGenerated >= ago(dt_lookBack)
    | where isnotempty(RemoteIp)
    | extend VMConnection_TimeGenerated = TimeGenerated
  ) on $left.TI_ipEntity == $right.RemoteIp
| where VMConnection_TimeGenerated < ExpirationDateTime
| summarize VMConnection_TimeGenerated = arg_max(VMConnection_TimeGenerated, *) by IndicatorId, RemoteIp
| project VMConnection_TimeGenerated, Description, ActivityGroupNames, IndicatorId, ThreatType, Url, DomainName,
    ExpirationDateTime, ConfidenceScore, KillChainC2, MalwareNames, IndicatorProvider, Computer, Direction,
    ProcessName, SourceIp, DestinationIp, RemoteIp, Protocol, DestinationPort
"""


def test_sentinels_ti_map_rule_runs_on_the_demo(ws):
    from netatlas.demo import SUSPICIOUS_IPS
    res = run(ws, TI_MAP_IP_TO_VMCONNECTION)
    assert res.rows
    row = dict(zip(res.columns, res.rows[0]))
    assert row["RemoteIp"] in SUSPICIOUS_IPS and row["IndicatorProvider"] == "netatlas-demo-feed"
    assert row["KillChainC2"] is False and row["Url"] == "" and row["MalwareNames"] == ""
    cols = run(ws, "ThreatIntelligenceIndicator | getschema | project ColumnName").rows
    assert {"NetworkSourceIP", "NetworkDestinationIP", "EmailSourceIpAddress", "FileHashValue", "Url",
            "DomainName", "KillChainC2", "TenantId"} <= {c[0] for c in cols}
