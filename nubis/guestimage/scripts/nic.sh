#!/bin/sh
# Run by `mdev -d` when a NIC comes or goes (ACTION, MDEV: the interface's name).
# shellcheck shell=dash source-path=SCRIPTDIR
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec </dev/null >/dev/console 2>&1
# shellcheck source=network.sh
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
