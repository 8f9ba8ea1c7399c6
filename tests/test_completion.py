"""Shell completion: the scripts, and click's completion protocol answered in-process for names, variants, targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import cli_env, invoke


def _complete(words: str, tmp_path: Path, shell: str = "bash") -> list[str]:
    """What the shell would offer after `words` (the last word being completed; "" after a space)."""
    parts = words.split(" ")
    env = cli_env(_CKPTFETCH_COMPLETE=f"{shell}_complete", COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1))
    if shell == "fish":
        env.update(COMP_WORDS=words, COMP_CWORD=parts[-1])
    r = invoke(env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln]  # no candidates: one empty line
    if shell == "fish":
        return [ln.split(",", 1)[1] for ln in lines]
    return [ln.split(",", 1)[1] for ln in lines if not ln.startswith("file,")]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts(shell: str) -> None:
    r = invoke("completion", shell)
    assert r.returncode == 0 and "_CKPTFETCH_COMPLETE" in r.stdout and f"{shell}_complete" in r.stdout
    assert invoke("completion", "tcsh").returncode == 2


def test_commands_manifest_names_variants_and_targets(tmp_path: Path) -> None:
    assert {"get", "verify", "add", "import", "key", "completion"} <= set(_complete("ckptfetch ", tmp_path))
    assert _complete("ckptfetch get sam-", tmp_path) == ["sam-3d-objects", "sam-pt"]
    assert _complete("ckptfetch show rtm", tmp_path) == ["rtmpose3d"]
    assert _complete("ckptfetch get sam-pt --variant mi", tmp_path) == ["minimal"]
    assert "pips" in _complete("ckptfetch key sam-pt --variant ", tmp_path)
    assert _complete("ckptfetch get sam-pt --only raft_ckpts/raft-s", tmp_path) == [
        "raft_ckpts/raft-sintel.pth", "raft_ckpts/raft-small.pth"]
    assert _complete("ckptfetch get --variant mi", tmp_path) == [], "no manifest typed yet: nothing to offer"
    assert _complete("ckptfetch get no-such --variant ", tmp_path) == []


def test_found_manifests_and_files_complete_too(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "mine.yaml").write_text(
        "ckptfetch: 1\nname: mine\nvariants:\n  gpu: [a.bin]\nfiles:\n  a.bin:\n    url: https://example.org/a\n")
    assert _complete("ckptfetch get mi", tmp_path) == ["mine"]
    assert _complete("ckptfetch get mine --variant ", tmp_path) == ["gpu"]
    assert _complete("ckptfetch get manifests/mine.yaml --only ", tmp_path) == ["a.bin"]
    r = invoke(env=cli_env(_CKPTFETCH_COMPLETE="bash_complete", COMP_WORDS="ckptfetch get manifests/", COMP_CWORD="2"),
               cwd=tmp_path)
    assert "file,manifests/" in r.stdout, "paths are left to the shell's own file completion"


def test_zsh_and_fish_answer_the_same(tmp_path: Path) -> None:
    r = invoke(env=cli_env(_CKPTFETCH_COMPLETE="zsh_complete", COMP_WORDS="ckptfetch get sam-pt --variant mi",
                           COMP_CWORD="4"), cwd=tmp_path)
    assert r.stdout.splitlines()[:2] == ["plain", "minimal"]
    assert _complete("ckptfetch get sam-pt --variant mi", tmp_path, shell="fish") == ["minimal"]


def test_a_broken_config_does_not_break_completion(tmp_path: Path) -> None:
    (tmp_path / "xdg" / "ckptfetch").mkdir(parents=True)
    (tmp_path / "xdg" / "ckptfetch" / "config.toml").write_text("not = [valid\n")
    env = cli_env(_CKPTFETCH_COMPLETE="bash_complete", COMP_WORDS="ckptfetch get sam-pt --variant mi", COMP_CWORD="4",
                  XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert invoke(env=env, cwd=tmp_path).stdout == "plain,minimal\n"
