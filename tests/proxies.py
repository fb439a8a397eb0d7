"""TCP proxies the tests control, to make outages without touching a shared server."""

import socket
import threading


class Proxy:
    """127.0.0.1:port -> a server (PostgreSQL, Redis) the tests share and never stop.

    ``cut()``: every connection is dropped and new ones are closed at once (the
    network is down); ``restore()`` ends that.  ``black_hole()``: connections
    old and new stay open, new ones are still accepted, but no byte moves
    (what a hung server or a silently dropping firewall looks like to the
    client); ``forward()`` ends that.
    """

    def __init__(self, host: str, port: int, listen: str = "127.0.0.1"):
        self.upstream = (host, port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.up = True
        self.closing = False
        self.lock = threading.Lock()
        self.sockets = set()
        self.listener = socket.create_server((listen, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self):
        self.flowing.clear()

    def forward(self):
        self.flowing.set()

    def cut(self):
        self.up = False
        with self.lock:
            live = list(self.sockets)
        for s in live:
            self._close(s)

    def restore(self):
        self.up = True

    def _wait_flowing(self) -> bool:
        while not self.flowing.wait(0.05):
            if self.closing:
                return False
        return not self.closing

    def _track(self, s):
        with self.lock:
            self.sockets.add(s)

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()  # the "network" is down
                continue
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        if not self._wait_flowing():
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            self._close(client)
            return
        server.settimeout(None)
        self._track(server)
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while self._wait_flowing():
                data = src.recv(65536)
                # Bytes read just as the hole opened are held, not delivered.
                if not data or not self._wait_flowing():
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            self._close(s)

    def _close(self, s):
        with self.lock:
            self.sockets.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def close(self):
        self.closing = True
        self.listener.close()
        self.cut()

