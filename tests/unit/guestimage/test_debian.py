"""Debian packages as parts: what apt says of them, and fetching them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nubis.guestimage import BuildError, debian
from nubis.guestimage.debian import Package

SHOW = """\
Package: dropbear-bin
Version: 2022.83-1+deb12u3
Architecture: amd64
Depends: libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), zlib1g:any | libz-alt
Description: lightweight SSH2 server and client - command line interface
 dropbear is a SSH 2 server and client designed to be small enough
 Package: this continuation line is not a field
SHA256: 44ac9aaae0105bca66ea4d457852bf97020ccab33d5c088b0e5c8668891290a0

Package: libcrypt1
Version: 1:4.4.33-2
Architecture: amd64
SHA256: 1111111111111111111111111111111111111111111111111111111111111111
"""


def test_apt_s_answer_gives_each_package_s_version_hash_and_needs() -> None:
    dropbear, crypt = debian.parse_show(SHOW)
    assert dropbear == Package(
        name="dropbear-bin",
        version="2022.83-1+deb12u3",
        architecture="amd64",
        sha256="44ac9aaae0105bca66ea4d457852bf97020ccab33d5c088b0e5c8668891290a0",
        depends=("libc6", "libcrypt1", "zlib1g"),
    )
    assert crypt.depends == ()
    # As `apt-get download` names it: the epoch's colon is escaped.
    assert crypt.file_name == "libcrypt1_1%3a4.4.33-2_amd64.deb"


def test_a_package_apt_says_too_little_of_is_an_error() -> None:
    with pytest.raises(BuildError, match="Version"):
        debian.parse_show("Package: half\nArchitecture: amd64\n")


def test_the_kernel_package_is_the_one_the_meta_package_depends_on() -> None:
    answer = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n"
    assert debian.kernel_package_from(answer) == "linux-image-6.1.0-57-amd64"
    with pytest.raises(BuildError, match="apt-get update"):
        debian.kernel_package_from("linux-image-amd64\n")


def test_a_recursive_depends_answer_lists_each_real_package_once() -> None:
    answer = (
        "dropbear-bin\n  Depends: libc6\n  Depends: <debconf-2.0>\n"
        "libc6\n  Depends: libgcc-s1\n<debconf-2.0>\nlibgcc-s1\n  Depends: libc6\n"
    )
    assert debian.closure_names_from(answer) == ["dropbear-bin", "libc6", "libgcc-s1"]


def test_a_cached_deb_with_apt_s_hash_is_used_as_it_is(tmp_path: Path) -> None:
    content = b"!<arch>\n a deb, as far as this test cares"
    package = Package("tiny-part", "1:2.0-1", "amd64", hashlib.sha256(content).hexdigest())
    (tmp_path / package.file_name).write_bytes(content)
    assert debian.fetch([package], tmp_path) == {"tiny-part": tmp_path / package.file_name}
