"""``netatlas workspace install``: the server's configuration file, its systemd unit and the
workspace itself, so a server is set up by one command (as ``netatlas agent install`` does for an
agent).

    netatlas workspace install [--data DIR] [--host ADDRESS] [--port PORT] [--tls-cert PEM --tls-key PEM]
                               [--retention-days N] [settings...]
                               [--config-out /etc/netatlas/workspace.toml]
                               [--unit-out /etc/systemd/system/netatlas-workspace.service] [--dry-run]

The settings come as for ``workspace serve`` (flags > ``NETATLAS_*`` > ``--config FILE`` >
defaults) and are checked the same way (a TLS file that cannot be read is refused now, not at the
first start). The configuration file (mode 0644: the keys are not in it but in DIR/workspace.json,
mode 0600) sets every setting that is not at its default, ``data`` always (as an absolute path),
and lists the others commented out with their default and help. The unit runs ``<this python> -m
netatlas workspace serve --config <config-out>`` with Restart=on-failure, writing nowhere but the
workspace directory. The workspace directory and its identity are created (not with --dry-run),
so the keys to give agents and users exist before the first start: ``netatlas keys list --data
DIR``. Both files are written atomically and depend only on the settings: installing again
changes nothing. Enabling is left to the caller: ``systemctl daemon-reload && systemctl enable
--now netatlas-workspace``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from .. import configfile
from ..errors import NetatlasError
from .settings import SETTINGS, Settings

CONFIG_OUT = "/etc/netatlas/workspace.toml"
UNIT_OUT = "/etc/systemd/system/netatlas-workspace.service"
LOOPBACK = ("127.0.0.1", "::1", "localhost")

UNIT = """\
[Unit]
Description=netatlas workspace server: ingestion from agents, KQL queries and the web UI
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
{environment}Restart=on-failure
RestartSec=5
# SIGTERM: stop accepting, let running requests end, checkpoint DuckDB and release its lock
TimeoutStopSec=60
LimitNOFILE=65536
UMask=0077
# it writes nowhere but the workspace directory (DuckDB file, workspace.json with the keys)
ReadWritePaths={data}
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def config_text(settings: Settings) -> str:
    """The TOML file: data and the settings not at their default, then the others commented out."""
    lines = ["# netatlas workspace server configuration, written by `netatlas workspace install`.",
             "# Every setting can also be given by flag or environment variable (`netatlas workspace serve --help`);",
             "# precedence: flag > environment > this file > default.", ""]
    for s in SETTINGS:
        value = getattr(settings, s.name)
        lines.append(f"# {s.help} (env {s.env})")
        set_here = s.name == "data" or value != s.default
        lines.append(f"{s.name} = {s.toml(value)}" if set_here else f"# {s.name} = {s.toml(s.default)}")
        lines.append("")
    return "\n".join(lines)


def unit_text(config_out: str, data: str, python: str | None = None) -> str:
    exec_start, environment = configfile.exec_start(python or sys.executable, "workspace", "serve",
                                                    "--config", str(config_out))
    return UNIT.format(exec_start=exec_start, environment=environment, data=configfile.systemd_quote(data))


def install_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config-out", metavar="FILE", default=CONFIG_OUT,
                   help=f"where to write the configuration file (default: {CONFIG_OUT})")
    p.add_argument("--unit-out", metavar="FILE", default=UNIT_OUT,
                   help=f"where to write the systemd unit (default: {UNIT_OUT})")
    p.add_argument("--dry-run", action="store_true",
                   help="print both files; write nothing and do not create the workspace")


def cmd_install(args: argparse.Namespace, settings: Settings) -> int:
    from ..keys import load_or_create
    settings = replace(settings, data=os.path.abspath(settings.data))
    for name in ("tls_cert", "tls_key", "geoip_db"):   # the service's working directory is /
        value = getattr(settings, name)
        if value and value.lower() not in ("off", "none", "false", "0"):
            settings = replace(settings, **{name: os.path.abspath(value)})
    config_out = os.path.abspath(args.config_out)
    files = ((Path(config_out), 0o644, config_text(settings)),
             (Path(args.unit_out), 0o644, unit_text(config_out, settings.data)))
    if not settings.tls_cert and settings.host not in LOOPBACK:
        print(f"warning: {settings.host} is not a loopback address and there is no --tls-cert/--tls-key: the keys "
              f"and the records would cross the network in clear text", file=sys.stderr)
    if args.dry_run:
        for path, mode, text in files:
            print(f"# ---- {path} (mode {mode:04o})\n{text}")
        return 0
    try:
        for path, mode, text in files:
            print(f"{path}: {configfile.write_atomic(path, text, mode)}")
        identity = load_or_create(settings.data)
        os.chmod(settings.data, 0o700)
    except OSError as e:
        raise NetatlasError(f"cannot write {e.filename}: {e.strerror or e}") from None
    data = shlex.quote(settings.data)
    print(f"{settings.data}: workspace {identity.workspace_id} "
          f"({'created' if identity.new else 'existing'}; its keys: netatlas keys list --data {data})")
    if identity.fresh:    # query and admin secrets are stored hashed: shown now, once
        print("keys created now (query and admin secrets are shown only now):")
        for k in identity.fresh:
            print(f"  {k.role:<7} {k.id}  {k.secret}")
    print(f"next: systemctl daemon-reload && systemctl enable --now {Path(args.unit_out).stem}")
    return 0
