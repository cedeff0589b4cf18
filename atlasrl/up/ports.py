"""Free TCP ports on loopback, chosen once so a restarted role comes back at the same address."""
from __future__ import annotations

import socket


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def ports_for(first: int, count: int, pool: list[int]) -> list[int]:
    """``count`` ports starting at ``first``, or taken from ``pool`` when first is 0."""
    if first:
        return [first + i for i in range(count)]
    return [pool.pop() for _ in range(count)]
