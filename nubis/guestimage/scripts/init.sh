#!/bin/sh
# pid 1 of the nubis tiny guest.
# shellcheck shell=dash source-path=SCRIPTDIR
# (busybox ash runs it; like dash, it has `local`.)
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

# shellcheck source=seed.sh
. /@SEED_FILE@
# shellcheck source=network.sh
. /@NETWORK_FILE@
# Before the NIC driver loads, so that every NIC is made with these: addresses from
# the MAC (EUI-64), never random or hashed ones, as the control plane predicts them.
for knob in addr_gen_mode=0 use_tempaddr=0 accept_ra=1 autoconf=1; do
    echo "${knob#*=}" > "/proc/sys/net/ipv6/conf/default/${knob%%=*}" 2>/dev/null
done

modules="@MODULES@"
for module in $modules; do
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
