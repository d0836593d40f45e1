"""names.py: an interpreter's process is displayed by what it runs (tables of command lines), and
a real ``python3 script.py`` through proc.py and the aggregate stage into VMProcess."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from netatlas.agent.model import TCP_LISTEN, Socket
from netatlas.agent.names import display_name
from netatlas.agent.proc import Proc
from netatlas.agent.records import Aggregator

# (executable name, argv) -> display name
INTERPRETED = [
    # python: scripts, modules, options before them, code on the command line
    ("python3.11", ["/usr/bin/python3.11", "/opt/app/manage.py", "runserver"], "manage.py"),
    ("python3", ["python3", "-u", "-X", "dev", "-W", "ignore", "worker.py", "-c", "x"], "worker.py"),
    ("python3.11", ["python3", "-Wignore", "-Xutf8", "-OO", "tool.py"], "tool.py"),
    ("python3.11", ["python3", "-m", "http.server", "8000"], "http.server"),
    ("python3.11", ["python3", "-uBm", "celery", "-A", "app", "worker"], "celery"),
    ("python3.11", ["python3", "-mgunicorn", "app:wsgi"], "gunicorn"),
    ("python3.11", ["python3", "-I", "-c", "import app; app.run()"], "python3.11"),
    ("python3.11", ["/usr/bin/python3.11", "/usr/local/bin/netatlas", "agent", "run"], "netatlas"),
    ("python3.11", ["python3"], "python3.11"),                        # the REPL
    ("python3.11", ["python3", "-"], "python3.11"),                   # a program on stdin
    ("python3.11", ["python3", "--", "-weird.py"], "-weird.py"),
    ("python3.11", ["python3", "--check-hash-based-pycs", "always", "job.py"], "job.py"),
    ("python", ["python", "app.py"], "app.py"),
    ("python2.7", ["python", "legacy.py"], "legacy.py"),
    ("pythonw", ["pythonw", "gui.py"], "gui.py"),
    ("platform-python", ["/usr/libexec/platform-python", "/usr/bin/dnf", "makecache"], "dnf"),
    ("pypy3", ["pypy3", "bench.py"], "bench.py"),
    # java: -jar, the main class by its simple name, modules; options with and without values
    ("java", ["java", "-Xmx512m", "-Dfoo=bar", "-XX:+UseG1GC", "-jar", "/srv/app/app.jar", "--port", "1"], "app.jar"),
    ("java", ["java", "-cp", "/opt/lib/*:/opt/app", "org.apache.catalina.startup.Bootstrap", "start"], "Bootstrap"),
    ("java", ["java", "-classpath", "a.jar", "-javaagent:/x/agent.jar", "com.example.Main"], "Main"),
    ("java", ["java", "--class-path=a.jar", "Server"], "Server"),
    ("java", ["java", "-p", "mods", "-m", "com.example.app/com.example.app.Main"], "Main"),
    ("java", ["java", "--module", "com.example.app"], "com.example.app"),
    ("java", ["java", "-version"], "java"),
    # node: scripts after options, code on the command line
    ("node", ["node", "--inspect=0.0.0.0:9229", "-r", "dotenv/config", "/srv/web/server.js"], "server.js"),
    ("node", ["node", "--max-old-space-size=4096", "dist/index.mjs"], "index.mjs"),
    ("nodejs", ["nodejs", "app.js"], "app.js"),
    ("node", ["node", "-e", "require('http').createServer().listen(80)"], "node"),
    ("node", ["node", "--eval=1"], "node"),
    # ruby, perl, php
    ("ruby", ["/usr/bin/ruby", "-w", "-I", "lib", "/usr/local/bin/puma", "-C", "config.rb"], "puma"),
    ("ruby3.1", ["ruby", "-Ilib", "-rbundler/setup", "bin/rails", "server"], "rails"),
    ("ruby", ["ruby", "-S", "bundle", "exec", "sidekiq"], "bundle"),
    ("ruby", ["ruby", "-e", "puts 1"], "ruby"),
    ("perl", ["/usr/bin/perl", "-w", "/usr/sbin/munin-node"], "munin-node"),
    ("perl", ["perl", "-I/opt/lib", "-MStrict", "-T", "app.pl"], "app.pl"),
    ("perl", ["perl", "-ne", "print if /x/", "file"], "perl"),
    ("perl", ["perl", "-i.bake", "fix.pl"], "fix.pl"),            # -i's value holds an "e": not -e
    ("php8.2", ["php", "-d", "memory_limit=1G", "artisan", "queue:work"], "artisan"),
    ("php", ["php", "-f", "/var/www/cron.php"], "cron.php"),
    ("php", ["php", "-r", "echo 1;"], "php"),
    # dotnet: an application; a command of the SDK keeps dotnet
    ("dotnet", ["dotnet", "/app/Api.dll", "--urls", "http://*:80"], "Api.dll"),
    ("dotnet", ["dotnet", "exec", "--runtimeconfig", "x.json", "/app/Worker.dll"], "Worker.dll"),
    ("dotnet", ["dotnet", "exec", "/app/Worker.dll"], "Worker.dll"),
    ("dotnet", ["dotnet", "build"], "dotnet"),
]

NOT_INTERPRETERS = [
    ("nginx", ["nginx: worker process"]),
    ("sshd", ["/usr/sbin/sshd", "-D"]),
    ("python3.11-config", ["python3.11-config", "app.py"]),        # not the interpreter itself
    ("javac", ["javac", "Main.java"]),
    ("nodemon", ["nodemon", "server.js"]),
    ("sleep", []),
]


@pytest.mark.parametrize("executable, argv, expected", INTERPRETED)
def test_an_interpreter_is_displayed_by_what_it_runs(executable, argv, expected):
    assert display_name(executable, argv) == expected


@pytest.mark.parametrize("executable, argv", NOT_INTERPRETERS)
def test_other_programs_keep_their_executable_name(executable, argv):
    assert display_name(executable, argv) == executable


SCRIPT = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


@pytest.fixture
def script_process(tmp_path):
    """A real ``python3 -u .../billing_worker.py --queue q`` holding a listening socket."""
    script = tmp_path / "billing_worker.py"
    script.write_text(SCRIPT)
    child = subprocess.Popen([sys.executable, "-u", str(script), "--queue", "q"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        yield child, script, port
    finally:
        child.kill()
        child.wait()


def test_a_real_python_script_is_displayed_by_its_name(script_process):
    child, script, port = script_process
    proc = Proc("/")
    info = proc.process(child.pid)
    executable = os.path.basename(os.path.realpath(sys.executable))          # python3.11
    assert (info.name, info.display) == (executable, "billing_worker.py")
    assert info.cmdline == f"{sys.executable} -u {script} --queue q"
    # through the aggregate stage: VMProcess shows the script, the executable stays the process name
    (inode,) = info.inodes
    now = int(time.time())
    agg = Aggregator(machine_id="m-00000000-0000-0000-0000-000000000001", computer="host", agent_id="a")
    listening = Socket(family=socket.AF_INET, state=TCP_LISTEN, src="127.0.0.1", sport=port, dst="0.0.0.0",
                       dport=0, inode=inode, uid=os.geteuid(), cookie=1)
    agg.observe(now, [listening], {inode: info})
    out = agg.flush(now + 60)
    (vm,), (bound,) = out["VMProcess"], out["VMBoundPort"]
    assert (vm["DisplayName"], vm["ExecutableName"]) == ("billing_worker.py", executable)
    assert vm["CommandLine"] == info.cmdline
    assert (bound["Port"], bound["ProcessName"], bound["Process"]) == (port, executable, vm["Process"])
    assert datetime.fromisoformat(vm["TimeGenerated"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
