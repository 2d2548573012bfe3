"""Whether a host claims KVM: only when a guest was seen to boot under it, once per boot.

The probe is passed in (a real one boots QEMU; see tests/e2e/test_tiny_image.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nubis.agent import hardware
from nubis.guestimage import BuildError


@dataclass
class Probe:
    """A stand-in probe that answers `boots` (or raises `fails`) and counts its runs."""

    boots: bool = True
    fails: Exception | None = None
    takes: float = 0.0
    runs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> bool:
        with self.lock:
            self.runs += 1
        time.sleep(self.takes)
        if self.fails is not None:
            raise self.fails
        return self.boots


@dataclass
class Machine:
    state_dir: Path
    kvm: Path
    boot_id: Path

    def acceleration(self, probe: Callable[[], bool]) -> str:
        return hardware.acceleration(
            state_dir=self.state_dir, probe=probe, kvm_device=self.kvm, boot_id_file=self.boot_id
        )

    def reboot(self, boot_id: str) -> None:
        self.boot_id.write_text(boot_id + "\n")


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    kvm = tmp_path / "kvm"
    kvm.touch()
    found = Machine(tmp_path / "run", kvm, tmp_path / "boot_id")
    found.reboot("0b6e0a4c-1111-4e7d-9b0e-3f2f5a1d2c3b")
    return found


def test_without_dev_kvm_it_is_tcg_and_nothing_is_booted(machine: Machine) -> None:
    machine.kvm.unlink()
    probe = Probe(boots=True)
    assert machine.acceleration(probe) == "tcg"
    assert probe.runs == 0


def test_it_is_kvm_only_when_a_guest_reached_userspace_under_it(machine: Machine) -> None:
    assert machine.acceleration(Probe(boots=True)) == "kvm"


def test_a_guest_that_hangs_under_kvm_means_tcg(machine: Machine) -> None:
    assert machine.acceleration(Probe(boots=False)) == "tcg"
    verdict = json.loads((machine.state_dir / hardware.VERDICT_FILE).read_text())
    assert verdict["acceleration"] == "tcg"
    assert "did not reach userspace" in verdict["reason"]


def test_a_probe_that_cannot_be_built_means_tcg_not_a_crash(machine: Machine) -> None:
    failing = Probe(fails=BuildError("apt knows no package linux-image-amd64"))
    assert machine.acceleration(failing) == "tcg"
    verdict = json.loads((machine.state_dir / hardware.VERDICT_FILE).read_text())
    assert "apt knows no package" in verdict["reason"]


def test_the_verdict_is_kept_until_the_machine_reboots(machine: Machine) -> None:
    probe = Probe(boots=True)
    assert machine.acceleration(probe) == "kvm"
    # Later agents take the verdict as it is, whatever a probe would say now.
    assert machine.acceleration(Probe(boots=False)) == "kvm"
    assert probe.runs == 1
    machine.reboot("7c2d9e41-2222-4b8a-8c1d-5e6f7a8b9c0d")
    again = Probe(boots=False)
    assert machine.acceleration(again) == "tcg"
    assert again.runs == 1
    verdict = json.loads((machine.state_dir / hardware.VERDICT_FILE).read_text())
    assert verdict["boot_id"] == "7c2d9e41-2222-4b8a-8c1d-5e6f7a8b9c0d"


def test_an_unreadable_verdict_is_probed_again(machine: Machine) -> None:
    machine.state_dir.mkdir()
    (machine.state_dir / hardware.VERDICT_FILE).write_text("{not json")
    probe = Probe(boots=True)
    assert machine.acceleration(probe) == "kvm"
    assert probe.runs == 1
    (machine.state_dir / hardware.VERDICT_FILE).write_text(
        json.dumps({"boot_id": machine.boot_id.read_text().strip(), "acceleration": "xen"})
    )
    assert machine.acceleration(probe) == "kvm"
    assert probe.runs == 2


def test_agents_starting_at_once_probe_once(machine: Machine) -> None:
    probe = Probe(boots=False, takes=0.3)
    answers: list[str] = []
    agents = [
        threading.Thread(target=lambda: answers.append(machine.acceleration(probe)))
        for _ in range(4)
    ]
    for agent in agents:
        agent.start()
    for agent in agents:
        agent.join()
    assert answers == ["tcg"] * 4
    assert probe.runs == 1


def test_without_a_place_for_the_verdict_it_still_answers(machine: Machine) -> None:
    blocker = machine.state_dir.parent / "a-file"
    blocker.write_text("")
    homeless = Machine(blocker / "run", machine.kvm, machine.boot_id)
    probe = Probe(boots=True)
    assert homeless.acceleration(probe) == "kvm"
    assert homeless.acceleration(probe) == "kvm"
    assert probe.runs == 2


def test_decide_says_why() -> None:
    assert hardware.decide(False, Probe()) == ("tcg", "there is no /dev/kvm")
    assert hardware.decide(True, Probe(boots=True)) == (
        "kvm",
        "a guest reached userspace under KVM",
    )
