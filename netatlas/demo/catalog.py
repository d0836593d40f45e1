"""The simulated datacenter's tables: tiers, operating systems, processes, public endpoints, flows.

Everything the simulator knows about the world is a row here; ``environment.py`` only draws
machines from these tables with the seed, and ``traffic.py`` only turns the flows into minutes.

A value in a process template may be a dict keyed by operating-system key (``"ubuntu20"``) or
family (``"linux"``), with ``"*"`` as the default; strings may hold ``{app}`` (the machine's
application) and ``{ip}`` (its address).
"""
from __future__ import annotations

DOMAIN = "contoso.local"
DEPENDENCY_AGENT = "9.10.19.5850"

# --------------------------------------------------------------------------- the docs' sample machines

# The machines the sample queries of the docs name: they are always part of the datacenter.
ACME_DEMO = dict(name="acme-demo", guid="4b9c93f9-bc37-46df-b43c-899ba829e07b", tier="app", os="ws2019",
                 application="shop", azure=True)
ADMDEMO_APPSVR = dict(name="admdemo-appsvr", guid="82412a7a-6a32-45a9-a8d6-538354224a25", tier="app",
                      os="ubuntu18", application="shop", azure=True)
SQL_SAMPLE = dict(tier="sql", guid="559dbcd8-3130-454d-8d1d-f624e57961bc", os="ws2019", application="shop",
                  azure=True)
BUILD_SAMPLE = dict(tier="build", ip="10.229.243.232", os="centos7", azure=False)
SAMPLES = (ACME_DEMO, ADMDEMO_APPSVR, SQL_SAMPLE, BUILD_SAMPLE)

# --------------------------------------------------------------------------- tiers

# tier: (share of the machines, minimum count, name prefix, Azure share, Azure subnet, on-prem subnet,
#        {os key: weight}, main process, Azure VM sizes, applications it serves)
TIERS: dict[str, dict] = {
    "web": dict(share=0.18, min=2, prefix="web", azure=0.8, subnet=1, onprem=240,
                os={"ubuntu20": 4, "ubuntu22": 4, "rhel8": 1, "ws2019": 2, "ws2022": 1},
                sizes=["Standard_F4s_v2", "Standard_D2s_v3"], cpus=(2, 4), memory=(4096, 8192), apps=True),
    "app": dict(share=0.24, min=3, prefix="app", azure=0.6, subnet=2, onprem=241,
                os={"ubuntu18": 2, "ubuntu20": 4, "ubuntu22": 3, "centos7": 2, "rhel8": 1, "ws2019": 3, "ws2022": 2},
                sizes=["Standard_D4s_v3", "Standard_D8s_v3"], cpus=(4, 8), memory=(16384, 32768), apps=True),
    "sql": dict(share=0.05, min=1, prefix="sql", azure=0.6, subnet=3, onprem=242,
                os={"ws2016": 1, "ws2019": 3, "ws2022": 2},
                sizes=["Standard_E8s_v3", "Standard_E16s_v3"], cpus=(8, 16), memory=(65536, 131072), apps=True),
    "pg": dict(share=0.05, min=1, prefix="pg", azure=0.5, subnet=4, onprem=244,
               os={"ubuntu20": 3, "ubuntu22": 3, "rhel8": 2},
               sizes=["Standard_E4s_v3", "Standard_E8s_v3"], cpus=(4, 8), memory=(32768, 65536), apps=True),
    "cache": dict(share=0.05, min=1, prefix="redis", azure=0.8, subnet=5, onprem=245,
                  os={"ubuntu20": 2, "ubuntu22": 3},
                  sizes=["Standard_E2s_v3", "Standard_E4s_v3"], cpus=(2, 4), memory=(16384, 32768), apps=True),
    "queue": dict(share=0.04, min=1, prefix="mq", azure=0.7, subnet=6, onprem=246,
                  os={"ubuntu20": 2, "ubuntu22": 2},
                  sizes=["Standard_D2s_v3", "Standard_D4s_v3"], cpus=(2, 4), memory=(8192, 16384), apps=True),
    "dc": dict(share=0.02, min=1, prefix="dc", azure=0.5, subnet=7, onprem=247,
               os={"ws2016": 1, "ws2019": 2, "ws2022": 1},
               sizes=["Standard_D2s_v3"], cpus=(2, 4), memory=(8192, 8192), apps=False),
    "mon": dict(share=0.02, min=1, prefix="mon", azure=0.0, subnet=8, onprem=248,
                os={"ubuntu20": 1, "ubuntu22": 1},
                sizes=["Standard_D4s_v3"], cpus=(4, 8), memory=(16384, 32768), apps=False),
    "build": dict(share=0.03, min=1, prefix="build", azure=0.0, subnet=9, onprem=243,
                  os={"centos7": 1}, sizes=["Standard_D8s_v3"], cpus=(8, 16), memory=(16384, 32768), apps=False),
    "file": dict(share=0.05, min=1, prefix="fs", azure=0.3, subnet=10, onprem=249,
                 os={"ws2016": 1, "ws2019": 2, "ws2022": 1},
                 sizes=["Standard_D4s_v3"], cpus=(2, 4), memory=(8192, 16384), apps=False),
    "worker": dict(share=0.25, min=1, prefix="worker", azure=0.7, subnet=11, onprem=251,
                   os={"ubuntu20": 4, "ubuntu22": 4, "centos7": 1, "rhel8": 1},
                   sizes=["Standard_D2s_v3", "Standard_D4s_v3"], cpus=(2, 4), memory=(8192, 16384), apps=True),
    "jump": dict(share=0.02, min=1, prefix="jump", azure=0.0, subnet=12, onprem=252,
                 os={"ws2019": 1, "ws2022": 1}, sizes=["Standard_B2ms"], cpus=(2, 2), memory=(8192, 8192), apps=False),
}

APPLICATIONS = ("shop", "billing", "crm", "intranet")
PAYMENT_APPLICATIONS = ("shop", "billing")   # their app servers call the payment API that fails on the last day
AZURE_LOCATIONS = {"eastus": 3, "westeurope": 1}
ONPREM_VIRT = {"vmware": 5, "hyperv": 3, "physical": 1}
ADMIN_WORKSTATIONS = tuple(f"10.229.250.{n}" for n in (17, 18, 21, 34, 52))
SMTP_RELAY = "10.229.240.25"   # an unmonitored mail relay (an appliance)

# --------------------------------------------------------------------------- operating systems

WINDOWS_PROCESS_VERSION = {"ws2016": "10.0.14393.6796", "ws2019": "10.0.17763.5696", "ws2022": "10.0.20348.2402"}

OPERATING_SYSTEMS: dict[str, dict] = {
    "ws2016": dict(family="windows", name="Microsoft Windows Server 2016 Datacenter",
                   image=("MicrosoftWindowsServer", "WindowsServer", "2016-Datacenter", "14393.6796.240404")),
    "ws2019": dict(family="windows", name="Microsoft Windows Server 2019 Datacenter",
                   image=("MicrosoftWindowsServer", "WindowsServer", "2019-Datacenter", "17763.5696.240406")),
    "ws2022": dict(family="windows", name="Microsoft Windows Server 2022 Datacenter Azure Edition",
                   image=("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition",
                          "20348.2402.240405")),
    "ubuntu18": dict(family="linux", name="Ubuntu 18.04.6 LTS",
                     image=("Canonical", "UbuntuServer", "18.04-LTS", "18.04.202401161")),
    "ubuntu20": dict(family="linux", name="Ubuntu 20.04.6 LTS",
                     image=("Canonical", "0001-com-ubuntu-server-focal", "20_04-lts-gen2", "20.04.202404080")),
    "ubuntu22": dict(family="linux", name="Ubuntu 22.04.4 LTS",
                     image=("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "22.04.202404090")),
    "centos7": dict(family="linux", name="CentOS Linux 7 (Core)",
                    image=("OpenLogic", "CentOS", "7_9-gen2", "7.9.2022101800")),
    "rhel8": dict(family="linux", name="Red Hat Enterprise Linux 8.9 (Ootpa)",
                  image=("RedHat", "RHEL", "8_9", "8.9.2024040911")),
}
SQL_IMAGES = {"ws2016": ("MicrosoftSQLServer", "sql2017-ws2016", "enterprise", "14.0.240315"),
              "ws2019": ("MicrosoftSQLServer", "sql2019-ws2019", "enterprise", "15.0.240315"),
              "ws2022": ("MicrosoftSQLServer", "sql2022-ws2022", "enterprise-gen2", "16.0.240315")}

# --------------------------------------------------------------------------- processes

_MS = "Microsoft Corporation"
_WINOS = "Microsoft\u00ae Windows\u00ae Operating System"
_SYS32 = r"C:\Windows\System32"
_MMA = r"C:\Program Files\Microsoft Monitoring Agent\Agent"
_SQLV = {"ws2016": ("14", "14.0.3465.1", "2017.0140.3465.01"), "ws2019": ("15", "15.0.4355.3", "2019.0150.4355.03"),
         "ws2022": ("16", "16.0.4115.5", "2022.0160.4115.05")}
_BINN = {k: rf"C:\Program Files\Microsoft SQL Server\MSSQL{v[0]}.MSSQLSERVER\MSSQL\Binn" for k, v in _SQLV.items()}
_NT = dict(user="SYSTEM", domain="NT AUTHORITY")


def _win(exe, display, description, internal, path, cmd, group="", role="", services=(), **kw):
    """A Windows operating-system process: company, product and versions follow the OS build."""
    return dict(exe=exe, display=display, description=description, company=_MS, product=_WINOS,
                version=WINDOWS_PROCESS_VERSION, file_version=WINDOWS_PROCESS_VERSION, internal=internal, cmd=cmd,
                path=path, cwd=_SYS32, group=group, role=role, services=list(services), **{**_NT, **kw})


def _lin(exe, display, description, product, version, path, cmd, user="root", group="", role="", services=(),
         cwd="/", company=""):
    return dict(exe=exe, display=display, description=description, company=company, product=product,
                version=version, file_version="", internal="", cmd=cmd, path=path, cwd=cwd, user=user, domain="",
                group=group, role=role, services=list(services))


# key -> template. ports: (port, bind, ips) with bind "wildcard" (0.0.0.0: records per specific address
# that saw traffic, IsWildcardBind true) or "specific" (only the listed addresses, IsWildcardBind false);
# ips for specific binds: "ip" (the machine's address) and literal loopback addresses.
# schedule: "always", or ("daily", minutes it runs) for processes started once a day.
PROCESSES: dict[str, dict] = {
    # ---- Windows, every machine
    "System": dict(_win("System", "system", "NT Kernel & System", "ntkrnlmp.exe", "", ""),
                   ports=[(445, "wildcard"), (5985, "wildcard")]),
    "svchost-rdp": dict(_win("svchost.exe", "svchost", "Host Process for Windows Services", "svchost.exe",
                             rf"{_SYS32}\svchost.exe", rf"{_SYS32}\svchost.exe -k NetworkService -s TermService",
                             group="Remote Desktop Services", role="remoteDesktopServer", services=["TermService"],
                             user="NETWORK SERVICE"), ports=[(3389, "wildcard")]),
    "svchost-dns": _win("svchost.exe", "svchost", "Host Process for Windows Services", "svchost.exe",
                        rf"{_SYS32}\svchost.exe", rf"{_SYS32}\svchost.exe -k NetworkService -p -s Dnscache",
                        group="DNS Client", services=["Dnscache"], user="NETWORK SERVICE"),
    "svchost-wu": _win("svchost.exe", "svchost", "Host Process for Windows Services", "svchost.exe",
                       rf"{_SYS32}\svchost.exe", rf"{_SYS32}\svchost.exe -k netsvcs -p -s wuauserv",
                       group="Windows Update", services=["wuauserv"]),
    "lsass": _win("lsass.exe", "lsass", "Local Security Authority Process", "lsass.exe", rf"{_SYS32}\lsass.exe",
                  rf"{_SYS32}\lsass.exe", services=["KeyIso", "Netlogon", "SamSs", "VaultSvc"]),
    "MonitoringHost": dict(exe="MonitoringHost.exe", display="monitoringhost",
                           description="Host Process for Microsoft Monitoring Agent", company=_MS,
                           product="Microsoft Monitoring Agent", version="10.20.18069.0", file_version="10.20.18069.0",
                           internal="MonitoringHost.exe", cmd=f'"{_MMA}\\MonitoringHost.exe" -Embedding',
                           path=f"{_MMA}\\MonitoringHost.exe", cwd=_MMA, group="Microsoft Monitoring Agent", role="",
                           services=["HealthService"], **_NT),
    "zabbix-win": dict(exe="zabbix_agentd.exe", display="zabbix_agentd", description="Zabbix Agent",
                       company="Zabbix SIA", product="Zabbix", version="6.0.25", file_version="6.0.25.2400",
                       internal="zabbix_agentd", cmd=r'"C:\Program Files\Zabbix Agent\zabbix_agentd.exe" '
                       r'--config "C:\Program Files\Zabbix Agent\zabbix_agentd.conf"',
                       path=r"C:\Program Files\Zabbix Agent\zabbix_agentd.exe", cwd=r"C:\Program Files\Zabbix Agent",
                       group="Zabbix Agent", role="", services=["Zabbix Agent"], ports=[(10050, "wildcard")], **_NT),
    "qualys-win": dict(exe="QualysAgent.exe", display="qualysagent", description="Qualys Cloud Agent",
                       company="Qualys, Inc.", product="Qualys Cloud Agent", version="5.9.0.30",
                       file_version="5.9.0.30", internal="QualysAgent.exe",
                       cmd=r'"C:\Program Files\Qualys\QualysAgent\QualysAgent.exe"',
                       path=r"C:\Program Files\Qualys\QualysAgent\QualysAgent.exe",
                       cwd=r"C:\Program Files\Qualys\QualysAgent", group="", role="", services=["QualysAgent"], **_NT),
    "falcon-win": dict(exe="CSFalconService.exe", display="csfalconservice", description="CrowdStrike Falcon Sensor Service",
                       company="CrowdStrike, Inc.", product="CrowdStrike Falcon Sensor", version="7.10.18110.0",
                       file_version="7.10.18110.0", internal="CSFalconService.exe",
                       cmd=r'"C:\Program Files\CrowdStrike\CSFalconService.exe"',
                       path=r"C:\Program Files\CrowdStrike\CSFalconService.exe", cwd=r"C:\Program Files\CrowdStrike",
                       group="", role="", services=["CSFalconService"], **_NT),
    # ---- Linux, every machine
    "sshd": dict(_lin("sshd", "sshd", "OpenBSD Secure Shell server", "OpenSSH",
                      {"ubuntu18": "7.6p1", "ubuntu20": "8.2p1", "ubuntu22": "8.9p1", "centos7": "7.4p1",
                       "rhel8": "8.0p1"}, "/usr/sbin/sshd", "/usr/sbin/sshd -D", role="sshServer", services=["sshd"]),
                 ports=[(22, "wildcard")]),
    "resolved": dict(_lin("systemd-resolved", "systemd-resolved", "Network Name Resolution", "systemd",
                          {"ubuntu18": "237", "ubuntu20": "245.4", "ubuntu22": "249.11"},
                          "/lib/systemd/systemd-resolved", "/lib/systemd/systemd-resolved", user="systemd-resolve",
                          services=["systemd-resolved"]), ports=[(53, "specific", ("127.0.0.53",))]),
    "sssd": _lin("sssd_be", "sssd_be", "SSSD back end for the AD domain", "sssd",
                 {"ubuntu18": "1.16.1", "ubuntu20": "2.2.3", "ubuntu22": "2.6.3", "centos7": "1.16.5", "rhel8": "2.9.1"},
                 "/usr/libexec/sssd/sssd_be", f"/usr/libexec/sssd/sssd_be --domain {DOMAIN} --uid 0 --gid 0 --logger=files",
                 services=["sssd"]),
    "omsagent": _lin("omsagent", "omsagent", "Operations Management Suite agent for Linux", "omsagent", "1.19.0-0",
                     "/opt/microsoft/omsagent/ruby/bin/ruby",
                     "/opt/microsoft/omsagent/ruby/bin/ruby /opt/microsoft/omsagent/bin/omsagent "
                     "-d /var/opt/microsoft/omsagent/run/omsagent.pid -o /var/opt/microsoft/omsagent/log/omsagent.log",
                     user="omsagent", services=["omsagent"], company="Microsoft Corporation"),
    "zabbix-lin": dict(_lin("zabbix_agentd", "zabbix_agentd", "Zabbix Agent", "Zabbix", "6.0.25",
                            "/usr/sbin/zabbix_agentd", "/usr/sbin/zabbix_agentd -c /etc/zabbix/zabbix_agentd.conf",
                            user="zabbix", services=["zabbix-agent"], company="Zabbix SIA"),
                       ports=[(10050, "wildcard")]),
    "qualys-lin": _lin("qualys-cloud-agent", "qualys-cloud-agent", "Qualys Cloud Agent", "Qualys Cloud Agent",
                       "5.9.0.30", "/usr/local/qualys/cloud-agent/bin/qualys-cloud-agent",
                       "/usr/local/qualys/cloud-agent/bin/qualys-cloud-agent", services=["qualys-cloud-agent"],
                       company="Qualys, Inc."),
    "falcon-lin": _lin("falcon-sensor", "falcon-sensor", "CrowdStrike Falcon Sensor", "CrowdStrike Falcon Sensor",
                       "7.10.16303", "/opt/CrowdStrike/falcon-sensor", "/opt/CrowdStrike/falcon-sensor",
                       services=["falcon-sensor"], company="CrowdStrike, Inc."),
    "apt": dict(_lin("apt", "apt", "APT package download method (unattended-upgrades)", "apt",
                     {"ubuntu18": "1.6.17", "ubuntu20": "2.0.10", "ubuntu22": "2.4.12"}, "/usr/lib/apt/methods/http",
                     "/usr/lib/apt/methods/http", user="_apt", services=["apt-daily-upgrade"]),
                schedule=("daily", 12)),
    "yum": dict(_lin("yum", "yum", "Yellowdog Updater Modified", "yum", {"centos7": "3.4.3", "rhel8": "4.7.0"},
                     "/usr/bin/python", {"centos7": "/usr/bin/python /usr/bin/yum -y -q makecache fast",
                                         "rhel8": "/usr/libexec/platform-python /usr/bin/dnf -y -q makecache"},
                     services=["yum-cron"]), schedule=("daily", 8)),
    # ---- tiers
    "nginx": dict(_lin("nginx", "nginx", "nginx web server", "nginx",
                       {"ubuntu20": "1.18.0", "ubuntu22": "1.18.0", "rhel8": "1.14.1"}, "/usr/sbin/nginx",
                       "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", user="www-data",
                       group="nginx", role="webServer", services=["nginx"]),
                  ports=[(443, "wildcard"), (80, "wildcard")]),
    "w3wp-web": dict(exe="w3wp.exe", display="w3wp", description="IIS Worker Process", company=_MS,
                     product="Internet Information Services",
                     version={"ws2016": "10.0.14393.0", "ws2019": "10.0.17763.1", "ws2022": "10.0.20348.1"},
                     file_version={"*": "10.0.17763.1 (WinBuild.160101.0800)", "ws2016": "10.0.14393.0",
                                   "ws2022": "10.0.20348.1 (WinBuild.160101.0800)"},
                     internal="w3wp.exe", cmd=r'c:\windows\system32\inetsrv\w3wp.exe -ap "{app}-web" -v "v4.0" '
                     r'-l "webengine4.dll" -a \\.\pipe\iisipm{pipe} -h "C:\inetpub\temp\apppools\{app}-web\{app}-web.config"',
                     path=r"c:\windows\system32\inetsrv\w3wp.exe", cwd=r"c:\windows\system32\inetsrv",
                     user="{app}-web", domain="IIS APPPOOL", group="Internet Information Services", role="webServer",
                     services=[], ports=[(443, "wildcard"), (80, "wildcard")]),
    "java-tomcat": dict(_lin("java", "tomcat", "Apache Tomcat", "Apache Tomcat",
                             {"ubuntu18": "9.0.16", "ubuntu20": "9.0.31", "ubuntu22": "9.0.58", "centos7": "7.0.76",
                              "rhel8": "9.0.62"},
                             {"*": "/usr/lib/jvm/java-11-openjdk-amd64/bin/java",
                              "centos7": "/usr/lib/jvm/java-11-openjdk-11.0.22.0.7-1.el7_9.x86_64/bin/java",
                              "rhel8": "/usr/lib/jvm/java-17-openjdk-17.0.11.0.9-2.el8.x86_64/bin/java"},
                             "{path} -Djava.util.logging.config.file=/var/lib/tomcat9/conf/logging.properties "
                             "-Djava.awt.headless=true -Xmx{heap}m -XX:+UseG1GC -Dcom.sun.management.jmxremote.port=9010 "
                             "-Dspring.profiles.active={app} -classpath /usr/share/tomcat9/bin/bootstrap.jar:"
                             "/usr/share/tomcat9/bin/tomcat-juli.jar -Dcatalina.base=/var/lib/tomcat9 "
                             "-Dcatalina.home=/usr/share/tomcat9 org.apache.catalina.startup.Bootstrap start",
                             user="tomcat", group="Apache Tomcat", role="appServer", services=["tomcat9"],
                             cwd="/var/lib/tomcat9"),
                        ports=[(8080, "wildcard"), (8005, "specific", ("127.0.0.1",)), (9010, "wildcard")]),
    "curl": dict(_lin("curl", "curl", "command line tool for transferring data with URL syntax", "curl",
                      {"ubuntu18": "7.58.0", "ubuntu20": "7.68.0", "ubuntu22": "7.81.0", "centos7": "7.29.0",
                       "rhel8": "7.61.1"}, "/usr/bin/curl",
                      "curl -fsS -m 5 -o /dev/null http://127.0.0.1:8080/{app}/health")),
    "w3wp-app": dict(exe="w3wp.exe", display="w3wp", description="IIS Worker Process", company=_MS,
                     product="Internet Information Services",
                     version={"ws2016": "10.0.14393.0", "ws2019": "10.0.17763.1", "ws2022": "10.0.20348.1"},
                     file_version={"*": "10.0.17763.1 (WinBuild.160101.0800)", "ws2016": "10.0.14393.0",
                                   "ws2022": "10.0.20348.1 (WinBuild.160101.0800)"},
                     internal="w3wp.exe", cmd=r'c:\windows\system32\inetsrv\w3wp.exe -ap "{app}-api" -v "v4.0" '
                     r'-l "webengine4.dll" -a \\.\pipe\iisipm{pipe} -h "C:\inetpub\temp\apppools\{app}-api\{app}-api.config"',
                     path=r"c:\windows\system32\inetsrv\w3wp.exe", cwd=r"c:\windows\system32\inetsrv",
                     user="{app}-api", domain="IIS APPPOOL", group="Internet Information Services", role="appServer",
                     services=[], ports=[(8080, "wildcard")]),
    "sqlservr": dict(exe="sqlservr.exe", display="sqlservr", description="SQL Server Windows NT - 64 Bit", company=_MS,
                     product="Microsoft SQL Server", version={k: v[1] for k, v in _SQLV.items()},
                     file_version={k: v[2] for k, v in _SQLV.items()}, internal="SQLSERVR",
                     cmd={k: f'"{b}\\sqlservr.exe" -sMSSQLSERVER' for k, b in _BINN.items()},
                     path={k: f"{b}\\sqlservr.exe" for k, b in _BINN.items()}, cwd=_BINN, user="MSSQLSERVER",
                     domain="NT Service", group="SQL Server", role="databaseServer", services=["MSSQLSERVER"],
                     ports=[(1433, "wildcard"), (1434, "specific", ("127.0.0.1",)), (5022, "wildcard")]),
    "sqlagent": dict(exe="SQLAGENT.EXE", display="sqlagent", description="SQLAGENT - SQL Server Agent", company=_MS,
                     product="Microsoft SQL Server", version={k: v[1] for k, v in _SQLV.items()},
                     file_version={k: v[2] for k, v in _SQLV.items()}, internal="SQLAGENT",
                     cmd={k: f'"{b}\\SQLAGENT.EXE" -i MSSQLSERVER' for k, b in _BINN.items()},
                     path={k: f"{b}\\SQLAGENT.EXE" for k, b in _BINN.items()}, cwd=_BINN, user="SQLSERVERAGENT",
                     domain="NT Service", group="SQL Server", role="", services=["SQLSERVERAGENT"]),
    "postgres": dict(_lin("postgres", "postgres", "PostgreSQL database server", "PostgreSQL",
                          {"ubuntu20": "12.18", "ubuntu22": "14.11", "rhel8": "13.14"},
                          {"ubuntu20": "/usr/lib/postgresql/12/bin/postgres",
                           "ubuntu22": "/usr/lib/postgresql/14/bin/postgres", "rhel8": "/usr/pgsql-13/bin/postgres"},
                          {"ubuntu20": "/usr/lib/postgresql/12/bin/postgres -D /var/lib/postgresql/12/main "
                                       "-c config_file=/etc/postgresql/12/main/postgresql.conf",
                           "ubuntu22": "/usr/lib/postgresql/14/bin/postgres -D /var/lib/postgresql/14/main "
                                       "-c config_file=/etc/postgresql/14/main/postgresql.conf",
                           "rhel8": "/usr/pgsql-13/bin/postgres -D /var/lib/pgsql/13/data/"},
                          user="postgres", group="PostgreSQL", role="databaseServer", services=["postgresql"],
                          cwd="/var/lib/postgresql"),
                     ports=[(5432, "specific", ("ip", "127.0.0.1"))]),
    "redis": dict(_lin("redis-server", "redis-server", "Redis key-value store", "Redis",
                       {"ubuntu20": "5.0.7", "ubuntu22": "6.0.16"}, "/usr/bin/redis-server",
                       "/usr/bin/redis-server 0.0.0.0:6379", user="redis", group="Redis", role="cacheServer",
                       services=["redis-server"], cwd="/var/lib/redis"),
                  ports=[(6379, "wildcard")]),
    "rabbitmq": dict(_lin("beam.smp", "rabbitmq", "RabbitMQ message broker (Erlang VM)", "RabbitMQ",
                          {"ubuntu20": "3.8.2", "ubuntu22": "3.9.13"}, "/usr/lib/erlang/erts-12.2.1/bin/beam.smp",
                          "/usr/lib/erlang/erts-12.2.1/bin/beam.smp -W w -MBas ageffcbf -MHas ageffcbf -- -root "
                          "/usr/lib/erlang -progname erl -- -home /var/lib/rabbitmq -- -noshell -noinput -s rabbit boot "
                          "-sname rabbit@{host}", user="rabbitmq", group="RabbitMQ", role="messageBroker",
                          services=["rabbitmq-server"], cwd="/var/lib/rabbitmq"),
                     ports=[(5672, "wildcard"), (15672, "wildcard"), (25672, "wildcard")]),
    "lsass-dc": dict(_win("lsass.exe", "lsass", "Local Security Authority Process", "lsass.exe", rf"{_SYS32}\lsass.exe",
                          rf"{_SYS32}\lsass.exe", group="Active Directory Domain Services", role="domainController",
                          services=["Kdc", "Netlogon", "NTDS", "SamSs"]),
                     ports=[(88, "wildcard"), (389, "wildcard"), (636, "wildcard"), (3268, "wildcard")]),
    "dns": dict(_win("dns.exe", "dns", "Domain Name System (DNS) Server", "dns.exe", rf"{_SYS32}\dns.exe",
                     rf"{_SYS32}\dns.exe", group="DNS Server", role="dnsServer", services=["DNS"]),
                ports=[(53, "wildcard")]),
    "zabbix-server": dict(_lin("zabbix_server", "zabbix_server", "Zabbix Server", "Zabbix", "6.0.25",
                               "/usr/sbin/zabbix_server", "/usr/sbin/zabbix_server -c /etc/zabbix/zabbix_server.conf",
                               user="zabbix", group="Zabbix", role="monitoringServer", services=["zabbix-server"],
                               company="Zabbix SIA"), ports=[(10051, "wildcard")]),
    "grafana": dict(_lin("grafana", "grafana", "Grafana", "Grafana", "10.4.2", "/usr/share/grafana/bin/grafana",
                         "/usr/share/grafana/bin/grafana server --config=/etc/grafana/grafana.ini "
                         "--homepath=/usr/share/grafana", user="grafana", group="Grafana", role="webServer",
                         services=["grafana-server"], cwd="/usr/share/grafana", company="Grafana Labs"),
                    ports=[(3000, "wildcard")]),
    "jenkins": dict(_lin("java", "jenkins", "Jenkins automation server", "Jenkins", "2.440.3",
                         "/usr/lib/jvm/java-11-openjdk-11.0.22.0.7-1.el7_9.x86_64/bin/java",
                         "/usr/bin/java -Djava.awt.headless=true -jar /usr/share/java/jenkins.war "
                         "--webroot=/var/cache/jenkins/war --httpPort=8080", user="jenkins", group="Jenkins",
                         services=["jenkins"], cwd="/var/lib/jenkins"),
                    ports=[(8080, "wildcard")]),
    "curl-build": _lin("curl", "curl", "command line tool for transferring data with URL syntax", "curl",
                       {"centos7": "7.29.0"}, "/usr/bin/curl",
                       "curl -sSL -o /tmp/release.tar.gz https://github.com/contoso/{app}/releases/latest/download/"
                       "release.tar.gz", user="jenkins", cwd="/var/lib/jenkins/workspace"),
    "celery": _lin("python3", "celery", "Python interpreter", "Python",
                   {"ubuntu20": "3.8.10", "ubuntu22": "3.10.12", "centos7": "3.6.8", "rhel8": "3.6.8"},
                   "/usr/bin/python3", "/opt/{app}/venv/bin/python3 /opt/{app}/venv/bin/celery -A {app}.tasks worker "
                   "--loglevel=INFO --concurrency=4", user="celery", group="Celery", services=["{app}-worker"],
                   cwd="/opt/{app}"),
    "miner": _lin("kdevtmpfsi", "kdevtmpfsi", "", "", "", "/tmp/kdevtmpfsi", "/tmp/kdevtmpfsi", user="celery"),
    "mstsc": _win("mstsc.exe", "mstsc", "Remote Desktop Connection", "mstsc.exe", rf"{_SYS32}\mstsc.exe",
                  rf"{_SYS32}\mstsc.exe", user="admin.{admin}", domain="CONTOSO"),
    "ssh-win": dict(exe="ssh.exe", display="ssh", description="OpenSSH SSH client", company="", product="OpenSSH for Windows",
                    version="8.1.0.1", file_version="8.1.0.1", internal="ssh.exe", cmd=rf"{_SYS32}\OpenSSH\ssh.exe",
                    path=rf"{_SYS32}\OpenSSH\ssh.exe", cwd=r"C:\Users\admin.{admin}", user="admin.{admin}",
                    domain="CONTOSO", group="", role="", services=[]),
    "msedge": dict(exe="msedge.exe", display="msedge", description="Microsoft Edge", company=_MS,
                   product="Microsoft Edge", version="124.0.2478.80", file_version="124.0.2478.80", internal="msedge_exe",
                   cmd=r'"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --profile-directory=Default',
                   path=r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
                   cwd=r"C:\Program Files (x86)\Microsoft\Edge\Application", user="admin.{admin}", domain="CONTOSO",
                   group="", role="", services=[]),
}

COMMON = {"windows": ["System", "svchost-rdp", "svchost-dns", "svchost-wu", "lsass", "MonitoringHost", "zabbix-win",
                      "qualys-win", "falcon-win"],
          "linux": ["sshd", "resolved", "sssd", "omsagent", "zabbix-lin", "qualys-lin", "falcon-lin", "apt", "yum"]}
# processes per (tier, family); the first is the tier's main process
TIER_PROCESSES = {
    ("web", "linux"): ["nginx"], ("web", "windows"): ["w3wp-web"],
    ("app", "linux"): ["java-tomcat", "curl"], ("app", "windows"): ["w3wp-app"],
    ("sql", "windows"): ["sqlservr", "sqlagent"], ("pg", "linux"): ["postgres"], ("cache", "linux"): ["redis"],
    ("queue", "linux"): ["rabbitmq"], ("dc", "windows"): ["lsass-dc", "dns"],
    ("mon", "linux"): ["zabbix-server", "grafana"], ("build", "linux"): ["jenkins", "curl-build"],
    ("file", "windows"): [], ("worker", "linux"): ["celery"], ("jump", "windows"): ["mstsc", "ssh-win", "msedge"],
}
# processes not on every machine of a family: only where the OS has them
ONLY_ON = {"resolved": ("ubuntu18", "ubuntu20", "ubuntu22"), "apt": ("ubuntu18", "ubuntu20", "ubuntu22"),
           "yum": ("centos7", "rhel8")}
# a domain controller's own lsass is the server; it has no client lsass
REPLACES = {"lsass-dc": "lsass"}

# --------------------------------------------------------------------------- the public internet

# key: (FQDN, IPv4, country, latitude, longitude, port, canonical names)
PUBLIC: dict[str, tuple] = {
    "ods": ("{ws}.ods.opinsights.azure.com", "40.79.154.87", "United States", 36.6676, -78.3875, 443,
            ("ods-eus-prod.trafficmanager.net",)),
    "ods-eu": ("{ws}.oms.opinsights.azure.com", "20.50.65.82", "Netherlands", 52.3740, 4.8897, 443, ()),
    "windowsupdate": ("download.windowsupdate.com", "13.107.4.50", "United States", 47.6062, -122.3321, 443,
                      ("wu-bg-shim.trafficmanager.net", "download.windowsupdate.com.delivery.microsoft.com")),
    "ubuntu": ("archive.ubuntu.com", "91.189.91.82", "United Kingdom", 51.5085, -0.1257, 80, ()),
    "ubuntu-security": ("security.ubuntu.com", "185.125.190.36", "United Kingdom", 51.5085, -0.1257, 80, ()),
    "centos": ("mirrorlist.centos.org", "147.75.44.242", "United States", 37.3394, -121.8950, 80, ()),
    "redhat": ("cdn.redhat.com", "23.46.153.185", "United States", 42.3601, -71.0589, 443, ("cdn.redhat.com.edgekey.net",)),
    "qualys": ("qagpublic.qg2.apps.qualys.eu", "154.59.121.74", "Switzerland", 47.3769, 8.5417, 443, ()),
    "crowdstrike": ("ts01-b.cloudsink.net", "52.11.98.87", "United States", 45.8399, -119.7006, 443, ()),
    "stripe": ("api.stripe.com", "54.187.174.169", "United States", 45.5235, -122.6762, 443, ()),
    "sendgrid": ("api.sendgrid.com", "167.89.118.52", "United States", 37.7749, -122.4194, 443, ()),
    "github": ("github.com", "140.82.112.3", "United States", 37.7749, -122.4194, 443, ()),
    "jenkins": ("updates.jenkins.io", "52.202.51.185", "United States", 39.0438, -77.4874, 443, ()),
    "maven": ("repo.maven.apache.org", "151.101.0.215", "United States", 37.7621, -122.3971, 443,
              ("maven.apache.org.fastly.net",)),
    "pypi": ("pypi.org", "151.101.64.223", "United States", 37.7621, -122.3971, 443, ("dualstack.python.map.fastly.net",)),
}
# Services the live demo's new dependencies call (environment.novelties): same columns as PUBLIC.
NEW_PUBLIC: dict[str, tuple] = {
    "slack": ("hooks.slack.com", "34.226.36.50", "United States", 39.0438, -77.4874, 443, ()),
    "datadog": ("http-intake.logs.datadoghq.eu", "34.107.236.155", "Germany", 50.1109, 8.6821, 443, ()),
    "twilio": ("api.twilio.com", "54.172.60.1", "United States", 39.0438, -77.4874, 443, ()),
    "pagerduty": ("events.pagerduty.com", "44.242.69.192", "United States", 45.8399, -119.7006, 443, ()),
    "s3": ("s3.eu-central-1.amazonaws.com", "52.219.170.33", "Germany", 50.1109, 8.6821, 443,
           ("s3-r-w.eu-central-1.amazonaws.com",)),
    "openai": ("api.openai.com", "162.159.140.245", "United States", 37.7749, -122.4194, 443, ()),
}
# How often, how long: each hour past the window a new dependency appears with this chance, and
# lasts between these many minutes (drawn from the seed and the hour).
NOVELTY = dict(chance=0.5, lasts=(6 * 60, 3 * 1440), public_share=0.4, profile_public="new_api")

# which update endpoint each OS uses, and who the monitoring SaaS agents talk to
UPDATE_ENDPOINT = {"ubuntu18": "ubuntu", "ubuntu20": "ubuntu", "ubuntu22": "ubuntu-security", "centos7": "centos",
                   "rhel8": "redhat"}

# Known-bad addresses the simulation uses (the enrichment step fills MaliciousIp and friends from a
# threat-intelligence feed that lists them). ip -> (country, latitude, longitude, what it does here)
SUSPICIOUS_IPS: dict[str, tuple] = {
    "45.155.205.233": ("Russia", 55.7386, 37.6068, "RDP brute force against exposed Windows machines (inbound 3389)"),
    "218.92.0.107": ("China", 32.0617, 118.7778, "SSH brute force against internet-facing Linux web servers (inbound 22)"),
    "185.220.101.47": ("Germany", 51.2993, 9.4910, "Tor exit relay: a cryptominer on one worker beacons to it (outbound 443)"),
}

# Internet clients of the web tier: (country, latitude, longitude, address prefix, how many, weight)
CLIENT_BLOCKS = [
    ("United States", 40.7128, -74.0060, "73.12.", 90, 5), ("United States", 34.0522, -118.2437, "76.91.", 60, 3),
    ("United Kingdom", 51.5142, -0.0931, "81.2.", 40, 2), ("Germany", 52.5200, 13.4050, "85.214.", 35, 2),
    ("France", 48.8566, 2.3522, "90.84.", 25, 1), ("Canada", 45.5088, -73.5878, "24.48.", 25, 1),
    ("Netherlands", 52.3740, 4.8897, "145.53.", 15, 1), ("Japan", 35.6895, 139.6917, "126.0.", 15, 1),
    ("India", 19.0760, 72.8777, "49.36.", 20, 1), ("Brazil", -23.5505, -46.6333, "177.20.", 15, 1),
    ("Australia", -33.8688, 151.2093, "1.128.", 15, 1),
]

# --------------------------------------------------------------------------- traffic profiles

# How a flow behaves minute by minute.
#   shape       the daily cycle it follows (see traffic.SHAPES)
#   p           chance that the flow has activity in a minute at the shape's peak (or, with period, in its minute)
#   period      for polling flows: active only every `period` minutes
#   pool        connections kept open (LinksLive); 0 for short-lived connections
#   est         mean new connections per active minute at peak (short-lived flows)
#   req         mean requests per active minute at peak; 0 when the protocol has no request/response
#   up, down    mean bytes per request sent by the client and by the server
#   rt          typical response time (ms)
#   fail        chance of a failed connection attempt in an active minute
PROFILES: dict[str, dict] = {
    "internet": dict(shape="consumer", p=0.03, pool=0, est=1.6, req=9, up=900, down=26_000, rt=38, fail=0.0),
    "web_app": dict(shape="consumer", p=0.5, pool=6, est=0.3, req=45, up=1_400, down=11_000, rt=24, fail=0.002),
    "db": dict(shape="consumer", p=0.45, pool=10, est=0.2, req=70, up=420, down=3_100, rt=4, fail=0.001),
    "cache": dict(shape="consumer", p=0.4, pool=4, est=0.1, req=140, up=110, down=900, rt=1, fail=0.0),
    "queue": dict(shape="business", p=0.35, pool=2, est=0.05, req=0, up=2_200, down=600, rt=0, fail=0.0),
    "smb": dict(shape="business", p=0.12, pool=1, est=0.1, req=20, up=3_000, down=48_000, rt=6, fail=0.0),
    "smtp": dict(shape="business", p=0.04, pool=0, est=1.2, req=2, up=18_000, down=400, rt=60, fail=0.0),
    "payment": dict(shape="consumer", p=0.35, pool=0, est=1.5, req=3, up=1_300, down=2_400, rt=210, fail=0.003),
    "replication": dict(shape="flat", p=0.5, pool=1, est=0.01, req=0, up=5_000, down=25_000, rt=0, fail=0.0),
    "dc_repl": dict(shape="flat", p=0.06, pool=0, est=1, req=6, up=2_500, down=9_000, rt=5, fail=0.0),
    "ldap": dict(shape="business", p=0.03, pool=0, est=1.3, req=3, up=350, down=2_800, rt=3, fail=0.0),
    "kerberos": dict(shape="business", p=0.025, pool=0, est=1.2, req=1, up=1_500, down=1_700, rt=2, fail=0.0),
    "dns": dict(shape="business", p=0.02, pool=0, est=1, req=1, up=70, down=260, rt=1, fail=0.0),
    "poll": dict(shape="flat", p=0.99, period=15, pool=0, est=1, req=12, up=90, down=160, rt=2, fail=0.0),
    "health": dict(shape="flat", p=0.99, period=10, pool=0, est=1, req=1, up=140, down=512, rt=3, fail=0.0),
    "sqlagent": dict(shape="flat", p=0.97, period=15, pool=0, est=1, req=4, up=900, down=3_600, rt=2, fail=0.0),
    "ods": dict(shape="flat", p=0.07, pool=0, est=1, req=2, up=14_000, down=900, rt=45, fail=0.0),
    "edr": dict(shape="flat", p=0.03, pool=1, est=0.02, req=2, up=2_600, down=700, rt=60, fail=0.0),
    "vuln": dict(shape="flat", p=0.98, period=60, pool=0, est=1, req=3, up=4_000, down=1_100, rt=90, fail=0.0),
    "update": dict(shape="flat", p=0.85, pool=0, est=2, req=12, up=600, down=350_000, rt=70, fail=0.0),
    "winupdate": dict(shape="night", p=0.01, pool=0, est=2, req=10, up=900, down=900_000, rt=60, fail=0.0),
    "saas_api": dict(shape="business", p=0.06, pool=0, est=1, req=2, up=2_800, down=700, rt=150, fail=0.002),
    "git": dict(shape="business", p=0.05, pool=0, est=2, req=6, up=2_000, down=400_000, rt=90, fail=0.0),
    "deploy": dict(shape="business", p=0.01, pool=0, est=1, req=0, up=2_000_000, down=40_000, rt=0, fail=0.0),
    "rdp": dict(shape="business", p=0.015, pool=1, est=0.1, req=0, up=60_000, down=700_000, rt=0, fail=0.0),
    "ssh": dict(shape="business", p=0.015, pool=1, est=0.1, req=0, up=9_000, down=60_000, rt=0, fail=0.0),
    "browse": dict(shape="business", p=0.05, pool=0, est=2, req=15, up=1_200, down=35_000, rt=80, fail=0.0),
    "rdp_probe": dict(shape="flat", p=0.004, pool=0, est=4, req=0, up=1_900, down=2_400, rt=0, fail=0.0),
    "ssh_probe": dict(shape="flat", p=0.006, pool=0, est=6, req=0, up=1_300, down=2_100, rt=0, fail=0.0),
    "beacon": dict(shape="flat", p=0.97, period=7, pool=0, est=1, req=1, up=420, down=160, rt=230, fail=0.0),
    "new_api": dict(shape="flat", p=0.3, pool=0, est=1, req=3, up=1_500, down=2_000, rt=120, fail=0.0),
}

# Flow rules: which processes talk to which. Each row:
#   (client tiers, client family or None, client process, server, port, profile, fan-out, options)
# server: a tier (machines of the client's application when the tier has applications, else any; picked
# by rotation, so a machine keeps one domain controller), "poller" (the client's monitoring server polls
# the client: the roles swap), "public:<key>", "public:update" (the OS's package mirror), "loopback",
# "peer" (another machine of the same tier; with pairs, secondaries to primaries), "smtp" (the relay),
# "any:<family>" (any machine of that OS family).
# options: share (only that share of the clients), scale (activity multiplier), family (servers of that
# OS family only), payment (only applications in PAYMENT_APPLICATIONS; fails from the last day on),
# to_all (every machine of the tier), pairs.
FLOWS: list[tuple] = [
    (("web",), "linux", "nginx", "app", 8080, "web_app", 2, {}),
    (("web",), "windows", "w3wp-web", "app", 8080, "web_app", 2, {}),
    (("app",), "linux", "java-tomcat", "pg", 5432, "db", 1, {}),
    (("app",), "windows", "w3wp-app", "sql", 1433, "db", 1, {}),
    (("app",), "linux", "java-tomcat", "cache", 6379, "cache", 1, {}),
    (("app",), "windows", "w3wp-app", "cache", 6379, "cache", 1, {}),
    (("app",), "linux", "java-tomcat", "queue", 5672, "queue", 1, {}),
    (("app",), "windows", "w3wp-app", "queue", 5672, "queue", 1, {}),
    (("app",), "windows", "System", "file", 445, "smb", 1, {}),
    (("app",), "linux", "java-tomcat", "smtp", 25, "smtp", 1, {"share": 0.5}),
    (("app",), "linux", "java-tomcat", "public:stripe", 443, "payment", 1, {"payment": True}),
    (("app",), "windows", "w3wp-app", "public:stripe", 443, "payment", 1, {"payment": True}),
    (("app",), "linux", "curl", "loopback", 8080, "health", 1, {}),
    (("worker",), None, "celery", "queue", 5672, "queue", 1, {}),
    (("worker",), None, "celery", "pg", 5432, "db", 1, {"scale": 0.3}),
    (("worker",), None, "celery", "cache", 6379, "cache", 1, {"scale": 0.2}),
    (("worker",), None, "celery", "public:sendgrid", 443, "saas_api", 1, {"share": 0.4}),
    (("sql",), None, "sqlagent", "loopback", 1433, "sqlagent", 1, {}),
    (("sql",), None, "sqlservr", "peer", 5022, "replication", 1, {"pairs": True}),
    (("pg",), None, "postgres", "peer", 5432, "replication", 1, {"pairs": True}),
    (("queue",), None, "rabbitmq", "peer", 25672, "replication", 1, {"pairs": True}),
    (("dc",), None, "lsass-dc", "peer", 389, "dc_repl", 1, {}),
    (("build",), None, "jenkins", "app", 22, "deploy", 2, {"family": "linux"}),
    (("build",), None, "jenkins", "public:jenkins", 443, "git", 1, {"scale": 0.3}),
    (("build",), None, "jenkins", "public:maven", 443, "git", 1, {}),
    (("build",), None, "curl-build", "public:github", 443, "git", 1, {}),
    (("jump",), None, "mstsc", "any:windows", 3389, "rdp", 6, {}),
    (("jump",), None, "ssh-win", "any:linux", 22, "ssh", 6, {}),
    (("jump",), None, "msedge", "mon", 3000, "browse", 1, {"to_all": True}),
    (("jump",), None, "msedge", "build", 8080, "browse", 1, {"to_all": True}),
    # every machine
    (None, "windows", "lsass", "dc", 88, "kerberos", 1, {}),
    (None, "windows", "lsass", "dc", 389, "ldap", 1, {}),
    (None, "windows", "svchost-dns", "dc", 53, "dns", 1, {}),
    (None, "linux", "sssd", "dc", 389, "ldap", 1, {"scale": 0.5}),
    (None, "linux", "sssd", "dc", 88, "kerberos", 1, {"scale": 0.5}),
    (None, "linux", "resolved", "dc", 53, "dns", 1, {}),
    (None, "windows", "zabbix-win", "poller", 10050, "poll", 1, {}),
    (None, "linux", "zabbix-lin", "poller", 10050, "poll", 1, {}),
    (None, "windows", "MonitoringHost", "public:ods", 443, "ods", 1, {}),
    (None, "linux", "omsagent", "public:ods", 443, "ods", 1, {}),
    (None, "windows", "qualys-win", "public:qualys", 443, "vuln", 1, {}),
    (None, "linux", "qualys-lin", "public:qualys", 443, "vuln", 1, {}),
    (None, "windows", "falcon-win", "public:crowdstrike", 443, "edr", 1, {}),
    (None, "linux", "falcon-lin", "public:crowdstrike", 443, "edr", 1, {}),
    (None, "windows", "svchost-wu", "public:windowsupdate", 443, "winupdate", 1, {}),
    (None, "linux", "apt", "public:update", None, "update", 1, {}),
    (None, "linux", "yum", "public:update", None, "update", 1, {}),
]


# ---- performance and health (performance.py) -----------------------------------------------------
# tier -> its machines' performance: the daily shape of their load (traffic.SHAPES), CPU % (the idle
# floor, what the load adds at its peak), the share of memory in use (floor, added at the peak),
# network bytes/s each way at the peak (read, write), disk transfers/s at the peak, the share of
# transfers that are reads, the disk latency (ms), and a data disk (GB, 0: none) beside the system disk
PERFORMANCE: dict[str, dict] = {
    "web": dict(shape="consumer", cpu=(6, 38), mem=(0.35, 0.20), net=(2.4e6, 9.0e6), iops=40, reads=0.3, lat=1.6, data=0),
    "app": dict(shape="consumer", cpu=(9, 44), mem=(0.45, 0.25), net=(3.1e6, 2.2e6), iops=60, reads=0.4, lat=2.1, data=0),
    "sql": dict(shape="business", cpu=(8, 42), mem=(0.72, 0.15), net=(1.1e6, 3.5e6), iops=900, reads=0.7, lat=4.2, data=512),
    "pg": dict(shape="business", cpu=(6, 35), mem=(0.60, 0.20), net=(0.8e6, 2.6e6), iops=600, reads=0.65, lat=3.4, data=256),
    "cache": dict(shape="consumer", cpu=(4, 20), mem=(0.78, 0.10), net=(2.9e6, 3.3e6), iops=5, reads=0.2, lat=0.9, data=0),
    "queue": dict(shape="business", cpu=(5, 25), mem=(0.50, 0.15), net=(1.0e6, 1.0e6), iops=150, reads=0.2, lat=2.0, data=64),
    "dc": dict(shape="business", cpu=(3, 12), mem=(0.40, 0.05), net=(2.0e5, 2.4e5), iops=20, reads=0.6, lat=2.2, data=0),
    "mon": dict(shape="flat", cpu=(16, 10), mem=(0.55, 0.05), net=(6.0e5, 2.0e5), iops=120, reads=0.1, lat=3.1, data=128),
    "build": dict(shape="business", cpu=(3, 70), mem=(0.30, 0.40), net=(1.2e6, 4.0e5), iops=300, reads=0.5, lat=2.8, data=256),
    "file": dict(shape="business", cpu=(3, 15), mem=(0.30, 0.10), net=(1.5e6, 4.5e6), iops=400, reads=0.75, lat=5.5, data=2048),
    "worker": dict(shape="night", cpu=(5, 60), mem=(0.40, 0.30), net=(6.0e5, 4.0e5), iops=100, reads=0.5, lat=2.4, data=0),
    "jump": dict(shape="business", cpu=(2, 8), mem=(0.25, 0.10), net=(1.0e5, 6.0e4), iops=10, reads=0.6, lat=2.0, data=0),
}
# the app servers whose payment calls fail (from the last day on) run hot: retries, a growing backlog
HOT = dict(cpu=(86, 11), mem=(0.90, 0.06))
# family -> (system disk mount, size GB, data disk mount, network adapter)
DISKS = {"linux": ("/", 64, "/data", "eth0"), "windows": ("C:", 128, "D:", "Ethernet")}
# the first file server's data disk fills up over the window (a disk-space problem to find)
FILLING_TIER = "file"
# OS key -> Heartbeat's OSName, OSMajorVersion, OSMinorVersion
OS_HEARTBEAT = {"ws2016": ("Windows Server 2016 Datacenter", "10", "0"),
                "ws2019": ("Windows Server 2019 Datacenter", "10", "0"),
                "ws2022": ("Windows Server 2022 Datacenter Azure Edition", "10", "0"),
                "ubuntu18": ("Ubuntu", "18", "04"), "ubuntu20": ("Ubuntu", "20", "04"),
                "ubuntu22": ("Ubuntu", "22", "04"), "centos7": ("CentOS Linux", "7", "9"),
                "rhel8": ("Red Hat Enterprise Linux", "8", "9")}
AGENT_VERSION = {"linux": "1.29.4", "windows": "1.26.0.0"}     # Heartbeat's Version (Azure Monitor Agent)
# one machine's agent stops reporting this many minutes before the window's end and stays silent
# (its heartbeat stops; the machines that talk to it still report those connections): the first
# machine of this tier that is not a sample and does not reboot
AGENT_STOPS = ("worker", 40)
