"""Fixtures of the end-to-end tests: whole clouds whose hosts are network namespaces."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from nubis.guestimage import tiny
from tests.e2e.cloud import Cloud
from tests.e2e.processes import checked

requires_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)
"""For tests that make namespaces, links and clouds."""

CloudFactory = Callable[..., Cloud]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Kept so a fixture's teardown knows whether the test failed.
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture
def cloud_factory(request: pytest.FixtureRequest) -> Iterator[CloudFactory]:
    """`cloud_factory(hosts, **options)`: a started Cloud (see Cloud for the options).
    Every cloud it made is removed at teardown; the logs are printed if the test failed."""
    clouds: list[Cloud] = []

    def make(hosts: int, **options: Any) -> Cloud:
        cloud = Cloud(hosts, **options)
        cloud.start()
        clouds.append(cloud)
        return cloud

    yield make
    failures = []
    for cloud in reversed(clouds):
        try:
            cloud.close(show_logs=_failed(request))
        except Exception as error:  # every cloud is closed, whatever the others do
            failures.append(error)
    if failures:
        raise failures[0]


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("tiny") / "tiny.qcow2")


@pytest.fixture
def vm_cloud(cloud_factory: CloudFactory, tiny_image: Path) -> CloudFactory:
    """`vm_cloud(hosts, **options)`: a started cloud with the public image `tiny` and
    the user's SSH key (its private half at `guests.key_of(cloud)`) in their project."""
    from tests.e2e import guests  # noqa: PLC0415 (guests imports this module)

    def make(hosts: int, **options: Any) -> Cloud:
        cloud = cloud_factory(hosts, **options)
        checked(cloud.admin("image", "add", str(tiny_image), "--name", guests.IMAGE))
        guests.add_key(cloud)
        return cloud

    return make
