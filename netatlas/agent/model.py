"""The data the agent's stages pass to each other."""
from __future__ import annotations

from dataclasses import dataclass, field

# TCP states as the kernel numbers them (include/net/tcp_states.h)
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_TIME_WAIT, TCP_CLOSE, \
    TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_LISTEN, TCP_CLOSING = range(1, 12)


@dataclass(frozen=True, slots=True)
class Socket:
    """One TCP socket as sock_diag reports it (a dump entry, or a close event)."""
    family: int              # socket.AF_INET or AF_INET6
    state: int               # TCP_* above
    src: str                 # local address, canonical text (IPv4-mapped IPv6 shown as IPv4)
    sport: int
    dst: str                 # remote address ("0.0.0.0" / "::" for a listener)
    dport: int
    inode: int               # 0 once the socket has no file (closed, TIME_WAIT)
    uid: int
    cookie: int              # the kernel's unique socket id: identity across polls
    bytes_sent: int = 0      # tcpi_bytes_acked (bytes the peer acknowledged)
    bytes_received: int = 0  # tcpi_bytes_received
    rtt_us: int = 0          # tcpi_rtt, smoothed round-trip time
    segs_out: int = 0
    segs_in: int = 0
    # request/response exchanges (cumulative, like the byte counters) and their times in µs:
    # rt_min_us / rt_max_us over the exchanges since the previous observation, 0 when none
    responses: int = 0
    rt_sum_us: int = 0
    rt_min_us: int = 0
    rt_max_us: int = 0
    # raw tcp_info the netlink collector turns into payload bytes and exchanges (netlink.py):
    # tcpi_last_data_sent / tcpi_last_data_recv (ms before the report), and tcpi_bytes_sent -
    # tcpi_bytes_retrans (payload bytes sent, each once; -1 before Linux 4.19)
    last_data_sent_ms: int = 0
    last_data_recv_ms: int = 0
    data_sent: int = -1
    rqueue: int = 0          # idiag_rqueue: rcv_nxt - copied_seq (bytes, and the FIN, not read by the app)
    # tcpi_data_segs_out / tcpi_data_segs_in: segments that carried data (-1 before Linux 4.6)
    data_segs_out: int = -1
    data_segs_in: int = -1


@dataclass(slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    name: str                # executable name (comm, or basename of exe)
    exe: str                 # /proc/pid/exe target, "" when unreadable
    cmdline: str
    cwd: str
    uid: int
    user: str
    start_time: float        # seconds since the epoch
    inodes: set[int] = field(default_factory=set)   # socket inodes it holds
    display: str = ""        # DisplayName: what an interpreter runs (names.py); "" = the name


@dataclass(slots=True)
class MachineInfo:
    hostname: str
    fqdn: str
    ipv4: list[str]
    ipv6: list[str]
    macs: list[str]
    dns_names: list[str]
    os_family: str           # "Linux"
    os_full_name: str        # PRETTY_NAME from os-release
    bitness: str             # "64-bit"
    cpus: int
    cpu_speed_mhz: int
    memory_mb: int
    boot_time: float         # seconds since the epoch
    timezone: str
    virtualization: str      # "physical", "virtual", "unknown"
    hypervisor: str          # e.g. "kvm", "vmware", "" when physical or unknown
    os_name: str = ""        # NAME from os-release ("Debian GNU/Linux")
    os_version: str = ""     # VERSION_ID from os-release ("12", "22.04")
    vm_uuid: str = ""        # the firmware's product UUID (sys/class/dmi/id/product_uuid), "" when unreadable
