"""Debian packages as the tiny guest's parts: found with apt-cache, fetched with
`apt-get download` into a cache, unpacked with `dpkg-deb -x`, never installed; and
the build tools run on them (`run`).

What the packages' files need is read from the files themselves (`elf.py`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nubis.guestimage import BuildError

DEB_CACHE = Path("/var/cache/nubis/debs")
LOCK_FILE = ".lock"
KERNEL_META = "linux-image-amd64"
"""The package that depends on the current kernel of the release."""
COMMAND_TIMEOUT = 600.0


def run(
    command: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Run a build tool; its output, or a BuildError with what it said."""
    try:
        done = subprocess.run(
            list(command),
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{command[0]} did not finish within {COMMAND_TIMEOUT:g} s") from None
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        raise BuildError(f"{' '.join(command[:2])} failed: {said}")
    return done.stdout


@dataclass(frozen=True)
class Package:
    """The version of a package that apt would take (its candidate)."""

    name: str
    version: str
    architecture: str
    sha256: str
    depends: tuple[str, ...] = ()
    """The packages it needs (of alternatives, the first)."""

    @property
    def file_name(self) -> str:
        """Its name in the cache, as `apt-get download` writes it."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def depends_names(field: str) -> tuple[str, ...]:
    """Package names of a Depends field: `a (>= 1), b | c` gives (a, b)."""
    names = []
    for clause in field.split(","):
        first = clause.split("|")[0].strip()
        if first:
            names.append(re.split(r"[\s(:\[]", first, maxsplit=1)[0])
    return tuple(names)


def parse_show(text: str) -> list[Package]:
    """The packages of `apt-cache show` output (stanzas of `Field: value` lines)."""
    packages = []
    for stanza in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "Package" not in fields:
            continue
        try:
            packages.append(
                Package(
                    name=fields["Package"],
                    version=fields["Version"],
                    architecture=fields["Architecture"],
                    sha256=fields["SHA256"],
                    depends=depends_names(fields.get("Depends", "")),
                )
            )
        except KeyError as missing:
            name = fields["Package"]
            raise BuildError(f"apt-cache says nothing of {missing} for {name}") from None
    return packages


def kernel_package_from(depends_output: str, meta: str = KERNEL_META) -> str:
    """The kernel package of `apt-cache depends linux-image-amd64` output."""
    flavour = meta.removeprefix("linux-image-")
    pattern = re.compile(rf"^\s*Depends:\s*(linux-image-[0-9][^\s]*-{re.escape(flavour)})\s*$")
    for line in depends_output.splitlines():
        found = pattern.match(line)
        if found:
            return found.group(1)
    raise BuildError(f"{meta} depends on no kernel package; is `apt-get update` done?")


def kernel_package(meta: str = KERNEL_META) -> str:
    """The `linux-image-<abi>-amd64` package the release's current kernel is in."""
    return kernel_package_from(run(["apt-cache", "depends", meta]), meta)


def describe(names: Sequence[str]) -> dict[str, Package]:
    """apt's candidate of each package, by name."""
    try:
        text = run(["apt-cache", "show", "--no-all-versions", *names])
    except BuildError as error:
        raise BuildError(f"{error}; is `apt-get update` done?") from None
    found = {package.name: package for package in parse_show(text)}
    missing = [name for name in names if name not in found]
    if missing:
        raise BuildError(f"apt knows no package {', '.join(missing)}")
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _intact(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (made if missing), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_ONLY_DEPENDS = (
    "--no-recommends", "--no-suggests", "--no-conflicts",
    "--no-breaks", "--no-replaces", "--no-enhances",
)  # fmt: skip


def closure_names_from(depends_output: str) -> list[str]:
    """The packages of `apt-cache depends --recurse` output (its unindented lines; a
    virtual package, in angle brackets, is left out: a real one provides it)."""
    names = []
    for line in depends_output.splitlines():
        if line and not line[0].isspace() and not line.startswith("<"):
            names.append(line.strip())
    return list(dict.fromkeys(names))


def with_depends(names: Sequence[str]) -> list[str]:
    """The packages named and, recursively, all they depend on."""
    return closure_names_from(run(["apt-cache", "depends", "--recurse", *_ONLY_DEPENDS, *names]))


def fetch(packages: Sequence[Package], cache: Path = DEB_CACHE) -> dict[str, Path]:
    """The .deb of each package, from the cache or else downloaded into it.

    A cached file is used only if its SHA-256 is the one apt's lists give, so a cut
    download or an older version is fetched anew. The cache is locked while it is
    checked and filled: two builds at once download each file once.
    """
    with locked(cache / LOCK_FILE):
        missing = [p for p in packages if not _intact(cache / p.file_name, p.sha256)]
        if missing:
            _download(missing, cache)
    return {package.name: cache / package.file_name for package in packages}


def _download(packages: Sequence[Package], cache: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        command = ["apt-get", "download", "-q"]
        if os.geteuid() == 0:
            # apt drops to its `_apt` user to download, who may not write here.
            command += ["-o", "APT::Sandbox::User=root"]
        run([*command, *(f"{p.name}={p.version}" for p in packages)], cwd=scratch)
        for package in packages:
            got = sorted(scratch.glob(f"{package.name}_*_{package.architecture}.deb"))
            if len(got) != 1 or sha256_of(got[0]) != package.sha256:
                raise BuildError(f"apt-get download gave no intact {package.file_name}")
            os.replace(got[0], cache / package.file_name)
            for older in cache.glob(f"{package.name}_*_{package.architecture}.deb"):
                if older.name != package.file_name:
                    older.unlink(missing_ok=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def extract(deb: Path, into: Path) -> Path:
    """Unpack the files of `deb` under `into` (nothing is installed or run)."""
    into.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", str(deb), str(into)])
    return into
