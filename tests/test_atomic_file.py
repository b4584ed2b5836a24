"""The one atomic file writer: the old content or the new, never half, and nothing left behind."""

from __future__ import annotations

import stat

import pytest

from mlops_cli.common.atomic_file import atomic_writer, write_atomically


def test_replaces_the_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "sub" / "state.json"
    write_atomically(path, "old")
    write_atomically(path, b"new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_an_error_midway_keeps_the_old_content(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_writer(path, newline="") as fh:
        fh.write("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_directory_as_target_fails_without_a_stray_file(tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    with pytest.raises(OSError):
        write_atomically(target, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["dir"] and list(target.iterdir()) == []


def test_owner_only_permissions_from_the_start(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text("wide")
    path.chmod(0o666)
    write_atomically(path, "secret", perms=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "secret"
