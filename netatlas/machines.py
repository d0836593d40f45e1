"""Remote machine resolution: which monitored machine an address belongs to.

The join the seed's "outbound dependencies" query does by hand (VMConnection.RemoteIp against
VMComputer's addresses), as a function the API and the map use:

* a machine's own addresses: ``Ipv4Addresses`` and ``Ipv6Addresses`` of its latest VMComputer
  record within the lookback (``via`` = "address");
* the address its agent's batches come from, when that is none of its own: the machine is seen
  there through a NAT, by whoever it talks to (``via`` = "nat"). The workspace learns it at
  ingestion (``note_senders``, from VMComputer batches, which every agent sends at start and
  hourly) and keeps it in ``_netatlas_senders``; loopback senders say nothing and are skipped.

An address several machines share (a NAT gateway in front of many) resolves to all of them.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

from .addresses import canonical

SENDERS = "_netatlas_senders"      # created with the workspace (ingest.SETUP_SQL)


# the machines whose latest inventory names an address: KQL, so any store runs it
RESOLVE_KQL = """declare query_parameters(since:datetime);
VMComputer
| where TimeGenerated >= since and Machine != ""
| summarize arg_max(TimeGenerated, Computer, Ipv4Addresses, Ipv6Addresses) by Machine
| mv-expand ip = array_concat(Ipv4Addresses, Ipv6Addresses) to typeof(string)
| where ip in (ADDRESSES)
| project ip, Machine, Computer
| order by Machine asc"""


def resolve_kql(query, addresses: list[str], lookback_days: float = 1.0,
                now: datetime | None = None) -> dict[str, list[dict]]:
    """``resolve`` by the machines' own addresses only, through KQL: ``query(text, params)`` runs a
    query (a workspace on any store) and gives a Result. The NAT senders are the workspace's
    own database's (``add_senders``)."""
    import json
    now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
    wanted = {a: canonical(a) for a in addresses}
    keys = sorted({c for c in wanted.values() if c})
    found: dict[str, list[dict]] = {k: [] for k in keys}
    if keys:
        text = RESOLVE_KQL.replace("ADDRESSES", ", ".join(json.dumps(k) for k in keys))
        for ip, machine, computer in query(text, {"since": now - timedelta(days=lookback_days)}).rows:
            found[ip].append({"machine": machine, "computer": computer, "via": "address"})
    return {a: found.get(c, []) if c else [] for a, c in wanted.items()}


def add_senders(con, resolved: dict[str, list[dict]], lookback_days: float = 1.0,
                now: datetime | None = None) -> dict[str, list[dict]]:
    """``resolved`` (address -> machines, as ``resolve_kql`` gives) with the machines seen behind
    each address through a NAT (``via`` = "nat"), from the senders the workspace's own database
    learned at ingestion: a workspace whose tables are in another store resolves as ``resolve``."""
    now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
    keys = sorted({c for a in resolved if (c := canonical(a))})
    if not keys:
        return resolved
    nat: dict[str, list[tuple]] = {}
    for ip, machine, computer in con.execute(
            f"SELECT Address, Machine, Computer FROM {SENDERS} WHERE LastSeen >= ? AND "
            f"Address IN (SELECT unnest(?::VARCHAR[])) ORDER BY Machine",
            [now - timedelta(days=lookback_days), keys]).fetchall():
        nat.setdefault(ip, []).append((machine, computer))
    for address, machines in resolved.items():
        for machine, computer in nat.get(canonical(address), ()):
            if not any(m["machine"] == machine for m in machines):
                machines.append({"machine": machine, "computer": computer, "via": "nat"})
    return resolved


def note_senders(con, records: list, sender: str, now: datetime | None = None) -> int:
    """Remember ``sender`` as the NAT address of the machines of a VMComputer batch whose own
    addresses do not include it; the number of machines noted."""
    address = canonical(sender)
    if address is None or ipaddress.ip_address(address).is_loopback:
        return 0
    now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
    rows = {}
    for r in records:
        machine = r.get("Machine")
        if not isinstance(machine, str) or not machine:
            continue
        own = {canonical(a) for key in ("Ipv4Addresses", "Ipv6Addresses")
               for a in (r.get(key) if isinstance(r.get(key), list) else []) if isinstance(a, str)}
        if address not in own:
            rows[machine] = (machine, str(r.get("Computer") or ""), address, now)
    for row in rows.values():
        con.execute(f"INSERT OR REPLACE INTO {SENDERS} VALUES (?, ?, ?, ?)", list(row))
    return len(rows)


def resolve(con, addresses: list[str], lookback_days: float = 1.0,
            now: datetime | None = None) -> dict[str, list[dict]]:
    """address -> [{"machine", "computer", "via"}] (an empty list for an address no monitored
    machine has); addresses are compared in canonical form."""
    now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
    since = now - timedelta(days=lookback_days)
    wanted = {a: canonical(a) for a in addresses}
    keys = sorted({c for c in wanted.values() if c})
    found: dict[str, list[dict]] = {k: [] for k in keys}
    if keys:
        own = con.execute(
            """SELECT ip, Machine, Computer FROM (
                 SELECT Machine, arg_max(Computer, TimeGenerated) AS Computer,
                        arg_max(Ipv4Addresses, TimeGenerated) AS v4, arg_max(Ipv6Addresses, TimeGenerated) AS v6
                 FROM VMComputer WHERE TimeGenerated >= ? AND Machine <> '' GROUP BY Machine)
               CROSS JOIN unnest(list_concat(coalesce(CAST(v4 AS VARCHAR[]), []), coalesce(CAST(v6 AS VARCHAR[]), [])))
                 AS t(ip)
               WHERE ip IN (SELECT unnest(?::VARCHAR[])) ORDER BY Machine""", [since, keys]).fetchall()
        for ip, machine, computer in own:
            found[ip].append({"machine": machine, "computer": computer, "via": "address"})
    return add_senders(con, {a: found.get(c, []) if c else [] for a, c in wanted.items()}, lookback_days, now=now)
