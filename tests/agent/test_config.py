"""The agent's settings (netatlas/agent/config.py), `netatlas agent --help`, `agent run --check`,
the "collector not available yet" refusal, and `netatlas agent install`."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from netatlas import cli
from netatlas.agent import config as cfg
from netatlas.agent import install

ROOT = Path(__file__).resolve().parents[2]
KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHM="   # base64
CREDS = ["--workspace-url", "http://127.0.0.1:9", "--workspace-id", "ws-1", "--key", KEY]


def netatlas(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(cfg.ENV_PREFIX)}
    e["PYTHONPATH"] = str(ROOT)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "netatlas", *args], capture_output=True, text=True,
                          env=e, timeout=60, cwd=ROOT)


def parsed(*argv: str, environ: dict | None = None, require: bool = False) -> cfg.AgentConfig:
    args = cli.build_parser().parse_args(["agent", "run", *argv])
    return cfg.from_args(args, environ or {}, require=require)


def help_text(*argv: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


# ---------------------------------------------------------------- declared once, documented everywhere

def test_every_setting_is_in_agent_help_with_its_flag_env_and_file_key(capsys):
    text = help_text("agent", capsys=capsys)
    for s in cfg.SETTINGS:
        assert re.search(rf"{re.escape(s.flag)}\b.*{s.env}\s+{s.name}\b", text), f"{s.name} missing from agent --help"
        assert s.help.split(";")[0][:40] in " ".join(text.split()), s.name
    assert cfg.CONFIG_ENV in text and "flag > environment > file > default" in text


@pytest.mark.parametrize("action", ["run", "install"])
def test_every_setting_is_a_flag_of_run_and_install(action, capsys):
    text = " ".join(help_text("agent", action, capsys=capsys).split())
    for s in cfg.SETTINGS:
        assert s.flag in text and s.env in text, f"{s.name} missing from agent {action} --help"
    assert "--config FILE" in text


def test_settings_have_the_documented_defaults():
    c = cfg.AgentConfig()
    assert (c.interval, c.poll, c.batch_max_records, c.spool_max_bytes) == (15.0, 1.0, 10_000, 256 * 1024 * 1024)
    assert (c.spool, c.machine_id_file) == ("/var/lib/netatlas-agent/spool", "/var/lib/netatlas-agent/machine-id")
    assert (c.tags, c.exclude_processes, c.exclude_loopback, c.netns) == ({}, (), False, "")
    assert [s.name for s in c.missing()] == ["workspace_url", "workspace_id", "key"]
    assert {s.env for s in cfg.SETTINGS} == {"NETATLAS_AGENT_" + s.name.upper() for s in cfg.SETTINGS}


# ---------------------------------------------------------------- precedence: flag > env > file > default

def test_precedence_is_flag_then_environment_then_file_then_default(tmp_path):
    f = tmp_path / "agent.toml"
    f.write_text('interval = 30\nspool = "/from/file"\ntags = { env = "file" }\n')
    env = {"NETATLAS_AGENT_INTERVAL": "20", "NETATLAS_AGENT_TAGS": "env=environment"}
    c = parsed("--config", str(f), "--interval", "10", environ=env)
    assert (c.interval, c.spool, c.tags, c.poll) == (10.0, "/from/file", {"env": "environment"}, 1.0)
    c = parsed("--config", str(f), environ=env)
    assert (c.interval, c.tags) == (20.0, {"env": "environment"})
    c = parsed("--config", str(f))
    assert (c.interval, c.tags) == (30.0, {"env": "file"})
    assert parsed().interval == 15.0


def test_the_file_can_be_named_by_the_environment(tmp_path):
    f = tmp_path / "agent.toml"
    f.write_text(f'workspace_url = "https://ws.example:8443/"\nworkspace_id = "w"\nkey = "{KEY}"\n')
    c = parsed(environ={"NETATLAS_AGENT_CONFIG": str(f)}, require=True)
    assert c.workspace_url == "https://ws.example:8443" and c.key == KEY


def test_every_kind_reads_from_flags_environment_and_file(tmp_path):
    f = tmp_path / "agent.toml"
    f.write_text('exclude_processes = ["svchost", "System"]\nexclude_loopback = true\n'
                 'spool_max_bytes = "64MiB"\nbatch_max_records = 500\n')
    c = parsed("--config", str(f), "--tags", "env=prod,team=net", "--tags", "dc=ams")
    assert c.tags == {"env": "prod", "team": "net", "dc": "ams"}
    assert (c.exclude_processes, c.exclude_loopback, c.spool_max_bytes, c.batch_max_records) == \
        (("svchost", "System"), True, 64 * 1024 * 1024, 500)
    c = parsed("--config", str(f), "--no-exclude-loopback",
               environ={"NETATLAS_AGENT_EXCLUDE_PROCESSES": "sshd, cron", "NETATLAS_AGENT_SPOOL_MAX_BYTES": "1000"})
    assert (c.exclude_loopback, c.exclude_processes, c.spool_max_bytes) == (False, ("sshd", "cron"), 1000)
    assert parsed("--exclude-loopback", environ={"NETATLAS_AGENT_EXCLUDE_LOOPBACK": "no"}).exclude_loopback is True


@pytest.mark.parametrize("argv, env, file, message", [
    (["--interval", "0"], {}, "", "--interval: expected a positive number of seconds, got 0"),
    ([], {"NETATLAS_AGENT_BATCH_MAX_RECORDS": "many"}, "", "NETATLAS_AGENT_BATCH_MAX_RECORDS='many': expected a whole number"),
    ([], {}, "exclude_loopback = 3\n", "exclude_loopback: expected true or false, got 3"),
    ([], {}, "intervall = 5\n", "unknown setting 'intervall'; did you mean 'interval'?"),
    ([], {}, "interval = \n", "not valid TOML"),
    (["--workspace-url", "ftp://x"], {}, "", "--workspace-url: expected an http:// or https:// URL"),
    (["--key", "not base64!"], {}, "", "--key: expected an ingest key"),
    (["--tags", "novalue"], {}, "", "--tags: expected key=value, got 'novalue'"),
    ([], {}, "spool_max_bytes = \"12 parsecs\"\n", "expected a size in bytes"),
])
def test_a_bad_setting_names_where_it_came_from(tmp_path, argv, env, file, message):
    if file:
        (tmp_path / "a.toml").write_text(file)
        argv = [*argv, "--config", str(tmp_path / "a.toml")]
    with pytest.raises(cfg.ConfigError) as e:
        parsed(*argv, environ=env)
    assert message in str(e.value)


def test_missing_credentials_say_how_to_give_them():
    with pytest.raises(cfg.ConfigError) as e:
        parsed("--workspace-url", "http://h:1", require=True)
    assert "workspace_id (flag --workspace-id, environment NETATLAS_AGENT_WORKSPACE_ID" in str(e.value)
    assert "workspace_url" not in str(e.value)


def test_the_machine_id_is_created_once(tmp_path):
    path = tmp_path / "state" / "machine-id"
    first = cfg.load_machine_id(path)
    assert re.fullmatch(r"[0-9a-f-]{36}", first) and cfg.load_machine_id(path) == first


# ---------------------------------------------------------------- netatlas agent run

def test_agent_run_check_prints_the_configuration_without_the_key():
    p = netatlas("agent", "run", "--check", *CREDS, env={"NETATLAS_AGENT_INTERVAL": "5"})
    assert p.returncode == 0, p.stderr
    assert KEY not in p.stdout
    assert re.search(r"^interval\s+5$", p.stdout, re.M) and re.search(r"^key\s+\(hidden\)$", p.stdout, re.M)


def test_agent_run_without_credentials_is_a_usage_error():
    p = netatlas("agent", "run")
    assert p.returncode == 2 and "missing workspace_url" in p.stderr


# ---------------------------------------------------------------- netatlas agent install

def test_install_dry_run_prints_the_unit_and_the_config_and_writes_nothing(tmp_path):
    conf, unit = tmp_path / "etc" / "agent.toml", tmp_path / "unit.service"
    p = netatlas("agent", "install", "--dry-run", *CREDS, "--interval", "30", "--tags", "env=prod",
                 "--config-out", str(conf), "--unit-out", str(unit))
    assert p.returncode == 0, p.stderr
    assert not conf.exists() and not unit.exists()
    out = p.stdout
    assert f"# ---- {conf} (mode 0600)" in out and f"# ---- {unit} (mode 0644)" in out
    assert KEY not in out and install.HIDDEN in out
    assert f"ExecStart={sys.executable} -m netatlas agent run --config {conf}\n" in out
    assert "Restart=always\n" in out and "WantedBy=multi-user.target" in out
    toml_part = out.split(f"# ---- {unit}")[0].split("\n", 1)[1]
    assert tomllib.loads(toml_part) == {"workspace_url": "http://127.0.0.1:9", "workspace_id": "ws-1",
                                        "key": install.HIDDEN, "interval": 30.0, "tags": {"env": "prod"}}
    for s in cfg.SETTINGS:   # the unchanged ones listed, commented out, with their help
        assert f"# {s.help} (env {s.env})" in out


def test_install_writes_a_config_that_loads_back_to_the_same_settings(tmp_path):
    conf, unit = tmp_path / "etc" / "agent.toml", tmp_path / "unit.service"
    argv = ["agent", "install", *CREDS, "--exclude-processes", 'svc "host",cron', "--spool", str(tmp_path / "sp"),
            "--no-verify-tls", "--config-out", str(conf), "--unit-out", str(unit)]
    p = netatlas(*argv, env={"NETATLAS_AGENT_SPOOL_MAX_BYTES": "1MiB"})
    assert p.returncode == 0, p.stderr
    assert f"{conf}: created" in p.stdout and "systemctl enable --now unit" in p.stdout
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    loaded = cfg.load(file=conf, environ={}, require=True)
    assert loaded == parsed(*CREDS, "--exclude-processes", 'svc "host",cron', "--spool", str(tmp_path / "sp"),
                            "--no-verify-tls", environ={"NETATLAS_AGENT_SPOOL_MAX_BYTES": "1MiB"})
    assert loaded.key == KEY and loaded.spool_max_bytes == 1024 * 1024 and loaded.verify_tls is False
    assert f"--config {conf}" in unit.read_text()
    again = netatlas(*argv, env={"NETATLAS_AGENT_SPOOL_MAX_BYTES": "1MiB"})
    assert f"{conf}: unchanged" in again.stdout and f"{unit}: unchanged" in again.stdout


def test_install_quotes_paths_for_systemd():
    text = install.unit_text("/etc/net atlas/50%.toml", python="/opt/py $x/bin/python")
    assert 'ExecStart="/opt/py $$x/bin/python" -m netatlas agent run --config "/etc/net atlas/50%%.toml"' in text


def test_one_settings_machinery_for_the_agent_and_the_server():
    """configure.py: both tables are configure.Setting rows read by the same kinds and precedence;
    a key from the environment is refused without showing it (other values are shown)."""
    from netatlas import configure
    from netatlas.server import settings as server
    assert all(type(s) is configure.Setting for s in (*cfg.SETTINGS, *server.SETTINGS))
    assert {s.kind for s in (*cfg.SETTINGS, *server.SETTINGS)} <= set(configure.KINDS)
    with pytest.raises(cfg.ConfigError) as e:
        parsed(environ={"NETATLAS_AGENT_KEY": "secret but not base64!"})
    assert "NETATLAS_AGENT_KEY: expected an ingest key" in str(e.value) and "secret" not in str(e.value)
    with pytest.raises(server.SettingsError, match="NETATLAS_PORT='eighty': expected a whole number"):
        server.Settings.from_env({"NETATLAS_PORT": "eighty"})
