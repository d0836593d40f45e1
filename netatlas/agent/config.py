"""Configure stage: a TOML file, ``NETATLAS_AGENT_*`` environment variables and flags -> ``AgentConfig``.

Every setting is declared once in ``SETTINGS``: its name (also its key in the file), default,
kind (how its text is read and how it is written back to TOML) and help. The flag
(``--workspace-url``) and the environment variable (``NETATLAS_AGENT_WORKSPACE_URL``) are
derived from the name; ``netatlas agent --help`` lists them all, and a test fails if one is
missing.

Precedence: a flag, then the environment variable, then the file, then the default. The file
is ``--config FILE`` (or ``NETATLAS_AGENT_CONFIG``); without one, no file is read.

    workspace_url = "https://netatlas.example.com:8080"
    workspace_id = "6f1c…"
    key = "<ingest key>"
    interval = 15
    tags = { env = "prod", team = "payments" }
    exclude_processes = ["svchost", "System"]

This module also declares the ``netatlas agent`` command line (``agent_arguments``,
``cmd_agent``): ``agent run`` is ``ship.cmd_run``, ``agent install`` is ``install.cmd_install``.
"""
from __future__ import annotations

import argparse
import os
import re
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Mapping

from ..configure import KINDS, Kind, MiB, Setting as _Setting, one_of, resolve, settings_class
from ..errors import AgentConfigError

ENV_PREFIX = "NETATLAS_AGENT_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


ConfigError = AgentConfigError      # a setting that is missing, unknown or not of its kind


# ---------------------------------------------------------------- the settings
# (their kinds, reading and precedence: configure.py, shared with the workspace server)

COLLECTORS = ("auto", "netlink", "ebpf", "psutil")
KINDS.setdefault("collector", Kind("|".join(COLLECTORS), one_of(*COLLECTORS), KINDS["text"].toml))

Setting = partial(_Setting, prefix=ENV_PREFIX)

SETTINGS: tuple[Setting, ...] = (
    Setting("workspace_url", "", "url", "the workspace server's base URL (http://host:8080 or https://...)",
            required=True),
    Setting("workspace_id", "", "text", "the workspace id (`netatlas keys list` prints it)", required=True),
    Setting("key", "", "key", "an ingest key of the workspace; prefer the file or the environment "
            "variable (a flag shows in `ps`)", required=True),
    Setting("computer_name", "", "text", "the name this host reports as Computer in every record (default: "
            "its fully qualified host name); give one where hosts share a hostname (containers, network "
            "namespaces, cloned VMs). The machine id stays the data directory's own"),
    Setting("interval", 15.0, "seconds", "seconds between two batches sent to the workspace"),
    Setting("collector", "auto", "collector", "how sockets are observed: ebpf (tracepoints: every "
            "connection with the process that made it), netlink (sock_diag polling, close events, proc "
            "connector: runs on any Linux), psutil (the connection table: any OS psutil supports; no bytes, responses or failed links) or auto (ebpf where the kernel allows, else netlink, else psutil)"),
    Setting("poll", 1.0, "seconds", "seconds between two looks at the host's sockets and processes"),
    Setting("dump_interval", 30.0, "seconds", "with the ebpf collector: seconds between two sock_diag "
            "dumps (byte counts of open connections; one is also taken just before each minute ends; the "
            "connections no dump saw are summed in the kernel)"),
    Setting("timeout", 10.0, "seconds", "seconds to connect to the workspace, and to wait for each "
            "part of its answer"),
    Setting("backoff_max", 60.0, "seconds", "most seconds between two tries to send when the workspace "
            "does not answer or refuses for now (the wait doubles from 1 s, with jitter; a Retry-After "
            "the workspace gives is honoured)"),
    Setting("verify_tls", True, "bool", "check the workspace's TLS certificate (turn off only for a "
            "self-signed test server; better: give it with ca_file)"),
    Setting("ca_file", "", "path", "a PEM file of the certificate authorities to trust for https, "
            "instead of the system's"),
    Setting("tls_fingerprint", "", "text", "the SHA-256 fingerprint of the workspace's self-signed "
            "certificate (`netatlas workspace serve --tls self-signed` prints it): trust that one only"),
    Setting("spool", "/var/lib/netatlas-agent/spool", "path", "directory of the batches not yet "
            "accepted by the workspace (kept across restarts)"),
    Setting("spool_max_bytes", 256 * MiB, "bytes", "most bytes the spool keeps; past it the oldest "
            "batches are dropped and counted"),
    Setting("quarantine_max_bytes", 256 * MiB, "bytes", "most bytes of batches the workspace refused for "
            "good kept in the spool's rejected/ (`netatlas agent spool list|resend`); past it the oldest are "
            "deleted, counted and logged"),
    Setting("batch_max_records", 10_000, "count", "most records in one batch"),
    Setting("tags", {}, "tags", "key=value pairs describing this host (country, city, datacenter, rack, "
            "...), recorded hourly in VMComputerTags_CL; a tag named after an Azure* column of VMComputer "
            "also fills it"),
    Setting("exclude_processes", (), "names", "process names whose connections and records are not "
            "sent (to keep volume and cost down)"),
    Setting("exclude_loopback", False, "bool", "leave out connections over the loopback interface"),
    Setting("max_connections", 100_000, "count", "most connections tracked at once; past it new ones "
            "are counted, not tracked"),
    Setting("max_processes", 20_000, "count", "most processes tracked at once; past it new ones are "
            "counted, not tracked"),
    Setting("dns", True, "bool", "capture the DNS answers this host receives (UDP from port 53, "
            "filtered in the kernel) to name the remote addresses of outbound connections "
            "(RemoteDnsQuestions, RemoteDnsCanonicalNames); needs CAP_NET_RAW"),
    Setting("dns_cache_size", 10_000, "count", "most remote addresses whose DNS names are kept; past "
            "it the least recently used are forgotten and counted"),
    Setting("udp", True, "bool", "report UDP flows (Protocol udp in VMConnection and VMBoundPort): "
            "needs the eBPF kernel half (root, BTF, cgroup v2); off where it cannot load"),
    Setting("max_udp_flows", 65_536, "count", "most UDP flows tracked at once (in the kernel); "
            "datagrams of flows past it are counted, not reported"),
    Setting("metrics", True, "bool", "sample the machine's performance once a minute as VM insights does "
            "(InsightsMetrics: processor, memory, each network adapter and disk mount) and send a Heartbeat "
            "record every minute"),
    Setting("perf", False, "bool", "also write the samples as the Log Analytics agent's Perf counters "
            "(objects Processor, Memory, Logical Disk and Network Adapter, with their Windows counter names), "
            "for queries older than VM insights"),
    Setting("netns", "", "path", "observe the network namespace at this path (/proc/PID/ns/net, "
            "/run/netns/NAME) instead of the agent's own"),
    Setting("machine_id_file", "/var/lib/netatlas-agent/machine-id", "path", "file holding this "
            "agent's id (created on first start)"),
)

def _missing(self) -> list:
    """The required settings left empty."""
    return [s for s in SETTINGS if s.required and not getattr(self, s.name)]


# The settings as one frozen dataclass generated from the table: AgentConfig(interval=5).interval.
# Values are coerced and checked on construction (ConfigError), so AgentConfig(interval="5") works.
AgentConfig = settings_class("AgentConfig", SETTINGS, ConfigError, __name__, {"missing": _missing})
AgentConfig.__doc__ = "The agent's settings (see SETTINGS): AgentConfig(workspace_url=..., interval=5)."


# ---------------------------------------------------------------- loading: flags > env > file > default

def load(flags: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None,
         file: str | os.PathLike | None = None, *, require: bool = False) -> AgentConfig:
    """The configuration from ``flags`` (values that are not None), ``environ`` (default
    ``os.environ``), ``file`` (default: the ``NETATLAS_AGENT_CONFIG`` variable; none if unset) and
    the defaults. With ``require``, a missing workspace URL, id or key is a ConfigError."""
    environ = os.environ if environ is None else environ
    file = file or environ.get(CONFIG_ENV) or None
    values = resolve(SETTINGS, flags, environ, file, ConfigError)
    config = AgentConfig(**values)
    if require and config.missing():
        raise ConfigError("missing " + "; ".join(f"{s.name} (flag {s.flag}, environment {s.env}, or "
                                                 f"'{s.name} = ...' in the configuration file)"
                                                 for s in config.missing()))
    return config


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None, *,
              require: bool = True) -> AgentConfig:
    """The configuration from parsed ``agent run``/``agent install`` arguments, the environment and
    the file they name. A repeated list flag (``--tags a=1 --tags b=2``) counts as one list."""
    flags = {}
    for s in SETTINGS:
        value = getattr(args, s.name, None)
        flags[s.name] = ",".join(value) if isinstance(value, list) else value
    return load(flags, environ, getattr(args, "config", None), require=require)


# ---------------------------------------------------------------- the agent's id

AGENT_ID = re.compile(r"[^A-Za-z0-9_-]")


def load_machine_id(path: str | os.PathLike) -> str:
    """This agent's id, from ``path``; on first use a new UUID is written there (atomically).
    Characters other than A-Z a-z 0-9 _ - are replaced by '-', at most 64 are kept."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""
    except OSError as e:
        raise ConfigError(f"cannot read the agent id in {path}: {e.strerror or e}") from None
    if not text:
        text = str(uuid.uuid4())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            raise ConfigError(f"cannot write the agent id to {path} (machine_id_file): {e.strerror or e}") from None
    return AGENT_ID.sub("-", text)[:64]


# ---------------------------------------------------------------- the command line: netatlas agent

def settings_help() -> str:
    """The settings as ``netatlas agent --help`` lists them."""
    lines = ["settings (flag, environment variable, key in the --config TOML file; "
             "precedence: flag > environment > file > default):"]
    for s in SETTINGS:
        default = "required" if s.required else f"default: {s.show(s.default)}"
        flag = f"{s.flag} | --no-{s.flag[2:]}" if s.kind == "bool" else f"{s.flag} {s.value_name}"
        lines.append(f"  {flag}   {s.env}   {s.name}")
        lines.append(f"      {s.help} ({default})")
    lines.append(f"  --config FILE   {CONFIG_ENV}   the TOML file of settings (default: none)")
    return "\n".join(lines)


def add_setting_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per setting (default None: not given), and --config."""
    p.add_argument("--config", metavar="FILE", default=None,
                   help=f"a TOML file of settings, same names as below (env {CONFIG_ENV}; default: none)")
    for s in SETTINGS:
        default = "required" if s.required else f"default: {s.show(s.default)}"
        text = f"{s.help} ({default}; env {s.env})"
        if s.kind == "bool":
            p.add_argument(s.flag, dest=s.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif s.kind in ("names", "tags"):
            p.add_argument(s.flag, dest=s.name, action="append", default=None, metavar=s.value_name,
                           help=text + "; comma-separated, repeatable")
        else:
            p.add_argument(s.flag, dest=s.name, default=None, metavar=s.value_name, help=text)


@dataclass(frozen=True)
class Action:
    name: str
    help: str
    module: str       # where its arguments and command live (imported on use)
    arguments: str
    run: str
    requires: bool = True   # the workspace URL, id and key must be set


ACTIONS: tuple[Action, ...] = (
    Action("run", "run the agent in the foreground: collect every interval and ship to the workspace",
           "netatlas.agent.ship", "run_arguments", "cmd_run"),
    Action("install", "write the configuration file and a systemd unit running `netatlas agent run`",
           "netatlas.agent.install", "install_arguments", "cmd_install"),
    Action("spool", "`spool list`: the batches waiting and quarantined; `spool resend ID...|--all`: quarantined "
           "batches back to the queue", "netatlas.agent.ship", "spool_arguments", "cmd_spool", requires=False),
)


def _action(action: Action, attribute: str):
    import importlib
    return getattr(importlib.import_module(action.module), getattr(action, attribute))


def agent_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = settings_help()
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action in ACTIONS:
        a = sub.add_parser(action.name, help=action.help, description=action.help)
        add_setting_arguments(a)
        _action(action, "arguments")(a)


def cmd_agent(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    action = next(a for a in ACTIONS if a.name == args.action)
    try:
        config = from_args(args, require=action.requires)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    return _action(action, "run")(args, config)
