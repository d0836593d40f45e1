"""Stage 1, plan: seed + size -> ``Environment`` (machines, their processes and bound ports, flows).

Everything is drawn from ``random.Random(seed)`` in a fixed order, so one seed gives one datacenter.
A *flow* is one logical connection (Direction aside: SourceIp, DestinationIp, DestinationPort,
Protocol and the processes at both ends); ``traffic.py`` decides in which minutes it is active.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import MIN_MACHINES
from . import catalog as C
NO_MINUTE = 1 << 40   # "never" for minute indexes


@dataclass(eq=False)
class Process:
    machine: "Machine"
    key: str
    pid: str                      # p-{hex}
    fields: dict                  # resolved template fields (exe, cmd, user, ...)
    first_pid: int
    start: datetime               # StartTime before any reboot in the window
    restart: tuple | None = None  # (first_pid, StartTime) after the machine's reboot
    daily: tuple | None = None    # (minute of day it starts, minutes it runs) for scheduled processes
    from_minute: int = 0          # appears at this minute of the window (0: running from before)
    slot: int = 0                 # its position on the machine (spreads inventory records over the hour)


@dataclass(eq=False)
class Port:
    """One bound address of a process: the identity of a VMBoundPort record."""
    machine: "Machine"
    process: Process
    ip: str
    port: int
    wildcard: bool
    index: int = -1
    group: int = -1               # the bind it belongs to (all addresses of one wildcard bind share it)
    idle: bool = False            # the record written for the bind in hours without traffic


@dataclass(eq=False)
class Machine:
    idx: int
    tier: str
    rank: int                     # position within its tier
    name: str                     # Computer
    fqdn: str
    guid: str
    os: str
    application: str
    azure: dict | None
    ip: str
    ipv6: list
    mac: str
    cpus: int
    memory: int
    cpu_speed: int
    virt: str
    vm_type: str
    native_id: str
    vm_name: str
    boot: datetime
    phase: int                    # minute of the hour of its hourly inventory records
    timezone: str
    resource_id: str
    reboot: tuple | None = None   # (first minute down, first minute up, new boot time)
    processes: dict = field(default_factory=dict)   # key -> Process
    binds: dict = field(default_factory=dict)       # port -> (process key, wildcard, fixed ips)

    @property
    def id(self) -> str:
        return "m-" + self.guid

    @property
    def family(self) -> str:
        return C.OPERATING_SYSTEMS[self.os]["family"]


@dataclass(eq=False)
class Flow:
    """One logical connection. client/server are (Machine, Process) or None when not monitored."""
    client: tuple | None
    server: tuple | None
    src: str
    dst: str
    port: int
    profile: str
    scale: float = 1.0
    remote_out: dict = field(default_factory=dict)   # geo/DNS columns of the client's outbound record
    remote_in: dict = field(default_factory=dict)    # geo columns of the server's inbound record
    fail_from: int = NO_MINUTE    # from this minute on every attempt fails
    from_minute: int = 0
    until_minute: int = NO_MINUTE  # active before this minute only (a live dependency that goes away)
    daily: tuple | None = None
    period_phase: int = 0
    novel: int = -1               # a dependency that appears after the window: its number (environment.novelties)
    port_ref: Port | None = None  # the server's bound port (inbound records)


@dataclass
class Environment:
    seed: int
    start: datetime
    minutes: int
    subscription: str
    workspace: str
    machines: list
    ports: list
    flows: list
    last_day: int                 # first minute of the last day (the payment API fails from here)

    def time(self, minute: int) -> datetime:
        return self.start + timedelta(minutes=minute)


# --------------------------------------------------------------------------- helpers

def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _pick(rng: random.Random, weights: dict):
    keys = list(weights)
    return rng.choices(keys, [weights[k] for k in keys])[0]


def _resolve(value, os_key: str, family: str):
    """A template value: dicts are keyed by OS key, family or "*"."""
    if isinstance(value, dict):
        return value.get(os_key, value.get(family, value.get("*", "")))
    return value


class _Format(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def tier_counts(machines: int) -> dict[str, int]:
    """Machines per tier: each tier's share, at least its minimum, the rounding absorbed by the largest."""
    if machines < MIN_MACHINES:
        raise ValueError(f"the demo needs at least {MIN_MACHINES} machines (one of each kind), got {machines}")
    counts = {t: max(d["min"], round(d["share"] * machines)) for t, d in C.TIERS.items()}
    order = sorted(C.TIERS, key=lambda t: -C.TIERS[t]["share"])
    i = 0
    while sum(counts.values()) != machines:
        t = order[i % len(order)]
        step = 1 if sum(counts.values()) < machines else -1
        if counts[t] + step >= C.TIERS[t]["min"]:
            counts[t] += step
        i += 1
    return counts


# --------------------------------------------------------------------------- machines

def _address(tier: dict, rank: int, azure: bool) -> str:
    if azure:
        return f"10.{1 + rank // 250}.{tier['subnet']}.{4 + rank % 250}"
    return f"10.{229 + rank // 240}.{tier['onprem']}.{10 + rank % 240}"


def _machine(rng: random.Random, idx: int, tier_name: str, rank: int, start: datetime, subscription: str,
             sample: dict | None) -> Machine:
    tier = C.TIERS[tier_name]
    sample = sample or {}
    os_key = sample.get("os") or _pick(rng, tier["os"])
    azure = sample["azure"] if "azure" in sample else rng.random() < tier["azure"]
    guid = sample.get("guid") or _guid(rng)
    short = sample.get("name") or f"{tier['prefix']}-{rank + 1:02d}"
    fqdn = f"{short}.{C.DOMAIN}"
    name = short if "name" in sample else fqdn
    application = sample.get("application") or (C.APPLICATIONS[rank % len(C.APPLICATIONS)] if tier["apps"] else "")
    ip = sample.get("ip") or _address(tier, rank, azure)
    family = C.OPERATING_SYSTEMS[os_key]["family"]
    size = rng.choice(tier["sizes"])
    cpus = rng.choice(tier["cpus"])
    memory = rng.choice(tier["memory"])
    boot = start - timedelta(days=rng.uniform(2, 75), seconds=rng.randrange(86400))
    boot = boot.replace(microsecond=0)
    mac = "-".join(f"{b:02X}" for b in ([0x00, 0x0D, 0x3A] if azure else [0x00, 0x50, 0x56]) +
                   [rng.randrange(256) for _ in range(3)])
    ipv6 = [f"fe80::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}"] \
        if family == "windows" else []
    if azure:
        location = _pick(rng, C.AZURE_LOCATIONS)
        image = C.SQL_IMAGES[os_key] if tier_name == "sql" else C.OPERATING_SYSTEMS[os_key]["image"]
        rg = f"rg-{application or tier_name}-prod"
        azure_info = dict(location=location, publisher=image[0], offer=image[1], sku=image[2], version=image[3],
                          size=size, rg=rg, vm_id=_guid(rng))
        virt, vm_type = "virtual", "hyperv"
        native = _guid(rng)
        vm_name = native.upper()
        resource_id = (f"/subscriptions/{subscription}/resourcegroups/{rg}/providers/microsoft.compute/"
                       f"virtualmachines/{short}")
        cpu_speed = rng.choice([2294, 2394, 2594, 2793])
    else:
        azure_info = None
        virt = _pick(rng, C.ONPREM_VIRT)
        vm_type = "" if virt == "physical" else virt
        virt = "physical" if virt == "physical" else "virtual"
        native = _guid(rng) if virt == "virtual" else ""
        vm_name = short if virt == "virtual" else ""
        resource_id = (f"/subscriptions/{subscription}/resourcegroups/rg-onprem-arc/providers/"
                       f"microsoft.hybridcompute/machines/{short}")
        cpu_speed = rng.choice([2100, 2200, 2400, 2600, 3000])
        size = ""
        if azure_info is None and virt == "physical":
            cpus, memory = cpus * 2, memory * 2
    tz = "UTC" if azure else rng.choice(["UTC", "Eastern Standard Time", "Pacific Standard Time"])
    if family == "linux":
        tz = "UTC"
    if azure_info is not None:
        azure_info["size"] = size
    return Machine(idx=idx, tier=tier_name, rank=rank, name=name, fqdn=fqdn, guid=guid, os=os_key,
                   application=application, azure=azure_info, ip=ip, ipv6=ipv6, mac=mac, cpus=cpus, memory=memory,
                   cpu_speed=cpu_speed, virt=virt, vm_type=vm_type, native_id=native, vm_name=vm_name, boot=boot,
                   phase=1 + (idx * 7 + rng.randrange(3)) % 44, timezone=tz, resource_id=resource_id)


def _samples_by_slot() -> dict[tuple[str, int], dict]:
    """(tier, rank) -> the docs' sample machine placed there."""
    out, next_rank = {}, {}
    for s in C.SAMPLES:
        r = next_rank.get(s["tier"], 0)
        out[(s["tier"], r)] = s
        next_rank[s["tier"]] = r + 1
    return out


def _machines(rng: random.Random, counts: dict, start: datetime, subscription: str) -> list[Machine]:
    samples = _samples_by_slot()
    machines = []
    for tier_name, n in counts.items():
        for rank in range(n):
            machines.append(_machine(rng, len(machines), tier_name, rank, start, subscription,
                                     samples.get((tier_name, rank))))
    return machines


# --------------------------------------------------------------------------- processes and ports

def _processes(rng: random.Random, m: Machine) -> None:
    keys = list(C.COMMON[m.family]) + list(C.TIER_PROCESSES.get((m.tier, m.family), []))
    for new, old in C.REPLACES.items():
        if new in keys and old in keys:
            keys.remove(old)
    keys = [k for k in keys if m.os in C.ONLY_ON.get(k, (m.os,))]
    used = set()
    fmt = _Format(app=m.application or m.tier, host=m.fqdn.split(".")[0], ip=m.ip,
                  pipe=f"{rng.getrandbits(32):08x}", heap=str(min(m.memory // 2, 8192)),
                  admin=rng.choice(["jsmith", "mgarcia", "akumar", "lchen"]))
    for slot, key in enumerate(dict.fromkeys(keys)):
        t = C.PROCESSES[key]
        fields = {}
        for name in ("exe", "display", "description", "company", "product", "version", "file_version", "internal",
                     "path", "cwd", "user", "domain", "group", "role"):
            fields[name] = str(_resolve(t[name], m.os, m.family)).format_map(fmt)
        fmt["path"] = fields["path"]
        fields["cmd"] = str(_resolve(t["cmd"], m.os, m.family)).format_map(fmt)
        fields["services"] = [s.format_map(fmt) for s in t["services"]]
        pid = "p-" + f"{rng.getrandbits(48):012x}"
        while pid in used:
            pid = "p-" + f"{rng.getrandbits(48):012x}"
        used.add(pid)
        first_pid = 4 if fields["exe"] == "System" else (
            rng.randrange(150, 2500) * 4 if m.family == "windows" else rng.randrange(300, 40000))
        p = Process(machine=m, key=key, pid=pid, fields=fields, first_pid=first_pid,
                    start=(m.boot + timedelta(seconds=rng.randrange(8, 180))).replace(microsecond=0), slot=slot)
        schedule = t.get("schedule", "always")
        if schedule != "always":
            p.daily = (rng.randrange(60, 24 * 60 - 60), schedule[1])   # minute of day, minutes it runs
        m.processes[key] = p
        for bind in t.get("ports", []):
            port, kind = bind[0], bind[1]
            ips = tuple(m.ip if a == "ip" else a for a in (bind[2] if len(bind) > 2 else ()))
            m.binds.setdefault(port, (key, kind == "wildcard", ips))


def _reboots(rng: random.Random, machines: list[Machine], days: int, start: datetime) -> None:
    """Patch night: some Windows machines (and a few Linux ones) reboot, staggered, three days before the end."""
    day = max(0, days - 3)
    night = day * 1440 + ((2 * 60 - (start.hour * 60 + start.minute)) % 1440)   # 02:00 UTC of that day
    sample_ids = {s["guid"] for s in C.SAMPLES if "guid" in s}
    for m in machines:
        if m.guid in sample_ids or m.tier in ("dc",):
            continue
        chance = 0.25 if m.family == "windows" else 0.06
        if rng.random() >= chance:
            continue
        down_at = night + rng.randrange(0, 150)
        up_at = down_at + rng.randrange(3, 7)
        if up_at >= days * 1440:
            continue
        new_boot = start + timedelta(minutes=up_at - 1, seconds=rng.randrange(20, 59))
        m.reboot = (down_at, up_at, new_boot)
        for p in m.processes.values():
            if p.daily is None:
                first_pid = 4 if p.first_pid == 4 else (
                    rng.randrange(150, 2500) * 4 if m.family == "windows" else rng.randrange(300, 40000))
                p.restart = (first_pid, new_boot + timedelta(seconds=rng.randrange(8, 120)))


def _ports(machines: list[Machine]) -> tuple[list[Port], dict]:
    """Every bound address: wildcard binds get one Port per address that can see traffic (the
    machine's address and loopback) plus the 0.0.0.0 record used while idle."""
    ports, index, group = [], {}, 0
    for m in machines:
        for port, (key, wildcard, ips) in sorted(m.binds.items()):
            p = m.processes[key]
            addresses = (m.ip, "127.0.0.1", "0.0.0.0") if wildcard else ips
            for ip in addresses:
                pt = Port(m, p, ip, port, wildcard, len(ports), group, idle=ip == "0.0.0.0" or not wildcard)
                ports.append(pt)
                index[(m.idx, ip, port)] = pt
                group += 0 if wildcard else 1
            group += 1 if wildcard else 0
    return ports, index


# --------------------------------------------------------------------------- flows

def _dns(name: str) -> str:
    return f'["{name}"]'


def _public(key: str, ws: str) -> dict:
    fqdn, ip, country, lat, lon, port, cnames = C.PUBLIC[key]
    out = dict(ip=ip, port=port, RemoteCountry=country, RemoteLatitude=lat, RemoteLongitude=lon,
               RemoteDnsQuestions=_dns(fqdn.format(ws=ws)))
    if cnames:
        out["RemoteDnsCanonicalNames"] = "[" + ",".join(f'"{c}"' for c in cnames) + "]"
    return out


class _FlowBuilder:
    def __init__(self, rng: random.Random, env_machines: list[Machine], port_index: dict, ws: str, minutes: int):
        self.rng, self.machines, self.port_index, self.ws, self.minutes = rng, env_machines, port_index, ws, minutes
        self.flows: list[Flow] = []
        self.by_tier: dict[str, list[Machine]] = {}
        for m in env_machines:
            self.by_tier.setdefault(m.tier, []).append(m)

    def add(self, client, server, src, dst, port, profile, **kw) -> Flow | None:
        port_ref = None
        if server is not None:
            port_ref = self.port_index.get((server[0].idx, dst, port))
            if port_ref is None or port_ref.process is not server[1]:
                return None   # nothing listens there
        f = Flow(client=client, server=server, src=src, dst=dst, port=port, profile=profile, port_ref=port_ref, **kw)
        prof = C.PROFILES[profile]
        if prof.get("period"):
            f.period_phase = self.rng.randrange(prof["period"])
        self.flows.append(f)
        return f

    def internal(self, cm: Machine, ckey: str, sm: Machine, port: int, profile: str, dns: bool = True, **kw):
        if sm is cm or port not in sm.binds:
            return None
        cp = cm.processes.get(ckey)
        sp = sm.processes[sm.binds[port][0]]
        if cp is None:
            return None
        remote = dict(RemoteDnsQuestions=_dns(sm.fqdn)) if dns else {}
        return self.add((cm, cp), (sm, sp), cm.ip, sm.ip, port, profile, remote_out=remote,
                        daily=cp.daily, from_minute=cp.from_minute, **kw)

    def candidates(self, cm: Machine, tier: str, family: str | None) -> list[Machine]:
        pool = [m for m in self.by_tier.get(tier, []) if m is not cm and (family is None or m.family == family)]
        if C.TIERS[tier]["apps"] and cm.application:
            same = [m for m in pool if m.application == cm.application]
            pool = same or pool
        return pool


def _rules(b: _FlowBuilder, last_day: int) -> None:
    rng = b.rng
    for r, (tiers, family, ckey, target, port, profile, fanout, opts) in enumerate(C.FLOWS):
        offset = rng.randrange(1000)
        clients = [m for m in b.machines if (tiers is None or m.tier in tiers) and
                   (family is None or m.family == family) and ckey in m.processes]
        if opts.get("payment"):
            clients = [m for m in clients if m.application in C.PAYMENT_APPLICATIONS]
        scale = opts.get("scale", 1.0)
        for cm in clients:
            if opts.get("share") and rng.random() >= opts["share"] and cm.guid != C.ADMDEMO_APPSVR["guid"]:
                continue
            cp = cm.processes[ckey]
            if target == "loopback":
                sp = cm.processes[cm.binds[port][0]]
                b.add((cm, cp), (cm, sp), "127.0.0.1", "127.0.0.1", port, profile, scale=scale, daily=cp.daily)
            elif target == "poller":
                mons = [m for m in b.by_tier["mon"] if m is not cm]
                if mons:
                    mon = mons[(cm.idx + offset) % len(mons)]
                    b.internal(mon, "zabbix-server", cm, port, profile, dns=False, scale=scale)
            elif target.startswith("public:"):
                key = target.split(":", 1)[1]
                key = C.UPDATE_ENDPOINT[cm.os] if key == "update" else key
                if key == "ods" and cm.azure and cm.azure["location"] == "westeurope":
                    key = "ods-eu"
                pub = _public(key, b.ws)
                ip, pport = pub.pop("ip"), pub.pop("port")
                fail_from = last_day if opts.get("payment") else NO_MINUTE
                b.add((cm, cp), None, cm.ip, ip, port or pport, profile, scale=scale, remote_out=pub,
                      fail_from=fail_from, daily=cp.daily, from_minute=cp.from_minute)
            elif target == "smtp":
                b.add((cm, cp), None, cm.ip, C.SMTP_RELAY, port, profile, scale=scale,
                      remote_out=dict(RemoteDnsQuestions=_dns(f"smtp.{C.DOMAIN}")))
            elif target == "peer":
                peers = b.candidates(cm, cm.tier, None)
                if opts.get("pairs"):
                    same = [m for m in b.by_tier[cm.tier] if m.application == cm.application]
                    pos = same.index(cm)
                    if pos % 2 == 1:   # a secondary replicates from the primary before it
                        b.internal(cm, ckey, same[pos - 1], port, profile, scale=scale)
                elif peers:
                    b.internal(cm, ckey, peers[(cm.rank + 1) % len(peers)], port, profile, scale=scale)
            elif target.startswith("any:"):
                fam = target.split(":", 1)[1]
                pool = [m for m in b.machines if m.family == fam and m is not cm and port in m.binds]
                for sm in rng.sample(pool, min(fanout, len(pool))):
                    b.internal(cm, ckey, sm, port, profile, scale=scale)
            else:
                pool = b.candidates(cm, target, opts.get("family"))
                if not pool:
                    continue
                chosen = pool if opts.get("to_all") else [
                    pool[(cm.rank * fanout + j + offset) % len(pool)] for j in range(min(fanout, len(pool)))]
                for sm in dict.fromkeys(chosen):
                    b.internal(cm, ckey, sm, port, profile, dns=profile != "dns", scale=scale)


def _clients(rng: random.Random) -> list[tuple[str, dict]]:
    """The internet clients of the web tier: (address, geo columns)."""
    out, seen = [], set()
    for country, lat, lon, prefix, n, _w in C.CLIENT_BLOCKS:
        for _ in range(n):
            ip = f"{prefix}{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
            if ip in seen:
                continue
            seen.add(ip)
            out.append((ip, dict(RemoteCountry=country, RemoteLatitude=round(lat + rng.uniform(-0.3, 0.3), 4),
                                 RemoteLongitude=round(lon + rng.uniform(-0.3, 0.3), 4))))
    return out


def _inbound_from_outside(b: _FlowBuilder) -> None:
    rng = b.rng
    clients = _clients(rng)
    weights = []
    for country, _lat, _lon, _prefix, n, w in C.CLIENT_BLOCKS:
        weights += [w / n] * n
    weights = weights[:len(clients)]
    for web in b.by_tier["web"]:
        chosen = {}
        for ip, geo in rng.choices(clients, weights, k=60):
            chosen[ip] = geo
        for ip, geo in chosen.items():
            port = 80 if rng.random() < 0.08 else 443
            sp = web.processes[web.binds[port][0]]
            b.add(None, (web, sp), ip, web.ip, port, "internet", remote_in=geo, scale=rng.uniform(0.5, 1.6))
    # administrators' workstations (not monitored): RDP to Windows, SSH to Linux
    for ws_ip in C.ADMIN_WORKSTATIONS:
        for fam, port, profile in (("windows", 3389, "rdp"), ("linux", 22, "ssh")):
            pool = [m for m in b.machines if m.family == fam and port in m.binds]
            for sm in rng.sample(pool, min(4, len(pool))):
                sp = sm.processes[sm.binds[port][0]]
                b.add(None, (sm, sp), ws_ip, sm.ip, port, profile, scale=0.6)
    # suspicious: brute force against exposed machines
    rdp_ip, ssh_ip, tor_ip = list(C.SUSPICIOUS_IPS)
    exposed_windows = [m for m in b.machines if m.tier == "jump" or m.guid == C.ACME_DEMO["guid"]]
    exposed_linux = [m for m in b.by_tier["web"] if m.family == "linux"][:2]
    for ip, targets, port, profile in ((rdp_ip, exposed_windows, 3389, "rdp_probe"),
                                      (ssh_ip, exposed_linux, 22, "ssh_probe")):
        country, lat, lon, _what = C.SUSPICIOUS_IPS[ip]
        for sm in targets:
            sp = sm.processes[sm.binds[port][0]]
            b.add(None, (sm, sp), ip, sm.ip, port, profile,
                  remote_in=dict(RemoteCountry=country, RemoteLatitude=lat, RemoteLongitude=lon))
    # a cryptominer dropped on one Linux worker two-fifths into the window beacons to a Tor exit
    workers = [m for m in b.by_tier["worker"] if m.family == "linux" and "celery" in m.processes]
    if workers:
        victim = workers[len(workers) // 2]
        celery = victim.processes["celery"]
        from_minute = int(b.minutes * 0.4) + rng.randrange(60)
        miner = C.PROCESSES["miner"]
        fields = {k: miner[k] for k in ("exe", "display", "description", "company", "product", "version",
                                        "file_version", "internal", "path", "cwd", "user", "domain", "group",
                                        "role", "cmd")}
        fields["services"] = []
        p = Process(machine=victim, key="miner", pid="p-" + f"{rng.getrandbits(48):012x}", fields=fields,
                    first_pid=rng.randrange(20000, 60000), start=celery.start, from_minute=from_minute,
                    slot=len(victim.processes))
        victim.processes["miner"] = p
        country, lat, lon, _what = C.SUSPICIOUS_IPS[tor_ip]
        b.add((victim, p), None, victim.ip, tor_ip, 443, "beacon", from_minute=from_minute,
              remote_out=dict(RemoteCountry=country, RemoteLatitude=lat, RemoteLongitude=lon))


def plan(machines: int, days: int, seed: int, end: datetime) -> Environment:
    """Draw the datacenter for `machines` machines observed for `days` days up to `end`."""
    if days < 1:
        raise ValueError(f"the demo covers at least one day, got {days}")
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    minutes = days * 1440
    subscription = _guid(rng)
    ws = _guid(rng)
    counts = tier_counts(machines)
    ms = _machines(rng, counts, start, subscription)
    for m in ms:
        _processes(rng, m)
    _reboots(rng, ms, days, start)
    ports, port_index = _ports(ms)
    b = _FlowBuilder(rng, ms, port_index, ws, minutes)
    last_day = minutes - 1440
    _rules(b, last_day)
    _inbound_from_outside(b)
    return Environment(seed=seed, start=start, minutes=minutes, subscription=subscription, workspace=ws,
                       machines=ms, ports=ports, flows=b.flows, last_day=last_day)


# --------------------------------------------------------------------------- live: new dependencies

def novelties(env: Environment, upto: int) -> list[Flow]:
    """Add to ``env.flows`` the dependencies that appear past the window, in its hours up to minute
    ``upto``: each hour, with catalog.NOVELTY's chance (drawn from the seed and the hour), a
    monitored process starts calling a service it never called (a public API of NEW_PUBLIC, or a
    bound port of another machine), from a minute of that hour, for some hours or days. They show
    as *new* on the map (no record a day earlier). Returns the flows added."""
    internal = [f for f in env.flows if f.client is not None and f.server is not None and f.novel < 0
                and f.client[0] is not f.server[0] and f.daily is None and f.profile in ("web_app", "db", "cache", "queue")]
    clients = list({id(f.client[1]): f.client for f in internal}.values())
    known = {(f.client[0].idx, f.dst, f.port) for f in env.flows if f.client is not None}
    added = []
    for hour in range(env.minutes // 60, upto // 60 + 1):
        rng = random.Random(f"{env.seed}/new/{hour}")
        if rng.random() >= C.NOVELTY["chance"] or not clients:
            continue
        start = hour * 60 + rng.randrange(60)
        if start >= upto:
            continue
        until = start + rng.randrange(*C.NOVELTY["lasts"])
        cm, cp = clients[rng.randrange(len(clients))]
        if rng.random() < C.NOVELTY["public_share"]:
            key = rng.choice(sorted(C.NEW_PUBLIC))
            fqdn, ip, country, lat, lon, port, cnames = C.NEW_PUBLIC[key]
            remote = dict(RemoteCountry=country, RemoteLatitude=lat, RemoteLongitude=lon, RemoteDnsQuestions=_dns(fqdn))
            if cnames:
                remote["RemoteDnsCanonicalNames"] = "[" + ",".join(f'"{c}"' for c in cnames) + "]"
            f = Flow(client=(cm, cp), server=None, src=cm.ip, dst=ip, port=port, profile=C.NOVELTY["profile_public"],
                     remote_out=remote)
        else:
            servers = [g for g in internal if g.server[0] is not cm and (cm.idx, g.dst, g.port) not in known]
            if not servers:
                continue
            g = servers[rng.randrange(len(servers))]
            sm = g.server[0]
            f = Flow(client=(cm, cp), server=g.server, src=cm.ip, dst=g.dst, port=g.port, profile=g.profile,
                     port_ref=g.port_ref, remote_out=dict(RemoteDnsQuestions=_dns(sm.fqdn)))
        if (cm.idx, f.dst, f.port) in known:
            continue
        known.add((cm.idx, f.dst, f.port))
        f.from_minute, f.until_minute, f.novel = start, until, hour
        env.flows.append(f)
        added.append(f)
    return added
