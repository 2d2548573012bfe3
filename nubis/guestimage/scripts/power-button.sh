#!/bin/sh
# Run by acpid when the ACPI power button is pressed: a clean power-off.
exec /bin/busybox poweroff
