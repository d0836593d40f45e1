"""The workspace identity file: created once, 0600, keys added and listed, reloaded by a server."""
import base64
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
    assert [k.role for k in ident.keys] == ["ingest", "query"]
    for k in ident.keys:
        assert len(base64.b64decode(k.secret)) == 32
        assert k.id.startswith("k_") and k.created.endswith("Z")
    assert ident.keys[0].secret != ident.keys[1].secret


def test_the_file_is_private_and_in_the_documented_shape(tmp_path):
    ident = keys.load_or_create(tmp_path)
    path = tmp_path / "workspace.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["id"] == ident.workspace_id
    assert set(data["keys"][0]) == {"id", "role", "secret", "created"}


def test_second_use_loads_the_same_identity(tmp_path):
    first = keys.load_or_create(tmp_path)
    again = keys.load_or_create(tmp_path)
    assert not again.new
    assert again.workspace_id == first.workspace_id and again.keys == first.keys


def test_create_key_adds_one_and_list_shows_all(tmp_path):
    ident = keys.load_or_create(tmp_path)
    key = keys.create_key(tmp_path, "query")
    assert key.role == "query"
    listed = keys.list_keys(tmp_path)
    assert listed == list(ident.keys) + [key]
    assert stat.S_IMODE((tmp_path / "workspace.json").stat().st_mode) == 0o600
    assert keys.load(tmp_path).workspace_id == ident.workspace_id


def test_an_unknown_role_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ingest, query"):
        keys.create_key(tmp_path, "admin")


def test_a_running_server_sees_a_key_added_on_disk(tmp_path):
    store = keys.KeyStore(tmp_path)
    before = store.identity
    key = keys.create_key(tmp_path, "ingest")
    os.utime(tmp_path / "workspace.json", ns=(0, 1))   # mtime granularity must not hide the change
    assert key in store.identity.keys
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


def test_keys_list_prints_one_roles_secrets_for_a_script(tmp_path, capsys):
    from netatlas.cli import main
    ident = keys.load_or_create(tmp_path)
    assert main(["keys", "list", "--data", str(tmp_path), "--role", "query", "--format", "secret"]) == 0
    assert capsys.readouterr().out == ident.by_role("query")[0].secret + "\n"
