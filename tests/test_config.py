"""Settings: user config.toml and [tool.ckptfetch] in pyproject.toml, their precedence, and `ckptfetch config`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ckptfetch import config

from .conftest import blob, cli_env, invoke, md5
from .httpserver import TestServer


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """(user config file, project folder, env): XDG_CONFIG_HOME points at tmp; the project is a folder with a child."""
    user = tmp_path / "xdg" / "ckptfetch" / "config.toml"
    user.parent.mkdir(parents=True)
    project = tmp_path / "proj"
    (project / "sub" / "deeper").mkdir(parents=True)
    return user, project, cli_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))


def _settings(cwd: Path, env: dict[str, str], *flags: str) -> dict[str, dict[str, object]]:
    r = invoke("config", "--json", *flags, cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    return {row["key"]: row for row in json.loads(r.stdout)["settings"]}


def test_precedence_flag_env_project_user_default(homes: tuple[Path, Path, dict[str, str]]) -> None:
    user, project, env = homes
    cwd = project / "sub" / "deeper"
    # CKPTFETCH_CACHE is this test's own store (conftest.py): the one setting the environment gives.
    assert {k: v["origin"] for k, v in _settings(cwd, env).items()} == {
        **dict.fromkeys(config.BY_NAME, "default"), "cache-dir": "environment"}
    user.write_text('jobs = 3\ndest = "/data/user-models"\nmirrors = ["https://=http://user-mirror/"]\n')
    s = _settings(cwd, env)
    assert (s["jobs"]["value"], s["jobs"]["origin"], s["jobs"]["where"]) == (3, "user", str(user))
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n\n[tool.ckptfetch]\njobs = 5\ndest = "models"\n')
    s = _settings(cwd, env)
    assert (s["jobs"]["value"], s["jobs"]["origin"]) == (5, "project")
    assert s["dest"]["value"] == str(project / "models"), "relative to the pyproject.toml, not the cwd"
    assert s["mirrors"]["origin"] == "user", "keys the project does not set still come from the user file"
    s = _settings(cwd, {**env, "CKPTFETCH_JOBS": "7", "CKPTFETCH_OFFLINE": "yes"})
    assert (s["jobs"]["value"], s["jobs"]["origin"], s["offline"]["value"]) == (7, "environment", True)
    s = _settings(cwd, {**env, "CKPTFETCH_JOBS": "7"}, "--jobs", "9", "--offline")
    assert (s["jobs"]["value"], s["jobs"]["origin"], s["offline"]["origin"]) == (9, "flag", "flag")
    text = invoke("config", cwd=cwd, env=env).stdout
    assert f"project:     {project / 'pyproject.toml'}" in text
    assert f"jobs            5  [project ({project / 'pyproject.toml'})]" in text


def test_commands_take_configured_defaults_and_flags_still_win(homes: tuple[Path, Path, dict[str, str]],
                                                               server: TestServer) -> None:
    user, project, env = homes
    data = blob(3000)
    server.add("/example.invalid/w.bin", data)
    (project / "m.yaml").write_text(yaml.safe_dump({"ckptfetch": 1, "name": "m", "files": {
        "w.bin": {"url": "https://example.invalid/w.bin", "md5": md5(data)}}}))
    user.write_text(f'mirrors = ["https://={server.url}/"]\n')
    (project / "pyproject.toml").write_text('[tool.ckptfetch]\ndest = "fetched"\n')
    r = invoke("get", "m.yaml", cwd=project, env=env)
    assert r.returncode == 0, r.stderr
    assert (project / "fetched" / "w.bin").read_bytes() == data, "dest from the project, mirrors from the user file"
    assert invoke("verify", cwd=project, env=env).stdout == "w.bin: OK\n", "verify's DIR defaults to dest too"
    r = invoke("get", "m.yaml", "--dest", "flagged", cwd=project, env=env)
    assert r.returncode == 0 and (project / "flagged" / "w.bin").is_file()
    r = invoke("get", "m.yaml", "--dest", "env", cwd=project, env={**env, "CKPTFETCH_DEST": str(project / "no")})
    assert (project / "env" / "w.bin").is_file() and not (project / "no").exists()
    r = invoke("get", "m.yaml", cwd=project, env={**env, "CKPTFETCH_DEST": str(project / "from-env")})
    assert r.returncode == 0 and (project / "from-env" / "w.bin").is_file()


@pytest.mark.parametrize(("text", "message"), [
    ("jbos = 3\n", "unknown key `jbos`"),
    ("jobs = 'many'\n", "`jobs` must be a whole number"),
    ("offline = 'perhaps'\n", "`offline` must be true or false"),
    ("mirrors = 3\n", "`mirrors` must be a list of strings"),
    ("jobs = \n", "not valid TOML"),
])
def test_a_bad_config_file_is_one_clear_error(homes: tuple[Path, Path, dict[str, str]], text: str, message: str) -> None:
    user, project, env = homes
    user.write_text(text)
    for args in (["config"], ["get", "sam-pt", "--dry-run"]):
        r = invoke(*args, cwd=project, env=env)
        assert r.returncode == 2 and str(user) in r.stderr and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_config_file_from_the_environment_and_a_project_without_the_table(homes: tuple[Path, Path, dict[str, str]],
                                                                          tmp_path: Path) -> None:
    _, project, env = homes
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n')  # no [tool.ckptfetch]: not a settings file
    own = tmp_path / "own.toml"
    own.write_text("jobs = 2\n")
    s = _settings(project, {**env, "CKPTFETCH_CONFIG": str(own)})
    assert (s["jobs"]["value"], s["jobs"]["origin"], s["jobs"]["where"]) == (2, "user", str(own))


def test_a_new_key_is_one_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The table drives everything: a row added for a command's flag reaches that command's defaults."""
    import click

    row = config.Key("retries", config.parse_int, "CKPTFETCH_RETRY_COUNT", "--retries", 5, "attempts")
    monkeypatch.setattr(config, "KEYS", (*config.KEYS, row))
    monkeypatch.setattr(config, "BY_NAME", {**config.BY_NAME, "retries": row})
    monkeypatch.setenv("CKPTFETCH_RETRY_COUNT", "9")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    @click.command()
    @click.option("--retries", type=int, default=5)
    def cmd(retries: int) -> None:
        pass

    assert config.default_map({"cmd": cmd}) == {"cmd": {"retries": 9}}
