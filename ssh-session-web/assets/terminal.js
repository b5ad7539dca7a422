// The terminal page: xterm.js on one WebSocket to this server. Terminal bytes travel as
// binary frames both ways; everything else (size, state, who runs what, Cancel) as JSON
// text messages. The server enforces read-only logins itself; the checkbox here only
// stops this page from sending.
"use strict";
(function () {
  const root = document.getElementById("terminal");
  const conn = document.getElementById("conn");
  const running = document.getElementById("running");
  const notice = document.getElementById("notice");
  const cancel = document.getElementById("cancel");
  const watch = document.getElementById("watch");
  const forcedReadOnly = root.dataset.readOnly === "1";

  // With the font's own line height the DOM renderer clips underscores (seen in the
  // screenshot of the browser tests); 1.2 leaves room for them.
  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontSize: 14,
    lineHeight: 1.2,
    fontFamily: '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(root);
  fit.fit();
  term.focus();
  // For tests and benchmarks that read the terminal's buffer (the DOM shows only the
  // visible rows).
  window.sshSessionTerminal = term;

  const encoder = new TextEncoder();
  let ws = null;
  let ended = false;
  let retry = 0;
  let busyAgent = false;

  function readOnly() { return forcedReadOnly || watch.checked; }

  function setState(cls, text) {
    conn.className = "state " + cls;
    conn.textContent = text;
  }

  function say(text) { notice.textContent = text; }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function showRunning(m) {
    busyAgent = m.command != null && !m.person;
    if (m.command == null) {
      running.className = "idle";
      running.textContent = "idle";
    } else {
      running.className = m.person ? "person" : "agent";
      running.textContent = (m.person ? "person" : "agent") + " (" + m.source + ") runs: " + m.command;
    }
    running.title = running.textContent;
    cancel.disabled = !busyAgent || readOnly();
  }

  function onMessage(m) {
    switch (m.type) {
      case "state":
        if (m.state === "reconnecting") setState("reconnecting", "reconnecting " + m.attempt + " of " + m.of);
        else if (m.state === "error") setState("error", "error: " + m.detail);
        else setState(m.state, m.state);
        break;
      case "running": showRunning(m); break;
      case "notice": say(m.text); break;
      case "cancel":
        if (m.ok) say("cancelled: tried " + m.tried.join(", ") + (m.steps.length ? " — " + m.steps.join("; ") : ""));
        else say("cancel: " + m.error);
        break;
      case "error": say(m.text); break;
      case "ended":
        ended = true;
        setState("ended", "ended");
        say("the terminal ended: " + m.reason);
        break;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const query = "?cols=" + term.cols + "&rows=" + term.rows + (readOnly() ? "&watch=1" : "");
    ws = new WebSocket(scheme + location.host + root.dataset.path + "/ws" + query);
    ws.binaryType = "arraybuffer";
    let first = true;
    ws.onmessage = (event) => {
      if (typeof event.data === "string") { onMessage(JSON.parse(event.data)); return; }
      // The first frame draws the screen (and the recent past) afresh.
      if (first) { term.reset(); first = false; }
      term.write(new Uint8Array(event.data));
    };
    ws.onopen = () => { retry = 0; };
    ws.onclose = (event) => {
      if (ended) return;
      if (event.code === 1008 || event.code === 4403) {
        setState("error", "refused: " + (event.reason || "log in again with a new link"));
        return;
      }
      retry += 1;
      const wait = Math.min(5, retry);
      setState("error", "disconnected from ssh-session; retrying in " + wait + " s");
      setTimeout(connect, wait * 1000);
    };
  }

  term.onData((data) => {
    if (readOnly() || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(encoder.encode(data));
  });
  term.onBinary((data) => {
    if (readOnly() || !ws || ws.readyState !== WebSocket.OPEN) return;
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
    ws.send(bytes);
  });
  term.onResize(({ cols, rows }) => { if (!readOnly()) send({ type: "resize", cols, rows }); });
  window.addEventListener("resize", () => fit.fit());
  watch.addEventListener("change", () => {
    send({ type: "mode", read_only: watch.checked });
    cancel.disabled = !busyAgent || readOnly();
    term.focus();
  });
  cancel.addEventListener("click", () => {
    cancel.disabled = true;
    say("stopping the command: Ctrl-C, then TERM, then KILL…");
    send({ type: "cancel" });
  });
  connect();
})();
