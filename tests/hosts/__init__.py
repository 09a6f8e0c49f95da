"""Test hosts that are separate machines to tidegate: each with its own root filesystem,
network namespace and address, sshd and engine (see machine.py for how one is made, and
hostset.py for a set of them). `python -m tests.hosts up podman docker` tries it by hand."""
from .hostset import HostSet, recorded, start_hosts
from .machine import Host
from .network import route_device

__all__ = ["Host", "HostSet", "recorded", "route_device", "start_hosts"]
