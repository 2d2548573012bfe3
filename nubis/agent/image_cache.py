"""The host's copies of the base images its VMs' disks are overlays of.

An image is fetched from the control plane on first use, in the background so that
one large download never holds up the VMs whose images are here. It is checked
against the size and SHA-256 the desired state names before it takes its final name,
so a file under its final name is always a verified one, also after a restart. It is
read-only (every VM's overlay reads it) and removed once no VM uses it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from nubis.protocol import ImageRef

log = logging.getLogger(__name__)

Fetch = Callable[[str], Iterator[bytes]]
"""The bytes of the image with this id, in chunks, as the control plane sends them."""

SUFFIX = ".qcow2"


class ImageCache:
    def __init__(self, root: Path, fetch: Fetch) -> None:
        self.root = Path(os.path.abspath(root))
        self._fetch = fetch
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Thread] = {}
        self._failures: dict[str, str] = {}

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}{SUFFIX}"

    def ready(self, image: ImageRef) -> Path | None:
        """The verified file of `image`, or None while it is being fetched (a fetch is
        started if none runs). A fetch that failed is tried again at the next call;
        `failure` says why it failed."""
        final = self.path(image.id)
        if final.exists():
            return final
        with self._lock:
            if image.id not in self._fetching:
                thread = threading.Thread(
                    target=self._download, args=(image,), name=f"fetch-{image.id}", daemon=True
                )
                self._fetching[image.id] = thread
                thread.start()
        return None

    def failure(self, image_id: str) -> str | None:
        """Why the last fetch of `image_id` failed, until one succeeds."""
        with self._lock:
            return self._failures.get(image_id)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the fetches under way (for tests and shutdown)."""
        with self._lock:
            threads = list(self._fetching.values())
        for thread in threads:
            thread.join(timeout)

    def cached(self) -> list[str]:
        """The ids of the images here."""
        if not self.root.is_dir():
            return []
        return sorted(p.name.removesuffix(SUFFIX) for p in self.root.glob(f"*{SUFFIX}"))

    def remove(self, image_id: str) -> bool:
        """Forget an image no VM uses any more; False if it was not here."""
        final = self.path(image_id)
        existed = final.exists()
        final.unlink(missing_ok=True)
        return existed

    def _download(self, image: ImageRef) -> None:
        final = self.path(image.id)
        partial = final.with_name(final.name + ".partial")
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            digest = hashlib.sha256()
            size = 0
            with partial.open("wb") as out:
                for chunk in self._fetch(image.id):
                    digest.update(chunk)
                    size += len(chunk)
                    if size > image.size_bytes:
                        raise ValueError(f"the control plane sent more than {image.size_bytes}")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size != image.size_bytes:
                raise ValueError(f"got {size} bytes, expected {image.size_bytes}")
            if digest.hexdigest() != image.sha256:
                raise ValueError(f"SHA-256 {digest.hexdigest()}, expected {image.sha256}")
            partial.chmod(0o400)
            partial.replace(final)
            with self._lock:
                self._failures.pop(image.id, None)
            log.info("image %s fetched (%d bytes)", image.id, size)
        except Exception as error:  # any failure is reported, and retried
            partial.unlink(missing_ok=True)
            reason = f"cannot fetch image {image.id}: {error}"
            log.warning("%s", reason)
            with self._lock:
                self._failures[image.id] = reason
        finally:
            with self._lock:
                self._fetching.pop(image.id, None)
