"""The host's VM network: bridge and taps, the guard firewall, radvd, the metadata service."""
