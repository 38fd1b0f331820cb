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

  // With more calls than lines, the graph draws the fleet's band and the worst calls by quality now.
  const fleet = new RS.FleetFeed({ change: () => panel.chart.setFocus(fleet.worst(5)), status: () => {} });

  const TABLE_MAX = 50;

  /** Latest, min, mean and max per call of what the chart holds: the worst calls now first
   * (by the fleet's quality), then by id; a page of them, however many calls there are. */
  function renderTable() {
    const rank = new Map(fleet.list("worst").map((c, i) => [c.call, i]));
    const order = (a, b) => (rank.has(a[0]) ? rank.get(a[0]) : Infinity) - (rank.has(b[0]) ? rank.get(b[0]) : Infinity)
      || a[0].localeCompare(b[0]);
    const all = [...panel.chart.calls.entries()];
    const calls = all.sort(order).slice(0, TABLE_MAX);
    rows.replaceChildren(...calls.map(([call, points]) => {
      const ordered = [...points.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v).filter((v) => v !== null);
      let sum = 0, min = Infinity, max = -Infinity;
      for (const value of ordered) {
        sum += value;
        min = Math.min(min, value);
        max = Math.max(max, value);
      }
      const swatch = RS.el("span", { class: "swatch-inline" });
      swatch.style.background = RS.color(call);
      return RS.el("tr", { dataset: { call: call } },
        RS.el("td", { class: "name" }, swatch, RS.el("a", { href: RS.callUrl(call) }, call)),
        RS.el("td", { class: "num" }, RS.format(ordered[ordered.length - 1], unit)),
        RS.el("td", { class: "num" }, RS.format(ordered.length ? min : null, unit)),
        RS.el("td", { class: "num" }, RS.format(ordered.length ? sum / ordered.length : null, unit)),
        RS.el("td", { class: "num" }, RS.format(ordered.length ? max : null, unit)),
        RS.el("td", { class: "num" }, ordered.length));
    }));
    document.getElementById("graph-empty").hidden = all.length > 0;
    const more = document.getElementById("graph-more");
    more.hidden = all.length <= TABLE_MAX;
    more.textContent = "The " + TABLE_MAX + " worst of " + all.length + " calls; the dashboard lists them all.";
  }

  new RS.RangeControl((spec) => {
    if (spec.kind !== "live") RS.setFeed("paused", "range view");
    panel.setRange(spec);
  });
  setInterval(renderTable, 1000);
  renderTable();
})(window.RS);
