from twisted.application.service import ServiceMaker

chatd = ServiceMaker(
    "chatd",
    "chatd.tap",
    "A chat daemon: TCP line protocol and WebSocket over one chat service.",
    "chatd",
)
