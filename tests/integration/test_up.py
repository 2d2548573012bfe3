"""`nubis up`: the whole control plane in one process, started and stopped as a user does."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

START_SECONDS = 30.0
STOP_SECONDS = 15.0
TINY_SECONDS = 240.0
"""Building the tiny image takes about 15 s with the Debian packages cached, longer
when they have to be downloaded first."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nubis up exited with {process.returncode}:\n{log.read_text()}")
        try:
            response = httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok", "database": "sqlite"}
        return
    pytest.fail(f"{url} did not answer within {START_SECONDS} s:\n{log.read_text()}")


def _up_then_stop(
    data_dir: Path,
    logs: Path,
    stop: signal.Signals = signal.SIGINT,
    while_up: Callable[[str, str], None] | None = None,
    *,
    tiny: bool = False,
) -> Run:
    """Start `nubis up`, wait until its API is healthy, call `while_up(api_url, stdout)`,
    send `stop`, wait for the exit. `tiny`: let it build the tiny image."""
    port = _free_port()
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / "stdout", logs / "stderr"
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("NUBIS_")
    }
    environment.update(
        NUBIS_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), NUBIS_TINY_IMAGE=str(tiny).lower()
    )
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "nubis", "up", "--port", str(port)],
            env=environment,
            cwd=REPO,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}/v1/health", stderr_path)
        output = stdout_path.read_text()
        assert "nubis is up" in output
        assert f"http://127.0.0.1:{port}/v1" in output
        assert f"console    http://127.0.0.1:{port}/ " in output
        home = httpx.get(f"http://127.0.0.1:{port}/", timeout=10.0)
        assert (home.status_code, home.headers["location"]) == (303, "/login?next=/")
        assert "<h1>Sign in</h1>" in httpx.get(f"http://127.0.0.1:{port}/login", timeout=10.0).text
        if while_up is not None:
            while_up(f"http://127.0.0.1:{port}", output)
        process.send_signal(stop)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"nubis up did not stop within {STOP_SECONDS} s after {stop.name}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return Run(process.returncode, stdout_path.read_text(), stderr_path.read_text())


@pytest.mark.slow
def test_up_serves_the_api_until_interrupted_and_starts_again_on_its_data(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    first = _up_then_stop(data_dir, tmp_path / "first")
    assert first.returncode == 0, first.stderr
    assert "nubis stopped" in first.stdout
    assert "Traceback" not in first.stderr
    assert "Running upgrade  -> 0001" in first.stderr
    assert (data_dir / "nubis.db").is_file()

    second = _up_then_stop(data_dir, tmp_path / "second")
    assert second.returncode == 0, second.stderr
    assert "nubis stopped" in second.stdout
    assert "Traceback" not in second.stderr
    assert "Running upgrade" not in second.stderr
    assert (data_dir / "nubis.db").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_up_exits_cleanly_when_asked_to_stop(tmp_path: Path, stop: signal.Signals) -> None:
    run = _up_then_stop(tmp_path / "data", tmp_path / "logs", stop)
    assert "nubis stopped" in run.stdout
    assert run.returncode == 0


def _admin_list(api_url: str, token: str, what: str) -> list[dict[str, str]]:
    """What `nubis admin WHAT list` shows the operator (through the API, with their token)."""
    environment = {"NUBIS_API_URL": api_url, "NUBIS_TOKEN": token, "PYTHONPATH": str(REPO)}
    listed = subprocess.run(
        [sys.executable, "-m", "nubis", "admin", what, "list", "--json"],
        env={**os.environ, **environment},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    found: list[dict[str, str]] = json.loads(listed.stdout)
    return found


@pytest.mark.slow
def test_up_on_a_new_data_dir_makes_an_operator_joins_this_machine_and_adds_tiny(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    logins: list[int] = []

    def log_in(api_url: str, output: str) -> None:
        email = re.search(r"nubis login --email (\S+)", output)
        password = re.search(r"the password (\S+) ", output)
        assert email and password, output
        answer = httpx.post(
            f"{api_url}/v1/auth/token",
            json={"email": email[1], "password": password[1]},
            timeout=10.0,
        )
        logins.append(answer.status_code)
        token = answer.json()["secret"]
        me = httpx.get(
            f"{api_url}/v1/users/me",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
        )
        assert me.json()["is_operator"] is True
        deadline = time.monotonic() + START_SECONDS
        while not (listed := _admin_list(api_url, token, "host")) and time.monotonic() < deadline:
            time.sleep(0.5)  # the agent joins once the API answers
        (local,) = listed
        assert (local["location"], local["health"]) == ("local", "online")
        deadline = time.monotonic() + TINY_SECONDS
        # Built in the background, then registered: `uploading` while its file is copied,
        # `verifying` while its header is read.
        while time.monotonic() < deadline:
            images = _admin_list(api_url, token, "image")
            if images and all(image["state"] in ("active", "failed") for image in images):
                break
            time.sleep(1.0)
        assert [(i["name"], i["state"]) for i in images] == [("tiny", "active")]

    first = _up_then_stop(data_dir, tmp_path / "first", while_up=log_in, tiny=True)
    assert first.returncode == 0, first.stderr
    assert logins == [201]
    # Its own agent starts once the API listens: it never finds it closed.
    assert "cannot reach" not in first.stderr + first.stdout
    assert first.stdout.count("An operator account was made") == 1
    assert stat.S_IMODE((data_dir / "secret.key").stat().st_mode) == 0o600

    second = _up_then_stop(data_dir, tmp_path / "second")
    assert second.returncode == 0, second.stderr
    assert "operator account" not in second.stdout
    assert "password" not in second.stdout
