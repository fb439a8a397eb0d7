"""A small network of separate hosts for one test: Linux network namespaces
joined by veth pairs to a bridge (the "switch", itself in a namespace), with
their own addresses, made by the test and removed afterwards.

    with Network(["node-a", "node-b", "redis"]) as net:
        net.address("node-a")          # 10.R.0.11 and so on
        net.wrap("node-a")             # ("ip", "netns", "exec", NS): run a command there
        net.host_address               # the test process's own address on that network

The root namespace (where the test, PostgreSQL and nginx run) gets one veth
into the bridge too, with ``host_address``, so the test can reach every host
and the hosts can reach a proxy the test listens with there.  Nothing else of
the machine changes (no forwarding, no firewall rule).  Needs root and
``ip netns``; ``available()`` says why not where it cannot work.
"""

import random
import shutil
import subprocess
import uuid


def _ip(*args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15,
                          check=check)


def available() -> str | None:
    """None if namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"chatdprobe{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Network:
    def __init__(self, hosts):
        self.tag = uuid.uuid4().hex[:5]
        # A /24 in 10.0.0.0/8 picked at random, so parallel runs rarely collide.
        self.net = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.hosts = {name: f"{self.net}.{11 + i}" for i, name in enumerate(hosts)}
        self.host_address = f"{self.net}.1"
        self.switch = f"cs{self.tag}"
        self._namespaces = []
        self._links = []

    def ns(self, host: str) -> str:
        return f"ch{self.tag}{list(self.hosts).index(host)}"

    def address(self, host: str) -> str:
        return self.hosts[host]

    def wrap(self, host: str) -> tuple:
        return ("ip", "netns", "exec", self.ns(host))

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def __enter__(self) -> "Network":
        try:
            self._netns(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, (host, address) in enumerate(self.hosts.items()):
                ns = self.ns(host)
                self._netns(ns)
                self._plug(f"v{self.tag}h{i}", ns, address)
            # The root namespace's own port on the switch.
            self._plug(f"v{self.tag}r", None, self.host_address)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _plug(self, name: str, ns: str | None, address: str) -> None:
        """A veth from ``ns`` (None: the root namespace) to the switch's bridge."""
        outer, inner = f"{name}s", f"{name}e"
        _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        self._links.append(inner)  # deleting one end deletes the pair
        _ip("link", "set", outer, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", outer, "master", "br0")
        _ip("-n", self.switch, "link", "set", outer, "up")
        if ns is not None:
            _ip("link", "set", inner, "netns", ns)
            self._links.remove(inner)  # goes with its namespace
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
        else:
            _ip("addr", "add", f"{address}/24", "dev", inner)
            _ip("link", "set", inner, "up")

    def __exit__(self, *exc) -> None:
        for link in self._links:
            _ip("link", "del", link, check=False)
        for ns in reversed(self._namespaces):
            _ip("netns", "del", ns, check=False)
        self._links, self._namespaces = [], []
