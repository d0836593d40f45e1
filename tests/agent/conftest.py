"""The agent's tests. ``fixtures/`` holds captured /proc trees and netlink bytes, not tests."""
import contextlib
import os
import shutil
import subprocess
import time
import uuid

import pytest

collect_ignore = ["fixtures"]

MINUTE_START_BY = 40     # seconds into a minute: later, early_in_a_minute waits for the next one


@pytest.fixture
def early_in_a_minute():
    """For a test whose connections must fall in one minute's records: the records are per minute,
    and a connection made at :59.9 and closed at :00.1 is two of them (its LinksEstablished in the
    first, its LinksTerminated in the second). Past MINUTE_START_BY seconds into a minute, this
    waits for the next one; such a test takes a few seconds."""
    into = time.time() % 60
    if into > MINUTE_START_BY:
        time.sleep(60.5 - into)


@contextlib.contextmanager
def new_netns(prefix: str = "netatlas-test"):
    """A fresh network namespace (its name), with lo up, deleted on exit; skips, saying why, where
    one cannot be made."""
    if os.geteuid() != 0:
        print("skipping: network namespaces need root")
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        print("skipping: no ip(8) (iproute2) to create a network namespace")
        pytest.skip("no ip(8) (iproute2) to create a network namespace")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def netns():
    """A fresh network namespace (its name), with lo up; deleted afterwards."""
    with new_netns() as name:
        yield name


@pytest.fixture(scope="module")
def module_netns():
    """The same, shared by a module's tests (one scenario, several checks)."""
    with new_netns() as name:
        yield name
