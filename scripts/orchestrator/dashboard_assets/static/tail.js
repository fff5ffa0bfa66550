// The live tail of a running item's transcript: one line per server-sent event, as text only.
"use strict";
(function () {
  const box = document.getElementById("tail");
  const state = document.getElementById("tail-state");
  if (!box) return;

  function typeOf(text) {
    try {
      const record = JSON.parse(text);
      if (record && typeof record.type === "string") return record.type;
      return "json";
    } catch (e) {
      return "text";
    }
  }

  function add(node) {
    // Follow the end only if the reader is already there: scrolling up to read stays put.
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.appendChild(node);
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  function line(text) {
    const kind = typeOf(text);
    const row = document.createElement("div");
    row.className = "line t-" + kind.replace(/[^A-Za-z0-9_-]/g, "_");
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = kind;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    row.append(type, body);
    add(row);
  }

  function note(text) {
    const row = document.createElement("div");
    row.className = "file";
    row.textContent = text;
    add(row);
  }

  function say(text, cls) {
    state.textContent = text;
    state.className = "tag " + cls;
  }

  const source = new EventSource(box.dataset.src);
  source.onopen = function () { say("live", "live"); };
  source.onmessage = function (event) { line(event.data); };
  source.addEventListener("file", function (event) { note("── " + event.data); });
  source.addEventListener("reset", function (event) { note("── " + event.data + " started over"); });
  source.addEventListener("end", function () {
    source.close();
    say("run ended", "ended");
  });
  source.onerror = function () { say("reconnecting…", "ended"); };
})();
