"""Unique loopback addresses for pods and gateways (all of 127.0.0.0/8 routes to this host on Linux)."""

from __future__ import annotations

import ipaddress

# 127.0.0.1 is the sandbox's own API address; hand out addresses from 127.1.0.1 upwards.
_FIRST = int(ipaddress.IPv4Address("127.1.0.1"))
_LAST = int(ipaddress.IPv4Address("127.255.255.254"))


class AddressPool:
    def __init__(self) -> None:
        self._next = _FIRST

    def allocate(self) -> str:
        while self._next <= _LAST:
            candidate = ipaddress.IPv4Address(self._next)
            self._next += 1
            # Skip .0 and .255 in every /24: some tools treat them as network/broadcast addresses.
            if candidate.packed[-1] not in (0, 255):
                return str(candidate)
        raise RuntimeError("the loopback address pool is exhausted")
