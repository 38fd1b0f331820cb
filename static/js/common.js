/* Shared helpers of the rtcscope pages: the metric registry, formatting, colours, DOM and HTTP. */
"use strict";

window.RS = (function () {
  const metricList = JSON.parse(document.getElementById("metrics-data").textContent);
  const metrics = new Map(metricList.map((m) => [m.name, m]));

  /** A metric of the registry, or a plain description of a field a client stored. */
  function metric(name) {
    return metrics.get(name) || { name: name, display_unit: "", unit: "", type: "gauge", description: "A field stored by a client." };
  }

  /** Element factory: el("td", {class: "num"}, "42"). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  const SI = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  function trim(number, digits) {
    return Number(number.toFixed(digits)).toLocaleString("en-US", { maximumFractionDigits: digits });
  }
  /** A value in its unit, compact: 1.25 Mbit/s, 41.5 ms, 0.03. */
  function format(value, unit, withUnit = true) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const abs = Math.abs(value);
    let text;
    if (unit === "bit/s" || unit === "bytes/s" || unit === "bit") {
      const [scale, prefix] = SI.find(([s]) => abs >= s) || [1, ""];
      const base = unit === "bytes/s" ? "B/s" : unit;
      return trim(value / scale, abs >= scale * 100 ? 0 : 1) + (withUnit ? " " + prefix + base : prefix);
    }
    if (abs >= 1e6) text = trim(value / 1e6, 2) + "M";
    else if (abs >= 1e4) text = trim(value / 1e3, 1) + "k";
    else if (abs >= 100) text = trim(value, 0);
    else if (abs >= 10) text = trim(value, 1);
    else if (abs >= 1 || abs === 0) text = trim(value, 2);
    else text = trim(value, 3);
    return withUnit && unit && unit !== "1" ? text + " " + unit : text;
  }

  function pad(n) { return String(n).padStart(2, "0"); }
  function clock(ms) {
    const d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function dateTime(ms) {
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(ms);
  }
  /** Started today: the time; else date and time. */
  function when(ms) {
    return new Date(ms).toDateString() === new Date().toDateString() ? clock(ms) : dateTime(ms);
  }
  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? h + ":" + pad(m) + ":" + pad(sec) : m + ":" + pad(sec);
  }
  /** For datetime-local inputs: local time without zone. */
  function localInput(ms) {
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + clock(ms);
  }

  // Distinct, readable on white, colour-blind friendlier first (Okabe-Ito based, then Tableau).
  const PALETTE = ["#2563eb", "#e69f00", "#009e73", "#cc3d8f", "#56b4e9", "#d55e00", "#7c3aed", "#0f766e",
                   "#b45309", "#64748b", "#db2777", "#65a30d"];
  const assigned = new Map();
  /** A call's colour: the same on every graph and in the list of this page. */
  function color(call) {
    if (!assigned.has(call)) {
      let hash = 0;
      for (const ch of call) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
      const used = new Set(assigned.values());
      let index = hash % PALETTE.length;
      for (let i = 0; i < PALETTE.length && used.has(PALETTE[index]); i++) index = (index + 1) % PALETTE.length;
      assigned.set(call, PALETTE[index]);
    }
    return assigned.get(call);
  }

  // A media server's view of a peer: `alice@janus` is Janus's view of `alice` (docs/integrations.md).
  const SFU_VIEWS = { "@janus": "Janus" };
  /** [the peer it is a view of, the server's name] of an SFU view, or null for a peer's own view. */
  function sfuView(peer) {
    for (const [suffix, server] of Object.entries(SFU_VIEWS)) {
      if (peer.length > suffix.length && peer.endsWith(suffix)) return [peer.slice(0, -suffix.length), server];
    }
    return null;
  }
  /** The name a peer goes by on the call page: an SFU view is named after the peer it views (its stored id,
   * alice@janus, in its title). */
  function peerName(peer) {
    const view = sfuView(peer);
    return view ? view[0] : peer || "(no peer id)";
  }
  /** The words for which view of its peer `peer` is, the same in the cards, the peers' table and the graphs' legends
   * (§16): "SFU · Janus" on a media server's view, "client" on a peer's own getStats() when an SFU view of it is
   * among `peers`; null for a peer alone. */
  function viewLabel(peer, peers) {
    const view = sfuView(peer);
    if (view) return el("span", { class: "view-label", dataset: { view: "SFU" }, title: view[1] + "'s view of " + view[0] + " (" + peer + ")" },
      "SFU · " + view[1]);
    const viewed = peers.some((other) => { const of = sfuView(other); return of !== null && of[0] === peer; });
    return viewed ? el("span", { class: "view-label", dataset: { view: "client" }, title: peer + "'s own getStats()" }, "client") : null;
  }
  /** A peer's colour, shared by its SFU views: both lines of one peer in one colour. */
  function peerColor(peer) {
    const view = sfuView(peer);
    return color(view ? view[0] : peer);
  }

  /** The feed indicator in the top bar and the clock. */
  function setFeed(state, text) {
    const node = document.getElementById("feed-status");
    node.dataset.state = state;
    node.textContent = text || state;
  }
  function startClock() {
    const node = document.getElementById("clock");
    const tick = () => { node.textContent = clock(Date.now()); };
    tick();
    setInterval(tick, 1000);
  }
  startClock();

  /** Keep a page's choice in its URL (no reload, no history entry); `fallback` or "" removes it. */
  function setParam(name, value, fallback) {
    const params = new URLSearchParams(location.search);
    if (value === fallback || value === "" || value === null) params.delete(name);
    else params.set(name, value);
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  function callUrl(call) { return "/calls/" + encodeURIComponent(call) + "/"; }

  // How an ended call ended, in words (end_reason and end_detail of /v1/calls/).
  const END_DETAILS = { pagehide: "page closed", stop: "stopped", leave: "left", closed: "peer connections closed" };
  const END_REASONS = { explicit: "ended by the client", timeout: "timed out (no stats)", disconnect: "connection dropped" };
  function endReason(c) {
    if (!c.end_reason) return "";
    return (c.end_reason === "explicit" && END_DETAILS[c.end_detail]) || END_REASONS[c.end_reason] || c.end_reason;
  }

  return { metrics, metricList, metric, el, getJSON, format, clock, when, dateTime, duration, localInput, color, setFeed, callUrl,
    endReason, setParam, sfuView, peerName, viewLabel, peerColor };
})();
