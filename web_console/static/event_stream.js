// One reconnecting /ws/events stream for every console (issue 17). Written by hand (about 80 lines)
// because the rules are ours: after a drop (a web node or database failover, a network cut) it
// reconnects with a jittered backoff of 1 s doubling to 10 s, asking `?since=<last event id>` so the
// server sends what was missed; an event that arrives twice (the replay overlaps the live stream, or
// the page reloaded its state meanwhile) is handed to the page once. A classic script: it defines
// `window.openEventStream` before the pages' scripts (modules or not) run.
//
//   const stream = openEventStream({
//     topics: "conference.*",          // optional glob, kept on every reconnect
//     onEvent: (ev) => ...,            // each event once ({id, topic, at, payload}; hello has no id)
//     onState: (up) => ...,            // true when connected, false when not
//     beforeReconnect: async () => ...,// optional: e.g. reload the page's state first
//   });
(function () {
  "use strict";
  const MIN_DELAY_MS = 1000;
  const MAX_DELAY_MS = 10000;
  const REMEMBER = 5000; // ids kept for de-duplication
  const streams = [];
  window.ccEventStreams = streams; // for tests: lastId, urls, delivered, duplicates

  function openEventStream(opts) {
    const onEvent = opts.onEvent;
    const onState = opts.onState || (() => {});
    const seen = new Set();
    const stream = { lastId: null, urls: [], delivered: [], duplicates: 0, up: false, closed: false };
    let attempt = 0;
    let ws = null;

    function url() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const q = new URLSearchParams();
      if (opts.topics) q.set("topics", opts.topics);
      if (stream.lastId !== null) q.set("since", String(stream.lastId));
      const qs = q.toString();
      return `${proto}//${location.host}/ws/events${qs ? "?" + qs : ""}`;
    }

    function accept(ev) {
      if (!Number.isInteger(ev.id)) return true; // system.hello and local-only events
      if (seen.has(ev.id)) { stream.duplicates += 1; return false; }
      seen.add(ev.id);
      stream.delivered.push(ev.id);
      if (stream.delivered.length > REMEMBER) seen.delete(stream.delivered.shift());
      if (stream.lastId === null || ev.id > stream.lastId) stream.lastId = ev.id;
      return true;
    }

    function connect() {
      const u = url();
      stream.urls.push(u);
      ws = new WebSocket(u);
      ws.onopen = () => { attempt = 0; stream.up = true; onState(true); };
      ws.onmessage = (msg) => {
        let ev;
        try { ev = JSON.parse(msg.data); } catch (_) { return; }
        if (ev && typeof ev === "object" && accept(ev)) onEvent(ev);
      };
      ws.onclose = (e) => {
        ws = null;
        stream.up = false;
        onState(false);
        if (stream.closed || e.code === 4401 || e.code === 4403) return; // signed out or forbidden: stay down
        const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** attempt);
        attempt += 1;
        const delay = Math.min(MAX_DELAY_MS, base * (0.75 + Math.random() * 0.5)); // jitter: no thundering herd
        setTimeout(async () => {
          if (opts.beforeReconnect) { try { await opts.beforeReconnect(); } catch (_) { /* reconnect anyway */ } }
          if (!stream.closed) connect();
        }, delay);
      };
    }

    stream.close = () => { stream.closed = true; if (ws) ws.close(); };
    streams.push(stream);
    connect();
    return stream;
  }

  window.openEventStream = openEventStream;
})();
