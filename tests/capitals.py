"""A stand-in for a guest behind a VM's serial socket, for tests of the relay and the
API's websocket (the real guest is in the end-to-end tests): it answers every chunk
in capitals."""

from __future__ import annotations

import socket
import threading
from pathlib import Path


def serve_capitals(path: Path) -> socket.socket:
    """Listen on the unix socket `path`; close the answer to stop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def guest() -> None:
        with server:
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                with connection:
                    while data := connection.recv(1024):
                        connection.sendall(data.upper())

    threading.Thread(target=guest, daemon=True).start()
    return server
