# shellcheck shell=dash
# A NoCloud meta-data file is JSON (as nubis writes it) or YAML: either way,
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
