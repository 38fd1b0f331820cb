/* /graph/<metric>/: one metric, every call, live or over a range, with a per-call table. */
"use strict";

(function (RS) {
  const container = document.getElementById("chart-panel");
  const name = container.dataset.metric;
  const unit = RS.metric(name).display_unit;
  const switcher = document.getElementById("metric-switch");
  const rows = document.querySelector("#graph-calls tbody");

  switcher.replaceChildren(...RS.metricList.map((m) => RS.el("option", { value: m.name, selected: m.name === name }, m.name)));
  if (!RS.metrics.has(name)) switcher.prepend(RS.el("option", { value: name, selected: true }, name));
  switcher.addEventListener("change", () => {
    location.href = "/graph/" + encodeURIComponent(switcher.value) + "/" + location.search;
  });

  const panel = new RS.MetricPanel(container, name, {
    bare: true,
    height: 400,
    onEvent: (message) => {
      if (message.type === "status") RS.setFeed(message.state === "live" ? "live" : message.state, message.text || message.state);
    },
  });

  /** Latest, min, mean and max per call of what the chart draws: the worst calls now first (the
   * server's order), then by id. Beyond --graph-lines calls, the five worst over the fleet's band. */
  function renderTable() {
    const chart = panel.chart;
    const rank = new Map(chart.drawn.map((call, i) => [call, i]));
    const order = (a, b) => (rank.has(a[0]) ? rank.get(a[0]) : Infinity) - (rank.has(b[0]) ? rank.get(b[0]) : Infinity)
      || a[0].localeCompare(b[0]);
    const calls = [...chart.calls.entries()].sort(order);
    rows.replaceChildren(...calls.map(([call, points]) => {
      const ordered = [...points.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v).filter((v) => v !== null);
      let sum = 0, min = Infinity, max = -Infinity;
      for (const value of ordered) {
        sum += value;
        min = Math.min(min, value);
        max = Math.max(max, value);
      }
      const swatch = RS.el("span", { class: "swatch-inline" });
      swatch.style.background = chart.colorOf(call);
      return RS.el("tr", { dataset: { call: call } },
        RS.el("td", { class: "name" }, swatch, RS.el("a", { href: RS.callUrl(call) }, call)),
        RS.el("td", { class: "num" }, RS.format(ordered[ordered.length - 1], unit)),
        RS.el("td", { class: "num" }, RS.format(ordered.length ? min : null, unit)),
        RS.el("td", { class: "num" }, RS.format(ordered.length ? sum / ordered.length : null, unit)),
        RS.el("td", { class: "num" }, RS.format(ordered.length ? max : null, unit)),
        RS.el("td", { class: "num" }, ordered.length));
    }));
    const band = chart.mode === "band";
    document.getElementById("graph-empty").hidden = calls.length > 0 || band;
    const more = document.getElementById("graph-more");
    more.hidden = !band;
    more.textContent = "The " + calls.length + " worst of " + chart.bandCalls +
      " calls, drawn over the fleet's p50–p95 band; the dashboard lists them all.";
  }

  new RS.RangeControl((spec) => {
    if (spec.kind !== "live") RS.setFeed("paused", "range view");
    panel.setRange(spec);
  });
  setInterval(renderTable, 1000);
  renderTable();
})(window.RS);
