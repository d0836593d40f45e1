"""Stage 3, traffic: ``Environment`` -> VMConnection and VMBoundPort records, PART minutes at a time.

Vectorised with numpy. For PART minutes at a time, every flow gets a chance of activity per minute
(its profile's peak chance times the daily cycle of its shape; polling flows only in their minute of
the period; scheduled processes only while they run); the active (flow, minute) pairs become one
outbound record on the client (when it is monitored) and, unless the attempt failed, one inbound
record on the server (when monitored), with the metrics mirrored. The inbound records of each bound
address and minute are summed into VMBoundPort; binds without traffic in an hour get one idle record.

Randomness: ``numpy.random.default_rng([seed, part])`` (minutes past the window: ``[seed, *key]``),
so one seed gives the same records. ``part`` gives dicts, ``part_frames`` the same records as
columns (the bulk path of ``Workspace.ingest_frame``).
"""
from __future__ import annotations

from datetime import timedelta

import numpy as np

from . import catalog as C
from .environment import NO_MINUTE, Environment

SHAPES = ("flat", "business", "consumer", "night")
CHUNK = 2048     # flows simulated together (CHUNK x PART random numbers at a time)
PART = 360       # minutes generated at a time (a multiple of 60)
PROTOCOL = "tcp"


def _bell(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = np.abs(hour - centre)
    d = np.minimum(d, 24 - d)
    return np.exp(-0.5 * (d / width) ** 2)


def daily_cycles(env: Environment, m0: int, width: int) -> np.ndarray:
    """(len(SHAPES), width) load factors in [0, 1]: the shapes' daily cycles over the minutes
    [m0, m0 + width) of the window (UTC; any minute, past the window's end too). Each day's factor
    is drawn from the seed and the day, so a minute's load does not depend on the part it is in."""
    t = np.arange(m0, m0 + width)
    since_midnight = env.start.hour * 60 + env.start.minute + t
    hour = (since_midnight % 1440) / 60.0
    day = since_midnight // 1440
    weekend = ((env.start.weekday() + day) % 7) >= 5
    first = int(day.min()) if width else 0
    factors = np.array([np.random.default_rng([env.seed, 0xC7C1E, d]).uniform(0.88, 1.08)
                        for d in range(first, int(day.max()) + 1 if width else first)])
    day_factor = factors[day - first] if width else np.zeros(0)
    business = (0.07 + 0.93 * _bell(hour, 13.0, 3.0)) * np.where(weekend, 0.3, 1.0)
    consumer = np.minimum(1.0, 0.22 + 0.5 * _bell(hour, 14.0, 3.5) + 0.42 * _bell(hour, 20.0, 2.2))
    consumer = consumer * np.where(weekend, 0.85, 1.0)
    night = 0.12 + 0.88 * _bell(hour, 3.0, 1.2)
    flat = np.ones_like(hour)
    out = np.stack([flat, business * day_factor, consumer * day_factor, night])
    return np.clip(out, 0.0, 1.0)


class FlowTable:
    """The flows as column arrays, plus the static part of each record."""

    def __init__(self, env: Environment):
        flows = env.flows
        n = len(flows)
        base = sum(1 for f in flows if f.novel < 0)    # the window's flows, then live ones (environment.novelties)
        rng = np.random.default_rng([env.seed, 0x5EED])
        prof = [C.PROFILES[f.profile] for f in flows]
        col = lambda key, default=0: np.array([p.get(key, default) for p in prof], dtype=np.float64)  # noqa: E731
        self.n = n
        self.p = np.minimum(1.0, col("p") * np.array([f.scale for f in flows]))
        self.shape = np.array([SHAPES.index(p["shape"]) for p in prof], dtype=np.int64)
        self.period = col("period").astype(np.int64)
        self.phase = np.array([f.period_phase for f in flows], dtype=np.int64)
        self.daily_start = np.array([f.daily[0] if f.daily else -1 for f in flows], dtype=np.int64)
        self.daily_len = np.array([f.daily[1] if f.daily else 0 for f in flows], dtype=np.int64)
        self.from_minute = np.array([f.from_minute for f in flows], dtype=np.int64)
        self.until_minute = np.array([f.until_minute for f in flows], dtype=np.int64)
        self.fail_from = np.array([f.fail_from for f in flows], dtype=np.int64)
        def draw(fn):   # the window's flows from one stream; each live flow from its own (seed, novelty)
            return np.concatenate([fn(rng, base)] + [fn(np.random.default_rng([env.seed, 0x4E57, f.novel]), 1)
                                                     for f in flows[base:]])
        size = draw(lambda r, k: r.lognormal(0.0, 0.45, k))
        self.size = size
        self.pool = np.where(col("pool") > 0, np.maximum(1, np.rint(col("pool") * np.clip(size, 0.5, 2.0))), 0)
        self.est, self.req, self.rt, self.fail = col("est"), col("req"), col("rt"), col("fail")
        self.up, self.down = col("up") * size, col("down") * size
        self.rt = self.rt * draw(lambda r, k: r.lognormal(0.0, 0.3, k))

        def down(side):
            a = np.full(n, NO_MINUTE, dtype=np.int64)
            b = np.full(n, NO_MINUTE, dtype=np.int64)
            for i, f in enumerate(flows):
                end = getattr(f, side)
                if end is not None and end[0].reboot:
                    a[i], b[i] = end[0].reboot[0], end[0].reboot[1]
            return a, b
        self.client_down = down("client")
        self.server_down = down("server")
        self.has_out = np.array([f.client is not None for f in flows])
        self.has_in = np.array([f.server is not None for f in flows])
        self.port = np.array([f.port_ref.index if f.port_ref is not None else -1 for f in flows], dtype=np.int64)
        self.bases = [_base(env, f, "outbound") for f in flows] + [_base(env, f, "inbound") for f in flows]

    def base_frame(self) -> dict:
        """``bases`` as frame columns (built on first use)."""
        if not hasattr(self, "_base_frame"):
            self._base_frame = base_frame("VMConnection", self.bases)
        return self._base_frame


def _base(env: Environment, f, direction: str) -> dict | None:
    end = f.client if direction == "outbound" else f.server
    if end is None:
        return None
    m, p = end
    remote = f.dst if direction == "outbound" else f.src
    rec = dict(AgentId=m.guid, Computer=m.name, ConnectionId=f"U({f.src}-{f.dst}:{f.port})/{p.pid}",
               DestinationIp=f.dst, DestinationPort=f.port, Direction=direction, Machine=m.id, Process=p.pid,
               ProcessName=p.fields["exe"], Protocol=PROTOCOL, RemoteIp=remote, SourceIp=f.src,
               _ResourceId=m.resource_id, _SubscriptionId=env.subscription)
    rec.update(f.remote_out if direction == "outbound" else f.remote_in)
    return rec


class Traffic:
    """Generates the window part after part (``parts()``, ``part()``)."""

    def __init__(self, env: Environment):
        self.env = env
        self.flows = FlowTable(env)
        ports = env.ports
        self.port_group = np.array([p.group for p in ports], dtype=np.int64)
        self.groups = 1 + int(self.port_group.max()) if ports else 0
        idle = [p for p in ports if p.idle]
        self.idle_ports = np.array([p.index for p in idle], dtype=np.int64)
        self.idle_group = self.port_group[self.idle_ports] if idle else np.zeros(0, dtype=np.int64)
        self.idle_phase = np.array([p.machine.phase for p in idle], dtype=np.int64)
        down = [p.machine.reboot or (NO_MINUTE, NO_MINUTE) for p in idle]
        self.idle_down = (np.array([d[0] for d in down], dtype=np.int64), np.array([d[1] for d in down], dtype=np.int64))
        self.port_bases = [_port_base(env, p) for p in ports]
        self.midnight = env.start.hour * 60 + env.start.minute

    def datetimes(self, m0: int, width: int) -> np.ndarray:
        """datetime64[s] of the minutes [m0, m0 + width) (UTC)."""
        start = np.datetime64(self.env.start.replace(tzinfo=None), "s")
        return start + (np.arange(m0, m0 + width, dtype=np.int64) * 60).astype("timedelta64[s]")

    def times(self, m0: int, width: int) -> list[str]:
        t0 = self.env.start + timedelta(minutes=m0)
        return [(t0 + timedelta(minutes=i)).isoformat()[:19] + "Z" for i in range(width)]

    # ---- which flows are active when -----------------------------------------------------------
    def active(self, m0: int, width: int, rng: np.random.Generator,
               cycles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flow, minute) of every active flow in the minutes [m0, m0 + width)."""
        ft = self.flows
        mins = np.arange(m0, m0 + width, dtype=np.int64)
        of_day = (self.midnight + mins) % 1440
        fis, mis = [], []
        for c0 in range(0, ft.n, CHUNK):
            c = slice(c0, min(ft.n, c0 + CHUNK))
            load = cycles[ft.shape[c]]
            p = ft.p[c, None] * load
            failing = mins[None, :] >= ft.fail_from[c, None]
            p = np.where(failing, np.minimum(1.0, 3 * p + 0.3), p)
            mask = rng.random(p.shape, dtype=np.float32) < p
            per = ft.period[c, None]
            mask &= (per == 0) | (((mins[None, :] - ft.phase[c, None]) % np.maximum(per, 1)) == 0)
            ds = ft.daily_start[c, None]
            mask &= (ds < 0) | (((of_day[None, :] - ds) % 1440) < ft.daily_len[c, None])
            mask &= (mins[None, :] >= ft.from_minute[c, None]) & (mins[None, :] < ft.until_minute[c, None])
            a, b = ft.client_down
            mask &= ~((mins[None, :] >= a[c, None]) & (mins[None, :] < b[c, None]))
            fi, mi = np.nonzero(mask)
            fis.append(fi + c0)
            mis.append(mi + m0)
        return np.concatenate(fis), np.concatenate(mis)

    # ---- what they did --------------------------------------------------------------------------
    def metrics(self, f: np.ndarray, m: np.ndarray, rng: np.random.Generator, cycles: np.ndarray,
                m0: int) -> dict[str, np.ndarray]:
        ft, n = self.flows, len(f)
        load = cycles[ft.shape[f], m - m0]
        lr = 0.35 + 0.65 * load
        a, b = ft.server_down
        failing = (m >= ft.fail_from[f]) | ((m >= a[f]) & (m < b[f]))
        req = ft.req[f]
        resp = np.where(req > 0, 1 + rng.poisson(req * lr * np.sqrt(ft.size[f])), 0)
        short = ft.pool[f] == 0
        est = np.where(short, 1 + rng.poisson(np.maximum(ft.est[f] - 1, 0) * lr), rng.poisson(ft.est[f]))
        flicker = rng.random(n) < 0.06
        live = np.where(short, flicker, np.maximum(1, ft.pool[f] + rng.integers(-1, 2, n)))
        term = np.where(short, np.maximum(0, est - live + (rng.random(n) < 0.06)), est)
        units = np.where(req > 0, resp, 3 * lr)
        sent = np.maximum(1, np.rint(units * ft.up[f] * rng.lognormal(0.0, 0.7, n)))
        recv = np.maximum(1, np.rint(units * ft.down[f] * rng.lognormal(0.0, 1.1, n)))
        failed = np.where(rng.random(n) < ft.fail[f], 1 + rng.poisson(0.4, n), 0)
        mean = ft.rt[f] * np.exp(rng.normal(0.0, 0.25, n)) * (0.8 + 0.5 * load)
        rmin = np.maximum(1, np.floor(mean * np.exp(-np.abs(rng.normal(0.5, 0.25, n)))))
        rmax = np.maximum(rmin, np.ceil(mean * np.exp(np.abs(rng.normal(0.9, 0.5, n)))))
        rsum = np.clip(np.rint(mean * resp), rmin * resp, rmax * resp)
        one = resp == 1
        single = np.maximum(1, np.rint(mean))
        rmin, rmax, rsum = np.where(one, single, rmin), np.where(one, single, rmax), np.where(one, single, rsum)
        # a failed minute: only refused attempts
        zero = np.zeros(n, dtype=np.int64)
        est, term, live = (np.where(failing, zero, x) for x in (est, term, live))
        sent, recv, resp = (np.where(failing, zero, x) for x in (sent, recv, resp))
        failed = np.where(failing, 1 + rng.poisson(1 + 2 * load), failed)
        as_int = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
        return dict(f=f, m=m, failing=failing, est=as_int(est), term=as_int(term), live=as_int(live),
                    failed=as_int(failed), sent=as_int(sent), recv=as_int(recv), resp=as_int(resp),
                    rmin=as_int(rmin), rmax=as_int(rmax), rsum=as_int(rsum))

    # ---- records ----------------------------------------------------------------------------------
    def parts(self):
        """The window in parts of PART minutes: (part number, first minute, minutes)."""
        for i, m0 in enumerate(range(0, self.env.minutes, PART)):
            yield i, m0, min(PART, self.env.minutes - m0)

    def draw(self, key, m0: int, width: int) -> dict:
        """The active (flow, minute) pairs of [m0, m0 + width) and what they did; ``key``: the part
        number in the window (an int), or a tuple for minutes past it (``numpy.random.default_rng([seed, *key])``)."""
        rng = np.random.default_rng([self.env.seed, *(key if isinstance(key, tuple) else (key,))])
        cycles = daily_cycles(self.env, m0, width)
        f, m = self.active(m0, width, rng, cycles)
        x = self.metrics(f, m, rng, cycles, m0)
        ft = self.flows
        out = ft.has_out[f]
        inn = ft.has_in[f] & ~x["failing"]
        # one stream: outbound records then inbound ones, ordered by minute
        sel = np.concatenate([np.nonzero(out)[0], np.nonzero(inn)[0]])
        kind = np.concatenate([np.zeros(int(out.sum()), dtype=np.int64), np.ones(int(inn.sum()), dtype=np.int64)])
        order = np.lexsort((kind, f[sel], m[sel]))
        x.update(sel=sel[order], kind=kind[order], inn=np.nonzero(inn)[0])
        return x

    def part(self, key, m0: int, width: int) -> tuple[list[dict], list[dict]]:
        """(VMConnection records, VMBoundPort records) of the minutes [m0, m0 + width)."""
        x = self.draw(key, m0, width)
        times = self.times(m0, width)
        connections = self._connections(x["sel"], x["kind"], x, times, m0)
        ports = self._ports(x["inn"], x, times, m0, width)
        return connections, ports

    def part_frames(self, key, m0: int, width: int) -> tuple[dict, dict]:
        """The same records as ``part`` as frames (ingest.py: a batch as columns): (VMConnection, VMBoundPort)."""
        x = self.draw(key, m0, width)
        times = self.datetimes(m0, width)
        sel, kind = x["sel"], x["kind"]
        inbound = kind.astype(bool)
        resp = x["resp"][sel]
        timed = resp == 0
        pick = lambda v: np.ma.masked_array(v[sel], mask=timed) if timed.any() else v[sel]  # noqa: E731
        columns = dict(TimeGenerated=times[x["m"][sel] - m0], LinksEstablished=x["est"][sel],
                       LinksTerminated=x["term"][sel], LinksLive=x["live"][sel],
                       LinksFailed=np.where(inbound, 0, x["failed"][sel]),
                       BytesSent=np.where(inbound, x["recv"][sel], x["sent"][sel]),
                       BytesReceived=np.where(inbound, x["sent"][sel], x["recv"][sel]), Responses=resp,
                       ResponseTimeMin=pick(x["rmin"]), ResponseTimeMax=pick(x["rmax"]),
                       ResponseTimeSum=pick(x["rsum"]))
        connections = _take(self.flows.base_frame(), x["f"][sel] + kind * self.flows.n, columns)
        port, minute, cols = self._port_columns(x["inn"], x, m0, width)
        names = ("BytesSent", "BytesReceived", "LinksEstablished", "LinksTerminated", "LinksLive", "Responses",
                 "ResponseTimeMin", "ResponseTimeMax", "ResponseTimeSum")
        no = cols[5] == 0
        columns = {name: (np.ma.masked_array(v, mask=no) if i >= 6 and no.any() else v)
                   for i, (name, v) in enumerate(zip(names, cols))}
        columns["TimeGenerated"] = times[minute]
        ports = _take(self.port_frame(), port, columns)
        return connections, ports

    def port_frame(self) -> dict:
        if not hasattr(self, "_port_frame"):
            self._port_frame = base_frame("VMBoundPort", self.port_bases)
        return self._port_frame

    def _connections(self, sel, kind, x, times, m0) -> list[dict]:
        bases = self.flows.bases
        base_index = (x["f"][sel] + kind * self.flows.n).tolist()
        inbound = kind.astype(bool)
        sent = np.where(inbound, x["recv"][sel], x["sent"][sel])
        recv = np.where(inbound, x["sent"][sel], x["recv"][sel])
        failed = np.where(inbound, 0, x["failed"][sel])
        cols = [(x["m"][sel] - m0).tolist(), x["est"][sel].tolist(), x["term"][sel].tolist(),
                x["live"][sel].tolist(), failed.tolist(), sent.tolist(), recv.tolist(), x["resp"][sel].tolist(),
                x["rmin"][sel].tolist(), x["rmax"][sel].tolist(), x["rsum"][sel].tolist()]
        records = []
        append = records.append
        for b, mi, est, term, live, failed_, sent_, recv_, resp, rmin, rmax, rsum in zip(base_index, *cols):
            r = bases[b].copy()
            r["TimeGenerated"] = times[mi]
            r["LinksEstablished"] = est
            r["LinksTerminated"] = term
            r["LinksLive"] = live
            r["LinksFailed"] = failed_
            r["BytesSent"] = sent_
            r["BytesReceived"] = recv_
            r["Responses"] = resp
            if resp:
                r["ResponseTimeMin"] = rmin
                r["ResponseTimeMax"] = rmax
                r["ResponseTimeSum"] = rsum
            append(r)
        return records

    def _port_columns(self, inn, x, m0, width):
        """Inbound records summed per bound address and minute, plus idle binds once an hour (at the
        machine's minute of the hour, when none of the bind's addresses saw traffic in the part's
        share of that hour): (port index, minute in the part, [sent, recv, est, term, live, resp,
        rmin, rmax, rsum]), ordered by minute then port."""
        pi = self.flows.port[x["f"][inn]]
        mi = x["m"][inn] - m0
        key = pi * width + mi
        uniq, inv = np.unique(key, return_inverse=True)
        g = len(uniq)
        total = lambda v: np.rint(np.bincount(inv, weights=v[inn], minlength=g)).astype(np.int64)  # noqa: E731
        sent, recv = total(x["recv"]), total(x["sent"])   # the server's side
        est, term, live, resp = total(x["est"]), total(x["term"]), total(x["live"]), total(x["resp"])
        timed = x["resp"][inn] > 0
        rmin = np.full(g, np.iinfo(np.int64).max)
        rmax = np.zeros(g, dtype=np.int64)
        np.minimum.at(rmin, inv[timed], x["rmin"][inn][timed])
        np.maximum.at(rmax, inv[timed], x["rmax"][inn][timed])
        rsum = np.rint(np.bincount(inv[timed], weights=x["rsum"][inn][timed], minlength=g)).astype(np.int64)
        port_of, minute_of = uniq // width, uniq % width
        # idle binds: no traffic on any of their addresses in that hour (of this part)
        h0 = m0 // 60
        hours = h0 + np.arange((m0 + width - 1) // 60 - h0 + 1 if width else 0)
        busy = np.zeros((self.groups, len(hours)), dtype=bool)
        busy[self.port_group[port_of], (minute_of + m0) // 60 - h0] = True
        idle = ~busy[self.idle_group]
        absolute = hours[None, :] * 60 + self.idle_phase[:, None]
        a, b = self.idle_down
        idle &= ~((absolute >= a[:, None]) & (absolute < b[:, None]))
        idle &= (absolute >= m0) & (absolute < m0 + width)
        ii, hh = np.nonzero(idle)
        idle_port, idle_minute = self.idle_ports[ii], absolute[ii, hh] - m0
        all_port = np.concatenate([port_of, idle_port])
        all_minute = np.concatenate([minute_of, idle_minute])
        order = np.lexsort((all_port, all_minute))
        zeros = np.zeros(len(idle_port), dtype=np.int64)
        cols = [np.concatenate([v, zeros])[order] for v in (sent, recv, est, term, live, resp, rmin, rmax, rsum)]
        return all_port[order], all_minute[order], cols

    def _ports(self, inn, x, times, m0, width) -> list[dict]:
        """VMBoundPort records (``_port_columns``) as dicts."""
        port, minute, cols = self._port_columns(inn, x, m0, width)
        cols = [c.tolist() for c in cols]
        bases = self.port_bases
        records = []
        append = records.append
        for p, mi, sent_, recv_, est_, term_, live_, resp_, rmin_, rmax_, rsum_ in zip(
                port.tolist(), minute.tolist(), *cols):
            r = bases[p].copy()
            r["TimeGenerated"] = times[mi]
            r["BytesSent"] = sent_
            r["BytesReceived"] = recv_
            r["LinksEstablished"] = est_
            r["LinksTerminated"] = term_
            r["LinksLive"] = live_
            r["Responses"] = resp_
            if resp_:
                r["ResponseTimeMin"] = rmin_
                r["ResponseTimeMax"] = rmax_
                r["ResponseTimeSum"] = rsum_
            append(r)
        return records


def base_frame(table: str, bases: list[dict | None]) -> dict:
    """The columns of the static part of records (one base per flow or bound address) as frame
    arrays (ingest.frame_column), to be taken row by row with ``_take``."""
    from ..catalogue import Catalogue
    from ..ingest import _ABSENT, frame_column
    t = Catalogue.load().get(table)
    rows = [b or {} for b in bases]
    used = dict.fromkeys(k for b in rows for k in b)
    return {c: frame_column([b.get(c, _ABSENT) for b in rows], t.column_types[c], table, c) for c in used}


def _take(base: dict, index: np.ndarray, columns: dict) -> dict:
    """A frame: the base columns at ``index``, then the per-record ``columns``."""
    out = {c: v[index] for c, v in base.items()}
    out.update(columns)
    return out


def _port_base(env: Environment, p) -> dict:
    m = p.machine
    return dict(AgentId=m.guid, Computer=m.name, Ip=p.ip, IsWildcardBind=p.wildcard, Machine=m.id, Port=p.port,
                PortId=f"{m.id}/{p.process.pid}/{p.ip}:{p.port}/{PROTOCOL}", Process=p.process.pid,
                ProcessName=p.process.fields["exe"], Protocol=PROTOCOL, _ResourceId=m.resource_id,
                _SubscriptionId=env.subscription)
