"""SIGTERM: every client is told why, connections close, the daemon exits promptly."""

BYE = "server shutting down"


def test_sigterm_says_bye_to_every_client_and_exits(start_daemon):
    d = start_daemon()
    tel = d.line().login("tel", "#end")
    newbie = d.line()  # connected, no nick yet
    newbie.expect("Welcome")
    script = d.line().login("script", "#end").json_mode()
    web = d.ws().login("web", "#end")
    d.wait_connections(4)

    d.terminate()
    assert f"* closing connection: {BYE}" in tel.expect_closed()
    assert f"* closing connection: {BYE}" in newbie.expect_closed()
    assert {"type": "bye", "reason": BYE} in script.expect_closed()
    assert {"type": "bye", "reason": BYE} in web.expect_closed()
    assert web.close_code == 1000 and web.close_reason == BYE

    d.stop(timeout=5)
    assert d.returncode == 0 and d.exited_cleanly(), d.output()
    assert "Traceback" not in d.log()


def test_a_port_in_use_stops_the_daemon_with_an_error(tmp_path):
    import socket
    import subprocess
    import sys

    from .conftest import ROOT
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile=-", "chatd", "--line", "tcp:0:interface=127.0.0.1",
             "--ws", f"tcp:{port}:interface=127.0.0.1"],
            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert proc.returncode == 1
    assert "cannot open a listener" in proc.stdout and "Address already in use" in proc.stdout


def test_a_tls_port_in_use_stops_the_daemon_too(tmp_path):
    import socket
    import subprocess
    import sys

    from .certs import CA
    from .conftest import ROOT
    ca = CA(tmp_path / "ca")
    cert, key, _ = ca.issue("server", hosts=("127.0.0.1",))
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile=-", "chatd", "--line", f"tls:{port}:interface=127.0.0.1",
             "--ws", "tcp:0:interface=127.0.0.1", "--tls-cert", str(cert), "--tls-key", str(key)],
            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert proc.returncode == 1
    assert "cannot open a listener" in proc.stdout
