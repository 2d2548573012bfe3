"""Placement: which host a VM goes to, and the exact accounting of what hosts hold."""
