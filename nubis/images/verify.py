"""What an uploaded file is, and whether nubis takes it.

Only a self-contained qcow2 is taken: an image that makes QEMU open no file but
itself. A VM's disk is an overlay of the image that QEMU, as root on the host, opens
with everything the image names, so an image naming another file would hand the VM
that file (the host's disk, the control plane's database, another tenant's disk):

- a backing file;
- an external data file (qcow2 v3 `data_file`, with or without `data_file_raw`): the
  guest's clusters live in the file it names, read and written there (the class of
  OpenStack's CVE-2024-32498);
- any other format: raw has no header to check, vmdk's descriptor names extent files,
  and so on.

Encrypted and corrupt images are refused too (nubis holds no key; QEMU will not open a
corrupt image), and so is any feature nubis does not know.

The file is judged twice, and `qemu-img` never reads a file the first judgement
refuses:

1. `check_header`: the qcow2 header, read here as bytes: magic, version, backing file,
   encryption, the incompatible and autoclear feature bits and the header extensions
   (the data file's name is one). Builds of `qemu-img info` without the fix of
   CVE-2024-4467 open an image's data file themselves, so such a file must not reach
   it at all.
2. `judge`: what `qemu-img info -f qcow2 --output=json` says of it. The format is
   forced (a file is never probed, so never read as some other format) and the path is
   absolute (never taken for a `json:` or protocol name); what qcow2's format-specific
   data says must all be on an allowlist.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nubis.errors import ImageRefused

INFO_TIMEOUT_SECONDS = 60.0

QCOW2_MAGIC = b"QFI\xfb"
HEADER_READ_BYTES = 2 * 1024 * 1024
"""qcow2's largest cluster: the header and its extensions lie within the first one."""

_HEADER = struct.Struct(">4sIQIIQI")
"""magic, version, backing file offset and size, cluster bits, size, encryption."""
_HEADER_V2_BYTES = 72
_FEATURES = struct.Struct(">QQQII")
"""At 72 in version 3: incompatible, compatible, autoclear features, refcount order,
header length."""
_EXTENSION = struct.Struct(">II")

INCOMPATIBLE_DIRTY = 1 << 0
INCOMPATIBLE_CORRUPT = 1 << 1
INCOMPATIBLE_DATA_FILE = 1 << 2
INCOMPATIBLE_COMPRESSION_TYPE = 1 << 3
INCOMPATIBLE_EXTENDED_L2 = 1 << 4
TAKEN_INCOMPATIBLE = INCOMPATIBLE_DIRTY | INCOMPATIBLE_COMPRESSION_TYPE | INCOMPATIBLE_EXTENDED_L2
AUTOCLEAR_BITMAPS = 1 << 0
AUTOCLEAR_DATA_FILE_RAW = 1 << 1
TAKEN_AUTOCLEAR = AUTOCLEAR_BITMAPS
EXTENSION_END = 0
EXTENSION_DATA_FILE = 0x44415441

TAKEN_QCOW2_DATA = frozenset(
    {"compat", "compression-type", "lazy-refcounts", "refcount-bits", "corrupt",
     "extended-l2", "bitmaps"}
)  # fmt: skip
"""What `format-specific` data of a qcow2 may hold: everything that stays inside the
file. Anything else (`data-file`, `data-file-raw`, `encrypt`, a key of a later QEMU)
is refused."""

_OTHER_FORMATS = (
    (0, b"KDMV", "vmdk"),
    (0, b"# Disk DescriptorFile", "vmdk"),
    (0, b"conectix", "vpc"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"QED\0", "qed"),
    (64, b"\x7f\x10\xda\xbe", "vdi"),
)
"""Signatures of formats nubis refuses, to name them; any other file is raw to QEMU."""

CONVERT = "upload a self-contained one (qemu-img convert -O qcow2 IN OUT)"


@dataclass(frozen=True)
class ImageFacts:
    virtual_size_bytes: int


def verify(path: Path) -> ImageFacts:
    """The facts of a self-contained qcow2 image; ImageRefused says why it is not one."""
    with path.open("rb") as image:
        check_header(image.read(HEADER_READ_BYTES))
    return judge(info(path))


def info(path: Path) -> dict[str, object]:
    """What `qemu-img info` says of `path`, read as qcow2 and nothing else."""
    try:
        done = subprocess.run(
            ["qemu-img", "info", "-f", "qcow2", "--output=json", os.path.abspath(path)],
            capture_output=True,
            text=True,
            timeout=INFO_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageRefused("qemu-img could not read the file in time") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or ["unreadable"]
        raise ImageRefused(f"qemu-img cannot read the file: {reason[0]}")
    answer = json.loads(done.stdout)
    if not isinstance(answer, dict):
        raise ImageRefused("qemu-img said nothing of the file")
    return answer


def check_header(head: bytes) -> None:
    """Refuse (ImageRefused) unless `head`, the start of a file, is the header of a
    qcow2 (version 2 or 3) that names no other file and uses only known features."""
    if len(head) < _HEADER_V2_BYTES or not head.startswith(QCOW2_MAGIC):
        raise ImageRefused(f"the file is {_format_of(head)}, not qcow2")
    _, version, backing_offset, backing_size, cluster_bits, _, encryption = _HEADER.unpack_from(
        head
    )
    if version not in (2, 3):
        raise ImageRefused(f"the file is qcow version {version}, not qcow2 (version 2 or 3)")
    if not 9 <= cluster_bits <= 21:
        raise ImageRefused("the qcow2 header is malformed (its cluster size)")
    if backing_offset or backing_size:
        name = head[backing_offset : backing_offset + min(backing_size, 1023)]
        raise _backing_file(name.decode(errors="replace"))
    if encryption:
        raise _encrypted()
    extensions_at = _HEADER_V2_BYTES
    if version == 3:
        if len(head) < _HEADER_V2_BYTES + _FEATURES.size:
            raise ImageRefused("the qcow2 header is malformed (cut short)")
        incompatible, _, autoclear, _, header_length = _FEATURES.unpack_from(head, 72)
        if header_length < _HEADER_V2_BYTES + _FEATURES.size:
            raise ImageRefused("the qcow2 header is malformed (its length)")
        if incompatible & INCOMPATIBLE_DATA_FILE or autoclear & AUTOCLEAR_DATA_FILE_RAW:
            raise _data_file(_data_file_name(head, header_length, 1 << cluster_bits))
        if incompatible & INCOMPATIBLE_CORRUPT:
            raise _corrupt()
        unknown = incompatible & ~TAKEN_INCOMPATIBLE
        if unknown:
            raise ImageRefused(
                f"the qcow2 image uses incompatible features nubis does not take "
                f"(bits {unknown:#x})"
            )
        extensions_at = header_length
    data_file = _data_file_name(head, extensions_at, 1 << cluster_bits)
    if data_file is not None:
        raise _data_file(data_file)


def judge(info: dict[str, object]) -> ImageFacts:
    """Take or refuse what `qemu-img info -f qcow2 --output=json` said."""
    found = info.get("format")
    if found != "qcow2":
        raise ImageRefused(f"the file is {found or 'of no known format'}, not qcow2")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise _backing_file(info.get("backing-filename") or info.get("full-backing-filename"))
    if info.get("encrypted"):
        raise _encrypted()
    specific = info.get("format-specific")
    data = specific.get("data") if isinstance(specific, dict) else None
    if not isinstance(specific, dict) or specific.get("type") != "qcow2":
        raise ImageRefused("qemu-img said nothing of the qcow2 image's features")
    if not isinstance(data, dict):
        raise ImageRefused("qemu-img said nothing of the qcow2 image's features")
    if "data-file" in data or data.get("data-file-raw"):
        raise _data_file(data.get("data-file"))
    if "encrypt" in data:
        raise _encrypted()
    if data.get("corrupt"):
        raise _corrupt()
    unknown = sorted(set(data) - TAKEN_QCOW2_DATA)
    if unknown:
        raise ImageRefused(f"the qcow2 image has {', '.join(unknown)}, which nubis does not take")
    size = info.get("virtual-size")
    if not isinstance(size, int) or size <= 0:
        raise ImageRefused("the qcow2 image has no virtual size")
    return ImageFacts(virtual_size_bytes=size)


def _data_file_name(head: bytes, offset: int, cluster_size: int) -> str | None:
    """The external data file named in the header extensions from `offset` on (as QEMU
    reads them: up to the end of the first cluster or an end mark), if one is."""
    while offset < cluster_size:
        if offset + _EXTENSION.size > len(head):
            raise ImageRefused("the qcow2 header is malformed (its extensions are cut short)")
        kind, length = _EXTENSION.unpack_from(head, offset)
        offset += _EXTENSION.size
        if kind == EXTENSION_END:
            return None
        if length > cluster_size - offset or offset + length > len(head):
            raise ImageRefused("the qcow2 header is malformed (an extension is too long)")
        if kind == EXTENSION_DATA_FILE:
            return head[offset : offset + min(length, 1023)].decode(errors="replace")
        offset += (length + 7) & ~7
    return None


def _format_of(head: bytes) -> str:
    for at, signature, name in _OTHER_FORMATS:
        if head[at : at + len(signature)] == signature:
            return name
    return "raw"


def _backing_file(name: object) -> ImageRefused:
    return ImageRefused(f"the qcow2 image has a backing file ({name}); {CONVERT}")


def _data_file(name: object) -> ImageRefused:
    named = f" ({name})" if name else ""
    return ImageRefused(
        f"the qcow2 image keeps its data in an external data file{named}, which QEMU "
        f"would open on the host; {CONVERT}"
    )


def _encrypted() -> ImageRefused:
    return ImageRefused(
        "the qcow2 image is encrypted, and nubis holds no key for it; upload an "
        "unencrypted one (qemu-img convert -O qcow2 --object secret,... IN OUT)"
    )


def _corrupt() -> ImageRefused:
    return ImageRefused("the qcow2 image is marked corrupt; repair it (qemu-img check -r all)")
