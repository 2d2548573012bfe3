"""The tiny guest image: a Debian kernel, busybox and dropbear in an initramfs, on a
FAT disk that syslinux boots, as a qcow2. Made from Debian packages (nothing else is
downloaded), with no loop device, no mount and no root needed.

The same build gives the same bytes: the packages are apt's candidates, the initramfs
is a sorted cpio with fixed owners and times, gzip'ed without a timestamp, and the FAT
has a fixed volume id and file times.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from nubis.guestimage import BuildError, debian, elf, guest, modules
from nubis.guestimage.cpio import Entry, archive
from nubis.guestimage.debian import DEB_CACHE

log = logging.getLogger(__name__)

NAME = "tiny"
"""The name the tiny image has as a public image."""
BOOT_DIR = "boot"
"""Where in the deb cache the kernel and initramfs made from its packages are kept."""
BUSYBOX_PACKAGE = "busybox-static"
SSH_PACKAGE = "dropbear-bin"
PROGRAMS = ("usr/sbin/dropbear", "usr/bin/dropbearkey")
MODULES = (
    "virtio_pci", "virtio_net", "virtio_blk", "virtio_rng",
    "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
    "button", "evdev",
)  # fmt: skip
"""What the guest loads (their dependencies come along): the virtio transport, NIC,
disks and entropy, FAT for the seed, and the power button seen as an input event."""
HOSTILE_TOOLS = ("radvd", "netcat-openbsd", "libbsd0", "libmd0")
"""What a guest needs to send what busybox cannot: router advertisements (`radvd`)
and UDP from a chosen port over IPv6 (`nc.openbsd -u -p 547`, e.g. a DHCPv6 answer;
busybox's nc has no UDP). The library packages are netcat-openbsd's."""
PROGRAM_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")
"""Where an extra package's programs are."""
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib")
EPOCH = 1577836800
"""The time every file of the image carries (2020-01-01; FAT has no time before 1980)."""
VOLUME_ID = "6e756273"
VOLUME_LABEL = guest.BOOT_LABEL
SLACK_MIB = 8
MIB = 1024 * 1024
RECIPE = 1
"""Grows whenever the build makes different files from the same packages, so that
cached boot files are made anew."""


def _collect(root: Path, path: PurePosixPath, into: dict[str, Entry]) -> Path:
    """Add `path` of the unpacked tree `root` as it is there (a link, and what it leads
    to); the regular file it ends at."""
    name = str(path).lstrip("/")
    if name in into and not stat.S_ISLNK(into[name].mode):
        return root / name
    real = root / name
    if real.is_symlink():
        target = os.readlink(real)
        into[name] = Entry.symlink(name, target)
        following = PurePosixPath(target)
        if not following.is_absolute():
            following = PurePosixPath("/", name).parent / following
        return _collect(root, PurePosixPath(os.path.normpath(following)), into)
    if not real.is_file():
        raise BuildError(f"/{name} is not in the unpacked packages")
    into[name] = Entry.file(name, real.read_bytes(), stat.S_IMODE(real.stat().st_mode))
    return real


def _library(root: Path, soname: str) -> PurePosixPath:
    for directory in LIBRARY_DIRS:
        if os.path.lexists(root / directory / soname):
            return PurePosixPath("/", directory, soname)
    raise BuildError(f"no package of the closure holds the shared library {soname}")


def program_entries(root: Path, programs: Iterable[str]) -> dict[str, Entry]:
    """The programs of the unpacked tree `root`, with their loader and every shared
    library they need, by name in the archive."""
    entries: dict[str, Entry] = {}
    pending = [PurePosixPath("/", program) for program in programs]
    seen: set[PurePosixPath] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        facts = elf.elf_facts(_collect(root, path, entries).read_bytes())
        if facts.interpreter:
            pending.append(PurePosixPath(facts.interpreter))
        pending.extend(_library(root, soname) for soname in facts.needed)
    return entries


def package_programs(root: Path) -> list[str]:
    """The programs (ELF files in PROGRAM_DIRS) of one unpacked package, by path."""
    found = []
    for directory in PROGRAM_DIRS:
        for path in sorted((root / directory).glob("*")):
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as file:
                    if file.read(4) == b"\x7fELF":
                        found.append(str(path.relative_to(root)))
    return found


def module_entries(kernel_root: Path, wanted: Iterable[str]) -> tuple[list[str], list[Entry]]:
    """The modules `wanted` and their dependencies, in load order, as /lib/modules/*.ko."""
    found = {modules.module_name(path): path for path in kernel_root.glob("lib/modules/*/**/*.ko")}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise BuildError(f"the kernel package has no module {', '.join(missing)}")
    contents: dict[str, bytes] = {}

    def depends(name: str) -> tuple[str, ...]:
        if name not in found:
            raise BuildError(f"the kernel package has no module {name}")
        contents[name] = found[name].read_bytes()
        return elf.module_depends(contents[name])

    order = modules.load_order(list(wanted), depends)
    entries = [Entry.file(f"{guest.MODULE_DIR}/{name}.ko", contents[name]) for name in order]
    return order, entries


def initramfs_entries(
    modules: list[str], module_files: list[Entry], busybox: bytes, programs: dict[str, Entry]
) -> list[Entry]:
    entries = [
        Entry.file("init", guest.init_script(modules).encode(), 0o755),
        Entry.file("bin/busybox", busybox, 0o755),
        Entry.symlink("bin/sh", "busybox"),
        # The kernel opens it for init before anything mounts /dev.
        Entry.char_device("dev/console", 5, 1),
        *(Entry.directory(name) for name in ("proc", "sys", "run", "tmp", "mnt", "var/log")),
        Entry.directory("root", 0o700),
        *module_files,
        *programs.values(),
    ]
    for path, text in guest.etc_files().items():
        executable = path in guest.EXECUTABLES
        entries.append(Entry.file(path, text.encode(), 0o755 if executable else 0o644))
    return entries


def _packages(extra: Sequence[str]) -> tuple[str, dict[str, debian.Package]]:
    """The kernel package's name, and every package the guest is made of."""
    kernel = debian.kernel_package()
    names = [kernel, BUSYBOX_PACKAGE, *debian.with_depends([SSH_PACKAGE]), *extra]
    return kernel, debian.describe(list(dict.fromkeys(names)))


def _assemble(
    work: Path,
    cache: Path,
    kernel: str,
    packages: dict[str, debian.Package],
    extra: Sequence[str],
) -> tuple[Path, bytes]:
    """The kernel (a file under `work`) and the gzip'ed initramfs."""
    debs = debian.fetch(list(packages.values()), cache)
    kernel_root = debian.extract(debs.pop(kernel), work / "kernel")
    user_root = work / "user"
    extra_programs = []
    for name in extra:
        extra_programs += package_programs(debian.extract(debs[name], work / "extra" / name))
    for deb in debs.values():
        debian.extract(deb, user_root)
    images = sorted((kernel_root / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise BuildError(f"{kernel} holds {len(images)} kernel images, not one")
    order, module_files = module_entries(kernel_root, MODULES)
    programs = program_entries(user_root, [*PROGRAMS, *extra_programs])
    busybox = (user_root / "bin" / "busybox").read_bytes()
    cpio = archive(initramfs_entries(order, module_files, busybox, programs), mtime=EPOCH)
    return images[0], gzip.compress(cpio, compresslevel=6, mtime=0)


def _boot_key(packages: dict[str, debian.Package], extra: Sequence[str] = ()) -> str:
    """What the boot files are made from: the packages, the guest's files, the recipe."""
    made_of = {
        "recipe": RECIPE,
        "extra": list(extra),
        "packages": sorted((p.name, p.version, p.sha256) for p in packages.values()),
        "init": guest.init_script(MODULES),
        "etc": guest.etc_files(),
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


def _flavour(extra: Sequence[str]) -> str:
    """What tells boot files with extra packages from others (and the plain ones,
    whose flavour is empty) in the cache."""
    return "".join(f"+{name}" for name in extra)


def boot_files(cache: Path = DEB_CACHE, extra_packages: Sequence[str] = ()) -> tuple[Path, Path]:
    """The tiny guest's kernel and initramfs (for QEMU's -kernel and -initrd, and for
    the image), made once into `cache`/boot and kept while the packages and the recipe
    stay the same; then nothing is unpacked again. See `build` for `extra_packages`."""
    extra = sorted(set(extra_packages))
    kernel_package, packages = _packages(extra)
    key = _boot_key(packages, extra)
    flavour = _flavour(extra)
    directory = cache / BOOT_DIR
    made = directory / f"{key}{flavour}"
    kernel, initrd = made / guest.KERNEL_FILE, made / guest.INITRD_FILE
    with debian.locked(directory / ".lock"):
        if kernel.is_file() and initrd.is_file():
            return kernel, initrd
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=".making-", dir=directory) as scratch:
            work = Path(scratch)
            image, initramfs = _assemble(work, cache, kernel_package, packages, extra)
            ready = work / "ready"
            ready.mkdir()
            shutil.copyfile(image, ready / guest.KERNEL_FILE)
            (ready / guest.INITRD_FILE).write_bytes(initramfs)
            for path in (ready / guest.KERNEL_FILE, ready / guest.INITRD_FILE):
                os.utime(path, (EPOCH, EPOCH))
            ready.chmod(0o755)
            shutil.rmtree(made, ignore_errors=True)
            ready.rename(made)
        # Older boot files of the same flavour only: the plain ones and a variant
        # with extra packages are both in use at once.
        for stale in directory.iterdir():
            if (
                stale.is_dir()
                and stale.name != made.name
                and not stale.name.startswith(".")
                and stale.name[len(key) :] == flavour
            ):
                shutil.rmtree(stale, ignore_errors=True)
        log.info("made the tiny guest's boot files %s in %.1f s", made, time.monotonic() - began)
    return kernel, initrd


def _write_atomically(out: Path, fill: Path) -> None:
    """Give the finished file `fill` the name `out`, synced first."""
    os.chmod(fill, 0o644)
    with fill.open("rb") as written:
        os.fsync(written.fileno())
    fill.replace(out)


def build(out: Path, *, cache: Path = DEB_CACHE, extra_packages: Sequence[str] = ()) -> Path:
    """Build the tiny guest image as a qcow2 at `out` (replaced only once complete).

    `extra_packages` makes a variant that also carries these Debian packages' programs
    (the ELF files in their bin and sbin directories, e.g. `/usr/sbin/radvd`) with the
    shared libraries they need. Their own dependencies are not added: each library must
    come from a package the image has anyway (libc6 and dropbear's) or from one named
    here too, else the build says which library is missing. Tests that play a hostile
    guest build `extra_packages=HOSTILE_TOOLS`.
    """
    began = time.monotonic()
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    kernel, initrd = boot_files(cache, extra_packages)
    # mtools takes file times from this, syslinux its own files' too; and it checks
    # the image against a floppy geometry unless told not to.
    tools = {"SOURCE_DATE_EPOCH": str(EPOCH), "MTOOLS_SKIP_CHECK": "1"}
    with tempfile.TemporaryDirectory(prefix="nubis-tiny-") as scratch:
        work = Path(scratch)
        config = work / "syslinux.cfg"
        config.write_text(guest.syslinux_config())
        os.utime(config, (EPOCH, EPOCH))
        files = [kernel, initrd, config]
        raw = work / "disk.raw"
        size_mib = -(-sum(path.stat().st_size for path in files) // MIB) + SLACK_MIB
        debian.run(
            ["mkfs.vfat", "--invariant", "-i", VOLUME_ID, "-n", VOLUME_LABEL,
             "-C", str(raw), str(size_mib * 1024)],
            env=tools,
        )  # fmt: skip
        debian.run(["syslinux", "--install", str(raw)], env=tools)
        debian.run(["mcopy", "-m", "-i", str(raw), *map(str, files), "::"], env=tools)
        partial = out.with_name(f".{out.name}.partial")
        partial.unlink(missing_ok=True)
        try:
            debian.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(partial)])
            _write_atomically(out, partial)
        finally:
            partial.unlink(missing_ok=True)
    log.info("built the tiny image %s in %.1f s", out, time.monotonic() - began)
    return out
