"""chatd: a chat daemon on Twisted with line, JSON and WebSocket front ends."""

__version__ = "0.1.0"
