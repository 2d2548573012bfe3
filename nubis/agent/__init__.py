"""The host agent. It imports nothing of the control plane but `nubis.protocol`."""
