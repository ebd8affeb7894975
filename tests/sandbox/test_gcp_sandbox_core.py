"""Sandbox building blocks the GCP side relies on: profiles, loopback addresses, the CA, the handle."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading

import pytest
from cryptography import x509

from sandbox.app import Sandbox
from sandbox.core.addresses import AddressPool
from sandbox.core.certs import CertificateAuthority
from sandbox.core.profiles import get_profile


def test_profiles_carry_the_agreed_durations():
    instant = get_profile("instant")
    assert (instant.cluster_provisioning, instant.operation, instant.model_load) == (0.3, 0.05, 0.3)
    demo = get_profile("demo")
    assert (demo.cluster_provisioning, demo.gateway_programming) == (4, 3)
    realistic = get_profile("realistic")
    assert (realistic.cluster_provisioning, realistic.model_load, realistic.gateway_programming) == (6, 5, 3)
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("fast")


def test_address_pools_hand_out_distinct_loopback_addresses():
    first, second = AddressPool(), AddressPool()
    try:
        addresses = [first.allocate() for _ in range(300)] + [second.allocate() for _ in range(300)]
    finally:
        first.close()
        second.close()
    assert len(set(addresses)) == 600
    for address in addresses:
        parsed = ipaddress.IPv4Address(address)
        assert parsed.is_loopback and not address.startswith("127.0.")
        assert address.rsplit(".", 1)[1] not in ("0", "255")


def test_an_address_whose_model_port_is_taken_is_skipped():
    pool = AddressPool()
    try:
        candidate = f"127.{pool.second_octet}.0.1"
        with socket.socket() as squatter:
            squatter.bind((candidate, 8000))
            squatter.listen()
            assert pool.allocate() != candidate
    finally:
        pool.close()


def test_issued_certificates_verify_against_the_ca(tmp_path):
    authority = CertificateAuthority()
    cert_pem, key_pem = authority.issue("127.0.0.1")
    certificate = x509.load_pem_x509_certificate(cert_pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert b"PRIVATE KEY" in key_pem

    context = ssl.create_default_context(cadata=authority.ca_pem.decode())
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key_pem)
    server_context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted = threading.Thread(target=_serve_one_handshake, args=(listener, server_context))
        accepted.start()
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass
        accepted.join(5)


def _serve_one_handshake(listener: socket.socket, context: ssl.SSLContext) -> None:
    connection, _ = listener.accept()
    with context.wrap_socket(connection, server_side=True):
        pass


def test_the_sandbox_refuses_to_bind_beyond_loopback():
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(host="0.0.0.0")


def test_the_handle_runs_calls_on_the_sandbox_loop(sandbox):
    async def loop_thread_name():
        return threading.current_thread().name

    assert sandbox.call(loop_thread_name) == "sandbox-loop"
    rule = sandbox.faults_add(api="model", path="/never-requested", status=500)
    assert any(entry["id"] == rule for entry in sandbox.run(sandbox.sandbox.faults.rules))
    sandbox.faults_clear()
    assert sandbox.run(sandbox.sandbox.faults.rules) == []
