// Live bus events on the landing page: proves the authenticated /ws/events stream end to end.
(function () {
  const list = document.getElementById("events");
  if (!list) return;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  function connect() {
    const ws = new WebSocket(proto + "//" + location.host + "/ws/events");
    ws.onmessage = (msg) => {
      const ev = JSON.parse(msg.data);
      const li = document.createElement("li");
      li.textContent = (ev.at ? ev.at.substring(11, 19) + " " : "") + ev.topic + " " + JSON.stringify(ev.payload);
      li.dataset.topic = ev.topic;
      list.prepend(li);
      while (list.children.length > 50) list.removeChild(list.lastChild);
    };
    ws.onclose = (e) => { if (e.code !== 4401 && e.code !== 4403) setTimeout(connect, 3000); };
  }
  connect();
})();
