"""``netatlas agent install``: the configuration file and a systemd unit, so a fleet is enrolled by a
script or a configuration-management tool.

    netatlas agent install --workspace-url URL --workspace-id ID --key KEY [settings...]
                           [--config-out /etc/netatlas/agent.toml]
                           [--unit-out /etc/systemd/system/netatlas-agent.service] [--dry-run]

The settings come as for ``agent run`` (flags > ``NETATLAS_AGENT_*`` > ``--config FILE`` > defaults).
The configuration file (mode 0600: it holds the key) sets every setting that is not at its
default and lists the others, commented out, with their default and help. The unit runs
``<this python> -m netatlas agent run --config <config-out>`` with Restart=always. Both files are
written atomically and their text depends only on the settings, so running the same install
again changes nothing. ``--dry-run`` prints them (the key hidden) and writes nothing. Enabling is
left to the caller: ``systemctl daemon-reload && systemctl enable --now netatlas-agent``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import configfile
from ..errors import NetatlasError
from .config import KINDS, SETTINGS, AgentConfig

CONFIG_OUT = "/etc/netatlas/agent.toml"
UNIT_OUT = "/etc/systemd/system/netatlas-agent.service"
HIDDEN = "<hidden in --dry-run>"

UNIT = """\
[Unit]
Description=netatlas agent: this host's processes and TCP connections, shipped to a netatlas workspace
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
{environment}Restart=always
RestartSec=5
# the spool and the agent id live in /var/lib/netatlas-agent by default
StateDirectory=netatlas-agent
StateDirectoryMode=0700
# never in the way of the host's own work
Nice=10
NoNewPrivileges=yes
ProtectHome=read-only
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def config_text(config: AgentConfig, *, hide_key: bool = False) -> str:
    """The TOML file: the settings not at their default, then the others commented out."""
    changed = config.changed()
    lines = ["# netatlas agent configuration, written by `netatlas agent install`.",
             "# Every setting can also be given by flag or environment variable (`netatlas agent --help`);",
             "# precedence: flag > environment > this file > default.", ""]
    for s in SETTINGS:
        value = getattr(config, s.name)
        text = KINDS[s.kind].toml(value)
        if s.kind == "key" and hide_key and value:
            text = KINDS[s.kind].toml(HIDDEN)
        lines.append(f"# {s.help} (env {s.env})")
        lines.append(f"{s.name} = {text}" if s.name in changed else f"# {s.name} = {KINDS[s.kind].toml(s.default)}")
        lines.append("")
    return "\n".join(lines)


def unit_text(config_out: str, python: str | None = None) -> str:
    exec_start, environment = configfile.exec_start(python or sys.executable, "agent", "run",
                                                    "--config", str(config_out))
    return UNIT.format(exec_start=exec_start, environment=environment)


_write = configfile.write_atomic


def install_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config-out", metavar="FILE", default=CONFIG_OUT,
                   help=f"where to write the configuration file, mode 0600 (default: {CONFIG_OUT})")
    p.add_argument("--unit-out", metavar="FILE", default=UNIT_OUT,
                   help=f"where to write the systemd unit (default: {UNIT_OUT})")
    p.add_argument("--dry-run", action="store_true", help="print both files (the key hidden); write nothing")


def cmd_install(args: argparse.Namespace, config: AgentConfig) -> int:
    config_out = os.path.abspath(args.config_out)
    files = ((Path(config_out), 0o600, config_text(config, hide_key=args.dry_run)),
             (Path(args.unit_out), 0o644, unit_text(config_out)))
    if args.dry_run:
        for path, mode, text in files:
            print(f"# ---- {path} (mode {mode:04o})\n{text}")
        return 0
    try:
        for path, mode, text in files:
            print(f"{path}: {_write(path, text, mode)}")
    except OSError as e:
        raise NetatlasError(f"cannot write {e.filename}: {e.strerror or e}") from None
    print(f"next: systemctl daemon-reload && systemctl enable --now {Path(args.unit_out).stem}")
    return 0
