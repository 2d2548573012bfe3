"""What an uploaded file is, as `qemu-img info` sees it, and whether nubis takes it.

Only qcow2 without a backing file is taken: a VM disk is an overlay of the image, and
a backing file would point at a path on the control plane (or anywhere at all).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nubis.errors import ImageRefused

INFO_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class ImageFacts:
    virtual_size_bytes: int


def verify(path: Path) -> ImageFacts:
    """The facts of a qcow2 image without a backing file; ImageRefused says why not."""
    try:
        done = subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)],
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
    return judge(json.loads(done.stdout))


def judge(info: dict[str, object]) -> ImageFacts:
    """Take or refuse what `qemu-img info --output=json` said."""
    found = info.get("format")
    if found != "qcow2":
        raise ImageRefused(f"the file is {found or 'of no known format'}, not qcow2")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageRefused(
            f"the qcow2 image has a backing file ({info.get('backing-filename')}); "
            "upload a self-contained one (qemu-img convert -O qcow2 IN OUT)"
        )
    size = info.get("virtual-size")
    if not isinstance(size, int) or size <= 0:
        raise ImageRefused("the qcow2 image has no virtual size")
    return ImageFacts(virtual_size_bytes=size)
