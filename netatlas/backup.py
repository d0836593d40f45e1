"""Backup and restore of a workspace directory, also while a server holds it.

A backup is a directory:

    netatlas.duckdb   a copy of the database made by DuckDB in one transaction (ATTACH a new file,
                      COPY FROM DATABASE): every batch committed before it started, none after,
                      none in part; ingestion and queries go on meanwhile
    workspace.json    the workspace's id and keys (mode 0600)
    .demo-loaded      when the workspace holds the demo datacenter (netatlas up's marker)
    alerts.json       the alert rules, their state and history (alerts.py), when there are any
    workbooks/        the saved workbooks (netatlas/workbooks.py), one JSON file each
    backup.json       the manifest: when, netatlas and schema versions, workspace id, rows per
                      table and batch ids stored

A running server holds the database's lock, so its workspace is backed up through it
(``POST /api/backup``, server/backup.py); a stopped one is opened directly. ``restore`` copies a
backup into an empty or new directory (``force``: over a stopped workspace), then opens it,
which migrates a backup of an older schema, and checks the rows against the manifest.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, discovery
from .errors import BackupError, NetatlasError
from .keys import WORKSPACE_FILE

DB_FILE = "netatlas.duckdb"             # store.duckdb.DB_FILE (the engine is not imported to parse a command line)

MANIFEST = "backup.json"
DEMO_MARKER = ".demo-loaded"          # up.DEMO_MARKER (up.py is not imported: it loads the server)
ALERTS_FILE = "alerts.json"           # alerts.FILE: alert rules, state and history (written atomically)
COPIED = (WORKSPACE_FILE, DEMO_MARKER, ALERTS_FILE)
WORKBOOKS_DIR = "workbooks"           # workbooks.Store's directory: each of its *.json files is copied
# what a workspace directory holds besides the database, removed by a forced restore
WORKSPACE_FILES = (DB_FILE, DB_FILE + ".wal", WORKSPACE_FILE, DEMO_MARKER, ALERTS_FILE)




def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def check_target(target: Path) -> None:
    """A backup goes into a new directory or an empty one, never over anything."""
    if not target.is_absolute():
        raise BackupError(f"the backup target must be an absolute path, got {str(target)!r}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"the backup target {target} exists and is not an empty directory")
    if not target.parent.is_dir():
        raise BackupError(f"the backup target's parent directory {target.parent} does not exist")


def snapshot(ws, data_dir: Path | None, target: Path) -> dict:
    """Back up the open workspace ``ws`` (of ``data_dir``) into ``target``; the manifest."""
    target = Path(target)
    check_target(target)
    target.mkdir(exist_ok=True)
    try:
        started = datetime.now(timezone.utc)
        copied = ws.snapshot(target / DB_FILE)
        files = [DB_FILE]
        for name in COPIED:
            if data_dir is not None and (Path(data_dir) / name).exists():
                shutil.copy2(Path(data_dir) / name, target / name)
                files.append(name)
        workbooks = Path(data_dir) / WORKBOOKS_DIR if data_dir is not None else None
        if workbooks is not None and workbooks.is_dir():
            (target / WORKBOOKS_DIR).mkdir()
            for path in sorted(workbooks.glob("*.json")):
                shutil.copy2(path, target / WORKBOOKS_DIR / path.name)
                files.append(f"{WORKBOOKS_DIR}/{path.name}")
        if (target / WORKSPACE_FILE).exists():
            os.chmod(target / WORKSPACE_FILE, 0o600)
        manifest = {"created": started.isoformat().replace("+00:00", "Z"), "netatlas": __version__,
                    "workspace_id": ws.id, "files": files, **copied,
                    "bytes": (target / DB_FILE).stat().st_size}
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return manifest


def backup_directory(data_dir: Path, target: Path) -> dict:
    """Back up the stopped workspace in ``data_dir`` (opened directly)."""
    from .workspace import connect
    if not (Path(data_dir) / DB_FILE).exists():
        raise BackupError(f"{data_dir} holds no workspace ({DB_FILE} is missing)")
    check_target(Path(target))
    with connect(data_dir, geoip=False) as ws:
        return snapshot(ws, Path(data_dir), Path(target))


def read_manifest(backup: Path) -> dict:
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{backup} is not a netatlas backup ({MANIFEST} is missing)") from None
    except ValueError as e:
        raise BackupError(f"{backup / MANIFEST} is not valid JSON: {e}") from None
    for name in manifest.get("files", [DB_FILE]):
        if not (backup / name).is_file():
            raise BackupError(f"the backup in {backup} is incomplete: {name} is missing")
    return manifest


def restore(backup: Path, data_dir: Path, *, force: bool = False) -> dict:
    """Copy the backup into ``data_dir`` (new or empty; with ``force``, over a stopped
    workspace), open it (migrating an older schema) and check its rows against the manifest."""
    from .migrate import SCHEMA_VERSION
    from .workspace import WorkspaceBusyError, connect
    backup, data_dir = Path(backup), Path(data_dir)
    manifest = read_manifest(backup)
    if int(manifest.get("schema_version", 1)) > SCHEMA_VERSION:
        raise BackupError(f"the backup in {backup} was made by a newer netatlas ({manifest.get('netatlas')}, schema "
                          f"version {manifest['schema_version']}; this netatlas knows versions up to "
                          f"{SCHEMA_VERSION}): restore it with that version or a later one")
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} exists and is not a directory")
    if data_dir.exists() and any(data_dir.iterdir()):
        if not force:
            raise BackupError(f"{data_dir} is not empty; restore into a new or empty directory, or pass --force "
                              f"to replace the workspace in it (its server stopped)")
        if (data_dir / discovery.SERVER_FILE).exists() or (data_dir / DB_FILE).exists():
            try:
                connect(data_dir, geoip=False).close()       # fails while a server holds the file
            except WorkspaceBusyError:
                raise BackupError(f"{data_dir} is held by a running server; stop it before restoring") from None
            except NetatlasError:
                pass                                         # a workspace too new or broken: replaced
        for name in WORKSPACE_FILES:
            (data_dir / name).unlink(missing_ok=True)
        shutil.rmtree(data_dir / WORKBOOKS_DIR, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in manifest.get("files", [DB_FILE]):
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != WORKBOOKS_DIR):
            raise BackupError(f"the backup's manifest lists {name!r}, which is not a file of a workspace")
        dest = data_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.restoring"
        shutil.copy2(backup / name, tmp)
        os.replace(tmp, dest)
    with connect(data_dir, geoip=False) as ws:
        found = {t: ws.connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in manifest["rows"]}
        upgrade = ws.upgrade
    if found != manifest["rows"]:
        raise BackupError(f"the restored workspace does not hold the rows the backup lists: {found} "
                          f"against {manifest['rows']}")
    return {"restored": str(data_dir), "workspace_id": manifest.get("workspace_id"), "rows": found,
            "batches": len(manifest.get("batches", [])), "migrated": upgrade.steps}


# ---------------------------------------------------------------- the command line

def backup_arguments(sub) -> None:
    """``workspace backup`` and ``workspace restore`` (cli.workspace_arguments)."""
    b = sub.add_parser("backup", help="copy the workspace, also while its server runs, into a new directory",
                       description="Copy the workspace in DIR (database, keys, demo marker) into TARGET, a new or "
                       "empty directory: one consistent snapshot, with every batch committed before it started. "
                       "When a server holds DIR (its DIR/server.json, or --server), the server makes the copy "
                       "(TARGET is then a path on the server's machine) and ingestion goes on meanwhile; "
                       "otherwise DIR is opened directly.")
    b.add_argument("target", metavar="TARGET", help="the backup directory to create")
    b.add_argument("--data", metavar="DIR", default="netatlas-data", help="the workspace directory "
                   "(default: ./netatlas-data)")
    b.add_argument("--server", metavar="URL", default=None,
                   help="the server holding the workspace (default: the url in DIR/server.json, if running)")
    b.add_argument("--key", default=os.environ.get("NETATLAS_ADMIN_KEY"),
                   help="an admin key of that server (default: $NETATLAS_ADMIN_KEY, else the local token of "
                   "DIR/server.json)")
    r = sub.add_parser("restore", help="make a workspace directory from a backup (its server stopped)",
                       description="Copy the backup BACKUP into DIR, a new or empty directory (--force: replace "
                       "the workspace in DIR, whose server must be stopped), open it (a backup of an older "
                       "schema is migrated) and check its rows against the backup's manifest.")
    r.add_argument("backup", metavar="BACKUP", help="a directory made by `netatlas workspace backup`")
    r.add_argument("--data", metavar="DIR", default="netatlas-data", help="the workspace directory to make "
                   "(default: ./netatlas-data)")
    r.add_argument("--force", action="store_true", help="replace the workspace already in DIR")


def _server_key(args, data: Path) -> str:
    if args.key:
        return args.key
    from . import discovery           # admin keys are stored hashed: the local token of DIR's server
    try:
        token = discovery.read(data).token
    except (OSError, ValueError):
        token = None
    if token:
        return token
    from .errors import UsageError
    raise UsageError("--server needs --key (an admin key: `netatlas keys create --role admin`) or "
                     "NETATLAS_ADMIN_KEY")


def post_json(url: str, key: str, payload: dict, timeout: float = 3600) -> dict:
    """POST a JSON body with a query key; the JSON answer, or NetatlasError with the server's message."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:     # noqa: S310 (the operator's server)
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())["error"]
            message = f"{err['code']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            message = str(e.reason)
        raise NetatlasError(f"{url}: {e.code} {message}") from None
    except OSError as e:
        raise NetatlasError(f"cannot reach {url}: {e}") from None


def describe(manifest: dict, where: Path | str) -> str:
    rows = manifest["rows"]
    return (f"backup of workspace {manifest['workspace_id']} in {where}: {sum(rows.values())} rows in "
            f"{sum(1 for n in rows.values() if n)} tables, {len(manifest['batches'])} batches, "
            f"{manifest['bytes'] / 1e6:.1f} MB (schema version {manifest['schema_version']})")


def cmd_backup(args) -> int:
    from .errors import UsageError
    from .workspace import WorkspaceBusyError
    data, target = Path(args.data), Path(args.target).absolute()
    server = args.server or discovery.live_url(data)
    try:
        if server:
            manifest = post_json(server.rstrip("/") + "/api/backup", _server_key(args, data), {"target": str(target)})
        else:
            manifest = backup_directory(data, target)
    except BackupError as e:
        raise UsageError(str(e)) from None
    except WorkspaceBusyError:
        raise UsageError(f"{data} is held by a running server that left no {discovery.SERVER_FILE}; pass --server URL "
                         f"(and --key) to back it up through the server") from None
    print(describe(manifest, target))
    return 0


def cmd_restore(args) -> int:
    from .errors import UsageError
    try:
        report = restore(Path(args.backup), Path(args.data), force=args.force)
    except BackupError as e:
        raise UsageError(str(e)) from None
    migrated = f"; migrated: {', '.join(report['migrated'])}" if report["migrated"] else ""
    print(f"restored workspace {report['workspace_id']} into {report['restored']}: "
          f"{sum(report['rows'].values())} rows, {report['batches']} batches{migrated}")
    return 0
