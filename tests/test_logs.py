"""chatd.logs: the JSON line format and how it replaces twistd's observer."""

import json
from io import StringIO

from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.failure import Failure

from chatd import logs
from chatd.loglevel import LevelFilter, LevelledTop
from chatd.tap import Options


def emitted(**kw) -> dict:
    out = StringIO()
    observer = logs.json_file_observer(out)
    Logger(namespace="chatd.test", observer=observer).emit(
        kw.pop("level", LogLevel.info), "refused {kind} from {nick}: {code}", **kw)
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    return json.loads(line)


def test_one_json_object_per_line_with_fields():
    record = emitted(kind="join", nick="bob", code="banned", peer="10.0.0.1", session=7,
                     rooms=["#a", "#b"], thing=object())
    assert record["event"] == "refused join from bob: banned"
    assert record["level"] == "info" and record["namespace"] == "chatd.test"
    assert record["timestamp"].endswith("Z") and isinstance(record["time"], float)
    assert (record["kind"], record["nick"], record["code"], record["peer"], record["session"],
            record["rooms"]) == ("join", "bob", "banned", "10.0.0.1", 7, ["#a", "#b"])
    assert record["thing"].startswith("<object object")
    assert not any(k.startswith("log_") for k in record)


def test_long_fields_are_cut():
    assert len(emitted(nick="x" * 5000)["nick"]) == logs.MAX_FIELD


def test_failures_carry_their_traceback():
    out = StringIO()
    try:
        1 / 0
    except ZeroDivisionError:
        Logger(observer=logs.json_file_observer(out)).failure("it broke for {nick}",
                                                              Failure(), nick="bob")
    record = json.loads(out.getvalue())
    assert record["level"] == "critical"
    assert record["error"].startswith("ZeroDivisionError")
    assert "Traceback" in record["traceback"] and record["nick"] == "bob"


def test_json_root_sets_the_applications_observer(tmp_path):
    app = Application("chatd")
    root = LevelledTop(LevelFilter("info"),
                       {"logfile": str(tmp_path / "chatd.log"), "nodaemon": True}, "json")
    root.setServiceParent(app)
    observer = app.getComponent(ILogObserver)
    assert observer is not None
    Logger(observer=observer).info("hello {who}", who="ops")
    Logger(observer=observer).debug("below the level {who}", who="nobody")
    [record] = [json.loads(line) for line in (tmp_path / "chatd.log").read_text().splitlines()]
    assert record["who"] == "ops"


def test_text_root_logs_text(tmp_path):
    app = Application("chatd")
    LevelledTop(LevelFilter("info"), {"logfile": str(tmp_path / "chatd.log")},
                "text").setServiceParent(app)
    Logger(observer=app.getComponent(ILogObserver)).info("hello {who}", who="ops")
    assert "hello ops" in (tmp_path / "chatd.log").read_text()


def test_log_format_option():
    config = Options()
    config.parseOptions(["--log-format", "json", "--operators", "Root", "--operators", "ops2"])
    assert (config["log-format"], config["operators"]) == ("json", ["Root", "ops2"])


def test_the_logger_hook_for_twistd_writes_json_to_stdout(capsys):
    Logger(observer=logs.json_observer()).info("up {n}", n=1)
    assert json.loads(capsys.readouterr().out)["n"] == 1
