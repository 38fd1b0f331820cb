/* /calls/<call>/: one call's summary, quality verdict and every metric over its life; follows it while live. */
"use strict";

(function (RS) {
  const call = document.getElementById("call-head").dataset.call;
  const chartsArea = document.getElementById("charts");
  const panels = new Map(); // metric -> MetricPanel
  const POLL_MS = 5000;
  const PROBLEMS = {
    high_loss: "High packet loss", high_rtt: "High round-trip time", high_jitter: "High jitter",
    freezes: "Video freezes", cpu_limited: "Video limited by CPU", bandwidth_limited: "Video limited by bandwidth",
  };
  let summary = null;
  let pollTimer = null;

  function text(id, value) { document.getElementById(id).textContent = value; }

  function problemValue(problem, value) {
    if (problem.problem === "high_loss") return RS.format(value * 100, "%");
    if (problem.metric === "qualityLimitationReason") return "";
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
        RS.el("span", { class: "problem-name" }, PROBLEMS[p.problem] || p.problem),
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
    text("call-started", RS.when(d.started));
    text("call-duration", RS.duration((live ? Date.now() : d.ended || d.last_seen) - d.started));
    text("call-peers", d.peers.length ? d.peers.join(", ") : "–");
    text("call-facts", (live ? "In progress, last stats " + RS.clock(d.last_seen) : "Ended " + RS.when(d.ended || d.last_seen))
      + " · " + Object.keys(d.metrics).length + " metrics");
    const q = d.quality || {};
    text("call-mos", q.mos === null || q.mos === undefined ? "–" : q.mos.toFixed(2));
    const verdict = document.getElementById("call-verdict");
    verdict.dataset.verdict = q.verdict || "";
    verdict.textContent = q.verdict || "";
  }

  let mosPanel = null;
  /** The MOS of every moment of the call, from the summary: where it got worse. */
  function renderMos(d) {
    const timeline = (d.quality && d.quality.timeline) || [];
    if (!timeline.length) return;
    if (!mosPanel) {
      mosPanel = new RS.MetricPanel(chartsArea, "mos", {
        height: 170, title: "Estimated MOS", unit: "MOS",
        description: "Listening quality estimated from RTT, jitter and loss at each moment (ITU-T G.107 E-model)",
      });
      mosPanel.note.textContent = "good from 4.02, fair from 3.60";
    }
    const end = d.state === "live" ? Date.now() : (d.ended || d.last_seen) + 1000;
    mosPanel.chart.setWindow(d.started - 1000, end);
    mosPanel.chart.replace({ [call]: timeline }, d.bucket_seconds * 1000);
  }

  function renderCharts(d, names) {
    renderMos(d);
    const live = d.state === "live";
    const start = d.started - 1000;
    const end = live ? Date.now() : (d.ended || d.last_seen) + 1000;
    const spec = { kind: "custom", start: start, end: end, label: "the call" };
    for (const name of names) {
      if (!panels.has(name)) panels.set(name, new RS.MetricPanel(chartsArea, name, { call: call, height: 170 }));
      const panel = panels.get(name);
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
    renderProblems(summary.quality.problems || []);
    renderCharts(summary, renderSummary(summary));
    document.body.dataset.callState = summary.state;
    if (summary.state === "live") pollTimer = setTimeout(load, POLL_MS);
  }

  // call_started / call_ended arrive on any graph feed: reload at once when this call changes.
  new RS.LiveFeed("rtt", {
    snapshot: (m) => {
      RS.setFeed("live", "live");
      if (summary && (call in m.calls) !== (summary.state === "live")) load();
    },
    call_started: (m) => { if (m.call === call) load(); },
    call_ended: (m) => { if (m.call === call) load(); },
    status: (state, message) => RS.setFeed(state, message),
  });
  setInterval(() => { if (summary && summary.state === "live") renderHead(summary); }, 1000);
  load();
})(window.RS);
