"""The agent's tests. ``fixtures/`` holds captured /proc trees and netlink bytes, not tests."""
import os
import shutil
import subprocess
import uuid

import pytest

collect_ignore = ["fixtures"]


@pytest.fixture
def netns():
    """A fresh network namespace (its name), with lo up; deleted afterwards."""
    if os.geteuid() != 0:
        print("skipping: network namespaces need root")
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        print("skipping: no ip(8) (iproute2) to create a network namespace")
        pytest.skip("no ip(8) (iproute2) to create a network namespace")
    name = f"netatlas-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
