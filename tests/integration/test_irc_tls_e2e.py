"""IRC over TLS through the real daemon: ``--irc tls:`` (the shared certificate)
and IRC over WebSocket at ``wss://…/irc``, checked by real TLS clients against a
CA made for the test, chatting with each other and with a telnet user."""

import re

import pytest

from .certs import CA
from .irc_clients import IrcClient, IrcWSClient

_TLS_PORT_RE = re.compile(r"\b(IrcFactory|Site) \(TLS\) starting on (\d+)")


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path / "ca")
    cert, key, _serial = ca.issue("server", hosts=("127.0.0.1",))
    return ca, cert, key


def test_irc_over_tls_and_wss_chat_with_telnet(start_daemon, pki):
    ca, cert, key = pki
    d = start_daemon("--irc", "tcp:0:interface=127.0.0.1", "--irc", "tls:0:interface=127.0.0.1",
                     "--ws", "tls:0:interface=127.0.0.1",
                     "--tls-cert", str(cert), "--tls-key", str(key))
    ports = d.wait_for(lambda: _tls_ports(d), "the TLS listeners' ports")
    tls = IrcClient(ports["IrcFactory"], tls_ca=ca.path)
    wss = IrcWSClient(ports["Site"], tls_ca=ca.path)
    d.clients += [tls, wss]
    tls.register("secure")
    wss.register("websecure")
    tls.join("#tls")
    wss.join("#tls")
    tel = d.line().login("tel", "#tls")
    tls.privmsg("#tls", "over TLS")
    assert wss.expect("PRIVMSG").text == "over TLS"
    tel.expect("[#tls] <secure> over TLS")
    wss.privmsg("#tls", "over wss")
    assert tls.expect("PRIVMSG").text == "over wss"
    tel.expect("[#tls] <websecure> over wss")
    tls.quit()
    wss.send("QUIT")
    wss.expect("ERROR")


def _tls_ports(daemon) -> dict | None:
    """{"IrcFactory": port, "Site": port} once both TLS listeners are logged."""
    ports = {kind: int(port) for kind, port in _TLS_PORT_RE.findall(daemon.log())}
    return ports if len(ports) == 2 else None
