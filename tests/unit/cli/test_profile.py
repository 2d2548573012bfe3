"""CLI profiles: kept private, overridden by the environment."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nubis.cli.profile import DEFAULT_API_URL, Config, config_path


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("NUBIS_API_URL", "NUBIS_TOKEN", "NUBIS_PROJECT", "NUBIS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_file_the_default_profile_points_at_the_local_api() -> None:
    profile = Config.load().profile()
    assert (profile.name, profile.api_url, profile.token) == ("default", DEFAULT_API_URL, None)


def test_a_saved_profile_is_read_back_and_private(tmp_path: Path) -> None:
    config = Config()
    config.update("work", api_url="https://cloud.example", token="nubis_x", project="web")
    config.save()
    assert config_path() == tmp_path / "nubis" / "config.toml"
    assert stat.S_IMODE(config_path().stat().st_mode) == 0o600
    profile = Config.load().profile()
    assert (profile.name, profile.api_url, profile.token, profile.project) == (
        "work",
        "https://cloud.example",
        "nubis_x",
        "web",
    )


def test_the_environment_overrides_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config()
    config.update("default", api_url="http://a", token="nubis_a")
    config.save()
    monkeypatch.setenv("NUBIS_API_URL", "http://b")
    monkeypatch.setenv("NUBIS_TOKEN", "nubis_b")
    profile = Config.load().profile()
    assert (profile.api_url, profile.token) == ("http://b", "nubis_b")


def test_removing_a_value_drops_it() -> None:
    config = Config()
    config.update("default", token="nubis_a")
    config.update("default", token=None)
    config.save()
    assert Config.load().profile().token is None
