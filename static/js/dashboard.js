/* /dashboard: the live calls list and a graph per chosen metric, live or over a range. */
"use strict";

(function (RS) {
  const DEFAULT_METRICS = ["rtt", "jitter", "packetsLost", "availableBandwidth"];
  const ENDED_SHOWN = 15;
  const REFRESH_MS = 15000;

  const calls = new Map(); // call -> {call, state, started, ended, last_seen, peers}
  const panels = new Map(); // metric -> MetricPanel
  let range = null;
  let feedKnowsLive = false;
  let hourCount = null;

  const liveList = document.getElementById("live-calls");
  const endedList = document.getElementById("ended-calls");
  const chartsArea = document.getElementById("charts");
  const chips = document.getElementById("chips");
  const picker = document.getElementById("add-metric");

  // --- the calls list ------------------------------------------------------------

  function entry(call) {
    if (!calls.has(call)) calls.set(call, { call: call, state: "live", started: null, ended: null, last_seen: null, peers: [] });
    return calls.get(call);
  }

  function callRow(c, fresh) {
    const live = c.state === "live";
    const elapsed = live ? Date.now() - c.started : (c.ended || c.last_seen) - c.started;
    const peers = c.peers.length ? c.peers.length + (c.peers.length === 1 ? " peer · " : " peers · ") + c.peers.join(", ") : "peers…";
    return RS.el("li", { dataset: { call: c.call, state: c.state }, class: fresh ? "fresh" : null },
      RS.el("span", { class: "swatch" }),
      RS.el("a", { class: "call-name", href: RS.callUrl(c.call), title: c.call }, c.call),
      RS.el("span", { class: "call-time" }, c.started ? RS.duration(elapsed) : ""),
      RS.el("span", { class: "call-meta" }, peers),
      RS.el("span", { class: "call-when" }, live ? (c.started ? "since " + RS.clock(c.started) : "") : "ended " + RS.when(c.ended || c.last_seen)));
  }

  const freshCalls = new Set();
  function renderCalls() {
    const live = [...calls.values()].filter((c) => c.state === "live").sort((a, b) => (b.started || 0) - (a.started || 0));
    const ended = [...calls.values()].filter((c) => c.state === "ended")
      .sort((a, b) => (b.ended || b.last_seen) - (a.ended || a.last_seen)).slice(0, ENDED_SHOWN);
    liveList.replaceChildren(...live.map((c) => callRow(c, freshCalls.has(c.call))));
    endedList.replaceChildren(...ended.map((c) => callRow(c, false)));
    freshCalls.clear();
    for (const li of document.querySelectorAll(".call-list li")) {
      li.querySelector(".swatch").style.background = li.dataset.state === "live" ? RS.color(li.dataset.call) : "#cbd5e1";
    }
    liveList.dataset.count = live.length;
    document.getElementById("no-live").hidden = live.length > 0;
    document.getElementById("no-ended").hidden = ended.length > 0;
    document.getElementById("calls-count").textContent = live.length;
    document.getElementById("live-count").textContent = live.length;
    document.getElementById("peer-count").textContent = live.reduce((sum, c) => sum + c.peers.length, 0);
    document.getElementById("hour-count").textContent = hourCount === null ? "–" : hourCount;
  }

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshCalls, 800);
  }

  /** Peers, start and end times from REST; whether a call is live is the feed's word once it has spoken. */
  async function refreshCalls() {
    clearTimeout(refreshTimer);
    try {
      const answer = await RS.getJSON("/v1/calls/?state=all&since=1h");
      hourCount = answer.count;
      for (const c of answer.calls) {
        const known = calls.get(c.call);
        if (!known && feedKnowsLive && c.state === "live") continue; // the feed has not announced it (yet)
        const target = known || entry(c.call);
        target.peers = c.peers;
        target.last_seen = c.last_seen;
        if (!known || !feedKnowsLive) {
          target.state = c.state;
          target.started = c.started;
          target.ended = c.ended;
        }
        if (target.started === null) target.started = c.started;
        if (target.state === "ended" && target.ended === null) target.ended = c.ended;
      }
      renderCalls();
    } catch (error) {
      RS.setFeed("error", "calls unavailable");
    }
  }

  function onEvent(message) {
    if (message.type === "status") {
      if (message.state === "live") RS.setFeed("live", "live");
      else RS.setFeed(message.state, message.text);
      return;
    }
    if (message.type === "snapshot") {
      const liveNow = new Set(Object.keys(message.calls));
      for (const call of liveNow) {
        const c = entry(call);
        c.state = "live";
      }
      for (const c of calls.values()) {
        if (c.state === "live" && !liveNow.has(c.call)) c.state = "ended";
      }
      feedKnowsLive = true;
      refreshSoon();
    } else if (message.type === "call_started") {
      const c = entry(message.call);
      c.state = "live";
      c.started = message.at;
      c.ended = null;
      freshCalls.add(message.call);
      refreshSoon();
    } else if (message.type === "call_ended") {
      const c = entry(message.call);
      c.state = "ended";
      c.ended = message.at;
      refreshSoon();
    }
    renderCalls();
  }

  // --- the graphs ------------------------------------------------------------------

  function chosenMetrics() {
    const fromUrl = new URLSearchParams(location.search).get("metrics");
    const stored = localStorage.getItem("rtcscope.metrics");
    const names = (fromUrl || stored || DEFAULT_METRICS.join(",")).split(",").filter((m) => RS.metrics.has(m));
    return names.length || fromUrl !== null ? [...new Set(names)] : DEFAULT_METRICS;
  }

  function saveMetrics() {
    const names = [...panels.keys()];
    localStorage.setItem("rtcscope.metrics", names.join(","));
    const params = new URLSearchParams(location.search);
    params.set("metrics", names.join(","));
    history.replaceState(null, "", location.pathname + "?" + params.toString());
  }

  function renderPicker() {
    chips.replaceChildren(...[...panels.keys()].map((name) => RS.el("span", { class: "chip" }, name,
      RS.el("button", { type: "button", title: "Remove", "aria-label": "Remove " + name, onclick: () => removeMetric(name) }, "×"))));
    picker.replaceChildren(RS.el("option", { value: "" }, "+ Add graph…"),
      ...RS.metricList.filter((m) => !panels.has(m.name)).map((m) =>
        RS.el("option", { value: m.name }, m.name + (m.display_unit ? " (" + m.display_unit + ")" : ""))));
  }

  function addMetric(name) {
    if (panels.has(name)) return;
    const panel = new RS.MetricPanel(chartsArea, name, { onRemove: () => removeMetric(name) });
    panels.set(name, panel);
    if (range) panel.setRange(range);
  }

  function removeMetric(name) {
    const panel = panels.get(name);
    if (!panel) return;
    panel.destroy();
    panels.delete(name);
    saveMetrics();
    renderPicker();
  }

  picker.addEventListener("change", () => {
    if (picker.value) {
      addMetric(picker.value);
      saveMetrics();
      renderPicker();
    }
  });

  // --- start -----------------------------------------------------------------------

  for (const name of chosenMetrics()) addMetric(name);
  renderPicker();
  // The list follows its own feed, so it stays live whatever range the graphs show.
  new RS.LiveFeed(panels.size ? panels.keys().next().value : "rtt", {
    snapshot: (m) => { onEvent(m); onEvent({ type: "status", state: "live" }); },
    call_started: onEvent,
    call_ended: onEvent,
    status: (state, text) => onEvent({ type: "status", state: state, text: text }),
  });
  new RS.RangeControl((spec) => {
    range = spec;
    document.getElementById("range-label").textContent = spec.label;
    for (const panel of panels.values()) panel.setRange(spec);
  });
  refreshCalls();
  setInterval(refreshCalls, REFRESH_MS);
  setInterval(renderCalls, 1000);
})(window.RS);
