"""The shipped cluster nginx configuration (etc/nginx/), made runnable by a test.

``cluster_config`` rewrites the example's listen ports and upstream servers and
wraps both files in a main configuration of their own (pid, logs and temp
files under a test directory); ``Nginx`` runs it in the foreground.
"""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTTP_CONF = ROOT / "etc" / "nginx" / "chatd-cluster.conf"
STREAM_CONF = ROOT / "etc" / "nginx" / "chatd-cluster-stream.conf"
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")


def binary() -> str:
    # Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
    found = shutil.which("nginx", path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    assert found, "nginx is not installed (scripts/test-setup installs it)"
    return found


def stream_module() -> str:
    """The main-context line that gives this nginx its stream module, if it needs one."""
    built = subprocess.run([binary(), "-V"], capture_output=True, text=True, timeout=10).stderr
    if "--with-stream=dynamic" not in built:
        assert "--with-stream" in built, "this nginx has no stream module"
        return ""
    for where in MODULE_DIRS:
        path = Path(where) / "ngx_stream_module.so"
        if path.exists():
            return f"load_module {path};\n"
    raise AssertionError("nginx's stream module is not installed "
                         "(Debian: libnginx-mod-stream; scripts/test-setup installs it)")


def _servers(text: str, port: int, nodes) -> str:
    """The upstream's example servers replaced by ``nodes`` ((host, port) pairs)."""
    lines = [f"    server {host}:{p} max_fails=1 fail_timeout=10s;" for host, p in nodes]
    pattern = re.compile(rf"^\s*server [\d.]+:{port} .*;\n", re.M)
    first = pattern.search(text)
    assert first, f"no example upstream server on port {port}"
    text = pattern.sub("", text)
    return text[:first.start()] + "\n".join(lines) + "\n" + text[first.start():]


def cluster_config(workdir: Path, http_port: int, line_port: int, ws_nodes=(), line_nodes=(),
                   listen="127.0.0.1", irc_port: int | None = None, irc_nodes=()) -> Path:
    """Write nginx.conf for the shipped example, listening on ``listen``; its path.

    The IRC port is ``irc_port``, or a free one if the test does not use it.
    """
    http = HTTP_CONF.read_text(encoding="utf-8")
    stream = STREAM_CONF.read_text(encoding="utf-8")
    if irc_port is None:
        irc_port = free_port(listen)
    if ws_nodes:
        http = _servers(http, 8080, ws_nodes)
    if line_nodes:
        stream = _servers(stream, 9000, line_nodes)
    if irc_nodes:
        stream = _servers(stream, 6667, irc_nodes)
    http = (http.replace("listen 80;", f"listen {listen}:{http_port};")
            .replace("listen [::]:80;", ""))
    stream = (stream.replace("listen 9000;", f"listen {listen}:{line_port};")
              .replace("listen [::]:9000;", "")
              .replace("listen 6667;", f"listen {listen}:{irc_port};")
              .replace("listen [::]:6667;", ""))
    (workdir / "chatd-cluster.conf").write_text(http)
    (workdir / "chatd-cluster-stream.conf").write_text(stream)
    temp = " ".join(f"{kind}_temp_path {workdir}/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = workdir / "nginx.conf"
    main.write_text(
        f"{stream_module()}daemon off; worker_processes 1; pid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; {temp} include {workdir}/chatd-cluster.conf; }}\n"
        f"stream {{ include {workdir}/chatd-cluster-stream.conf; }}\n")
    return main


def check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([binary(), "-t", "-p", str(config.parent), "-c", str(config)],
                          capture_output=True, text=True, timeout=30)


class Nginx:
    """nginx in the foreground on ``config``; ``stop()`` ends it."""

    def __init__(self, config: Path, wrap=()):
        self.config = config
        self.proc = subprocess.Popen([*wrap, binary(), "-p", str(config.parent), "-c",
                                      str(config)], stderr=subprocess.PIPE)

    def wait_listening(self, host: str, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not start: "
                                         f"{self.proc.stderr.read().decode(errors='replace')}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
