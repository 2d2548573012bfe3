"""The tiny guest's own files, as text: its init, its /etc, its boot loader's config.

The init is a busybox shell script run as pid 1. It brings every NIC up and looks for
the metadata service on each in turn (the host network's NIC, the one on the root PCI
bus, first), by an IPv4 link-local address from the NIC's MAC and then by IPv6
link-local; it reads the hostname, the SSH keys and network_data.json from the
service, or else the hostname and keys from a NoCloud seed. It configures each NIC
from network_data.json, matched by MAC: a network of type `ipv6` (a `manual` one) gets
its address set and no router advertisements; any other gets SLAAC with EUI-64
addresses, which the control plane predicts from the MAC; a link without a network only
its link-local address. It runs dropbear on port 22, prints marker lines on the
console (`address ethN ADDR` per address, once the NIC has it), starts `mdev -d`,
which runs `/sbin/nubis-nic` when a NIC is hot-plugged or unplugged (it configures a
new NIC the same way, with network_data.json fetched anew), then hands pid 1 to
busybox init, which reaps orphans and powers off cleanly when acpid reports the ACPI
power button.

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

@SEED_FUNCTIONS@
. /@NETWORK_FILE@
# Before the NIC driver loads, so that every NIC is made with these: addresses from
# the MAC (EUI-64), never random or hashed ones, as the control plane predicts them.
for knob in addr_gen_mode=0 use_tempaddr=0 accept_ra=1 autoconf=1; do
    echo "${knob#*=}" > "/proc/sys/net/ipv6/conf/default/${knob%%=*}" 2>/dev/null
done

for module in @MODULES@; do
    insmod "/@MODULE_DIR@/$module.ko" 2>/dev/null || say "module $module did not load"
done

ip link set lo up
mkdir -p "$NUBIS_RUN"
nic=""
for link in $(nics); do
    ip link set "$link" up
    [ -n "$nic" ] || nic="$link"
done

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
        # NICs may still be coming up (or be hot-plugged): asked afresh each round.
        for link in $(nics); do
            if ask_metadata "$link"; then
                nic="$link"
                break
            fi
        done
        [ -n "$base" ] || [ "$(seconds)" -lt "$deadline" ] || break
        [ -n "$base" ] || sleep 1
    done
fi
if [ -n "$base" ]; then
    echo "$base" > "$NUBIS_RUN/base"
    fetch_network_data
fi
# From here on, mdev configures the NICs that come later and says when one goes.
mdev -d
for link in $(nics); do
    configure_nic "$link"
done

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

# The metadata NIC's addresses before `ssh ready`; the others' when they have them.
for link in $(nics); do
    [ "$link" = "$nic" ] || announce "$link" &
done
[ -z "$nic" ] || announce "$nic"

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


NETWORK_FILE = "etc/nubis/network.sh"
HOTPLUG_FILE = "sbin/nubis-nic"
RUN_DIR = "/run/nubis"
ROUTE_TABLE_BASE = 100
"""A project network NIC's routing table is this plus its interface index."""
MANUAL_ADDRESS_WAIT = 5
"""Seconds a manual address gets to pass duplicate address detection before it is
announced anyway."""

# Functions of the init and of the hot-plug handler, sourced by both.
_NETWORK = r"""# The tiny guest's NICs: found, asked for metadata, configured, announced.
NUBIS_RUN=@RUN_DIR@

say() { echo "@MARKER@ $*"; }
seconds() { cut -d. -f1 /proc/uptime; }
# `timeout`, not wget's own -T, which crashes this busybox's wget.
fetch() { timeout "$1" wget -q -O - "$2" 2>/dev/null; }

# The NICs by name, the host network's first: it sits on the root PCI bus, the
# project networks' NICs behind PCIe root ports (one more PCI address in the path).
nics() {
    for link in /sys/class/net/eth*; do
        [ -e "$link" ] || continue
        depth=$(readlink -f "$link" | tr '/' '\n' | grep -c '^[0-9a-f]*:[0-9a-f]*:[0-9a-f.]*$')
        echo "$depth ${link##*/}"
    done | sort -k1,1n -k2,2 | cut -d' ' -f2
}

# Ask the metadata service on NIC $1 for the hostname; on an answer set `base` and
# `name` and keep the NIC's IPv4 link-local address (RFC 3927: 169.254.1.0 to
# 169.254.254.255, from the MAC), whose /16 is the route to 169.254.169.254.
ask_metadata() {
    local link=$1 own found try
    set -- $(tr ':' ' ' < "/sys/class/net/$link/address")
    own="169.254.$(( 0x$5 % 254 + 1 )).$(( 0x$6 ))/16"
    ip addr add "$own" dev "$link" 2>/dev/null
    for try in http://169.254.169.254 "http://[fe80::a9fe:a9fe%$link]"; do
        found=$(fetch 2 "$try/latest/meta-data/hostname")
        if [ -n "$found" ]; then
            base="$try" name="$found"
            return 0
        fi
    done
    ip addr del "$own" dev "$link" 2>/dev/null
    return 1
}

fetch_network_data() {
    local base part
    base=$(cat "$NUBIS_RUN/base" 2>/dev/null)
    [ -n "$base" ] || return 1
    part="$NUBIS_RUN/network_data.$$"
    if fetch 5 "$base/openstack/latest/network_data.json" > "$part" && [ -s "$part" ]; then
        mv "$part" "$NUBIS_RUN/network_data.json"
    else
        rm -f "$part"
        return 1
    fi
}

# network_data.json (as json.dumps(..., indent=2) writes it: a key to a line) on stdin;
# prints, for the link whose MAC is $1, `link MTU` and then `TYPE ADDRESS PREFIXLEN
# GATEWAY` per network on it ("-" for what is not given).
nic_networks() {
    awk -v mac="$1" '
    function field(key) { return (key in item && item[key] != "") ? item[key] : "-" }
    function prefixlen(address, mask,   i, c, bits) {
        if (address ~ /\//) { sub(/^[^\/]*\//, "", address); return address }
        if (mask ~ /^[0-9]+$/) return mask
        if (mask == "" || mask ~ /\./) return "-"
        bits = 0
        for (i = 1; i <= length(mask); i++) {
            c = substr(mask, i, 1)
            if (c != ":") bits += index("08cef", tolower(c)) - 1
        }
        return bits
    }
    # A default route of a network ("routes": [{"network": "::", ...}]) gives its gateway.
    function done_route() {
        if (section == "networks" && (route["network"] == "::" || route["network"] == "::/0"))
            if (route["gateway"] != "") item["gateway"] = route["gateway"]
        split("", route)
    }
    function done_item(   address) {
        if (section == "links" && tolower(item["ethernet_mac_address"]) == tolower(mac) &&
            item["id"] != "") {
            link = item["id"]
            mtu = field("mtu")
        }
        if (section == "networks" && item["link"] != "") {
            address = field("ip_address")
            count++
            networks[count] = item["link"] " " field("type") " " address " " \
                prefixlen(address, item["netmask"]) " " field("gateway")
        }
        split("", item)
    }
    {
        line = $0
        sub(/^[ \t]+/, "", line)
        sub(/[ \t\r]+$/, "", line)
        key = ""
        value = line
        if (line ~ /^"[^"]*"[ \t]*:/) {
            key = line
            sub(/^"/, "", key)
            sub(/".*$/, "", key)
            sub(/^"[^"]*"[ \t]*:[ \t]*/, "", value)
        }
        sub(/,$/, "", value)
        if (value == "{" || value == "[") {
            if (depth == 1) section = key
            depth++
        } else if (value == "}" || value == "]") {
            depth--
            if (depth == 4 && value == "}") done_route()
            if (depth == 2 && value == "}") done_item()
            if (depth == 1) section = ""
        } else if (key != "") {
            sub(/^"/, "", value)
            sub(/"$/, "", value)
            if (depth == 3) item[key] = value
            if (depth == 5) route[key] = value
        }
    }
    END {
        if (link == "") exit
        print "link", mtu
        for (i = 1; i <= count; i++) {
            split(networks[i], parts, " ")
            if (parts[1] == link) {
                sub(/\/.*$/, "", parts[3])
                print parts[2], parts[3], parts[4], parts[5]
            }
        }
    }'
}

# Bring NIC $1 up and configure it from network_data.json; sets `kind` to what its
# network is: auto (SLAAC), manual (an address set here), none (its link-local
# address only) or unknown (no network_data.json, or no link for its MAC: SLAAC).
configure_nic() {
    local link=$1 what address prefix gateway told="" via="" sources="" on_link="" table
    local conf="/proc/sys/net/ipv6/conf/$link"
    kind=unknown
    if [ -s "$NUBIS_RUN/network_data.json" ]; then
        nic_networks "$(cat "/sys/class/net/$link/address")" \
            < "$NUBIS_RUN/network_data.json" > "$NUBIS_RUN/$link.networks"
    else
        : > "$NUBIS_RUN/$link.networks"
    fi
    while read -r what address prefix gateway; do
        case "$what" in
        link)
            kind=none
            [ "$address" = - ] || ip link set "$link" mtu "$address"
            ;;
        ipv6_slaac)
            kind=auto
            [ "$prefix" != - ] || prefix=64
            sources="$sources $address"
            on_link="$on_link $address/$prefix"
            [ "$gateway" = - ] || via="$gateway"
            ;;
        ipv6)
            kind=manual
            [ "$prefix" != - ] || prefix=64
            told="$told $address/$prefix"
            sources="$sources $address"
            on_link="$on_link $address/$prefix"
            [ "$gateway" = - ] || via="$gateway"
            ;;
        esac
    done < "$NUBIS_RUN/$link.networks"
    if [ "$kind" = manual ]; then
        # Told its address: no router may hand it another.
        echo 0 > "$conf/accept_ra"
        echo 0 > "$conf/autoconf"
    fi
    ip link set "$link" up
    for address in $told; do
        ip -6 addr add "$address" dev "$link"
    done
    if [ -n "$via" ]; then
        # Packets from this NIC's address leave through it (its guard drops them on any
        # other NIC); everything else keeps the host network's default route.
        table=$(( @ROUTE_TABLE_BASE@ + $(cat "/sys/class/net/$link/ifindex") ))
        # The network's own /64 first: its neighbours are reached directly, and the
        # gateway is found in it even before SLAAC has made the main table's route.
        for prefix in $on_link; do
            ip -6 route replace "$prefix" dev "$link" table "$table"
        done
        ip -6 route replace default via "$via" dev "$link" table "$table"
        for address in $sources; do
            [ "$address" = - ] || ip -6 rule add from "$address" table "$table"
        done
        echo "$table" > "$NUBIS_RUN/$link.table"
    fi
    echo "$kind" > "$NUBIS_RUN/$link.kind"
}

has_address() {
    ip -6 addr show dev "$1" scope global | grep inet6 | grep -qv tentative
}

# Say NIC $1's global addresses once it has one (SLAAC may take a few seconds; a NIC
# whose network has no router is not waited for).
announce() {
    local link=$1 wait deadline address
    case "$(cat "$NUBIS_RUN/$link.kind" 2>/dev/null)" in
    none) wait=0 ;;
    manual) wait=@MANUAL_ADDRESS_WAIT@ ;;
    *) wait=@ADDRESS_WAIT@ ;;
    esac
    deadline=$(( $(seconds) + wait ))
    until has_address "$link"; do
        [ -e "/sys/class/net/$link" ] || return 0
        [ "$(seconds)" -lt "$deadline" ] || break
        sleep 0.2
    done
    ip addr show dev "$link" | sed -n "s|^ *inet6* \([^ ]*\) .*scope global.*|\1|p" |
        while read -r address; do say "address $link $address"; done
}
"""

_HOTPLUG = r"""#!/bin/sh
# Run by `mdev -d` when a NIC comes or goes (ACTION, MDEV: the interface's name).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec </dev/null >/dev/console 2>&1
. /@NETWORK_FILE@
case "$ACTION" in
add)
    # In the background: mdev waits for this, and the next event may be another NIC.
    (
        say "nic $MDEV added"
        fetch_network_data
        configure_nic "$MDEV"
        announce "$MDEV"
    ) &
    ;;
remove)
    say "nic $MDEV removed"
    if [ -s "$NUBIS_RUN/$MDEV.table" ]; then
        table=$(cat "$NUBIS_RUN/$MDEV.table")
        while ip -6 rule del table "$table" 2>/dev/null; do :; done
    fi
    rm -f "$NUBIS_RUN/$MDEV.kind" "$NUBIS_RUN/$MDEV.networks" "$NUBIS_RUN/$MDEV.table"
    ;;
esac
"""

MDEV_CONF = f"""# mdev only runs the tiny guest's NIC handler; devtmpfs makes the device nodes.
SUBSYSTEM=net;eth[0-9]+ 0:0 600 ! */{HOTPLUG_FILE}
.* 0:0 600 !
"""


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


def network_functions() -> str:
    """The shell functions that find, configure and announce NICs (at boot and on
    hot-plug): the guest's NETWORK_FILE."""
    return _fill(
        _NETWORK,
        {
            "RUN_DIR": RUN_DIR,
            "MARKER": MARKER,
            "ADDRESS_WAIT": str(ADDRESS_WAIT),
            "MANUAL_ADDRESS_WAIT": str(MANUAL_ADDRESS_WAIT),
            "ROUTE_TABLE_BASE": str(ROUTE_TABLE_BASE),
        },
    )


def init_script(
    modules: Sequence[str],
    *,
    metadata_wait: int = METADATA_WAIT,
    metadata_wait_with_seed: int = METADATA_WAIT_WITH_SEED,
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
        "SEED_FUNCTIONS": SEED_FUNCTIONS,
        "NETWORK_FILE": NETWORK_FILE,
    }
    return _fill(_INIT, values)


def etc_files() -> dict[str, str]:
    """The guest's configuration files and scripts by path (relative to /)."""
    return {
        NETWORK_FILE: network_functions(),
        HOTPLUG_FILE: _fill(_HOTPLUG, {"NETWORK_FILE": NETWORK_FILE}),
        "etc/mdev.conf": MDEV_CONF,
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


EXECUTABLES = frozenset({"init", "etc/acpi/PWRF/00000080", HOTPLUG_FILE})


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
