"""Socket settings every MQTT client of the protocol uses, device and cloud alike (SPEC §1).

Without TCP_NODELAY, Nagle's algorithm holds a small message (a command, its result, an
event) while an earlier one is unacknowledged, until the peer's delayed ACK fires — about
40 ms on Linux, on every hop. paho does not set it; the broker's side is set by its config
(``set_tcp_nodelay true``).
"""

from __future__ import annotations

import socket
from typing import Any

#: (level, option, value) as ``setsockopt`` takes it (and aiomqtt's ``socket_options``).
NO_DELAY: tuple[int, int, int] = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
SOCKET_OPTIONS: tuple[tuple[int, int, int], ...] = (NO_DELAY,)


def apply_socket_options(sock: Any) -> None:
    """For a raw paho socket (``on_socket_open``); anything but a TCP socket is left alone."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        for option in SOCKET_OPTIONS:
            sock.setsockopt(*option)
