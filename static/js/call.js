/* /calls/<call>/: one call's summary, each peer's quality, who and where it is and how it connects
 * (peerdims.js), and every metric over its life, a line per peer; follows the call while it is live. */
"use strict";

(function (RS) {
  const call = document.getElementById("call-head").dataset.call;
  const chartsArea = document.getElementById("charts");
  const panels = new Map(); // metric -> MetricPanel
  const POLL_MS = 5000;
  let summary = null;
  let pollTimer = null;

  function text(id, value) { document.getElementById(id).textContent = value; }

  function problemValue(problem, value) {
    if (problem.problem === "high_loss") return RS.format(value * 100, "%");
    if (problem.metric === "qualityLimitationReason" || problem.metric === "iceState") return "";
    return RS.format(value, RS.metric(problem.metric).display_unit);
  }

  function renderProblems(problems) {
    const list = document.getElementById("problems");
    list.replaceChildren(...problems.map((p) => {
      const span = p.to > p.from ? " (" + RS.duration(p.to - p.from) + ")" : "";
      const threshold = problemValue(p, p.threshold);
      const detail = p.metric === "qualityLimitationReason" ? "reported by the encoder"
        : "worst " + problemValue(p, p.worst) + (threshold ? ", threshold " + threshold : "") + " · " + p.metric;
      return RS.el("li", { dataset: { problem: p.problem } },
        RS.el("span", { class: "problem-name" }, RS.PROBLEMS[p.problem] ? RS.PROBLEMS[p.problem][1] : p.problem),
        RS.el("span", { class: "problem-when" }, RS.when(p.from) + (p.to > p.from ? " – " + RS.clock(p.to) : "") + span),
        RS.el("span", { class: "problem-detail" }, detail));
    }));
    document.getElementById("no-problems").hidden = problems.length > 0;
  }

  /** Registry order, then fields clients stored. */
  function orderedMetrics(names) {
    const known = RS.metricList.map((m) => m.name).filter((n) => names.includes(n));
    return known.concat(names.filter((n) => !RS.metrics.has(n)).sort());
  }

  function renderSummary(document_) {
    const tbody = document.querySelector("#summary tbody");
    const names = orderedMetrics(Object.keys(document_.metrics));
    tbody.replaceChildren(...names.map((name) => {
      const m = document_.metrics[name];
      return RS.el("tr", { dataset: { metric: name } },
        RS.el("td", { class: "name" }, RS.el("a", { href: "/graph/" + encodeURIComponent(name) + "/" }, name)),
        RS.el("td", {}, m.unit || ""),
        ...["min", "mean", "max", "p95"].map((key) => RS.el("td", { class: "num" }, RS.format(m[key], m.unit, false))));
    }));
    return names;
  }

  function renderHead(d) {
    const live = d.state === "live";
    const badge = document.getElementById("call-state");
    badge.dataset.state = d.state;
    badge.textContent = d.state;
    badge.dataset.endReason = d.end_reason || "";
    text("call-started", RS.when(d.started));
    text("call-duration", RS.duration((live ? Date.now() : d.ended || d.last_seen) - d.started));
    text("call-peers", d.peers.length ? d.peers.join(", ") : "–");
    text("call-facts", (live ? "In progress, last stats " + RS.clock(d.last_seen)
      : "Ended " + RS.when(d.ended || d.last_seen) + (d.end_reason ? " · " + RS.endReason(d) : ""))
      + " · " + Object.keys(d.metrics).length + " metrics");
    const q = d.quality || {};
    text("call-mos", q.mos === null || q.mos === undefined ? "–" : q.mos.toFixed(2));
    const verdict = document.getElementById("call-verdict");
    verdict.dataset.verdict = q.verdict || "";
    verdict.textContent = q.verdict || "";
  }

  function peerQualities(d) { return (d.quality && d.quality.peers) || {}; }

  /** Peers worst first: the side with the problem on top. */
  function peersWorstFirst(d) {
    const peers = peerQualities(d);
    return Object.keys(peers).sort((a, b) => {
      const ma = peers[a].mos, mb = peers[b].mos;
      if (ma === mb) return a < b ? -1 : 1;
      if (ma === null || ma === undefined) return 1;
      if (mb === null || mb === undefined) return -1;
      return ma - mb;
    });
  }

  /** Peers worst first, each peer's SFU views (alice@janus) right after its own row: the two sides
   * of one peer compared at a glance. A view whose peer sent nothing itself stands alone. */
  function peersGrouped(d) {
    const worstFirst = peersWorstFirst(d);
    const groups = new Map(); // the peer -> its rows, its own first
    for (const peer of worstFirst) {
      const view = RS.sfuView(peer);
      const owner = view && worstFirst.includes(view[0]) ? view[0] : peer;
      if (!groups.has(owner)) groups.set(owner, []);
      if (owner === peer) groups.get(owner).unshift(peer);
      else groups.get(owner).push(peer);
    }
    return [...groups.values()].flat();
  }

  /** The peers' quality, each peer's SFU view under it; and a card per peer of its dimensions, in that order. */
  function renderPeers(d) {
    const peers = peerQualities(d);
    const tbody = document.querySelector("#peer-quality tbody");
    const order = peersGrouped(d);
    const cards = RS.renderPeerDimensions(document.getElementById("peer-dims"), d, order);
    document.getElementById("no-dims").hidden = cards > 0;
    tbody.replaceChildren(...order.map((peer) => {
      const q = peers[peer];
      const view = RS.sfuView(peer);
      const swatch = RS.el("span", { class: "swatch-inline" + (view ? " sfu" : "") });
      swatch.style.background = swatch.style.color = RS.peerColor(peer);
      const underItsPeer = view !== null && peers[view[0]] !== undefined;
      return RS.el("tr", { class: underItsPeer ? "sfu-view" : null, dataset: { peer: peer, verdict: q.verdict || "unknown" } },
        RS.el("td", { class: "name" }, swatch, RS.el("span", { class: "peer-name", title: peer }, RS.peerName(peer)),
          RS.viewLabel(peer, order)),
        RS.el("td", { class: "num mos" }, q.mos === null || q.mos === undefined ? "–" : q.mos.toFixed(2)),
        RS.el("td", {}, RS.el("span", { class: "badge", dataset: { verdict: q.verdict || "" } }, q.verdict || "unknown")),
        RS.el("td", { class: "problems-cell" }, (q.problems || []).map(RS.problemBadge)));
    }));
  }

  let mosPanel = null;
  /** The MOS of every moment of each peer, from the summary: where, and on which side, it got worse. */
  function renderMos(d) {
    const peers = peerQualities(d);
    const timelines = {};
    for (const peer of Object.keys(peers)) if ((peers[peer].timeline || []).length) timelines[peer] = peers[peer].timeline;
    if (!Object.keys(timelines).length) return;
    if (!mosPanel) {
      mosPanel = new RS.MetricPanel(chartsArea, "mos", {
        height: 170, title: "Estimated MOS", unit: "MOS", byPeer: true,
        description: "Listening quality estimated from RTT, jitter and loss at each moment (ITU-T G.107 E-model)",
      });
      mosPanel.note.textContent = "per peer · good from 4.02, fair from 3.60";
    }
    const end = d.state === "live" ? Date.now() : (d.ended || d.last_seen) + 1000;
    mosPanel.chart.peers = d.peers;
    mosPanel.chart.setWindow(d.started - 1000, end);
    mosPanel.chart.replace({ calls: timelines, bucket_ms: d.bucket_seconds * 1000 });
  }

  function renderCharts(d, names) {
    renderMos(d);
    const live = d.state === "live";
    const start = d.started - 1000;
    const end = live ? Date.now() : (d.ended || d.last_seen) + 1000;
    const spec = { kind: "custom", start: start, end: end, label: "the call" };
    for (const name of names) {
      if (!panels.has(name)) panels.set(name, new RS.MetricPanel(chartsArea, name, { call: call, byPeer: true, height: 170 }));
      const panel = panels.get(name);
      panel.chart.peers = d.peers;
      panel.chart.bands = (d.quality.problems || []).filter((p) => p.metric === name || (name === "packetsLost" && p.problem === "high_loss"))
        .map((p) => ({ from: p.from, to: Math.max(p.to, p.from + 1000) }));
      panel.setRange(spec);
    }
  }

  async function load() {
    clearTimeout(pollTimer);
    try {
      summary = await RS.getJSON("/v1/calls/" + encodeURIComponent(call) + "/");
    } catch (error) {
      RS.setFeed("error", error.message);
      pollTimer = setTimeout(load, POLL_MS);
      return;
    }
    renderHead(summary);
    renderPeers(summary);
    renderProblems(summary.quality.problems || []);
    renderCharts(summary, renderSummary(summary));
    RS.callAlerts.load(summary.started);
    document.body.dataset.callState = summary.state;
    if (summary.state === "live") pollTimer = setTimeout(load, POLL_MS);
  }

  // The live call list says at once when this call starts or ends.
  new RS.LiveFeed("/ws/calls", {
    snapshot: (m) => {
      RS.setFeed("live", "live");
      const live = m.calls.some((c) => c.call === call);
      if (summary && live !== (summary.state === "live")) load();
    },
    calls: (m) => {
      if ((m.started || []).some((c) => c.call === call) || (m.ended || []).some((c) => c.call === call)) load();
    },
    alert: (m) => { if (m.call === call && summary) RS.callAlerts.load(summary.started); },
    status: (state, message) => RS.setFeed(state, message),
  });
  setInterval(() => { if (summary && summary.state === "live") renderHead(summary); }, 1000);
  load();
})(window.RS);
