/* chatd web client: one WebSocket to /ws, JSON frames (see docs/protocol.rst).
 *
 * Server text only ever reaches the page through textContent, never as HTML.
 * The connection is kept alive by reconnecting with exponential backoff; on
 * reconnect the client logs in again (with the resume token the last login
 * gave, not the password: that is not kept), rejoins its rooms asking for everything
 * after the last message id it saw ("since"), and drops any message id it has
 * already shown, so nothing is shown twice or lost.
 */
"use strict";

(function () {
  const BACKOFF_CAP = 30; // seconds
  const IDLE_PROBE = 25000; // ms of silence before we ask the server whether it is there
  const PROBE_TIMEOUT = 10000; // ms to wait for any answer before giving the socket up
  const MAX_LINES = 2000; // lines kept per conversation
  const MAX_SEEN = 5000; // message ids remembered per conversation for de-duplication

  /* Seconds to wait before reconnect attempt number `attempt` (0-based):
   * 1, 2, 4, 8 ... capped at 30, each scaled by a jitter in [0.75, 1.25) so a
   * crowd of clients does not come back in lockstep after a restart. */
  function backoffDelay(attempt, random) {
    const base = Math.min(BACKOFF_CAP, Math.pow(2, Math.min(attempt, 16)));
    const jitter = 0.75 + 0.5 * (random === undefined ? Math.random() : random);
    return Math.min(BACKOFF_CAP, base * jitter);
  }

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const lower = (s) => String(s).toLowerCase();

  const state = {
    ws: null,
    // {nick, token, password}: in memory only.  A login's ack brings a resume token,
    // which logs in again on reconnect; the password is then forgotten (kept only
    // while no token came: a server without them, or its store down).
    identity: null,
    nick: null,
    registered: false, // the server accepted our nick on the current connection
    entered: false, // the chat view is showing (we got in at least once)
    quitting: false,
    attempt: 0,
    reconnectAt: 0,
    reconnectTimer: null,
    countdownTimer: null,
    probeTimer: null,
    probing: false,
    nextId: 1,
    pending: new Map(), // request id -> {type, ...context}
    convs: new Map(), // "r:#room" / "p:nick" (lower case) -> conversation
    active: null,
    directory: [], // the server's room list, as of the last "rooms" answer
  };

  // -- connection --------------------------------------------------------------
  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + location.host + "/ws";
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    state.reconnectTimer = state.countdownTimer = null;
    dropSocket();
    setStatus("connecting", "connecting");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onmessage = (e) => {
      if (ws !== state.ws) return;
      armProbe();
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      if (ev && typeof ev === "object") handle(ev);
    };
    ws.onclose = () => {
      if (ws === state.ws) lost();
    };
    ws.onerror = () => {}; // onclose follows and does the work
  }

  // Forget the current socket without waiting for its close handshake.
  function dropSocket() {
    const ws = state.ws;
    state.ws = null;
    state.registered = false;
    state.pending.clear();
    clearTimeout(state.probeTimer);
    state.probing = false;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (e) { /* already closed */ }
    }
  }

  function lost() {
    dropSocket();
    setComposerEnabled(false);
    if (state.quitting) {
      setStatus("offline", "offline");
      showBanner("You left the chat. \u201cReconnect now\u201d brings you back.", "info");
      $("retry").hidden = false;
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const delay = backoffDelay(state.attempt++);
    state.reconnectAt = Date.now() + delay * 1000;
    state.reconnectTimer = setTimeout(connect, delay * 1000);
    const tick = () => {
      const left = Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000));
      setStatus("offline", "offline · reconnecting in " + left + " s");
    };
    tick();
    state.countdownTimer = setInterval(tick, 1000);
    $("retry").hidden = false;
  }

  // Browsers answer WebSocket ping frames themselves; this catches the other
  // half, a socket that died without a close (laptop lid, lost Wi-Fi).
  function armProbe() {
    clearTimeout(state.probeTimer);
    state.probing = false;
    state.probeTimer = setTimeout(() => {
      if (!state.ws) return;
      state.probing = true;
      if (state.registered) send({ type: "ping" }, { quiet: true });
      state.probeTimer = setTimeout(() => { if (state.probing) lost(); }, PROBE_TIMEOUT);
    }, IDLE_PROBE);
  }

  function send(req, context) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      showBanner("You are offline; that was not sent. It will be possible again once reconnected.");
      return null;
    }
    const id = state.nextId++;
    state.pending.set(id, Object.assign({ type: req.type }, context || {}));
    ws.send(JSON.stringify(Object.assign({ id: id }, req)));
    return id;
  }

  function register() {
    const who = state.identity;
    if (who.token) {
      send({ type: "resume", nick: who.nick, token: who.token }, { register: true });
    } else if (who.password) {
      send({ type: "login", nick: who.nick, password: who.password }, { register: true });
    } else {
      send({ type: "nick", nick: who.nick }, { register: true });
    }
  }

  // -- events from the server ----------------------------------------------------
  const handlers = {
    hello(ev) {
      $("server-info").textContent = "Connected to " + ev.server + " " + ev.version;
      if (state.identity) {
        register();
      } else {
        state.attempt = 0;
        setStatus("online", "online");
        $("retry").hidden = true;
        $("login-button").disabled = false;
      }
    },
    ack(ev) {
      const req = state.pending.get(ev.id) || { type: ev.request };
      state.pending.delete(ev.id);
      const fn = acks[ev.request];
      if (fn) fn(ev, req);
    },
    error(ev) {
      const req = ev.id !== undefined ? state.pending.get(ev.id) : undefined;
      state.pending.delete(ev.id);
      onError(ev, req || {});
    },
    message: onMessage,
    action: onMessage,
    private(ev) {
      const mine = state.nick && lower(ev.from) === lower(state.nick);
      const conv = privateConv(mine ? ev.to : ev.from);
      if (isDuplicate(conv, ev)) return;
      appendMessage(conv, ev, "message");
    },
    join(ev) {
      const conv = roomConv(ev.room);
      if (isMe(ev.nick)) return; // the ack says it, with the member list
      if (conv.large !== null && !conv.members.has(lower(ev.nick))) conv.large += 1;
      conv.members.set(lower(ev.nick), ev.nick);
      system(conv, ev.nick + " joined", ev.ts, "presence");
      if (conv === current()) renderMembers();
    },
    part(ev) {
      const conv = state.convs.get(roomKey(ev.room));
      if (!conv || isMe(ev.nick)) return;
      if (conv.large !== null) conv.large -= 1;
      conv.members.delete(lower(ev.nick));
      system(conv, ev.nick + " left" + (ev.reason ? " (" + ev.reason + ")" : ""), ev.ts,
             "presence");
      if (conv === current()) renderMembers();
    },
    presence(ev) {
      // Joins and parts gathered over a short window (a storm): one line for each.
      const conv = state.convs.get(roomKey(ev.room));
      if (!conv) return;
      for (const n of ev.joined || []) conv.members.set(lower(n), n);
      for (const n of ev.left || []) conv.members.delete(lower(n));
      if (conv.large !== null) conv.large += (ev.joins || 0) - (ev.parts || 0);
      if (ev.joins) system(conv, someNicks(ev.joined || [], ev.joins) + " joined", ev.ts,
                           "presence");
      if (ev.parts) system(conv, someNicks(ev.left || [], ev.parts) + " left", ev.ts,
                           "presence");
      if (conv === current()) renderMembers();
    },
    quit(ev) {
      for (const conv of state.convs.values()) {
        if (conv.kind === "room" && conv.members.delete(lower(ev.nick))) {
          system(conv, ev.nick + " quit" + (ev.reason ? " (" + ev.reason + ")" : ""), ev.ts,
                 "presence");
        } else if (conv.kind === "private" && lower(conv.name) === lower(ev.nick)) {
          system(conv, ev.nick + " went offline", ev.ts, "presence");
        }
      }
      renderMembers();
    },
    nick(ev) {
      if (isMe(ev.old)) {
        state.nick = ev.new;
        if (state.identity) state.identity.nick = ev.new;
        showMe();
      }
      for (const conv of state.convs.values()) {
        if (conv.kind === "room" && conv.members.delete(lower(ev.old))) {
          conv.members.set(lower(ev.new), ev.new);
          system(conv, ev.old + " is now known as " + ev.new, ev.ts, "presence");
        }
      }
      const pm = state.convs.get(privateKey(ev.old));
      if (pm && !state.convs.has(privateKey(ev.new))) {
        state.convs.delete(pm.key);
        pm.key = privateKey(ev.new);
        pm.name = ev.new;
        pm.label.textContent = "@" + ev.new;
        state.convs.set(pm.key, pm);
        system(pm, ev.old + " is now known as " + ev.new, ev.ts, "presence");
      }
      renderMembers();
      renderHead();
    },
    topic(ev) {
      const conv = state.convs.get(roomKey(ev.room));
      if (!conv) return;
      conv.topic = ev.topic;
      system(conv, ev.topic ? ev.nick + " set the topic: " + ev.topic
                            : ev.nick + " cleared the topic", ev.ts);
      if (conv === current()) renderHead();
    },
    kick(ev) {
      const conv = state.convs.get(roomKey(ev.room));
      if (!conv) return;
      const why = ev.reason ? " (" + ev.reason + ")" : "";
      conv.members.delete(lower(ev.nick));
      if (isMe(ev.nick)) {
        conv.joined = false; // and so not rejoined after a reconnect
        conv.members.clear();
        system(conv, "You were removed from " + conv.name + " by " + ev.by + why, ev.ts, "error");
        showBanner("You were removed from " + conv.name + " by " + ev.by + why + ".");
      } else {
        system(conv, ev.nick + " was removed by " + ev.by + why, ev.ts, "presence");
      }
      if (conv === current()) renderMembers();
    },
    ban: roomChange,
    unban: roomChange,
    op: roomChange,
    deop: roomChange,
    mode: roomChange,
    invite(ev) {
      showBanner(ev.by + " invites you to " + ev.room + ". Type /join " + ev.room + " to go.");
    },
    notice(ev) {
      inform(ev.text);
    },
    ping() {
      send({ type: "pong" }, { quiet: true });
    },
    bye(ev) {
      if (!state.quitting) showBanner("The server closed the connection: " + ev.reason + ".");
    },
  };

  function roomChange(ev) {
    const conv = state.convs.get(roomKey(ev.room));
    if (!conv) return;
    let text;
    if (ev.type === "mode") {
      // The event carries the room's modes after the change, not the change itself.
      text = ev.by + " changed the room's modes: now " +
        (ev.invite_only ? "invite-only" : "open to everyone") + ", " +
        (ev.password ? "with a password" : "without a password");
    } else {
      const verb = { ban: "banned", unban: "unbanned", op: "made an operator:",
                     deop: "removed operator:" }[ev.type];
      text = ev.by + " " + verb + " " + ev.nick;
    }
    system(conv, text, ev.ts);
  }

  function handle(ev) {
    const fn = handlers[ev.type];
    if (fn) fn(ev);
  }

  const acks = {
    nick(ev, req) {
      if (req.register) return registered(ev.nick);
      state.nick = ev.nick;
      if (state.identity) state.identity.nick = ev.nick;
      showMe();
    },
    login(ev, req) {
      if (req.register) {
        keepToken(ev, state.identity.password);
        return registered(ev.nick || state.identity.nick);
      }
      // /login typed while chatting: reconnects log in as this nick from now on.
      state.identity = { nick: ev.nick };
      keepToken(ev, req.secret);
      state.nick = ev.nick;
      showMe();
      const waiting = ev.offline ? "; " + ev.offline + " private message(s) waited for you" : "";
      tell(req, "You are logged in as " + ev.nick + waiting + ".");
    },
    join(ev, req) {
      const conv = roomConv(ev.room);
      const rejoin = conv.joined;
      conv.joined = true;
      if (ev.topic !== undefined) conv.topic = ev.topic;
      if (ev.more && conv.lastMid !== null && conv.lastMid !== req.since) {
        // A long absence comes back in pages: ask again from where this one ended.
        send({ type: "join", room: conv.name, since: conv.lastMid },
             { room: conv.name, conv: conv.key, since: conv.lastMid, paging: true });
      }
      if (req.paging) return;
      conv.members.clear();
      for (const n of ev.nicks || []) conv.members.set(lower(n), n);
      // A large room sends its member count, not the list, and announces no joins.
      conv.large = ev.large ? ev.members : null;
      if (ev.large && state.nick) conv.members.set(lower(state.nick), state.nick);
      if (req.secret) conv.password = req.secret;
      if (rejoin) {
        system(conv, "Reconnected to " + conv.name);
      } else {
        system(conv, "You joined " + conv.name + ".");
      }
      if (ev.large) {
        system(conv, conv.name + " is a large room: " + ev.members + " members; joins and " +
               "parts are not shown. /who lists who is here.");
      }
      if (req.activate || !state.active) activate(conv);
      else if (conv === current()) renderMembers();
      if (!rejoin) send({ type: "rooms" }, { quiet: true });
    },
    part(ev) {
      const conv = state.convs.get(roomKey(ev.room));
      if (conv) removeConv(conv);
      send({ type: "rooms" }, { quiet: true });
    },
    who(ev, req) {
      if (req.typed) {
        const nicks = ev.nicks || [];
        tell(req, "In " + ev.room + (ev.members !== undefined ? " (" + ev.members +
             " in all, " + nicks.length + " here)" : "") + ": " + nicks.join(", ") +
             (ev.more ? ". More: /who " + ev.room + " " + nicks[nicks.length - 1] : ""));
      }
      const conv = state.convs.get(roomKey(ev.room));
      if (!conv) return;
      conv.members.clear();
      for (const n of ev.nicks || []) conv.members.set(lower(n), n);
      if (conv === current()) renderMembers();
    },
    rooms(ev, req) {
      state.directory = ev.rooms || [];
      renderDirectory();
      if (req.typed) {
        tell(req, state.directory.length
          ? "Rooms: " + state.directory.map((r) => r.room + " (" + r.members + ")").join(", ")
          : "No rooms yet.");
      }
    },
    help(ev) {
      for (const line of ev.lines || []) system(current(), line);
    },
    private(ev, req) {
      // Typed as /msg: its tab opens once the server took the message.
      if (req.open) activate(privateConv(ev.to));
      if (ev.queued) {
        system(privateConv(ev.to), ev.to + " is offline; they will get this when they next log in.");
      }
    },
    resume(ev, req) {
      // The token we sent is spent: the ack brings the next one, as a login's does.
      return acks.login(ev, req);
    },
    logout(ev, req) {
      state.identity = { nick: ev.nick };
      state.nick = ev.nick;
      showMe();
      tell(req, "You are logged out; you are now " + ev.nick + ".");
    },
    register(ev, req) {
      // From now on the nick needs logging in, reconnects included.
      keepToken(ev, req.secret);
      inform("Your nick " + state.nick + " is registered. Log in with it and its password next time.");
    },
    password(ev, req) {
      keepToken(ev, req.secret);  // the server revoked the older tokens
      inform("Password changed.");
    },
    topic(ev, req) {
      const conv = state.convs.get(roomKey(ev.room));
      if (conv) {
        conv.topic = ev.topic;
        if (conv === current()) renderHead();
      }
      // Setting it is announced by the topic event; a question gets its answer here.
      if (req.query) {
        tell(req, ev.topic ? "Topic of " + ev.room + ": " + ev.topic +
                             (ev.by ? " (set by " + ev.by + ")" : "")
                           : ev.room + " has no topic.");
      }
    },
    history(ev, req) {
      const more = ev.more ? " Older still: /history " + ev.room + " " + ev.first : "";
      tell(req, ev.count ? ev.count + " earlier message(s) of " + ev.room + " shown." + more
                         : "No earlier messages in " + ev.room + ".");
    },
    invite(ev, req) {
      tell(req, ev.nick + " may now join " + ev.room + "; they have been told.");
    },
    away(ev, req) {
      tell(req, ev.away ? "You are away: " + ev.text : "You are back.");
    },
    keep(ev, req) {
      tell(req, ev.room + " is kept: its topic, operators, bans and modes stay when it empties.");
    },
    unkeep(ev, req) {
      tell(req, ev.room + " is no longer kept; it goes when its last member leaves.");
    },
    ping(ev, req) {
      if (req.typed) tell(req, "The server answered.");
    },
    wall(ev, req) {
      tell(req, "Notice sent to " + ev.sent + " session(s).");
    },
    kill(ev, req) {
      tell(req, ev.nick + " was disconnected.");
    },
    gban(ev, req) {
      tell(req, "Banned " + ev.kind + ":" + ev.target +
                (ev.until ? " until " + new Date(ev.until * 1000).toLocaleString()
                          : " permanently") + "; " + ev.dropped + " session(s) dropped.");
    },
    ungban(ev, req) {
      tell(req, "Lifted the server ban on " + ev.kind + ":" + ev.target + ".");
    },
    gbans(ev, req) {
      tell(req, ev.bans.length ? ev.bans.map((b) => b.kind + ":" + b.target +
        (b.until ? " until " + new Date(b.until * 1000).toLocaleString() : " permanently") +
        " by " + b.by + (b.reason ? " (" + b.reason + ")" : "")).join("\n")
        : "No server bans.");
    },
    sessions(ev, req) {
      tell(req, ev.total + " session(s):\n" + ev.sessions.map((s) =>
        (s.nick || "(no nick)") + " " + s.address + " " + s.front_end + " " +
        (s.rooms.join(" ") || "-") + " idle " + s.idle + "s").join("\n"));
    },
    quit() {},
    // kick, ban, unban, op, deop, mode: the room's event says what happened.
  };

  // A command's answer, in the conversation it was typed in.
  function tell(req, text) {
    const conv = req.conv ? state.convs.get(req.conv) : current();
    if (conv) system(conv, text);
    else showBanner(text, "info");
  }

  function keepToken(ev, password) {
    // The token when the ack has one, else (no tokens on this server, or none
    // could be stored) the password, to log in again on reconnect.
    state.identity.token = ev.token || null;
    state.identity.password = ev.token ? null : password || null;
  }

  function registered(nick) {
    state.nick = nick;
    state.identity.nick = nick;
    state.registered = true;
    state.attempt = 0;
    setStatus("online", "online");
    $("retry").hidden = true;
    setComposerEnabled(true);
    showMe();
    if (!state.entered) {
      state.entered = true;
      $("login-view").hidden = true;
      $("chat-view").hidden = false;
      $("login-error").hidden = true;
      $("password-input").value = "";
      const hash = decodeURIComponent(location.hash.slice(1));
      const wanted = hash ? hash.split(",") : [];
      for (const room of wanted) {
        if (room) send({ type: "join", room: room.startsWith("#") ? room : "#" + room },
                       { activate: true });
      }
      if (!wanted.length) $("join-input").focus();
    } else {
      hideBanner();
    }
    // Rejoin every room, asking for whatever was said after the last message we saw.
    for (const conv of state.convs.values()) {
      if (conv.kind !== "room" || !conv.joined) continue;
      const req = { type: "join", room: conv.name };
      if (conv.lastMid !== null) req.since = conv.lastMid;
      if (conv.password) req.password = conv.password;
      send(req, { room: conv.name, conv: conv.key, since: req.since });
    }
    send({ type: "rooms" }, {});
    renderHead();
  }

  function onError(ev, req) {
    let words = ev.message || ev.code;
    if (req.register && ev.code === "resume_refused") {
      // Expired or revoked: fall back to the password, which we do not keep (unless
      // no token ever came), so usually by asking the person for it.
      state.identity.token = null;
      if (state.identity.password) {
        register();
        return;
      }
      words = "Please log in again as " + state.identity.nick + " with your password.";
      $("nick-input").value = state.identity.nick;
    }
    if (req.register) {
      if (!state.entered) {
        if (ev.code === "unknown_type" && req.type === "login") {
          loginError("This server does not support accounts (it answered: " + words + "). " +
                     "Leave the password empty to chat as a guest.");
        } else if (ev.code === "nick_registered") {
          loginError(state.identity.nick + " is a registered nick: give its password to log in, " +
                     "or pick another nick.");
        } else {
          loginError(words);
        }
        state.identity = null;
        $("login-button").disabled = false;
        return;
      }
      if (ev.code === "nick_taken") {
        // Most likely our own previous connection, which the server has not
        // noticed is gone yet; it will time out, so keep trying.
        showBanner("Your nick " + state.identity.nick + " is still held by your previous " +
                   "connection; trying again shortly.");
        lost();
        return;
      }
      // The nick or password (or resume token) stopped being good: ask the person
      // again, on this connection, which is up.
      state.identity = null;
      state.entered = false;
      state.attempt = 0;
      setStatus("online", "online");
      $("chat-view").hidden = true;
      $("login-view").hidden = false;
      $("login-button").disabled = false;
      loginError(words);
      return;
    }
    if (req.quiet) return;
    let text = words;
    if (req.type === "join") text = "Could not join " + (req.room || "the room") + ": " + words;
    else if (req.type === "message" || req.type === "action" || req.type === "private") {
      text = "Not sent: " + words;
    } else if (req.type === "nick") text = "Could not change nick: " + words;
    showBanner(text);
    const conv = req.conv ? state.convs.get(req.conv) : current();
    if (conv) system(conv, text, undefined, "error");
  }

  function onMessage(ev) {
    const conv = roomConv(ev.room);
    if (isDuplicate(conv, ev)) return;
    appendMessage(conv, ev, ev.type);
  }

  /* A message id we already showed is a duplicate only if it carries the same
   * sender and text: a server without persistent history restarts its ids at
   * 1, and those new messages must not be mistaken for old ones. */
  function isDuplicate(conv, ev) {
    if (typeof ev.mid !== "number") return false;
    const signature = ev.from + "\n" + ev.text;
    if (conv.seen.get(ev.mid) === signature) return true;
    conv.seen.set(ev.mid, signature);
    if (conv.seen.size > MAX_SEEN) conv.seen.delete(conv.seen.keys().next().value);
    if (conv.lastMid === null || ev.mid > conv.lastMid) conv.lastMid = ev.mid;
    return false;
  }

  const isMe = (nick) => state.nick !== null && lower(nick) === lower(state.nick);

  // -- conversations ---------------------------------------------------------------
  const roomKey = (name) => "r:" + lower(name);
  const privateKey = (nick) => "p:" + lower(nick);

  function makeConv(key, kind, name) {
    const conv = {
      key: key, kind: kind, name: name, joined: false, unread: 0,
      members: new Map(), seen: new Map(), lastMid: null, large: null,
      log: el("div", "log"),
    };
    conv.log.setAttribute("role", "log");
    conv.log.setAttribute("aria-label", (kind === "room" ? "" : "private with ") + name);
    conv.log.dataset.conversation = (kind === "room" ? "" : "@") + name;
    conv.log.hidden = true;
    $("log-holder").appendChild(conv.log);

    const li = el("li", "tab");
    li.dataset.conversation = conv.log.dataset.conversation;
    const open = el("button", "tab-open");
    open.type = "button";
    conv.label = el("span", "tab-name", kind === "room" ? name : "@" + name);
    conv.badge = el("span", "badge");
    conv.badge.hidden = true;
    open.append(conv.label, conv.badge);
    open.addEventListener("click", () => { activate(conv); closeDrawer(); });
    const close = el("button", "tab-close", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", (kind === "room" ? "Leave " : "Close ") + name);
    close.addEventListener("click", () => closeConv(conv));
    li.append(open, close);
    conv.tab = li;
    const list = $(kind === "room" ? "room-tabs" : "private-tabs");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.appendChild(li);
    state.convs.set(key, conv);
    return conv;
  }

  function roomConv(name) {
    return state.convs.get(roomKey(name)) || makeConv(roomKey(name), "room", name);
  }

  function privateConv(nick) {
    return state.convs.get(privateKey(nick)) || makeConv(privateKey(nick), "private", nick);
  }

  const current = () => (state.active ? state.convs.get(state.active) || null : null);

  function activate(conv) {
    const old = current();
    if (old) {
      old.log.hidden = true;
      old.tab.classList.remove("active");
      old.tab.querySelector(".tab-open").removeAttribute("aria-current");
    }
    state.active = conv.key;
    $("welcome").hidden = true;
    conv.log.hidden = false;
    conv.tab.classList.add("active");
    conv.tab.querySelector(".tab-open").setAttribute("aria-current", "page");
    conv.unread = 0;
    conv.badge.hidden = true;
    conv.log.scrollTop = conv.log.scrollHeight;
    renderHead();
    renderMembers();
    if (window.matchMedia("(min-width: 720px)").matches) $("message-input").focus();
  }

  function closeConv(conv) {
    if (conv.kind === "room" && conv.joined && state.registered) {
      send({ type: "part", room: conv.name }, { conv: conv.key });
    } else {
      removeConv(conv);
    }
  }

  function removeConv(conv) {
    state.convs.delete(conv.key);
    conv.log.remove();
    conv.tab.remove();
    if (!$("private-tabs").children.length) {
      $("private-tabs").appendChild(el("li", "empty", "No conversations yet"));
    }
    if (state.active === conv.key) {
      state.active = null;
      const next = Array.from(state.convs.values()).pop();
      if (next) activate(next);
      else {
        $("welcome").hidden = false;
        renderHead();
        renderMembers();
      }
    }
  }

  // -- rendering ---------------------------------------------------------------------
  function timeOf(ts) {
    const d = ts ? new Date(ts * 1000) : new Date();
    const node = el("time", "ts", d.toTimeString().slice(0, 5));
    node.dateTime = d.toISOString();
    node.title = d.toLocaleString();
    return node;
  }

  function nickColour(nick) {
    let h = 0;
    for (const ch of lower(nick)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return "hsl(" + h + " 55% var(--nick-lightness))";
  }

  function appendLine(conv, line, countUnread) {
    const log = conv.log;
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(line);
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (stick || log.hidden) log.scrollTop = log.scrollHeight;
    if (countUnread && conv !== current()) {
      conv.unread += 1;
      conv.badge.textContent = String(conv.unread);
      conv.badge.hidden = false;
    }
  }

  function appendMessage(conv, ev, kind) {
    const line = el("div", "line " + (kind === "action" ? "action" : "msg"));
    if (ev.history || ev.offline) line.classList.add("history");
    if (isMe(ev.from)) line.classList.add("mine");
    line.dataset.mid = String(ev.mid);
    const who = el("span", "nick", kind === "action" ? "* " + ev.from : ev.from);
    who.style.color = nickColour(ev.from);
    line.append(timeOf(ev.ts), who, el("span", "text", ev.text));
    // Older messages asked for with /history go above the newer ones shown.
    const later = ev.history && typeof ev.mid === "number" ? firstAfter(conv, ev.mid) : null;
    if (later) conv.log.insertBefore(line, later);
    else appendLine(conv, line, !ev.history);
  }

  function firstAfter(conv, mid) {
    for (const line of conv.log.querySelectorAll(".line[data-mid]")) {
      if (Number(line.dataset.mid) > mid) return line;
    }
    return null;
  }

  function system(conv, text, ts, cls) {
    if (!conv) return;
    const line = el("div", "line system" + (cls ? " " + cls : ""));
    line.append(timeOf(ts), el("span", "text", text));
    appendLine(conv, line, false);
  }

  function memberCount(conv) {
    return conv.large !== null ? conv.large : conv.members.size;
  }

  // "alice", "alice and bob", "alice, bob and carol", "alice, bob, carol and 41 others":
  // as the server's text mode says it (chatd/text.py).
  function someNicks(nicks, total) {
    const shown = total > 4 ? nicks.slice(0, 3) : nicks.slice(0, total);
    const rest = total - shown.length;
    if (rest > 0) shown.push(rest === 1 ? "1 other" : rest + " others");
    if (shown.length === 1) return shown[0];
    return shown.slice(0, -1).join(", ") + " and " + shown[shown.length - 1];
  }

  function subtitle(conv) {
    if (!conv) return "";
    if (conv.kind === "private") return "private conversation";
    const present = conv.joined ? memberCount(conv) + " present" : "not joined";
    return conv.topic ? present + " · " + conv.topic : present;
  }

  function renderHead() {
    const conv = current();
    $("conversation-title").textContent = conv
      ? (conv.kind === "room" ? conv.name : "@" + conv.name) : "No room";
    $("conversation-sub").textContent = subtitle(conv);
    $("leave-button").hidden = !conv;
    $("leave-button").textContent = conv && conv.kind === "private" ? "Close" : "Leave";
    $("members-toggle").hidden = !conv || conv.kind !== "room";
    $("message-input").placeholder = conv
      ? "Message " + (conv.kind === "room" ? conv.name : conv.name) : "Join a room first";
  }

  function renderMembers() {
    const conv = current();
    const list = $("member-list");
    list.replaceChildren();
    const inRoom = conv && conv.kind === "room";
    renderDirectory();
    document.body.classList.toggle("no-members", !inRoom);
    if (!inRoom) return;
    const nicks = Array.from(conv.members.values()).sort(
      (a, b) => lower(a).localeCompare(lower(b)));
    for (const nick of nicks) {
      const li = el("li");
      const b = el("button", "member", nick);
      b.type = "button";
      b.style.setProperty("--dot", nickColour(nick));
      if (isMe(nick)) {
        b.classList.add("self");
        b.disabled = true;
        b.append(el("span", "you", " (you)"));
      } else {
        b.title = "Private message to " + nick;
        b.addEventListener("click", () => { activate(privateConv(nick)); closeMembers(); });
      }
      li.appendChild(b);
      list.appendChild(li);
    }
    $("member-count").textContent = String(memberCount(conv));
    $("conversation-sub").textContent = subtitle(conv);
  }

  // The list is fetched now and then; counts for rooms we are in are live.
  function renderDirectory() {
    const list = $("room-directory");
    const rooms = state.directory.map((r) => {
      const conv = state.convs.get(roomKey(r.room));
      return conv && conv.joined ? { room: r.room, members: memberCount(conv) } : r;
    });
    list.replaceChildren();
    if (!rooms.length) {
      list.appendChild(el("li", "empty", "No rooms yet: join one to create it"));
      return;
    }
    for (const r of rooms) {
      const b = el("button", "directory-room");
      b.type = "button";
      b.append(el("span", "room-name", r.room), el("span", "room-count", String(r.members)));
      b.addEventListener("click", () => { joinRoom(r.room); closeDrawer(); });
      const li = el("li");
      li.appendChild(b);
      list.appendChild(li);
    }
  }

  function setStatus(kind, text) {
    const s = $("status");
    s.dataset.state = kind;
    s.textContent = text;
    document.body.dataset.connection = kind;
  }

  function showMe() {
    $("me").hidden = !state.nick;
    $("me").textContent = state.nick || "";
  }

  function setComposerEnabled(on) {
    $("message-input").disabled = !on;
    $("send-button").disabled = !on;
  }

  function showBanner(text, kind) {
    $("banner-text").textContent = text;
    $("banner").dataset.kind = kind || "error";
    $("banner").hidden = false;
  }

  // Good news: in the open conversation, or in the banner if there is none.
  function inform(text) {
    const conv = current();
    if (conv) system(conv, text);
    else showBanner(text, "info");
  }

  function hideBanner() {
    $("banner").hidden = true;
  }

  function loginError(text) {
    $("login-error").textContent = text;
    $("login-error").hidden = false;
  }

  function closeDrawer() {
    document.body.classList.remove("drawer-open");
    $("menu-toggle").setAttribute("aria-expanded", "false");
  }

  function closeMembers() {
    document.body.classList.remove("members-open");
    $("members-toggle").setAttribute("aria-expanded", "false");
  }

  // -- user input ----------------------------------------------------------------------
  function joinRoom(name, password) {
    name = name.trim();
    if (!name) return;
    if (!name.startsWith("#")) name = "#" + name;
    const known = state.convs.get(roomKey(name));
    if (known && known.joined) {
      activate(known);
      return;
    }
    const req = { type: "join", room: name };
    if (password) req.password = password;
    send(req, { activate: true, room: name, secret: password });
  }

  function submitText(text) {
    if (!text.trim()) return;
    const conv = current();
    if (text.startsWith("/") && !text.startsWith("//")) {
      command(text, conv);
      return;
    }
    if (text.startsWith("//")) text = text.slice(1);
    if (!conv) {
      showBanner("Join a room first, then write.");
      return;
    }
    if (conv.kind === "room") send({ type: "message", room: conv.name, text: text }, { conv: conv.key });
    else send({ type: "private", to: conv.name, text: text }, { conv: conv.key });
  }

  /* The line protocol's commands (chatd/commands.py), as JSON requests.  Each
   * argument but the last is one word, the last takes the rest of the line,
   * and the first `required` must be given.  `room` means the request is about
   * a room: a leading #room may name it, else it is the open room (the server's
   * idea of a "current room" is not the tab on screen).  `prepare` adapts a
   * request and its context where the web client needs more than the fields;
   * `run` replaces sending altogether. */
  const COMMANDS = {
    join: { args: ["room", "password"], required: 1, usage: "/join #room [password]",
            help: "join a room (or switch to it)", run: (req) => joinRoom(req.room, req.password) },
    part: { args: ["room", "reason"], room: true, usage: "/part [#room] [reason]",
            help: "leave a room (default: this one)" },
    msg: { type: "private", args: ["to", "text"], required: 2, usage: "/msg NICK text",
           help: "private message, in a tab of its own",
           prepare: (req, ctx) => { ctx.open = true; } },
    me: { type: "action", args: ["text"], required: 1, room: true, usage: "/me text",
          help: "an action in this room" },
    nick: { args: ["nick"], required: 1, usage: "/nick NAME", help: "change your nick" },
    away: { args: ["text"], usage: "/away [text]",
            help: "mark yourself away (no text: back)" },
    who: { args: ["room", "after"], room: true, usage: "/who [#room] [after]",
           help: "who is in a room (a large one in pages, after a nick)" },
    rooms: { args: ["after"], usage: "/rooms [#after]", help: "list rooms (in pages)" },
    topic: { args: ["room", "topic"], room: true, usage: "/topic [#room] [text]",
             help: "show a room's topic, or (operators) set it",
             prepare: (req, ctx) => { ctx.query = req.topic === undefined; } },
    history: { args: ["room", "before", "limit"], room: true,
               usage: "/history [#room] [before-id] [count]", help: "older messages of a room" },
    register: { args: ["password"], required: 1, usage: "/register PASSWORD",
                help: "protect your nick with a password",
                prepare: (req, ctx) => { ctx.secret = req.password; } },
    login: { args: ["nick", "password"], required: 2, usage: "/login NICK PASSWORD",
             help: "log in as a registered nick",
             prepare: (req, ctx) => { ctx.secret = req.password; } },
    resume: { args: ["nick", "token"], required: 2, usage: "/resume NICK TOKEN",
              help: "log in with a resume token (the client does this on reconnect)" },
    logout: { args: [], usage: "/logout", help: "log out; your resume tokens stop working" },
    password: { args: ["old", "new"], required: 2, usage: "/password OLD NEW",
                help: "change your password", prepare: (req, ctx) => { ctx.secret = req.new; } },
    kick: { args: ["room", "nick", "reason"], required: 2, room: true,
            usage: "/kick [#room] NICK [reason]", help: "operators: put someone out of a room" },
    ban: { args: ["room", "nick"], required: 2, room: true, usage: "/ban [#room] NICK",
           help: "operators: ban a nick and its account" },
    unban: { args: ["room", "nick"], required: 2, room: true, usage: "/unban [#room] NICK",
             help: "operators: lift a ban" },
    op: { args: ["room", "nick"], required: 2, room: true, usage: "/op [#room] NICK",
          help: "operators: make someone an operator" },
    deop: { args: ["room", "nick"], required: 2, room: true, usage: "/deop [#room] NICK",
            help: "operators: take operator status away" },
    mode: { args: ["room", "flag", "password"], required: 2, room: true,
            usage: "/mode [#room] +i|-i|+k PASSWORD|-k",
            help: "operators: invite-only, room password", prepare: modeFlags },
    invite: { args: ["nick", "room"], required: 1, room: true, usage: "/invite NICK [#room]",
              help: "operators: let someone into an invite-only room" },
    keep: { args: ["room"], room: true, usage: "/keep [#room]",
            help: "operators with an account: keep the room when it empties" },
    unkeep: { args: ["room"], room: true, usage: "/unkeep [#room]",
              help: "its keeper: let the room go when it empties" },
    wall: { args: ["text"], required: 1, usage: "/wall TEXT",
            help: "server operators: a notice to everyone connected" },
    kill: { args: ["nick", "reason"], required: 1, usage: "/kill NICK [reason]",
            help: "server operators: disconnect someone" },
    gban: { args: ["target", "duration", "reason"], required: 2,
            usage: "/gban nick:NAME|account:NAME|addr:CIDR DURATION [reason]",
            help: "server operators: ban from the server (10m, 2h, 7d; 0: for good)" },
    ungban: { args: ["target"], required: 1, usage: "/ungban nick:NAME|account:NAME|addr:CIDR",
              help: "server operators: lift a server ban" },
    gbans: { args: [], usage: "/gbans", help: "server operators: list server bans" },
    sessions: { args: [], usage: "/sessions", help: "server operators: who is connected" },
    ping: { args: [], usage: "/ping", help: "check the server answers" },
    help: { args: [], usage: "/help", help: "this list", run: showHelp },
    quit: { args: ["reason"], usage: "/quit [reason]", help: "leave the chat",
            run: (req, ctx) => { if (send(req, ctx) !== null) state.quitting = true; } },
  };
  const ALIASES = { leave: "part", names: "who", list: "rooms" };

  class UsageError extends Error {}

  // "+i", "-i", "+k PASS", "-k" into the fields of a mode request.
  function modeFlags(req) {
    const flag = req.flag;
    const password = req.password;
    delete req.flag;
    delete req.password;
    if ((flag === "+i" || flag === "-i") && password === undefined) req.invite_only = flag === "+i";
    else if (flag === "+k" && password) req.password = password;
    else if (flag === "-k" && password === undefined) req.password = "";
    else throw new UsageError("Usage: " + COMMANDS.mode.usage);
  }

  // A command line into {spec, req}, the way chatd/commands.py parses it.
  function parseCommand(name, rest, conv) {
    const spec = COMMANDS[ALIASES[name] || name];
    if (!spec) return null;
    const req = { type: spec.type || ALIASES[name] || name };
    let args = spec.args;
    let required = spec.required || 0;
    rest = rest.trim();
    if (spec.room && args[0] === "room" && !rest.startsWith("#")) {
      args = args.slice(1); // "/kick bob": the open room
      required = Math.max(0, required - 1);
    }
    args.forEach((arg, i) => {
      if (!rest) return;
      if (i === args.length - 1) {
        req[arg] = rest;
        rest = "";
      } else {
        const cut = rest.indexOf(" ");
        req[arg] = cut < 0 ? rest : rest.slice(0, cut);
        rest = cut < 0 ? "" : rest.slice(cut + 1).trim();
      }
    });
    if (args.filter((a) => a in req).length < required) {
      throw new UsageError("Usage: " + spec.usage);
    }
    if (spec.room && !req.room) {
      if (!conv || conv.kind !== "room") {
        throw new UsageError(spec.usage.split(" ")[0] + " works in a room: open one" +
                             (spec.args.includes("room") ? ", or name it: " + spec.usage : "."));
      }
      req.room = conv.name;
    }
    return { spec: spec, req: req };
  }

  function command(text, conv) {
    const match = /^\/(\S+)\s*(.*)$/.exec(text);
    // Answers and errors go to the conversation the command was typed in.
    const ctx = { conv: conv ? conv.key : undefined, typed: true };
    let parsed;
    try {
      parsed = parseCommand(lower(match[1]), match[2], conv);
      if (parsed && parsed.spec.prepare) parsed.spec.prepare(parsed.req, ctx);
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      return showBanner(e.message);
    }
    if (!parsed) {
      return showBanner("Unknown command /" + match[1] + "; /help lists the commands.");
    }
    if (parsed.spec.run) return parsed.spec.run(parsed.req, ctx);
    return send(parsed.req, ctx);
  }

  function showHelp() {
    const names = Object.keys(COMMANDS).sort();
    const lines = ["Commands (as on the line protocol):"].concat(
      names.map((n) => COMMANDS[n].usage + "  \u2014 " + COMMANDS[n].help),
      ["A line starting with // sends the rest beginning with /."]);
    const conv = current();
    if (conv) for (const line of lines) system(conv, line, undefined, "help");
    else showBanner(lines.join("\n"), "info");
  }

  function bind() {
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const nick = $("nick-input").value.trim();
      if (!nick) {
        loginError("Pick a nick first.");
        return;
      }
      $("login-error").hidden = true;
      state.identity = { nick: nick, password: $("password-input").value };
      if (state.ws && state.ws.readyState === WebSocket.OPEN) {
        $("login-button").disabled = true;
        register();
      } else {
        loginError("Not connected to the server yet; your nick will be sent once it is.");
      }
    });
    $("join-form").addEventListener("submit", (e) => {
      e.preventDefault();
      joinRoom($("join-input").value);
      $("join-input").value = "";
      closeDrawer();
    });
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = $("message-input");
      submitText(input.value);
      input.value = "";
    });
    $("rooms-refresh").addEventListener("click", () => send({ type: "rooms" }, {}));
    $("leave-button").addEventListener("click", () => { const c = current(); if (c) closeConv(c); });
    $("banner-close").addEventListener("click", hideBanner);
    $("retry").addEventListener("click", () => {
      state.attempt = 0;
      state.quitting = false;
      connect();
    });
    $("menu-toggle").addEventListener("click", () => {
      const open = document.body.classList.toggle("drawer-open");
      $("menu-toggle").setAttribute("aria-expanded", String(open));
    });
    $("members-toggle").addEventListener("click", () => {
      const open = document.body.classList.toggle("members-open");
      $("members-toggle").setAttribute("aria-expanded", String(open));
    });
    // On a phone the drawers cover the conversation; a tap on it closes them.
    document.querySelector(".conversation").addEventListener("click", (e) => {
      if (e.target.closest("#members-toggle")) return;
      closeDrawer();
      closeMembers();
    });
    // The network came back: no reason to sit out the rest of the backoff.
    window.addEventListener("online", () => { if (!state.ws) connect(); });
  }

  window.chatdClient = { backoffDelay: backoffDelay };
  bind();
  $("login-button").disabled = true;
  document.body.classList.add("no-members");
  connect();
})();
