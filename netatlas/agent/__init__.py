"""The agent: every process and TCP connection of a Linux host, as one-minute records.

Stages, each a module named after it (work in progress; see ARCHITECTURE.md):

| stage | module | input | output |
|---|---|---|---|
| observe sockets | ``netlink.py`` | the kernel (NETLINK_SOCK_DIAG dump with tcp_info; the SKNLGRP_INET_TCP_DESTROY multicast group) | ``Socket`` snapshots and ``Socket`` close events |
| observe processes | ``proc.py`` | a /proc tree (any root: tests use captured fixtures), the proc connector | ``ProcessInfo`` by pid, socket inode -> pid, ``MachineInfo`` |
| aggregate | ``records.py`` | snapshots, close events, process and machine info | VMConnection / VMBoundPort / VMProcess / VMComputer / ServiceMap*_CL records per minute |
| ship | ``ship.py`` | records | signed, gzip-compressed batches to the workspace, a bounded on-disk spool while it is away |
| configure | ``config.py`` | a file, environment variables, flags | ``AgentConfig`` (every setting declared once) |

The data types passed between stages live in ``model.py``.
"""

# `netatlas up` starts the local agent once the stages above are joined into a runner.
RUNNABLE = True
