"""A qcow2 image that names an external data file, and a FIFO that tells whether
anything opened it: what the tests of the image store's check need to show that the
file an image names is never opened."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def fifo(path: Path) -> Iterator[Callable[[], bool]]:
    """`path` as a FIFO, and whether anything opened it: a writer waits on it, and its
    open returns only once a reader opens the FIFO; it waits again for each next
    reader, until the test lets it go at the end."""
    os.mkfifo(path)
    opened, released = threading.Event(), threading.Event()

    def write() -> None:
        while not released.is_set():
            descriptor = os.open(path, os.O_WRONLY)
            if not released.is_set():
                opened.set()
            os.close(descriptor)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield lambda: opened.wait(0.5)
    finally:
        released.set()
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        writer.join(5)
        os.close(reader)


def hostile_image(directory: Path) -> Path:
    """`qemu-img create -f qcow2 -o data_file=VICTIM,data_file_raw=on` in `directory`,
    VICTIM (`victim.raw` there) removed again, for the test to make it a FIFO."""
    image, victim = directory / "x.qcow2", directory / "victim.raw"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2",
         "-o", f"data_file={victim},data_file_raw=on", str(image), "1M"],
        check=True,
    )  # fmt: skip
    victim.unlink()
    return image
