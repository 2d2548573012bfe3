"""Settings: defaults that work for `nubis up`, NUBIS_* variables that override them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from nubis.config import FENCE_ACT_SECONDS, EngineSettings, Settings, default_data_dir


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NUBIS_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("NUBIS_"):
            monkeypatch.delenv(name)


def test_database_defaults_to_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NUBIS_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'nubis.db'}"


def test_data_dir_defaults_to_the_default_data_dir() -> None:
    settings = Settings()
    assert settings.data_dir == default_data_dir()
    assert settings.database_url == f"sqlite:///{default_data_dir() / 'nubis.db'}"


def test_default_data_dir_is_var_lib_nubis_for_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root gets /var/lib/nubis")
    assert default_data_dir() == Path("/var/lib/nubis")


def test_database_url_from_the_environment_wins_over_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = "postgresql://nubis@db.example.net/nubis"
    monkeypatch.setenv("NUBIS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NUBIS_DATABASE_URL", url)
    settings = Settings()
    assert settings.database_url == url
    assert settings.data_dir == tmp_path


def test_service_defaults() -> None:
    settings = Settings()
    assert settings.api_host == "127.0.0.1"
    assert settings.api_port == 8765
    assert settings.worker_threads == 2
    assert settings.api_url == "http://127.0.0.1:8765"


def test_environment_sets_numbers_and_the_api_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBIS_API_HOST", "0.0.0.0")
    monkeypatch.setenv("NUBIS_API_PORT", "9000")
    monkeypatch.setenv("NUBIS_WORKER_THREADS", "8")
    monkeypatch.setenv("NUBIS_MAX_TRIES", "4")
    settings = Settings()
    assert settings.api_url == "http://0.0.0.0:9000"
    assert settings.worker_threads == 8
    assert settings.max_tries == 4


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("::1", "http://[::1]:8765"),
        ("::", "http://[::]:8765"),
        ("2001:db8::7", "http://[2001:db8::7]:8765"),
        ("localhost", "http://localhost:8765"),
        ("192.0.2.1", "http://192.0.2.1:8765"),
    ],
)
def test_api_url_brackets_an_ipv6_host(host: str, url: str) -> None:
    assert Settings(api_host=host).api_url == url


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NUBIS_API_PORT", "0"),
        ("NUBIS_API_PORT", "65536"),
        ("NUBIS_API_PORT", "http"),
        ("NUBIS_WORKER_THREADS", "abc"),
        ("NUBIS_WORKER_THREADS", "0"),
        ("NUBIS_WORKER_THREADS", "257"),
        ("NUBIS_LEASE_SECONDS", "0"),
        ("NUBIS_MAX_TRIES", "0"),
        ("NUBIS_STRAND_RETENTION_SECONDS", "-1"),
    ],
)
def test_invalid_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    fields = {str(error["loc"][0]) for error in caught.value.errors()}
    assert fields == {variable.removeprefix("NUBIS_").lower()}


def test_engine_settings_ignore_the_service_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBIS_API_PORT", "0")
    monkeypatch.setenv("NUBIS_IDLE_WAIT_SECONDS", "2.5")
    assert EngineSettings().idle_wait_seconds == 2.5


def test_failover_defaults_leave_a_fenced_host_time_to_stop_its_vms() -> None:
    settings = Settings()
    assert (settings.host_unreachable_seconds, settings.host_fence_seconds) == (5.0, 10.0)
    assert settings.host_dead_seconds == 20.0
    fenced_by = settings.host_fence_seconds + settings.host_unreachable_seconds + FENCE_ACT_SECONDS
    assert fenced_by <= settings.host_dead_seconds


def test_a_fence_time_too_close_to_the_dead_window_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NUBIS_HOST_FENCE_SECONDS", "15")
    with pytest.raises(ValidationError, match="NUBIS_HOST_FENCE_SECONDS"):
        Settings()
    monkeypatch.setenv("NUBIS_HOST_DEAD_SECONDS", "23")
    assert Settings().host_dead_seconds == 23
