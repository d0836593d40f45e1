"""The agent's tests. ``fixtures/`` holds captured /proc trees and netlink bytes, not tests."""
collect_ignore = ["fixtures"]
