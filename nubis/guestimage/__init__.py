"""The tiny guest image, built from Debian's packages: a kernel, busybox and dropbear
in an initramfs, for tests, demos, offline use and the agent's acceleration probe.
Shared by both sides: the control plane adds it as a public image, the agent boots
its kernel to probe."""

from __future__ import annotations


class BuildError(RuntimeError):
    """The tiny guest's parts could not be had or put together; the message says why."""
