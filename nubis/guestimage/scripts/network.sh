# The tiny guest's NICs: found, asked for metadata, configured, announced; sourced
# by the init and by the NIC handler.
# shellcheck shell=dash
NUBIS_RUN=@RUN_DIR@
ROUTE_TABLE_BASE=@ROUTE_TABLE_BASE@

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
    # One argument per byte of the MAC.
    # shellcheck disable=SC2046
    set -- $(tr ':' ' ' < "/sys/class/net/$link/address")
    own="169.254.$(( 0x$5 % 254 + 1 )).$(( 0x$6 ))/16"
    ip addr add "$own" dev "$link" 2>/dev/null
    for try in http://169.254.169.254 "http://[fe80::a9fe:a9fe%$link]"; do
        found=$(fetch 2 "$try/latest/meta-data/hostname")
        if [ -n "$found" ]; then
            # The init reads both.
            # shellcheck disable=SC2034
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
        table=$(( ROUTE_TABLE_BASE + $(cat "/sys/class/net/$link/ifindex") ))
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
