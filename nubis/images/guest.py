"""The tiny guest's own files, as text: its init, its /etc, its boot loader's config.

The init is a busybox shell script run as pid 1. It configures the network (IPv6 by
SLAAC with EUI-64 addresses, which the control plane predicts from the MAC; an IPv4
link-local address only to reach the metadata service), reads the hostname and SSH
keys from the metadata service or else from a NoCloud seed, runs dropbear on port 22,
prints marker lines on the console, then hands pid 1 to busybox init, which reaps
orphans and powers off cleanly when acpid reports the ACPI power button.

With `nubis.probe` on the kernel command line it only says that userspace was reached
and powers off: the acceleration probe boots that.
"""

from __future__ import annotations

from collections.abc import Sequence

MARKER = "nubis-tiny:"
READY_MARKER = f"{MARKER} ssh ready"
PROBE_ARG = "nubis.probe"
PROBE_MARKER = "nubis-probe: userspace"
KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initrd.img"
MODULE_DIR = "lib/modules"
SEED_LABEL = "CIDATA"
METADATA_WAIT = 60
"""Seconds a guest without a seed keeps asking the metadata service: the host may
still be setting up its side of the link."""
METADATA_WAIT_WITH_SEED = 3
"""With a seed to fall back on, the metadata service gets only a moment."""
ADDRESS_WAIT = 15
"""Seconds the init waits for a router advertisement before saying ssh is ready."""
CONSOLE = "ttyS0"
BOOT_LABEL = "NUBIS-TINY"
"""The label of the image's own FAT disk (where the guest keeps its SSH host key)."""

# The init script is a template: `@NAME@` is replaced, so that the shell's own
# braces and dollars need no escaping.
_INIT = r"""#!/bin/sh
# pid 1 of the nubis tiny guest.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

for word in $(/bin/busybox cat /proc/cmdline); do
    if [ "$word" = "@PROBE_ARG@" ]; then
        echo "@PROBE_MARKER@"
        /bin/busybox poweroff -f
    fi
done

/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mkdir -p /dev/pts /run /tmp /var/log /mnt/seed /mnt/boot /root/.ssh /etc/dropbear
mount -t devpts devpts /dev/pts

say() { echo "@MARKER@ $*"; }
seconds() { cut -d. -f1 /proc/uptime; }
# `timeout`, not wget's own -T, which crashes this busybox's wget.
fetch() { timeout "$1" wget -q -O - "$2" 2>/dev/null; }
@SEED_FUNCTIONS@
# Before the NIC driver loads, so that every NIC is made with these: addresses from
# the MAC (EUI-64), never random or hashed ones, as the control plane predicts them.
for knob in addr_gen_mode=0 use_tempaddr=0 accept_ra=1 autoconf=1; do
    echo "${knob#*=}" > "/proc/sys/net/ipv6/conf/default/${knob%%=*}" 2>/dev/null
done

for module in @MODULES@; do
    insmod "/@MODULE_DIR@/$module.ko" 2>/dev/null || say "module $module did not load"
done

ip link set lo up
nic=""
for link in /sys/class/net/eth*; do
    [ -e "$link" ] || continue
    ip link set "${link##*/}" up
    [ -n "$nic" ] || nic="${link##*/}"
done

if [ -n "$nic" ]; then
    # A link-local IPv4 address (RFC 3927: 169.254.1.0 to 169.254.254.255) from the
    # MAC, only to reach 169.254.169.254; its /16 is the route there.
    set -- $(tr ':' ' ' < "/sys/class/net/$nic/address")
    ip addr add "169.254.$(( 0x$5 % 254 + 1 )).$(( 0x$6 ))/16" dev "$nic"
fi

# Power off on the ACPI power button: acpid runs /etc/acpi/PWRF/00000080.
acpid -l /var/log/acpid.log

seed=""
device=$(findfs LABEL=@SEED_LABEL@ 2>/dev/null || findfs LABEL=cidata 2>/dev/null)
if [ -n "$device" ] && mount -t vfat -o ro "$device" /mnt/seed 2>/dev/null; then
    seed=/mnt/seed
fi

: > /tmp/keys
name=""
base=""
if [ -n "$nic" ]; then
    wait=@METADATA_WAIT@
    [ -n "$seed" ] && wait=@METADATA_WAIT_WITH_SEED@
    deadline=$(( $(seconds) + wait ))
    while [ -z "$base" ]; do
        for try in http://169.254.169.254 "http://[fe80::a9fe:a9fe%$nic]"; do
            found=$(fetch 2 "$try/latest/meta-data/hostname")
            if [ -n "$found" ]; then
                base="$try" name="$found"
                break
            fi
        done
        [ -n "$base" ] || [ "$(seconds)" -lt "$deadline" ] || break
        [ -n "$base" ] || sleep 1
    done
fi

if [ -n "$base" ]; then
    say "config from the metadata service at $base"
    for entry in $(fetch 5 "$base/latest/meta-data/public-keys/"); do
        fetch 5 "$base/latest/meta-data/public-keys/${entry%%=*}/openssh-key" >> /tmp/keys
        echo >> /tmp/keys
    done
elif [ -n "$seed" ]; then
    say "config from the seed on $device"
    name=$(seed_hostname "$seed/meta-data")
    seed_keys "$seed/meta-data" >> /tmp/keys
else
    say "no metadata service and no seed"
fi

name=$(echo "$name" | tr -cd 'A-Za-z0-9.-')
[ -n "$name" ] || name=tiny
hostname "$name"
echo "$name" > /etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t%s\n' "$name" > /etc/hosts
say "hostname $name"

chmod 700 /root /root/.ssh
grep -v '^[[:space:]]*$' /tmp/keys > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
say "ssh keys $(wc -l < /root/.ssh/authorized_keys)"

# The host key is kept on the VM's own disk, so it stays the same across reboots and
# stops, and clients that know it keep trusting it.
hostkey=/etc/dropbear/dropbear_ed25519_host_key
kept=/mnt/boot/hostkey
mounted=
boot=$(findfs LABEL=@BOOT_LABEL@ 2>/dev/null)
if [ -n "$boot" ] && mount -t vfat "$boot" /mnt/boot 2>/dev/null; then
    mounted=yes
    [ -s "$kept" ] && cp "$kept" "$hostkey"
fi
if [ ! -s "$hostkey" ]; then
    dropbearkey -t ed25519 -f "$hostkey" > /dev/null 2>&1
    [ -n "$mounted" ] && cp "$hostkey" "$kept"
fi
[ -n "$mounted" ] && umount /mnt/boot
say "host key $(dropbearkey -y -f "$hostkey" 2>/dev/null | grep '^ssh-')"
dropbear -r "$hostkey" -p 22 -s -P /run/dropbear.pid -E 2>> /var/log/dropbear.log

if [ -n "$nic" ]; then
    deadline=$(( $(seconds) + @ADDRESS_WAIT@ ))
    until ip -6 addr show dev "$nic" scope global | grep inet6 | grep -qv tentative; do
        [ "$(seconds)" -lt "$deadline" ] || break
        sleep 0.2
    done
    for link in /sys/class/net/eth*; do
        ip addr show dev "${link##*/}" | sed -n "s|^ *inet6* \([^ ]*\) .*scope global.*|\1|p" |
            while read -r address; do say "address ${link##*/} $address"; done
    done
fi

deadline=$(( $(seconds) + 10 ))
until grep -qE ':0016 [0-9A-F]+:0000 0A' /proc/net/tcp6 /proc/net/tcp 2>/dev/null; do
    [ "$(seconds)" -lt "$deadline" ] || break
    sleep 0.1
done
if grep -qE ':0016 [0-9A-F]+:0000 0A' /proc/net/tcp6 /proc/net/tcp 2>/dev/null; then
    say "ssh ready"
else
    say "ssh failed: $(tail -n 3 /var/log/dropbear.log)"
fi

exec /bin/busybox init
"""


SEED_FUNCTIONS = r"""# A NoCloud meta-data file is JSON (as nubis writes it) or YAML: either way,
# one key or list item to a line.
seed_hostname() {
    q='"\{0,1\}' s='[[:space:]]*'
    sed -n "s/^$s${q}local-hostname$q$s:$s$q\([^\",[:space:]]*\).*/\1/p" "$1" | head -n 1
}
seed_keys() {
    types='ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp[0-9]+'
    types="$types|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com"
    grep -oE "($types) [A-Za-z0-9+/=]+( [^\"]*)?" "$1"
}
"""


def init_script(
    modules: Sequence[str],
    *,
    metadata_wait: int = METADATA_WAIT,
    metadata_wait_with_seed: int = METADATA_WAIT_WITH_SEED,
    address_wait: int = ADDRESS_WAIT,
) -> str:
    """The guest's /init, loading `modules` (names, in this order) from /lib/modules."""
    for module in modules:
        if not module.replace("_", "").isalnum():
            raise ValueError(f"{module!r} is not a kernel module name")
    values = {
        "PROBE_ARG": PROBE_ARG,
        "PROBE_MARKER": PROBE_MARKER,
        "MARKER": MARKER,
        "MODULES": " ".join(modules),
        "MODULE_DIR": MODULE_DIR,
        "SEED_LABEL": SEED_LABEL,
        "BOOT_LABEL": BOOT_LABEL,
        "METADATA_WAIT": str(metadata_wait),
        "METADATA_WAIT_WITH_SEED": str(metadata_wait_with_seed),
        "ADDRESS_WAIT": str(address_wait),
        "SEED_FUNCTIONS": SEED_FUNCTIONS,
    }
    text = _INIT
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def etc_files() -> dict[str, str]:
    """The guest's configuration files by path (relative to /)."""
    return {
        # `*`: no password matches, yet the account is not locked (`!`), which dropbear
        # would refuse even for key logins.
        "etc/passwd": "root:*:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "etc/shells": "/bin/sh\n",
        "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
        # Nothing but what init does at shutdown and a shell for whoever is on the
        # serial console (the VM's owner, through the control plane), once asked.
        "etc/inittab": (
            f"{CONSOLE}::askfirst:-/bin/sh\n"
            "::shutdown:/bin/busybox killall dropbear\n"
            "::shutdown:/bin/busybox umount -a -r\n"
        ),
        "etc/acpi/PWRF/00000080": "#!/bin/sh\nexec /bin/busybox poweroff\n",
        "etc/profile": "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h# '\n",
    }


EXECUTABLES = frozenset({"init", "etc/acpi/PWRF/00000080"})


def kernel_arguments(*, probe: bool = False) -> str:
    """The kernel command line: the serial console last, so that it is /dev/console
    (where init's marker lines go) and the VGA console shows the boot too."""
    if probe:
        # A probe that fails in the kernel reboots at once, and QEMU then exits.
        return f"console={CONSOLE} panic=-1 {PROBE_ARG}"
    return f"console=tty0 console={CONSOLE},115200n8"


def syslinux_config(arguments: str | None = None) -> str:
    """syslinux.cfg: boot the kernel and initramfs at once, no prompt."""
    return (
        "DEFAULT tiny\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL tiny\n"
        f"  LINUX /{KERNEL_FILE}\n"
        f"  INITRD /{INITRD_FILE}\n"
        f"  APPEND {arguments if arguments is not None else kernel_arguments()}\n"
    )
