"""The command reference every front end can show (the ``help`` request's answer).

Front-end neutral data: the dispatcher answers ``help`` with it, and the
text mode's parser (chatd.commands) follows the same names.
"""

HELP_LINES = [
    "/nick NAME            choose or change your nick",
    "/join #room [pass]    join a room (or switch to it); plain lines go to it",
    "/part [#room] [why]   leave a room (default: the current one)",
    "/msg NICK text        private message",
    "/me text              action in the current room",
    "/away [text]          mark yourself away (no text: back); IRC users see it",
    "/who [#room] [after]  who is in a room (a large one in pages, after a nick)",
    "/rooms [#after]       list rooms (a long list in pages: those after #after)",
    "/history [#room] [before-id] [count]  older messages of a room",
    "/register PASSWORD    protect your current nick with a password",
    "/login NICK PASSWORD  log in as a registered nick",
    "/resume NICK TOKEN    log in with the token a login gave (no password needed)",
    "/logout               log out; your resume tokens stop working",
    "/password OLD NEW     change your password",
    "/topic [#room] [text] show or (operators) set a room's topic",
    "/kick [#room] NICK [why]  operators: put someone out of a room",
    "/ban [#room] NICK     operators: ban a nick and its account (/unban lifts it)",
    "/op [#room] NICK      operators: make someone an operator (/deop undoes it)",
    "/mode [#room] +i|-i|+k PASS|-k  operators: invite-only, room password",
    "/invite NICK [#room]  operators: let someone into an invite-only room",
    "/keep [#room]         operators with an account: keep the room when it empties",
    "/unkeep [#room]       its keeper: let the room go when it empties",
    "/wall TEXT            server operators: a notice to everyone connected",
    "/kill NICK [why]      server operators: disconnect someone",
    "/gban nick:N|account:N|addr:CIDR DURATION [why]  server operators: ban from the "
    "server (10m, 2h, 7d; 0: for good)",
    "/ungban nick:N|account:N|addr:CIDR  server operators: lift a server ban",
    "/gbans                server operators: list server bans",
    "/sessions             server operators: who is connected, from where",
    "/json                 switch this connection to JSON lines (for scripts)",
    "/ping                 check the server answers",
    "/help                 this list",
    "/quit [reason]        leave",
    "a line starting with // sends the rest beginning with /",
]
