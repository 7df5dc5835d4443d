"""The Host-header check that keeps other web pages off a local server (DNS rebinding)."""

from __future__ import annotations

import pytest

from moodscope.service.operators import HostCheck, host_of


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:8000", "::1"),
        ("::1", "::1"),
        ("moods.example.org:443", "moods.example.org"),
    ],
)
def test_host_of_drops_port_and_brackets(header, host):
    assert host_of(header) == host


def test_loopback_bind_serves_its_names_only():
    check = HostCheck("127.0.0.1")
    for ok in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
        assert check.allows(ok), ok
    for bad in ("attacker.example", "127.0.0.1.nip.io", "10.0.0.5:8000", "", None):
        assert not check.allows(bad), bad


def test_allowed_hosts_and_wildcards():
    check = HostCheck("127.0.0.1", ["moods.example.org"])
    assert check.allows("moods.example.org:443") and not check.allows("other.example.org")
    # Bound to every interface: any address literal (cannot be rebound), names only if allowed.
    public = HostCheck("0.0.0.0")
    assert public.allows("10.0.0.5:8000") and public.allows("[fe80::1]:8000")
    assert not public.allows("attacker.example")
    assert "any IP address" in public.describe()
    assert HostCheck("127.0.0.1", ["*"]).allows("anything.example")
