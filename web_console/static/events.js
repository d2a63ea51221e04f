// Live bus events on the landing page: proves the authenticated /ws/events stream end to end.
(function () {
  const list = document.getElementById("events");
  if (!list) return;
  function connect() {  // event_stream.js: reconnects with ?since=<last id>
    window.openEventStream({ onEvent: (ev) => {
      const li = document.createElement("li");
      li.textContent = (ev.at ? ev.at.substring(11, 19) + " " : "") + ev.topic + " " + JSON.stringify(ev.payload);
      li.dataset.topic = ev.topic;
      list.prepend(li);
      while (list.children.length > 50) list.removeChild(list.lastChild);
    } });
  }
  connect();
})();
