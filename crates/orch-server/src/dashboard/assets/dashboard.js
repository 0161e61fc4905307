// orch dashboard: the live log (server-sent events) and the board's refresh. No dependencies.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // The board reloads itself so cards move between columns without a click.
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    const secs = Number(refresh.dataset.refresh) || 3;
    setTimeout(() => location.reload(), secs * 1000);
  }

  const log = document.getElementById("log");
  if (!log || !log.dataset.stream || !window.EventSource) return;
  const state = document.getElementById("log-state");
  const opened = Date.now();
  const source = new EventSource(log.dataset.stream);
  const stick = () => { log.scrollTop = log.scrollHeight; };
  source.addEventListener("run", (e) => {
    state.textContent = "streaming " + e.data;
  });
  source.onmessage = (e) => {
    log.textContent += e.data + "\n";
    stick();
  };
  source.addEventListener("end", (e) => {
    source.close();
    state.textContent = "run ended: " + e.data;
    log.dataset.ended = e.data;
    // The run ended while we watched: show the item as it is now (the next run, a verdict).
    if (Date.now() - opened > 2000) setTimeout(() => location.reload(), 1500);
  });
  source.onerror = () => { state.textContent = "stream interrupted; retrying…"; };
});
