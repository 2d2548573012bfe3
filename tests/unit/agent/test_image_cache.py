from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nubis.agent.image_cache import ImageCache
from nubis.protocol import ImageRef

CONTENT = b"qcow2 pretend bytes " * 1000


def ref(content: bytes = CONTENT, image_id: str = "img-one") -> ImageRef:
    return ImageRef(
        id=image_id,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        virtual_size_bytes=1024**3,
    )


class Source:
    """The control plane's side: serves `content` for every image, counting fetches."""

    def __init__(self, content: bytes = CONTENT) -> None:
        self.content = content
        self.fetches = 0

    def __call__(self, image_id: str) -> Iterator[bytes]:
        self.fetches += 1
        for start in range(0, len(self.content), 4096):
            yield self.content[start : start + 4096]


def fetched(cache: ImageCache, image: ImageRef) -> Path | None:
    """The image's file once the fetch `ready` starts is over (None if it failed)."""
    assert cache.ready(image) is None
    cache.wait(10)
    path = cache.path(image.id)
    return path if path.exists() else None


def test_an_image_is_fetched_once_and_kept_read_only(tmp_path: Path) -> None:
    source = Source()
    cache = ImageCache(tmp_path, source)
    path = fetched(cache, ref())
    assert path is not None
    assert path.read_bytes() == CONTENT
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert cache.ready(ref()) == path
    assert source.fetches == 1
    assert cache.cached() == ["img-one"]


def test_a_restarted_agent_trusts_what_took_its_final_name(tmp_path: Path) -> None:
    fetched(ImageCache(tmp_path, Source()), ref())
    source = Source()
    assert ImageCache(tmp_path, source).ready(ref()) is not None
    assert source.fetches == 0


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        (CONTENT[:-1] + b"X", "SHA-256"),
        (CONTENT[:-10], f"expected {len(CONTENT)}"),
        (CONTENT + b"more", f"more than {len(CONTENT)}"),
    ],
)
def test_a_file_that_is_not_the_image_is_refused_and_tried_again(
    tmp_path: Path, served: bytes, reason: str
) -> None:
    source = Source(served)
    cache = ImageCache(tmp_path, source)
    assert fetched(cache, ref()) is None
    failure = cache.failure("img-one")
    assert failure is not None
    assert reason in failure
    assert list(tmp_path.iterdir()) == []
    source.content = CONTENT
    assert fetched(cache, ref()) is not None
    assert cache.failure("img-one") is None
    assert source.fetches == 2


def test_a_broken_transfer_leaves_no_partial_file(tmp_path: Path) -> None:
    def broken(image_id: str) -> Iterator[bytes]:
        yield CONTENT[:100]
        raise ConnectionError("the control plane went away")

    cache = ImageCache(tmp_path, broken)
    assert fetched(cache, ref()) is None
    assert "went away" in (cache.failure("img-one") or "")
    assert list(tmp_path.iterdir()) == []


def test_removing_an_image_forgets_it(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path, Source())
    fetched(cache, ref())
    assert cache.remove("img-one") is True
    assert cache.cached() == []
    assert cache.remove("img-one") is False
