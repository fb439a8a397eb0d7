"""The IRC front end's protocol logic, independent of its transport.

``message``: IRC lines in and out; ``numerics``: reply codes; ``isupport``: the
005 tokens; ``caps``: CAP and SASL; ``render``: chatd events as IRC lines, once
per variant; ``conn``: one client's IRC state machine; ``commands``: IRC
commands as chatd requests.  ``chatd.protocols.irc`` puts it on TCP.
"""
