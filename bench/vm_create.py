"""How long a VM takes from the create request to its QEMU process, and to SSH.

    .venv/bin/python bench/vm_create.py [--quick]        (root)

The whole cloud runs as `nubis up` (API, worker and agent in one process, SQLite)
inside a network namespace of its own, made and removed here. The tiny image is built
from the cached Debian packages and uploaded as a project image. A first VM (the
keeper) runs throughout, as on any host that already runs VMs: the host network is
up and the image is in the host's cache, so what is measured is the control plane and
the agent, not a first image download.

- create to QEMU: from sending `POST /vms` to the VM's QEMU pidfile naming a live
  process, for 20 VMs one after another (each deleted, and gone, before the next);
- create to SSH: from `POST /vms` to `ssh root@<address> hostname` answering with the
  VM's name, for a few tiny guests under TCG.

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nubis.guestimage.debian import DEB_CACHE  # noqa: E402
from nubis.guestimage.tiny import build  # noqa: E402

NUBIS = REPO / ".venv" / "bin" / "nubis"
PYTHON = REPO / ".venv" / "bin" / "python"
PORT = 8765
API = f"http://127.0.0.1:{PORT}"
INNER = "--inside"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer SSH runs (under 2 min)")
    parser.add_argument(INNER, dest="inside", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        figures = measure(Path(args.inside), quick=args.quick)
        print(json.dumps(figures))
        return
    if os.geteuid() != 0:
        sys.exit("run this as root: it makes a network namespace")
    suffix = secrets.token_hex(2)
    namespace, workdir = f"nbb-{suffix}", Path(f"/tmp/nbb-{suffix}")
    workdir.mkdir(mode=0o700)
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        command = [str(PYTHON), __file__, INNER, str(workdir)]
        if args.quick:
            command.append("--quick")
        done = subprocess.run(["ip", "netns", "exec", namespace, *command], check=False)
    finally:
        _empty(namespace)
        subprocess.run(["ip", "netns", "del", namespace], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(done.returncode)


def _empty(namespace: str) -> None:
    """Kill what runs in the namespace: `nubis up`, and the QEMU and radvd it left."""
    pids = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-9", pid], check=False)


def measure(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Runs inside the namespace: start the cloud, time the VMs, stop the cloud."""
    env = {
        **os.environ,
        "HOME": str(workdir),
        "NUBIS_DATA_DIR": str(workdir / "data"),
        "NUBIS_TINY_IMAGE": "false",
        "NUBIS_API_PORT": str(PORT),
    }
    up_log = (workdir / "up.log").open("w")
    up = subprocess.Popen([str(NUBIS), "up"], env=env, stdout=up_log, stderr=subprocess.STDOUT)
    try:
        image = workdir / "tiny.qcow2"
        started = time.monotonic()
        build(image, cache=DEB_CACHE)
        print(f"tiny image built in {time.monotonic() - started:.1f} s", file=sys.stderr)
        client = _signed_in(workdir, env)
        key = workdir / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        client.post(
            "/ssh-keys", json={"name": "bench", "public_key": key.with_suffix(".pub").read_text()}
        ).raise_for_status()
        client.post("/images", json={"name": "tiny"}).raise_for_status()
        with image.open("rb") as body:
            client.put("/images/tiny/file", content=body).raise_for_status()
        agent_vms = workdir / "data" / "agent" / "vms"
        _create(client, "keeper")
        _wait_state(client, "keeper", "running", 120)
        to_qemu, answered = [], []
        for number in range(20):
            name = f"q{number}"
            sent = time.perf_counter()
            vm = _create(client, name)
            answered.append(time.perf_counter() - sent)
            _wait_pidfile(agent_vms / vm["id"] / "qemu.pid", 30)
            to_qemu.append(time.perf_counter() - sent)
            client.delete(f"/vms/{name}").raise_for_status()
            _wait_gone(client, name, agent_vms / vm["id"], 60)
        to_ssh = []
        for number in range(2 if quick else 5):
            name = f"s{number}"
            sent = time.perf_counter()
            vm = _create(client, name)
            _wait_ssh(key, vm["nics"][0]["address"], name, 120)
            to_ssh.append(time.perf_counter() - sent)
            client.delete(f"/vms/{name}").raise_for_status()
            _wait_gone(client, name, agent_vms / vm["id"], 60)
        return {
            "create_to_qemu_p50_ms": round(statistics.median(to_qemu) * 1000, 1),
            "create_to_qemu_p95_ms": round(_p95(to_qemu) * 1000, 1),
            "create_to_qemu_max_ms": round(max(to_qemu) * 1000, 1),
            "create_answered_p50_ms": round(statistics.median(answered) * 1000, 1),
            "create_to_ssh_p50_s": round(statistics.median(to_ssh), 1),
            "create_to_ssh_max_s": round(max(to_ssh), 1),
            "vms_to_qemu": len(to_qemu),
            "vms_to_ssh": len(to_ssh),
        }
    finally:
        up.terminate()
        up.wait(30)
        up_log.close()


def _signed_in(workdir: Path, env: dict[str, str]) -> httpx.Client:
    deadline = time.monotonic() + 60
    while "password" not in (log := (workdir / "up.log").read_text()):
        if time.monotonic() > deadline:
            sys.exit(f"nubis up did not come up:\n{log}")
        time.sleep(0.2)
    password = log.split("and the password ", 1)[1].split()[0]
    while True:
        try:
            httpx.get(f"{API}/v1/health").raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    nubis = [str(NUBIS)]
    subprocess.run(
        [*nubis, "login", "--email", "admin@localhost", "--api-url", API, "--password-stdin"],
        input=password, text=True, env=env, check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run([*nubis, "project", "create", "bench"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*nubis, "token", "create", "bench", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return httpx.Client(
        base_url=f"{API}/v1/projects/bench",
        headers={"Authorization": f"Bearer {json.loads(token.stdout)['secret']}"},
        timeout=60,
    )


def _create(client: httpx.Client, name: str) -> dict[str, Any]:
    answer = client.post(
        "/vms", json={"name": name, "image": "tiny", "cores": 1, "memory": "128M", "disk": "1G"}
    )
    answer.raise_for_status()
    vm: dict[str, Any] = answer.json()
    return vm


def _wait_state(client: httpx.Client, name: str, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := client.get(f"/vms/{name}").json()["state"]) != state:
        if time.monotonic() > deadline:
            sys.exit(f"VM {name} is {seen}, not {state}, after {timeout} s")
        time.sleep(0.1)


def _wait_pidfile(pidfile: Path, timeout: float) -> None:
    """Until the pidfile names a live process (QEMU writes it once it is set up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if Path(f"/proc/{int(pidfile.read_text())}").exists():
                return
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"no QEMU at {pidfile} after {timeout} s")
        time.sleep(0.001)


def _wait_gone(client: httpx.Client, name: str, vm_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/vms/{name}").status_code != 404 or vm_dir.exists():
        if time.monotonic() > deadline:
            sys.exit(f"VM {name} still there after {timeout} s")
        time.sleep(0.1)


def _wait_ssh(key: Path, address: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    command = [
        "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", f"root@{address}", "hostname",
    ]  # fmt: skip
    while True:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        if done.returncode == 0 and done.stdout.strip() == name:
            return
        if time.monotonic() > deadline:
            sys.exit(f"no SSH into {name} at {address} after {timeout} s: {done.stderr.strip()}")
        time.sleep(0.5)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
