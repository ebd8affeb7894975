"""Unique loopback addresses for pods and gateways (all of 127.0.0.0/8 reaches this host on Linux).

The one allocator of the twin: each Sandbox and each data-plane harness (sandbox.dataplane.harness)
holds an AddressPool. Every pool draws its own 127.N.0.0/16, N in 2..254, distinct from every other
pool of this process whoever owns it; separate processes (parallel test runs, a demo or a benchmark
beside a test run) pick N at random and skip any address whose model-server or gateway port is
already bound, so they do not collide either.
"""

from __future__ import annotations

import random
import socket
import threading

# 127.0.x.x holds the sandbox's own servers (127.0.0.1).
_SECOND_OCTETS = range(2, 255)
# The ports the data plane binds on these addresses: vLLM's 8000 and the Gateway listener's 80.
_PROBED_PORTS = (80, 8000)
_claimed_octets: set[int] = set()
_claim_lock = threading.Lock()


def _claim_second_octet() -> int:
    with _claim_lock:
        free = [octet for octet in _SECOND_OCTETS if octet not in _claimed_octets]
        if not free:
            raise RuntimeError("every loopback /16 for address pools is in use in this process")
        octet = random.SystemRandom().choice(free)
        _claimed_octets.add(octet)
        return octet


def _ports_free(address: str) -> bool:
    for port in _PROBED_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except PermissionError:
                continue  # a privileged port without root: no evidence either way
            except OSError:
                return False
    return True


class AddressPool:
    def __init__(self) -> None:
        self.second_octet = _claim_second_octet()
        self._next = 0

    def allocate(self) -> str:
        # Host parts 1..250 in each /24 keep clear of .0 and .255, which some tools treat specially.
        while self._next < 256 * 250:
            third, fourth = divmod(self._next, 250)
            self._next += 1
            address = f"127.{self.second_octet}.{third}.{fourth + 1}"
            if _ports_free(address):
                return address
        raise RuntimeError(f"the loopback pool 127.{self.second_octet}.0.0/16 is exhausted")

    def close(self) -> None:
        """Give the /16 back for another pool of this process (when its sandbox stops).

        Addresses are handed out once and never reused while the pool lives, so a deleted pod's
        or gateway's address needs no release of its own."""
        with _claim_lock:
            _claimed_octets.discard(self.second_octet)

    def __enter__(self) -> AddressPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
