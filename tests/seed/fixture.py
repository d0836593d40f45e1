"""A small Service Map / VM Insights workspace for the seed queries.

Six machines of the fictional "acme" shop, two days of data before ``NOW``:

=============== ============================== =============== ==========================================
Computer        Machine (ResourceName_s)       IPv4            role
=============== ============================== =============== ==========================================
acme-demo       m-4b9c93f9-bc37-46df-b43c-...  10.1.0.4        Azure VM, Windows 2019, IIS front end
admdemo-appsvr  m-82412a7a-6a32-45a9-a8d6-...  10.1.0.5        Azure VM, Ubuntu 18.04, Tomcat app server
acme-sql01      m-559dbcd8-3130-454d-8d1d-...  10.1.1.4 (+.14) Azure VM, Windows 2019, SQL Server 2019
acme-build01    m-c3f1a2d4-7e6b-4f0a-9b8c-...  10.229.243.232  on-prem VMware, CentOS 7, Jenkins + curl
acme-pg01       m-e7d24a11-5b3c-4c8e-a1f2-...  10.229.243.240  on-prem physical, Ubuntu 20.04, PostgreSQL
acme-dc02       m-1a2b3c4d-5e6f-4a7b-8c9d-...  10.229.243.10   on-prem Hyper-V, Windows 2016, standby DC
=============== ============================== =============== ==========================================

Traffic (VMConnection, one record per logical connection and minute with activity):
internet clients (UK, Canada, Australia) -> acme-demo:443; acme-demo -> appsvr:8080 (some
minutes only failed links); appsvr -> sql01:1433, -> pg01:5432, -> api.stripe.com:443
(some failures); curl -> 127.0.0.1:8080 on appsvr and SQLAGENT -> 127.0.0.1:1433 on sql01
(loopback, reported once outbound and once inbound); monitoring agents -> the Log Analytics
ingestion endpoint; build01 -> appsvr:22 (deploys), -> github.com and updates.jenkins.io;
an admin workstation (10.229.250.17, unmonitored) -> RDP/SSH/Jenkins; one RDP probe from a
known-malicious IP. acme-dc02 reports inventory and idle listening ports but no connections.

acme-demo was resized (Standard_D2s_v3 -> Standard_D4s_v3, so rebooted) at 09:31 on the last
day: its ServiceMapComputer_CL records change size, memory, CPUs and boot time, and its
processes restart (new StartTime / FirstPid). acme-sql01 gains a second IPv4 (AG listener)
in its later ServiceMapComputer_CL records.

Invented formats (the docs do not show real ones): ConnectionId is
"U(<SourceIp>-<DestinationIp>:<DestinationPort>)/<Process>", PortId is
"<Machine>/<Process>/<Ip>:<Port>/<Protocol>", process ids are "p-" + 12 hex digits.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)
START = NOW - timedelta(hours=48)  # 2024-04-30T12:00:00Z

SUBSCRIPTION = "6f1c2b7e-4a3d-4e8f-9b21-7d5c3a9e0f42"
DEPENDENCY_AGENT = "9.10.19.5850"
ODS = "acme-ws.ods.opinsights.azure.com"
ADMIN_WS = "10.229.250.17"  # an admin workstation; not monitored


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _at(hour: float, minute: int = 0, second: int = 0) -> datetime:
    """A time `hour` hours and `minute` minutes after START (NOW - 48h)."""
    return START + timedelta(hours=hour, minutes=minute, seconds=second)


def _ago(hours: float, minute: int = 0) -> datetime:
    """`hours` before NOW, plus `minute` minutes."""
    return NOW - timedelta(hours=hours) + timedelta(minutes=minute)


# --------------------------------------------------------------------------- machines

_WIN2019 = "Microsoft Windows Server 2019 Datacenter"

MACHINES: dict[str, dict] = {
    "demo": dict(
        guid="4b9c93f9-bc37-46df-b43c-899ba829e07b", name="acme-demo", ipv4=["10.1.0.4"],
        ipv6=["fe80::6d2b:91c4:3a7e:1f05"], dns=["acme-demo.acme.local"], mac=["00-0D-3A-1B-4C-2E"],
        family="windows", os=_WIN2019, cpu_speed=2594, minute=6, timezone="UTC",
        virt="virtual", vm_type="hyperv", native_id="8f3e2a71-5c9d-4b06-a1e4-7d20c3b9f658",
        vm_name="8F3E2A71-5C9D-4B06-A1E4-7D20C3B9F658",
        azure=dict(location="eastus", publisher="MicrosoftWindowsServer", offer="WindowsServer",
                   sku="2019-Datacenter", version="17763.5696.240406", rg="acme-prod",
                   vm_id="0b7d5e3a-9c14-4f62-8a3b-e1d2c4f5a697"),
        # (from, size, memory MB, cpus, boot time): resized + rebooted at 09:31:52 today
        eras=[(None, "Standard_D2s_v3", 8192, 2, _utc("2024-04-12T03:14:27Z")),
              (_utc("2024-05-02T09:31:52Z"), "Standard_D4s_v3", 16384, 4, _utc("2024-05-02T09:31:52Z"))],
    ),
    "app": dict(
        guid="82412a7a-6a32-45a9-a8d6-538354224a25", name="admdemo-appsvr", ipv4=["10.1.0.5"],
        ipv6=[], dns=["admdemo-appsvr.acme.local"], mac=["00-0D-3A-1B-7A-91"],
        family="linux", os="Ubuntu 18.04.6 LTS", cpu_speed=2594, minute=14, timezone="UTC",
        virt="virtual", vm_type="hyperv", native_id="c2a4e6f8-1b3d-4e5f-8a7c-9d0e1f2a3b4c",
        vm_name="C2A4E6F8-1B3D-4E5F-8A7C-9D0E1F2A3B4C",
        azure=dict(location="eastus", publisher="Canonical", offer="UbuntuServer", sku="18.04-LTS",
                   version="18.04.202401161", rg="acme-prod", vm_id="5a1f0c9e-7b2d-4e83-9f46-2c8b1d0e3a75"),
        eras=[(None, "Standard_D4s_v3", 16384, 4, _utc("2024-04-20T02:11:45Z"))],
    ),
    "sql": dict(
        guid="559dbcd8-3130-454d-8d1d-f624e57961bc", name="acme-sql01", ipv4=["10.1.1.4", "10.1.1.14"],
        ipv6=["fe80::b1c9:4e0d:82a3:6f17"], dns=["acme-sql01.acme.local"], mac=["00-0D-3A-2C-5D-08"],
        family="windows", os=_WIN2019, cpu_speed=2295, minute=21, timezone="UTC",
        virt="virtual", vm_type="hyperv", native_id="e41b7c2d-9a0f-4d36-b8e5-13c7f9a2d064",
        vm_name="E41B7C2D-9A0F-4D36-B8E5-13C7F9A2D064",
        azure=dict(location="eastus", publisher="MicrosoftSQLServer", offer="sql2019-ws2019",
                   sku="enterprise", version="15.0.240315", rg="acme-prod",
                   vm_id="9d3c7a1b-2e4f-4a60-8b5d-f7e6c1a09b38"),
        eras=[(None, "Standard_E8s_v3", 65536, 8, _utc("2024-04-02T23:05:10Z"))],
    ),
    "build": dict(
        guid="c3f1a2d4-7e6b-4f0a-9b8c-2d5e6f7a8b9c", name="acme-build01", ipv4=["10.229.243.232"],
        ipv6=[], dns=["acme-build01.acme.local"], mac=["00-50-56-9A-3F-12"],
        family="linux", os="CentOS Linux 7 (Core)", cpu_speed=2200, minute=37, timezone="UTC",
        virt="virtual", vm_type="vmware", native_id="420a9b3c-5d6e-4f70-8192-a3b4c5d6e7f8",
        vm_name="acme-build01", azure=None,
        eras=[(None, "", 8192, 4, _utc("2024-03-18T14:52:03Z"))],
    ),
    "pg": dict(
        guid="e7d24a11-5b3c-4c8e-a1f2-3b4c5d6e7f80", name="acme-pg01", ipv4=["10.229.243.240"],
        ipv6=[], dns=["acme-pg01.acme.local"], mac=["3C-FD-FE-A1-22-5B"],
        family="linux", os="Ubuntu 20.04.6 LTS", cpu_speed=3000, minute=43, timezone="UTC",
        virt="physical", vm_type="", native_id="", vm_name="", azure=None,
        eras=[(None, "", 32768, 16, _utc("2024-01-29T06:40:00Z"))],
    ),
    "dc": dict(
        guid="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", name="acme-dc02", ipv4=["10.229.243.10"],
        ipv6=["fe80::5c1e:7a2b:d903:4e61"], dns=["acme-dc02.acme.local", "acme.local"],
        mac=["00-15-5D-0A-F3-27"], family="windows", os="Microsoft Windows Server 2016 Datacenter",
        cpu_speed=2400, minute=52, timezone="Eastern Standard Time",
        virt="virtual", vm_type="hyperv", native_id="7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
        vm_name="acme-dc02", azure=None,
        eras=[(None, "", 4096, 2, _utc("2024-04-25T01:12:44Z"))],
    ),
}
for _m in MACHINES.values():
    _m["machine"] = "m-" + _m["guid"]
    _m["ip"] = _m["ipv4"][0]
    if _m["azure"]:
        _m["resource_id"] = (f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{_m['azure']['rg']}"
                             f"/providers/microsoft.compute/virtualmachines/{_m['name']}")
    else:
        _m["resource_id"] = (f"/subscriptions/{SUBSCRIPTION}/resourcegroups/acme-onprem"
                             f"/providers/microsoft.hybridcompute/machines/{_m['name']}")


def _era(m: dict, t: datetime) -> tuple:
    current = m["eras"][0]
    for era in m["eras"]:
        if era[0] is None or era[0] <= t:
            current = era
    return current


# --------------------------------------------------------------------------- processes

_MSSQL_BINN = r"C:\Program Files\Microsoft SQL Server\MSSQL15.MSSQLSERVER\MSSQL\Binn"
_MMA = r"C:\Program Files\Microsoft Monitoring Agent\Agent"
_MS = "Microsoft Corporation"
_WINOS = "Microsoft\u00ae Windows\u00ae Operating System"


def _win_common(version: str) -> dict:
    return dict(company=_MS, product=_WINOS, version=version, file_version=version)


def _monitoringhost(pid: str) -> dict:
    return dict(pid=pid, exe="MonitoringHost.exe", display="monitoringhost",
                description="Host Process for Microsoft Monitoring Agent", company=_MS,
                product="Microsoft Monitoring Agent", version="10.20.18069.0", file_version="10.20.18069.0",
                internal="MonitoringHost.exe", cmd=f'"{_MMA}\\MonitoringHost.exe" -Embedding',
                path=f"{_MMA}\\MonitoringHost.exe", cwd=_MMA, user="SYSTEM", domain="NT AUTHORITY",
                group="Microsoft Monitoring Agent", role="", services=["HealthService"])


def _svchost_rdp(pid: str, version: str) -> dict:
    return dict(pid=pid, exe="svchost.exe", display="svchost", description="Host Process for Windows Services",
                **_win_common(version), internal="svchost.exe",
                cmd=r"C:\Windows\System32\svchost.exe -k NetworkService -s TermService",
                path=r"C:\Windows\System32\svchost.exe", cwd=r"C:\Windows\System32", user="NETWORK SERVICE",
                domain="NT AUTHORITY", group="Remote Desktop Services", role="remoteDesktopServer",
                services=["TermService"])


def _system(pid: str, version: str) -> dict:
    return dict(pid=pid, exe="System", display="system", description="NT Kernel & System",
                **_win_common(version), internal="ntkrnlmp.exe", cmd="", path="", cwd="",
                user="SYSTEM", domain="NT AUTHORITY", group="", role="", services=[])


def _sshd(pid: str, version: str) -> dict:
    return dict(pid=pid, exe="sshd", display="sshd", description="OpenBSD Secure Shell server", company="",
                product="OpenSSH", version=version, file_version="", internal="", cmd="/usr/sbin/sshd -D",
                path="/usr/sbin/sshd", cwd="/", user="root", domain="", group="", role="sshServer",
                services=["sshd"])


def _resolved(pid: str, version: str) -> dict:
    return dict(pid=pid, exe="systemd-resolved", display="systemd-resolved", description="Network Name Resolution",
                company="", product="systemd", version=version, file_version="", internal="",
                cmd="/lib/systemd/systemd-resolved", path="/lib/systemd/systemd-resolved", cwd="/",
                user="systemd-resolve", domain="", group="", role="", services=["systemd-resolved"])


# first_pid / start per era: (since, first_pid, start_time); ``records`` = hours before NOW at which
# ServiceMapProcess_CL records exist (the last two of them also give VMProcess records).
_LONG = [3, 2, 1]
PROCESSES: dict[str, list[dict]] = {
    "demo": [
        dict(pid="p-3f1a9c2e7b40", exe="w3wp.exe", display="w3wp", description="IIS Worker Process",
             company=_MS, product="Internet Information Services", version="10.0.17763.1",
             file_version="10.0.17763.1 (WinBuild.160101.0800)", internal="w3wp.exe",
             cmd=(r'c:\windows\system32\inetsrv\w3wp.exe -ap "acme-web" -v "v4.0" -l "webengine4.dll" '
                  r'-a \\.\pipe\iisipm4f2c0e1b -h "C:\inetpub\temp\apppools\acme-web\acme-web.config" -w "" -m 0'),
             path=r"c:\windows\system32\inetsrv\w3wp.exe", cwd=r"c:\windows\system32\inetsrv",
             user="acme-web", domain="IIS APPPOOL", group="Internet Information Services", role="webServer",
             services=[], eras=[(4312, "2024-04-12T03:16:02Z"), (3896, "2024-05-02T09:34:40Z")]),
        dict(_monitoringhost("p-8d02b6e1c953"), eras=[(2716, "2024-04-12T03:15:31Z"), (2604, "2024-05-02T09:33:05Z")]),
        dict(_svchost_rdp("p-51c7e0a4d28f", "10.0.17763.1"),
             eras=[(1020, "2024-04-12T03:14:49Z"), (1032, "2024-05-02T09:32:10Z")]),
        dict(_system("p-0a6f2d9c3e81", "10.0.17763.5696"),
             eras=[(4, "2024-04-12T03:14:27Z"), (4, "2024-05-02T09:31:52Z")]),
    ],
    "app": [
        dict(pid="p-a4e9173bd5c2", exe="java", display="tomcat", description="Apache Tomcat", company="",
             product="Apache Tomcat", version="9.0.16", file_version="", internal="",
             cmd=("/usr/lib/jvm/java-11-openjdk-amd64/bin/java "
                  "-Djava.util.logging.config.file=/var/lib/tomcat9/conf/logging.properties "
                  "-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager -Djava.awt.headless=true "
                  "-XX:+UseG1GC -Dcom.sun.management.jmxremote.port=9010 "
                  "-classpath /usr/share/tomcat9/bin/bootstrap.jar:/usr/share/tomcat9/bin/tomcat-juli.jar "
                  "-Dcatalina.base=/var/lib/tomcat9 -Dcatalina.home=/usr/share/tomcat9 "
                  "-Djava.io.tmpdir=/tmp org.apache.catalina.startup.Bootstrap start"),
             path="/usr/lib/jvm/java-11-openjdk-amd64/bin/java", cwd="/var/lib/tomcat9", user="tomcat",
             domain="", group="Apache Tomcat", role="appServer", services=["tomcat9"],
             eras=[(1187, "2024-04-20T02:12:30Z")]),
        dict(_sshd("p-0b6d58f2e913", "7.6p1"), eras=[(902, "2024-04-20T02:12:04Z")]),
        dict(pid="p-c71e2a9f4d06", exe="curl", display="curl",
             description="command line tool for transferring data with URL syntax", company="",
             product="curl", version="7.58.0", file_version="", internal="",
             cmd="curl -fsS -o /dev/null http://127.0.0.1:8080/acme/health", path="/usr/bin/curl", cwd="/",
             user="root", domain="", group="", role="", services=[],
             eras=[(30518, "2024-05-02T09:00:01Z")], records=[3, 1]),
        dict(pid="p-e2f0b7c58a31", exe="node", display="node", description="Node.js JavaScript runtime",
             company="", product="Node.js", version="12.22.12", file_version="", internal="",
             cmd="node /home/azureuser/acme-admin-ui/server.js", path="/usr/bin/node",
             cwd="/home/azureuser/acme-admin-ui", user="azureuser", domain="", group="", role="", services=[],
             eras=[(24410, "2024-04-30T19:47:12Z")], records=[40, 31, 24]),
        dict(pid="p-5e1b9d3a7c24", exe="python3", display="python3", description="Python interpreter",
             company="", product="Python", version="3.6.9", file_version="", internal="",
             cmd="python3 -m http.server 8000", path="/usr/bin/python3.6", cwd="/home/azureuser",
             user="azureuser", domain="", group="", role="", services=[],
             eras=[(26803, "2024-05-01T09:40:55Z")], records=[26, 25]),
        dict(_resolved("p-9a3c6e1f07b4", "237"), eras=[(611, "2024-04-20T02:11:58Z")]),
        dict(pid="p-6f4b2d8e1a57", exe="omsagent", display="omsagent", description="Operations Management Suite agent",
             company="Microsoft", product="OMS Agent for Linux", version="1.19.0-0", file_version="", internal="",
             cmd=("/opt/microsoft/omsagent/ruby/bin/ruby /opt/microsoft/omsagent/bin/omsagent "
                  "-d /var/opt/microsoft/omsagent/run/omsagent.pid -o /var/opt/microsoft/omsagent/log/omsagent.log"),
             path="/opt/microsoft/omsagent/ruby/bin/ruby", cwd="/", user="omsagent", domain="", group="",
             role="", services=["omsagent"], eras=[(1322, "2024-04-20T02:12:41Z")]),
    ],
    "sql": [
        dict(pid="p-2e8c5a1f9d73", exe="sqlservr.exe", display="sqlservr", description="SQL Server Windows NT - 64 Bit",
             company=_MS, product="Microsoft SQL Server", version="15.0.4355.3", file_version="2019.0150.4355.03",
             internal="SQLSERVR", cmd=f'"{_MSSQL_BINN}\\sqlservr.exe" -sMSSQLSERVER',
             path=f"{_MSSQL_BINN}\\sqlservr.exe", cwd=_MSSQL_BINN, user="MSSQLSERVER", domain="NT Service",
             group="SQL Server", role="databaseServer", services=["MSSQLSERVER"],
             eras=[(3148, "2024-04-02T23:06:12Z")]),
        dict(pid="p-d94b07e2a6c1", exe="SQLAGENT.EXE", display="sqlagent", description="SQLAGENT - SQL Server Agent",
             company=_MS, product="Microsoft SQL Server", version="15.0.4355.3", file_version="2019.0150.4355.03",
             internal="SQLAGENT", cmd=f'"{_MSSQL_BINN}\\SQLAGENT.EXE" -i MSSQLSERVER',
             path=f"{_MSSQL_BINN}\\SQLAGENT.EXE", cwd=_MSSQL_BINN, user="SQLSERVERAGENT", domain="NT Service",
             group="SQL Server", role="", services=["SQLSERVERAGENT"], eras=[(5212, "2024-04-02T23:06:48Z")]),
        dict(_monitoringhost("p-47a1f3c9e8b2"), eras=[(2290, "2024-04-02T23:06:01Z")]),
        dict(_svchost_rdp("p-b3e65d0a2f18", "10.0.17763.1"), eras=[(996, "2024-04-02T23:05:31Z")]),
        dict(_system("p-1c0f8e3b7a95", "10.0.17763.5696"), eras=[(4, "2024-04-02T23:05:10Z")]),
    ],
    "build": [
        dict(pid="p-5a7e2c91b0d4", exe="java", display="jenkins", description="Jenkins automation server",
             company="", product="Jenkins", version="2.440.3", file_version="", internal="",
             cmd=("/usr/bin/java -Djava.awt.headless=true -jar /usr/share/java/jenkins.war "
                  "--webroot=/var/cache/jenkins/war --httpPort=8080"),
             path="/usr/lib/jvm/java-11-openjdk-11.0.22.0.7-1.el7_9.x86_64/bin/java", cwd="/var/lib/jenkins",
             user="jenkins", domain="", group="Jenkins", role="", services=["jenkins"],
             eras=[(1466, "2024-03-18T14:53:20Z")]),
        dict(_sshd("p-f8c3a6d2e170", "7.4p1"), eras=[(1094, "2024-03-18T14:52:41Z")]),
        dict(pid="p-0d9e4b7a3c62", exe="curl", display="curl",
             description="command line tool for transferring data with URL syntax", company="",
             product="curl", version="7.29.0", file_version="", internal="",
             cmd=("curl -sSL -o /tmp/acme-release.tar.gz "
                  "https://github.com/acme/acme-web/releases/latest/download/acme-release.tar.gz"),
             path="/usr/bin/curl", cwd="/var/lib/jenkins/workspace/acme-web", user="jenkins", domain="",
             group="", role="", services=[], eras=[(88412, "2024-05-02T02:03:00Z")], records=[9, 1]),
    ],
    "pg": [
        dict(pid="p-7b2f9e4c1a08", exe="postgres", display="postgres", description="PostgreSQL database server",
             company="", product="PostgreSQL", version="12.18", file_version="", internal="",
             cmd=("/usr/lib/postgresql/12/bin/postgres -D /var/lib/postgresql/12/main "
                  "-c config_file=/etc/postgresql/12/main/postgresql.conf"),
             path="/usr/lib/postgresql/12/bin/postgres", cwd="/var/lib/postgresql/12/main", user="postgres",
             domain="", group="PostgreSQL", role="databaseServer", services=["postgresql@12-main"],
             eras=[(1203, "2024-01-29T06:41:15Z")]),
        dict(_sshd("p-3c8a1d6f2e95", "8.2p1"), eras=[(977, "2024-01-29T06:40:52Z")]),
        dict(_resolved("p-e6a0c3b9f471", "245.4"), eras=[(702, "2024-01-29T06:40:31Z")]),
    ],
    "dc": [
        dict(pid="p-9f1d2c7e4b36", exe="lsass.exe", display="lsass", description="Local Security Authority Process",
             **_win_common("10.0.14393.6796"), internal="lsass.exe", cmd=r"C:\Windows\system32\lsass.exe",
             path=r"C:\Windows\System32\lsass.exe", cwd=r"C:\Windows\system32", user="SYSTEM",
             domain="NT AUTHORITY", group="Active Directory Domain Services", role="domainController",
             services=["Kdc", "Netlogon", "NTDS", "SamSs"], eras=[(640, "2024-04-25T01:13:05Z")]),
        dict(pid="p-2a6e8f0b5c19", exe="dns.exe", display="dns", description="Domain Name System (DNS) Server",
             **_win_common("10.0.14393.6796"), internal="dns.exe", cmd=r"C:\Windows\system32\dns.exe",
             path=r"C:\Windows\System32\dns.exe", cwd=r"C:\Windows\system32", user="SYSTEM",
             domain="NT AUTHORITY", group="DNS Server", role="dnsServer", services=["DNS"],
             eras=[(2184, "2024-04-25T01:13:40Z")]),
        dict(_svchost_rdp("p-74d3a0f6e8c2", "10.0.14393.0"), eras=[(1108, "2024-04-25T01:13:11Z")]),
        dict(_system("p-c5b9e1a7d240", "10.0.14393.6796"), eras=[(4, "2024-04-25T01:12:44Z")]),
    ],
}
# acme-demo's processes restarted with the reboot at 09:31:52 today.
_REBOOT = _utc("2024-05-02T09:31:52Z")


def _proc(machine_key: str, exe: str) -> dict:
    for p in PROCESSES[machine_key]:
        if p["exe"] == exe:
            return p
    raise KeyError((machine_key, exe))


def _proc_era(p: dict, t: datetime) -> tuple[int, datetime]:
    current = p["eras"][0]
    for era in p["eras"]:
        if _utc(era[1]) <= t:
            current = era
    return current[0], _utc(current[1])


# --------------------------------------------------------------------------- connections

# Remote (public) endpoints: ip -> (country, latitude, longitude)
GEO = {
    "81.2.69.160": ("United Kingdom", 51.5142, -0.0931),
    "24.48.0.1": ("Canada", 45.5088, -73.5878),
    "1.128.0.1": ("Australia", -33.8688, 151.2093),
    "40.79.154.87": ("United States", 36.6676, -78.3875),
    "45.155.205.233": ("Russia", 55.7386, 37.6068),
    "54.187.174.169": ("United States", 45.5235, -122.6762),
    "140.82.112.3": ("United States", 37.7749, -122.4194),
    "52.202.51.185": ("United States", 39.0438, -77.4874),
}
CANONICAL = {"40.79.154.87": '["ods-eus-prod.trafficmanager.net"]'}
MALICIOUS = {
    "45.155.205.233": dict(
        MaliciousIp="45.155.205.233", IndicatorThreatType="Botnet",
        Description="Host observed brute-forcing RDP credentials", TLPLevel="Amber", Confidence="80",
        Severity=3, FirstReportedDateTime="2024-03-11T07:21:09.0000000Z",
        LastReportedDateTime="2024-05-01T22:40:17.0000000Z", IsActive="True", ReportReferenceLink="",
        AdditionalInformation="{}"),
}


def _hours(start: int, step: int, minute: int) -> list[datetime]:
    return [_at(h, minute) for h in range(start, 48, step)]


def _fixed(hours: list[int], minute: int) -> list[datetime]:
    return [_at(h, minute) for h in hours]


# Each flow is one logical connection seen from one machine. "mirror" flows are the accepting
# side of another monitored machine's outbound flow: same minutes (only those where a link was
# established), sent/received bytes swapped, no failures.
FLOWS: list[dict] = [
    # acme-demo
    dict(id="D1", m="demo", exe="w3wp.exe", dir="inbound", src="81.2.69.160", dst="10.1.0.4", port=443,
         times=_hours(1, 6, 12), est=(2, 5, 3), sent=48_000, recv=6_100, resp=8),
    dict(id="D2", m="demo", exe="w3wp.exe", dir="inbound", src="24.48.0.1", dst="10.1.0.4", port=443,
         times=_hours(2, 8, 41), est=(1, 3), sent=31_500, recv=4_200, resp=5),
    dict(id="D3", m="demo", exe="w3wp.exe", dir="inbound", src="1.128.0.1", dst="10.1.0.4", port=443,
         times=_hours(5, 12, 27), est=(1, 2), sent=22_800, recv=3_050, resp=4),
    dict(id="D4", m="demo", exe="w3wp.exe", dir="outbound", src="10.1.0.4", dst="10.1.0.5", port=8080,
         times=_hours(0, 3, 0), est=(4, 6, 5), sent=9_400, recv=41_700, resp=6, fail="d4"),
    dict(id="D5", m="demo", exe="MonitoringHost.exe", dir="outbound", src="10.1.0.4", dst="40.79.154.87", port=443,
         times=_hours(1, 4, 49), est=(1,), sent=12_600, recv=2_300, resp=2, dns=f'["{ODS}"]'),
    dict(id="D6", m="demo", exe="svchost.exe", dir="inbound", src=ADMIN_WS, dst="10.1.0.4", port=3389,
         times=_fixed([20, 21, 44], 5), est=(1,), sent=820_000, recv=95_000, resp=0),
    dict(id="D7", m="demo", exe="svchost.exe", dir="inbound", src="45.155.205.233", dst="10.1.0.4", port=3389,
         times=_fixed([33, 38], 58), est=(3,), sent=1_900, recv=2_400, resp=0),
    # admdemo-appsvr
    dict(id="A1", mirror="D4", m="app", exe="java"),
    dict(id="A2", m="app", exe="java", dir="outbound", src="10.1.0.5", dst="10.1.1.4", port=1433,
         times=_hours(0, 4, 30), est=(2, 3), sent=15_200, recv=88_300, resp=14, dns='["acme-sql01.acme.local"]'),
    dict(id="A3", m="app", exe="java", dir="outbound", src="10.1.0.5", dst="10.229.243.240", port=5432,
         times=_hours(3, 8, 15), est=(1, 2), sent=6_100, recv=27_900, resp=9, dns='["acme-pg01.acme.local"]'),
    dict(id="A4", m="app", exe="java", dir="outbound", src="10.1.0.5", dst="54.187.174.169", port=443,
         times=_hours(2, 6, 45), est=(1, 2), sent=3_700, recv=5_200, resp=2, fail="a4",
         dns='["api.stripe.com"]'),
    dict(id="A5", m="app", exe="curl", dir="outbound", src="127.0.0.1", dst="127.0.0.1", port=8080,
         times=_hours(1, 8, 0), est=(1,), sent=140, recv=512, resp=1),
    dict(id="A6", mirror="A5", m="app", exe="java"),
    dict(id="A7", m="app", exe="omsagent", dir="outbound", src="10.1.0.5", dst="40.79.154.87", port=443,
         times=_hours(4, 6, 22), est=(1,), sent=9_800, recv=1_900, resp=2, dns=f'["{ODS}"]'),
    dict(id="A8", mirror="B1", m="app", exe="sshd"),
    # acme-sql01
    dict(id="S1", mirror="A2", m="sql", exe="sqlservr.exe"),
    dict(id="S2", m="sql", exe="SQLAGENT.EXE", dir="outbound", src="127.0.0.1", dst="127.0.0.1", port=1433,
         times=_hours(0, 6, 0), est=(1,), sent=2_200, recv=7_400, resp=3),
    dict(id="S3", mirror="S2", m="sql", exe="sqlservr.exe"),
    dict(id="S4", m="sql", exe="MonitoringHost.exe", dir="outbound", src="10.1.1.4", dst="40.79.154.87", port=443,
         times=_hours(3, 6, 52), est=(1,), sent=21_300, recv=2_600, resp=2, dns=f'["{ODS}"]'),
    # acme-build01
    dict(id="B1", m="build", exe="java", dir="outbound", src="10.229.243.232", dst="10.1.0.5", port=22,
         times=_hours(6, 12, 10), est=(1,), sent=2_450_000, recv=38_000, resp=0,
         dns='["admdemo-appsvr.acme.local"]'),
    dict(id="B2", m="build", exe="curl", dir="outbound", src="10.229.243.232", dst="140.82.112.3", port=443,
         times=_hours(1, 7, 3), est=(1,), sent=2_100, recv=2_380_000, resp=1, fail="b2",
         dns='["github.com"]'),
    dict(id="B3", m="build", exe="java", dir="outbound", src="10.229.243.232", dst="52.202.51.185", port=443,
         times=_hours(7, 10, 36), est=(1,), sent=1_600, recv=61_000, resp=1, dns='["updates.jenkins.io"]'),
    dict(id="B4", m="build", exe="java", dir="inbound", src=ADMIN_WS, dst="10.229.243.232", port=8080,
         times=_fixed([21, 22, 45], 50), est=(2, 4), sent=310_000, recv=18_500, resp=25),
    # acme-pg01
    dict(id="P1", mirror="A3", m="pg", exe="postgres"),
    dict(id="P2", m="pg", exe="sshd", dir="inbound", src=ADMIN_WS, dst="10.229.243.240", port=22,
         times=_fixed([19, 43], 8), est=(1,), sent=96_000, recv=12_400, resp=0),
]


def _failures(kind: str | None, k: int) -> tuple[int, bool]:
    """(LinksFailed, only_failures) for record k of a flow."""
    if kind == "d4":
        if k % 5 == 2:
            return 3, True  # the app server refused every attempt in that minute
        return (1, False) if k % 7 == 4 else (0, False)
    if kind == "a4":
        return (2, False) if k % 3 == 1 else (0, False)
    if kind == "b2":
        return (1, False) if k == 3 else (0, False)
    return 0, False


def _flow_metrics(f: dict) -> list[dict]:
    """One metrics dict per sample of a non-mirror flow."""
    out = []
    for k, t in enumerate(f["times"]):
        failed, only_failed = _failures(f.get("fail"), k)
        if only_failed:
            est = live = term = 0
            sent = recv = responses = 0
        else:
            est = f["est"][k % len(f["est"])]
            live = k % 2
            term = est - live if k % 3 else est
            sent = f["sent"] * (1 + k % 4) + 13 * k
            recv = f["recv"] * (1 + (k + 2) % 3) + 7 * k
            responses = f["resp"] * est
        out.append(dict(t=t, est=est, live=live, term=term, failed=failed, sent=sent, recv=recv,
                        responses=responses))
    return out


def _connection_record(m: dict, p: dict, direction: str, src: str, dst: str, port: int, s: dict,
                       dns: str = "") -> dict:
    remote = src if direction == "inbound" else dst
    rec = dict(
        TimeGenerated=s["t"], AgentId=m["guid"], _BilledSize=float(930 + len(dns) + 3 * len(p["exe"])),
        BytesReceived=s["recv"], BytesSent=s["sent"], Computer=m["name"],
        ConnectionId=f"U({src}-{dst}:{port})/{p['pid']}", DestinationIp=dst, DestinationPort=port,
        Direction=direction, _IsBillable="True", LinksEstablished=s["est"], LinksFailed=s["failed"],
        LinksLive=s["live"], LinksTerminated=s["term"], Machine=m["machine"], Process=p["pid"],
        ProcessName=p["exe"], Protocol="tcp", RemoteDnsQuestions=dns, RemoteIp=remote,
        _ResourceId=m["resource_id"], Responses=s["responses"], SourceIp=src, SourceSystem="Insights",
        _SubscriptionId=SUBSCRIPTION, Type="VMConnection",
    )
    if s["responses"]:
        rmin = 3 + s["est"] % 5
        rec.update(ResponseTimeMin=rmin, ResponseTimeMax=rmin + 40 + s["responses"],
                   ResponseTimeSum=s["responses"] * (rmin + 11))
    if remote in GEO:
        country, lat, lon = GEO[remote]
        rec.update(RemoteCountry=country, RemoteLatitude=lat, RemoteLongitude=lon)
    if remote in CANONICAL:
        rec["RemoteDnsCanonicalNames"] = CANONICAL[remote]
    if remote in MALICIOUS:
        rec.update(MALICIOUS[remote])
    return rec


def _vmconnection() -> list[dict]:
    by_id = {f["id"]: f for f in FLOWS}
    samples = {f["id"]: _flow_metrics(f) for f in FLOWS if "mirror" not in f}
    rows = []
    for f in FLOWS:
        m = MACHINES[f["m"]]
        p = _proc(f["m"], f["exe"])
        if "mirror" in f:
            o = by_id[f["mirror"]]
            for s in samples[o["id"]]:
                if s["est"] == 0:
                    continue  # only failed attempts: the acceptor saw nothing
                mirrored = dict(s, sent=s["recv"], recv=s["sent"], failed=0)
                rows.append(_connection_record(m, p, "inbound", o["src"], o["dst"], o["port"], mirrored))
        else:
            for s in samples[f["id"]]:
                rows.append(_connection_record(m, p, f["dir"], f["src"], f["dst"], f["port"], s,
                                               f.get("dns", "")))
    rows.sort(key=lambda r: (r["TimeGenerated"], r["Computer"], r["ConnectionId"]))
    return rows


# --------------------------------------------------------------------------- bound ports

# (machine, exe, ip, port, wildcard, idle records). Idle records are given as hours after START
# (at minute 3 + port % 50) or as exact datetimes; they carry no activity. Ports with traffic
# (idle = None) get one record per minute in which inbound VMConnection records reach them,
# with the metrics summed.
_IDLE = [12, 36]  # hours after START for idle-port records (the second inside ago(24hr))
PORTS: list[tuple] = [
    ("demo", "w3wp.exe", "10.1.0.4", 443, True, None),
    ("demo", "w3wp.exe", "0.0.0.0", 80, True, _IDLE),
    ("demo", "svchost.exe", "10.1.0.4", 3389, True, None),
    ("demo", "System", "0.0.0.0", 5985, True, _IDLE),
    ("app", "java", "10.1.0.5", 8080, True, None),
    ("app", "java", "127.0.0.1", 8080, True, None),
    ("app", "java", "0.0.0.0", 8009, True, _IDLE),
    ("app", "java", "0.0.0.0", 9010, True, _IDLE),
    ("app", "java", "127.0.0.1", 8005, False, _IDLE),
    ("app", "sshd", "10.1.0.5", 22, True, None),
    ("app", "systemd-resolved", "127.0.0.53", 53, False, _IDLE),
    # node bound :3000 for a while; its last record is exactly NOW - 24h (inside ago(24hr)).
    ("app", "node", "0.0.0.0", 3000, True, [_at(8), _at(17), _at(24)]),
    # python3 -m http.server: last record one minute before NOW - 24h (outside ago(24hr)).
    ("app", "python3", "0.0.0.0", 8000, True, [_at(22), _at(23, 59)]),
    ("sql", "sqlservr.exe", "10.1.1.4", 1433, True, None),
    ("sql", "sqlservr.exe", "127.0.0.1", 1433, True, None),
    ("sql", "sqlservr.exe", "127.0.0.1", 1434, False, _IDLE),
    ("sql", "sqlservr.exe", "0.0.0.0", 5022, True, _IDLE),
    ("sql", "svchost.exe", "0.0.0.0", 3389, True, _IDLE),
    ("sql", "System", "0.0.0.0", 445, True, _IDLE),
    ("sql", "System", "0.0.0.0", 5985, True, _IDLE),
    ("build", "java", "10.229.243.232", 8080, True, None),
    ("build", "sshd", "0.0.0.0", 22, True, _IDLE),
    ("pg", "postgres", "10.229.243.240", 5432, False, None),
    ("pg", "postgres", "127.0.0.1", 5432, False, _IDLE),
    ("pg", "sshd", "10.229.243.240", 22, True, None),
    ("pg", "systemd-resolved", "127.0.0.53", 53, False, _IDLE),
    ("dc", "dns.exe", "0.0.0.0", 53, True, _IDLE),
    ("dc", "lsass.exe", "0.0.0.0", 88, True, _IDLE),
    ("dc", "lsass.exe", "0.0.0.0", 389, True, _IDLE),
    ("dc", "lsass.exe", "0.0.0.0", 636, True, _IDLE),
    ("dc", "lsass.exe", "0.0.0.0", 3268, True, _IDLE),
    ("dc", "System", "0.0.0.0", 445, True, _IDLE),
    ("dc", "svchost.exe", "0.0.0.0", 3389, True, _IDLE),
    ("dc", "System", "0.0.0.0", 5985, True, _IDLE),
]


def _vmboundport(connections: list[dict]) -> list[dict]:
    rows = []
    for key, exe, ip, port, wildcard, idle in PORTS:
        m = MACHINES[key]
        p = _proc(key, exe)
        base = dict(AgentId=m["guid"], Computer=m["name"], Ip=ip, _IsBillable="True", IsWildcardBind=wildcard,
                    Machine=m["machine"], Port=port, PortId=f"{m['machine']}/{p['pid']}/{ip}:{port}/tcp",
                    Process=p["pid"], ProcessName=exe, Protocol="tcp", _ResourceId=m["resource_id"],
                    SourceSystem="Insights", _SubscriptionId=SUBSCRIPTION, Type="VMBoundPort")
        if idle is not None:
            for h in idle:
                t = h if isinstance(h, datetime) else _at(h, 3 + port % 50)
                rows.append(dict(base, TimeGenerated=t, _BilledSize=410.0, BytesReceived=0, BytesSent=0,
                                 LinksEstablished=0, LinksLive=0, LinksTerminated=0, Responses=0))
            continue
        minutes: dict[datetime, list[dict]] = {}
        for c in connections:
            if (c["Machine"] == m["machine"] and c["Direction"] == "inbound" and c["Process"] == p["pid"]
                    and c["DestinationIp"] == ip and c["DestinationPort"] == port):
                minutes.setdefault(c["TimeGenerated"], []).append(c)
        assert minutes, (key, exe, ip, port)
        for t, cs in sorted(minutes.items()):
            rec = dict(base, TimeGenerated=t, _BilledSize=520.0,
                       BytesReceived=sum(c["BytesReceived"] for c in cs), BytesSent=sum(c["BytesSent"] for c in cs),
                       LinksEstablished=sum(c["LinksEstablished"] for c in cs),
                       LinksLive=sum(c["LinksLive"] for c in cs),
                       LinksTerminated=sum(c["LinksTerminated"] for c in cs),
                       Responses=sum(c["Responses"] for c in cs))
            timed = [c for c in cs if c.get("ResponseTimeMin") is not None]
            if timed:
                rec.update(ResponseTimeMin=min(c["ResponseTimeMin"] for c in timed),
                           ResponseTimeMax=max(c["ResponseTimeMax"] for c in timed),
                           ResponseTimeSum=sum(c["ResponseTimeSum"] for c in timed))
            rows.append(rec)
    rows.sort(key=lambda r: (r["TimeGenerated"], r["PortId"]))
    return rows


# --------------------------------------------------------------------------- inventory


def _smc_times(key: str) -> list[datetime]:
    m = MACHINES[key]
    hours = [5, 4, 3, 2, 1] if key == "demo" else [4, 3, 2, 1]
    return [_ago(h, m["minute"]) for h in hours]


def _service_map_computer() -> list[dict]:
    rows = []
    for key, m in MACHINES.items():
        for i, t in enumerate(_smc_times(key)):
            _, size, memory, cpus, boot = _era(m, t)
            # acme-sql01's availability-group listener IP shows up from the third record on.
            ipv4 = m["ipv4"] if key != "sql" or i >= 2 else m["ipv4"][:1]
            rec = dict(
                TimeGenerated=t, Computer=m["name"], Type="ServiceMapComputer_CL", SourceSystem="OpsManager",
                ResourceId=m["machine"], ResourceName_s=m["machine"], ComputerName_s=m["name"],
                Ipv4Addresses_s=_json_list(ipv4), Ipv6Addresses_s=_json_list(m["ipv6"]),
                DnsNames_s=_json_list(m["dns"]), OperatingSystemFamily_s=m["family"],
                OperatingSystemFullName_s=m["os"], Bitness_s="64bit", PhysicalMemory_d=float(memory),
                Cpus_d=float(cpus), CpuSpeed_d=float(m["cpu_speed"]), VirtualizationState_s=m["virt"],
                VirtualMachineType_s=m["vm_type"], VirtualMachineName_s=m["vm_name"], BootTime_t=boot,
            )
            if m["native_id"]:
                rec["VirtualMachineNativeMachineId_g"] = m["native_id"]
            if m["azure"]:
                a = m["azure"]
                rec.update(AzureLocation_s=a["location"], AzureImagePublisher_s=a["publisher"],
                           AzureImageOffering_s=a["offer"], AzureImageSku_s=a["sku"],
                           AzureImageVersion_s=a["version"], AzureVMSize_s=size, AzureResourceGroup_s=a["rg"],
                           AzureResourceName_s=m["name"], AzureSubscriptionId_g=SUBSCRIPTION,
                           AzureVmId_g=a["vm_id"])
            rows.append(rec)
    return rows


def _vmcomputer() -> list[dict]:
    rows = []
    for key, m in MACHINES.items():
        for t in _smc_times(key)[-2:]:
            _, size, memory, cpus, boot = _era(m, t)
            rec = dict(
                TimeGenerated=t, AgentId=m["guid"], _BilledSize=2150.0, BootTime=boot, Computer=m["name"],
                Cpus=cpus, CpuSpeed=m["cpu_speed"], DependencyAgentVersion=DEPENDENCY_AGENT,
                DisplayName=m["name"], DnsNames=list(m["dns"]), FullDisplayName=m["dns"][0],
                HostingProvider="azure" if m["azure"] else "", HostName=m["name"],
                HypervisorType=m["vm_type"], Ipv4Addresses=list(m["ipv4"]),
                Ipv4DefaultGateways=[m["ip"].rsplit(".", 1)[0] + ".1"],
                Ipv4SubnetMasks=["255.255.255.0"] * len(m["ipv4"]), Ipv6Addresses=list(m["ipv6"]),
                _IsBillable="True", MacAddresses=list(m["mac"]), Machine=m["machine"],
                OperatingSystemFamily=m["family"], OperatingSystemFullName=m["os"], PhysicalMemoryMB=memory,
                _ResourceId=m["resource_id"], SourceSystem="Insights", _SubscriptionId=SUBSCRIPTION,
                TimeZone=m["timezone"], Type="VMComputer", VirtualizationState=m["virt"],
                VirtualMachineNativeId=m["native_id"], VirtualMachineNativeName=m["vm_name"],
                VirtualMachineType=m["vm_type"],
            )
            if m["azure"]:
                a = m["azure"]
                rec.update(AzureImageOffering=a["offer"], AzureImagePublisher=a["publisher"], AzureImageSku=a["sku"],
                           AzureImageVersion=a["version"], AzureLocation=a["location"], AzureResourceGroup=a["rg"],
                           AzureResourceName=m["name"], AzureSize=size, AzureSubscriptionId=SUBSCRIPTION,
                           AzureVmId=a["vm_id"], AzureFaultDomain="0", AzureUpdateDomain="0")
            rows.append(rec)
    return rows


def _process_times(key: str, p: dict) -> list[datetime]:
    minute = MACHINES[key]["minute"] + 1 + PROCESSES[key].index(p)
    return [_ago(h, minute) for h in p.get("records", _LONG)]


def _service_map_process() -> list[dict]:
    rows = []
    for key, procs in PROCESSES.items():
        m = MACHINES[key]
        for p in procs:
            for t in _process_times(key, p):
                first_pid, start = _proc_era(p, t)
                rows.append(dict(
                    TimeGenerated=t, Computer=m["name"], Type="ServiceMapProcess_CL", SourceSystem="OpsManager",
                    ResourceId=f"{m['machine']}/{p['pid']}", ResourceName_s=p["pid"],
                    MachineResourceName_s=m["machine"], ExecutableName_s=p["exe"], StartTime_t=start,
                    FirstPid_d=float(first_pid), Description_s=p["description"], CompanyName_s=p["company"],
                    InternalName_s=p["internal"], ProductName_s=p["product"], ProductVersion_s=p["version"],
                    FileVersion_s=p["file_version"], CommandLine_s=p["cmd"], ExecutablePath_s=p["path"],
                    WorkingDirectory_s=p["cwd"], UserName=p["user"], UserDomain=p["domain"],
                ))
    return rows


def _vmprocess() -> list[dict]:
    rows = []
    for key, procs in PROCESSES.items():
        m = MACHINES[key]
        for p in procs:
            for t in _process_times(key, p)[-2:]:
                first_pid, start = _proc_era(p, t)
                rows.append(dict(
                    TimeGenerated=t, AgentId=m["guid"], _BilledSize=float(700 + len(p["cmd"])),
                    CommandLine=p["cmd"], CompanyName=p["company"], Computer=m["name"],
                    Description=p["description"], DisplayName=p["display"], ExecutableName=p["exe"],
                    ExecutablePath=p["path"], FileVersion=p["file_version"], FirstPid=first_pid, Group=p["group"],
                    InternalName=p["internal"], _IsBillable="True", Machine=m["machine"], Process=p["pid"],
                    ProductName=p["product"], ProductVersion=p["version"], _ResourceId=m["resource_id"],
                    Role=p["role"], Services=list(p["services"]), SourceSystem="Insights", StartTime=start,
                    _SubscriptionId=SUBSCRIPTION, Type="VMProcess", UserDomain=p["domain"], UserName=p["user"],
                    WorkingDirectory=p["cwd"],
                ))
    return rows


def _json_list(values: list[str]) -> str:
    """Azure writes these *_s columns as compact JSON array text: ["10.0.0.4","10.0.0.5"]."""
    return "[" + ",".join(f'"{v}"' for v in values) + "]"


# --------------------------------------------------------------------------- public API


def records() -> dict[str, list[dict]]:
    """Table name -> records (dicts of column -> value; absent columns are empty)."""
    connections = _vmconnection()
    return {
        "VMConnection": connections,
        "VMBoundPort": _vmboundport(connections),
        "VMComputer": _vmcomputer(),
        "VMProcess": _vmprocess(),
        "ServiceMapComputer_CL": _service_map_computer(),
        "ServiceMapProcess_CL": _service_map_process(),
    }


def build_workspace():
    """An in-memory netatlas workspace holding records()."""
    import netatlas  # lazily: the engine may not be importable yet

    ws = netatlas.connect()
    for table, rows in records().items():
        ws.ingest(table, rows)
    return ws
