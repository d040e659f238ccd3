"""Separate "hosts" for workers: Linux network namespaces joined to this machine by veth pairs.

Why: a worker on another machine reaches the Prefect API through the load balancer and the
site through its jump host over a network, not over loopback. Each ``Host`` is a network
namespace with its own loopback and one veth link to this machine, in a private /30 chosen by
the test (10.231.x.y, checked unused): the namespace side is the host's address, the machine
side its gateway. Nothing is routed further: the gateway is a TCP relay (HAProxy, see
``gateway_config``) that forwards chosen ports to loopback services — the API load balancer,
the jump host's sshd, PostgreSQL — and nothing else.

Everything made here is removed by ``remove`` (deleting a namespace deletes its veth pair), and
``remove_stale`` clears what a killed test process left (names carry the owner's pid).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from topup_cli.haproxy import Backend, Bind, HaproxyConfig, TcpRelay

PREFIX = "t15"
RANGE = ipaddress.IPv4Network("10.231.0.0/16")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show").stdout
    return [ipaddress.IPv4Interface(m).network for m in re.findall(r"inet (\S+)", out)]


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` /30 networks of RANGE overlapping nothing configured on this machine, picked
    from an offset derived from the pid (parallel test processes rarely collide)."""
    used = used_networks()
    subnets = list(RANGE.subnets(new_prefix=30))
    start = (os.getpid() * 7) % len(subnets)
    out = []
    for net in subnets[start:] + subnets[:start]:
        if not any(net.overlaps(u) for u in used):
            out.append(net)
            if len(out) == count:
                return out
    raise RuntimeError("no free /30 in 10.231.0.0/16")


@dataclass
class Host:
    """One namespace: ``address`` inside, ``gateway`` on this machine's side of the veth."""

    name: str
    gateway: str
    address: str

    @property
    def veth(self) -> str:
        return f"{self.name}h"[:15]

    def create(self) -> Host:
        peer = f"{self.name}n"[:15]
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", self.name)
            _ip("addr", "add", f"{self.gateway}/30", "dev", self.veth)
            _ip("link", "set", self.veth, "up")
            for args in (
                ("addr", "add", f"{self.address}/30", "dev", peer),
                ("link", "set", peer, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("netns", "exec", self.name, "ip", *args)
        except BaseException:
            self.remove()
            raise
        return self

    def wrap(self) -> list[str]:
        """Command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.name]

    def remove(self) -> None:
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.veth, check=False)


def make_hosts(count: int) -> list[Host]:
    hosts: list[Host] = []
    try:
        for i, net in enumerate(free_subnets(count)):
            a, b = list(net.hosts())
            hosts.append(Host(f"{PREFIX}{os.getpid()}{chr(97 + i)}", str(a), str(b)).create())
    except BaseException:
        for h in hosts:
            h.remove()
        raise
    return hosts


def remove_stale() -> None:
    """Namespaces of this prefix whose owning test process is gone."""
    out = _ip("netns", "list", check=False).stdout
    for name in re.findall(rf"^({PREFIX}(\d+)[a-z])\b", out, re.M):
        ns, pid = name
        if not Path(f"/proc/{pid}").exists():
            Host(ns, "0.0.0.0", "0.0.0.0").remove()


def gateway_config(hosts: list[Host], relays: dict[str, tuple[int, int]]) -> HaproxyConfig:
    """TCP relays on every host's gateway: ``name -> (gateway port, loopback port)``."""
    return HaproxyConfig(
        tcp=[
            TcpRelay(
                name=name,
                binds=[Bind(host=h.gateway, port=outer) for h in hosts],
                target=Backend(name=f"{name}_target", host="127.0.0.1", port=inner),
            )
            for name, (outer, inner) in relays.items()
        ]
    )
