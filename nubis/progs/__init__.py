"""The cloud's state machines (VMs, hosts, networks, images, billing), one module each."""
