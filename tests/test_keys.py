"""The workspace identity file: created once, 0600, keys added and listed, reloaded by a server;
query and admin keys stored hashed (shown once), revoked and rotated through the CLI."""
import base64
import hashlib
import json
import os
import stat
import uuid

import pytest

from netatlas import keys


def test_first_use_creates_an_id_and_one_key_of_each_role(tmp_path):
    ident = keys.load_or_create(tmp_path)
    assert ident.new
    uuid.UUID(ident.workspace_id)
    assert [k.role for k in ident.keys] == ["ingest", "query", "admin"]
    assert ident.fresh == ident.keys      # every secret is in hand once, to be shown
    for k in ident.keys:
        assert len(base64.b64decode(k.secret)) == 32
        assert k.id.startswith("k_") and k.created.endswith("Z")
    assert len({k.secret for k in ident.keys}) == 3


def test_the_file_is_private_and_in_the_documented_shape(tmp_path):
    ident = keys.load_or_create(tmp_path)
    path = tmp_path / "workspace.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["id"] == ident.workspace_id
    assert set(data["keys"][0]) == {"id", "role", "secret", "created"}
    for stored, key in zip(data["keys"][1:], ident.keys[1:]):     # query and admin: hashed
        assert set(stored) == {"id", "role", "hash", "prefix", "created"}
        assert stored["hash"] == "sha256:" + hashlib.sha256(key.secret.encode()).hexdigest()
        assert stored["prefix"] == key.secret[:6]
    assert ident.keys[1].secret not in path.read_text() and ident.keys[2].secret not in path.read_text()


def test_the_data_directory_is_created_private(tmp_path):
    data = tmp_path / "a" / "ws"
    keys.load_or_create(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / ".workspace.json.lock").stat().st_mode) == 0o600


def test_an_older_file_is_upgraded_query_hashed_and_an_admin_key_added(tmp_path):
    old = {"id": "6f1c0000-0000-4000-8000-000000000000", "created": "2024-05-01T10:00:00Z",
           "keys": [{"id": "k_00000001", "role": "ingest", "secret": base64.b64encode(b"i" * 32).decode(),
                     "created": "2024-05-01T10:00:00Z"},
                    {"id": "k_00000002", "role": "query", "secret": base64.b64encode(b"q" * 32).decode(),
                     "created": "2024-05-01T10:00:00Z"}]}
    (tmp_path / "workspace.json").write_text(json.dumps(old))
    ident = keys.load_or_create(tmp_path)
    assert [k.role for k in ident.fresh] == ["admin"] and ident.fresh[0].secret
    text = (tmp_path / "workspace.json").read_text()
    assert old["keys"][1]["secret"] not in text and old["keys"][0]["secret"] in text
    query = keys.load(tmp_path).by_role("query")[0]
    assert query.matches(old["keys"][1]["secret"]) and not query.matches(old["keys"][0]["secret"])
    assert keys.load_or_create(tmp_path).fresh == ()      # shown once: the next load adds nothing

def test_second_use_loads_the_same_identity(tmp_path):
    first = keys.load_or_create(tmp_path)
    again = keys.load_or_create(tmp_path)
    assert not again.new
    assert again.workspace_id == first.workspace_id and [k.id for k in again.keys] == [k.id for k in first.keys]
    assert again.fresh == () and again.by_role("ingest") == first.by_role("ingest")
    assert all(not k.secret and k.matches(f.secret) for k, f in zip(again.keys[1:], first.keys[1:]))


def test_create_key_adds_one_and_list_shows_all(tmp_path):
    ident = keys.load_or_create(tmp_path)
    key = keys.create_key(tmp_path, "query")
    assert key.role == "query"
    listed = keys.list_keys(tmp_path)
    assert [k.id for k in listed] == [k.id for k in ident.keys] + [key.id]
    assert listed[-1].matches(key.secret) and not listed[-1].secret
    assert stat.S_IMODE((tmp_path / "workspace.json").stat().st_mode) == 0o600
    assert keys.load(tmp_path).workspace_id == ident.workspace_id


def test_an_unknown_role_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ingest, query, admin"):
        keys.create_key(tmp_path, "root")


def test_a_running_server_sees_a_key_added_on_disk(tmp_path):
    store = keys.KeyStore(tmp_path)
    before = store.identity
    key = keys.create_key(tmp_path, "ingest")
    os.utime(tmp_path / "workspace.json", ns=(0, 1))   # mtime granularity must not hide the change
    assert key.id in [k.id for k in store.identity.keys]
    assert len(store.identity.keys) == len(before.keys) + 1


def test_a_broken_file_is_reported(tmp_path):
    (tmp_path / "workspace.json").write_text("{}")
    with pytest.raises(ValueError, match="not a netatlas workspace identity file"):
        keys.load_or_create(tmp_path)


def test_keys_list_on_a_directory_that_is_no_workspace_says_so_and_creates_nothing(tmp_path, capsys):
    from netatlas.cli import main
    missing = tmp_path / "netatlas-dta"
    assert main(["keys", "list", "--data", str(missing)]) == 1
    assert "is not a workspace" in capsys.readouterr().err and not missing.exists()


def test_keys_list_prints_the_ingest_secrets_for_a_script(tmp_path, capsys):
    from netatlas.cli import main
    ident = keys.load_or_create(tmp_path)
    assert main(["keys", "list", "--data", str(tmp_path), "--role", "ingest", "--format", "secret"]) == 0
    assert capsys.readouterr().out == ident.by_role("ingest")[0].secret + "\n"


def test_keys_list_shows_a_prefix_of_hashed_keys_and_cannot_print_their_secret(tmp_path, capsys):
    from netatlas.cli import main
    ident = keys.load_or_create(tmp_path)
    assert main(["keys", "list", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    query = ident.by_role("query")[0]
    assert query.secret not in out and f"{query.secret[:6]}… (hashed)" in out
    assert ident.by_role("ingest")[0].secret in out
    assert main(["keys", "list", "--data", str(tmp_path), "--role", "query", "--format", "secret"]) == 1
    assert "shown only when created or rotated" in capsys.readouterr().err


def test_keys_create_revoke_and_rotate_through_the_cli(tmp_path, capsys):
    from netatlas.cli import main
    keys.load_or_create(tmp_path)
    assert main(["keys", "create", "--data", str(tmp_path), "--role", "query", "--format", "secret"]) == 0
    secret = capsys.readouterr().out.strip()
    key = next(k for k in keys.load(tmp_path).keys if k.matches(secret))
    assert key.role == "query" and secret not in (tmp_path / "workspace.json").read_text()
    assert main(["keys", "rotate", "--data", str(tmp_path), key.id, "--format", "json"]) == 0
    rotated = json.loads(capsys.readouterr().out)["keys"][0]
    assert rotated["id"] == key.id and rotated["secret"] != secret
    now = next(k for k in keys.load(tmp_path).keys if k.id == key.id)
    assert now.matches(rotated["secret"]) and not now.matches(secret)
    assert main(["keys", "revoke", "--data", str(tmp_path), key.id]) == 0
    assert f"revoked query key {key.id}" in capsys.readouterr().out
    assert key.id not in [k.id for k in keys.load(tmp_path).keys]
    assert main(["keys", "revoke", "--data", str(tmp_path), key.id]) == 1
    assert f"no key '{key.id}'" in capsys.readouterr().err
