"""``POST /api/backup``: a consistent copy of the served workspace into a directory on the
server's filesystem (backup.py), while ingestion and queries go on.

Body ``{"target": "/absolute/path"}``: a new directory, or an empty one (400 otherwise). Answer:
the backup's manifest (``backup.json``). Needs a query key for now; an admin role will take it over.
"""
from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from ..auth import verify_bearer
from ..backup import BackupError, snapshot
from .http import HttpError, json_response, read_json_object, service

BODY_LIMIT = 64 * 1024


async def backup(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="admin", local_token=svc.local_token)
    body = await read_json_object(request, BODY_LIMIT)
    target = body.get("target")
    if set(body) != {"target"} or not isinstance(target, str) or not target:
        raise HttpError(400, "BAD_BACKUP_REQUEST", 'the body must be {"target": "<absolute directory path on the '
                        'server>"}')
    try:
        manifest = await svc.run(snapshot, svc.workspace, svc.data_dir, Path(target))
    except BackupError as e:
        raise HttpError(400, e.code, str(e)) from None
    except OSError as e:
        raise HttpError(400, "BACKUP_FAILED", f"cannot write the backup into {target}: {e.strerror or e}") from None
    return json_response(manifest)
