"""Images: the store of the images VMs boot from, and the tiny guest image nubis builds."""
