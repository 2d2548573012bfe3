"""nubis: an IPv6-first, API-first cloud (IaaS) control plane."""

__version__ = "0.1.0"
