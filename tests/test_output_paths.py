"""Every `-o` follows one rule, checked before any work (issue 26 D7, common/output_path.py): missing
folders are created; a path under a file, in an unwritable place, or of the wrong kind is refused at once
with one message and exit 2."""

from __future__ import annotations

import pytest

from .support import free_port


@pytest.mark.parametrize("args, says", [
    (["render", "--target", "kubernetes", "-o", "/etc/passwd"], "-o /etc/passwd: is a file, not a directory"),
    (["render", "--target", "kubernetes", "-o", "/proc/nope/x"], "-o /proc/nope/x: cannot write in /proc"),
    (["drift", "-o", "/etc/passwd/x.html"], "/etc/passwd is a file, so nothing can be written below it"),
    (["drift", "-o", "{tmp}"], None),  # an existing directory: report.html inside it, as before
    (["predict", "--file", "r.csv", "-o", "/proc/x.csv"], "-o /proc/x.csv: cannot write in /proc"),
    (["predict", "--file", "r.csv", "-o", "r.csv/x.csv"], "r.csv is a file, so nothing can be written below it"),
])
def test_an_unusable_output_is_refused_before_the_work(cli, project, monkeypatch, tmp_path, args, says):
    (project / "r.csv").write_text("text\ngreat\n")
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "secret")
    monkeypatch.setenv("MLOPS_LOCAL__GATEWAY_PORT", str(free_port()))  # predict would fail later with exit 1
    result = cli(*[a.format(tmp=tmp_path) for a in args])
    if says is None:
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert "not reachable" not in result.stderr and "not enough data" not in result.stderr


def test_missing_folders_are_created_for_every_output(project, tmp_path):
    from mlops_cli.common.output_path import writable_dir, writable_file
    from mlops_cli.platform.batch_predict import resolve_output

    # predict -o refused a missing folder while drift -o and render -o created theirs: now all create
    out = resolve_output(tmp_path / "new" / "deeper" / "scored.csv", project / "r.csv")
    assert out == tmp_path / "new" / "deeper" / "scored.csv"
    assert writable_file(tmp_path / "a" / "report.html") and writable_dir(tmp_path / "b" / "manifests")
    # nothing is made until the output is written, and the write check leaves nothing behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]
