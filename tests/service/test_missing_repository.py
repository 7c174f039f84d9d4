"""`pointserve serve` without a repository says where it looked and how to get one, in one line."""

from __future__ import annotations

from pointserve.cli import main


def test_serve_without_a_repository_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--repository", "models"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert str(tmp_path / "models") in err  # which folder it looked in
    assert "pointserve quickstart" in err and "pointserve export" in err
