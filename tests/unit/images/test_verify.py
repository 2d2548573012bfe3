"""Which files the image store takes: a self-contained qcow2 only, one that makes QEMU
open no other file (no backing file, no external data file), judged from its header
and from what `qemu-img info` says, without qemu-img or QEMU ever opening a file the
image names."""

from __future__ import annotations

import copy
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nubis.errors import ImageRefused
from nubis.images import verify as verifying
from nubis.images.verify import ImageFacts, check_header, judge, verify
from tests.unit.images.hostile import fifo, hostile_image

MIB = 1024 * 1024
needs_qemu_img = pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img")

SELF_CONTAINED: dict[str, Any] = {
    "virtual-size": 1048576,
    "filename": "/data/images/img-x.partial",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": False,
            "refcount-bits": 16,
            "corrupt": False,
            "extended-l2": False,
        },
    },
    "dirty-flag": False,
}
"""What qemu-img 7.2 says of `qemu-img create -f qcow2 x.qcow2 1M`."""

DATA_FILE_REFUSED = (
    "the qcow2 image keeps its data in an external data file (victim.raw), which QEMU "
    "would open on the host; upload a self-contained one (qemu-img convert -O qcow2 IN OUT)"
)


def info_with(**data: object) -> dict[str, Any]:
    """SELF_CONTAINED, with these keys of its qcow2 format-specific data changed."""
    info = copy.deepcopy(SELF_CONTAINED)
    info["format-specific"]["data"].update(data)
    return info


def test_a_self_contained_qcow2_is_taken_with_its_virtual_size() -> None:
    assert judge(SELF_CONTAINED) == ImageFacts(virtual_size_bytes=1048576)


def test_a_qcow2_naming_an_external_data_file_is_refused() -> None:
    # As qemu-img 7.2 says it of `-o data_file=victim.raw,data_file_raw=on`.
    info = info_with(**{"data-file": "victim.raw", "data-file-raw": True})
    with pytest.raises(ImageRefused) as refused:
        judge(info)
    assert str(refused.value) == DATA_FILE_REFUSED


def test_a_qcow2_with_a_raw_data_file_flag_alone_is_refused() -> None:
    with pytest.raises(ImageRefused, match="external data file, which QEMU"):
        judge(info_with(**{"data-file-raw": True}))


def test_an_encrypted_qcow2_is_refused() -> None:
    info = info_with(encrypt={"format": "luks", "cipher-alg": "aes-256"})
    with pytest.raises(ImageRefused, match=r"^the qcow2 image is encrypted, and nubis holds"):
        judge(info)


def test_a_qcow2_marked_corrupt_is_refused() -> None:
    with pytest.raises(ImageRefused, match=r"^the qcow2 image is marked corrupt"):
        judge(info_with(corrupt=True))


def test_a_qcow2_feature_nubis_does_not_know_is_refused() -> None:
    with pytest.raises(ImageRefused) as refused:
        judge(info_with(**{"external-thing": "/dev/sda"}))
    assert str(refused.value) == ("the qcow2 image has external-thing, which nubis does not take")


def test_a_qcow2_with_a_backing_file_is_refused() -> None:
    info = {**SELF_CONTAINED, "backing-filename": "/var/lib/nubis/nubis.db"}
    with pytest.raises(ImageRefused, match=r"has a backing file \(/var/lib/nubis/nubis.db\)"):
        judge(info)


def test_an_answer_without_qcow2_features_is_refused() -> None:
    info = {key: value for key, value in SELF_CONTAINED.items() if key != "format-specific"}
    with pytest.raises(ImageRefused, match="said nothing of the qcow2 image's features"):
        judge(info)


def test_another_format_is_refused_with_its_name() -> None:
    with pytest.raises(ImageRefused, match=r"^the file is vmdk, not qcow2$"):
        judge({**SELF_CONTAINED, "format": "vmdk"})


def header(
    *,
    version: int = 3,
    backing: bytes = b"",
    encryption: int = 0,
    incompatible: int = 0,
    autoclear: int = 0,
    extensions: list[tuple[int, bytes]] | None = None,
) -> bytes:
    """The first cluster (64 KiB) of a qcow2 file, as its spec lays it out."""
    length = 72 if version == 2 else 112
    head = struct.pack(
        ">4sIQIIQIIQQIIQ", b"QFI\xfb", version, 0, len(backing), 16, MIB, encryption,
        1, 3 * 65536, 65536, 1, 0, 0,
    )  # fmt: skip
    if version == 3:
        head += struct.pack(">QQQII", incompatible, 0, autoclear, 4, length) + b"\0" * 8
    for kind, data in extensions or []:
        head += struct.pack(">II", kind, len(data)) + data + b"\0" * (-len(data) % 8)
    head += struct.pack(">II", 0, 0)
    if backing:
        at = len(head)
        head = head[:8] + struct.pack(">Q", at) + head[16:] + backing
    return head.ljust(65536, b"\0")


def test_a_plain_qcow2_header_is_taken() -> None:
    check_header(header())
    check_header(header(version=2))


def test_a_header_with_the_external_data_file_bit_is_refused_with_the_files_name() -> None:
    head = header(incompatible=1 << 2, extensions=[(0x44415441, b"victim.raw")])
    with pytest.raises(ImageRefused) as refused:
        check_header(head)
    assert str(refused.value) == DATA_FILE_REFUSED


def test_a_header_naming_a_data_file_without_its_bit_is_refused() -> None:
    with pytest.raises(ImageRefused, match=r"external data file \(/dev/sda\)"):
        check_header(header(extensions=[(0x44415441, b"/dev/sda")]))


def test_a_header_naming_a_data_file_in_a_version_2_image_is_refused() -> None:
    with pytest.raises(ImageRefused, match=r"external data file \(/dev/sda\)"):
        check_header(header(version=2, extensions=[(0x44415441, b"/dev/sda")]))


def test_a_header_with_the_raw_data_file_bit_is_refused() -> None:
    with pytest.raises(ImageRefused, match="external data file, which QEMU"):
        check_header(header(autoclear=1 << 1))


def test_a_header_with_a_backing_file_is_refused_with_its_name() -> None:
    with pytest.raises(ImageRefused, match=r"has a backing file \(json:\{\"driver\"\)"):
        check_header(header(backing=b'json:{"driver"'))


def test_an_encrypted_header_is_refused() -> None:
    with pytest.raises(ImageRefused, match=r"^the qcow2 image is encrypted"):
        check_header(header(encryption=2))


def test_a_header_with_an_unknown_incompatible_feature_is_refused() -> None:
    with pytest.raises(ImageRefused, match=r"features nubis does not take \(bits 0x20\)$"):
        check_header(header(incompatible=1 << 5))


def test_a_header_marked_corrupt_is_refused() -> None:
    with pytest.raises(ImageRefused, match=r"^the qcow2 image is marked corrupt"):
        check_header(header(incompatible=1 << 1))


def test_a_header_whose_extension_runs_past_the_cluster_is_refused() -> None:
    head = bytearray(header())
    head[112:120] = struct.pack(">II", 0x6803F857, 70000)
    with pytest.raises(ImageRefused, match=r"malformed \(an extension is too long\)"):
        check_header(bytes(head))


@pytest.mark.parametrize(
    ("start", "name"),
    [(b"KDMV\1\0\0\0", "vmdk"), (b"# Disk DescriptorFile\n", "vmdk"), (b"\0" * 512, "raw")],
)
def test_a_file_of_another_format_is_refused_before_qemu_img_reads_it(
    start: bytes, name: str
) -> None:
    with pytest.raises(ImageRefused, match=f"^the file is {name}, not qcow2$"):
        check_header(start.ljust(512, b"\0"))


@needs_qemu_img
def test_qemu_opens_the_data_file_an_image_names(tmp_path: Path) -> None:
    image = hostile_image(tmp_path)
    with fifo(tmp_path / "victim.raw") as victim_opened:
        subprocess.run(
            ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image), str(tmp_path / "o")],
            capture_output=True,
            check=False,
            timeout=30,
        )
        assert victim_opened()


@needs_qemu_img
def test_verify_refuses_an_image_with_a_data_file_and_never_opens_it(tmp_path: Path) -> None:
    image = hostile_image(tmp_path)
    with fifo(tmp_path / "victim.raw") as victim_opened:
        with pytest.raises(ImageRefused, match="keeps its data in an external data file"):
            verify(image)
        assert not victim_opened()


@needs_qemu_img
def test_qemu_img_info_as_verify_runs_it_does_not_open_the_data_file(tmp_path: Path) -> None:
    image = hostile_image(tmp_path)
    with fifo(tmp_path / "victim.raw") as victim_opened:
        answer = verifying.info(image)
        assert not victim_opened()
    with pytest.raises(ImageRefused, match="keeps its data in an external data file"):
        judge(answer)


@needs_qemu_img
def test_qemu_img_info_as_verify_runs_it_reads_a_file_as_qcow2_only(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 65536)
    with pytest.raises(ImageRefused, match="Image is not in qcow2 format"):
        verifying.info(raw)


@needs_qemu_img
def test_a_self_contained_qcow2_made_by_qemu_img_is_taken(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    subprocess.run(["qemu-img", "bitmap", "--add", str(image), "b0"], check=True)
    assert verify(image) == ImageFacts(virtual_size_bytes=64 * MIB)
