/* /dashboard: the fleet now (tiles, the live calls worst first, a page at a time), why the poor peers are
 * poor (why.js), its history, and a graph per chosen metric, live or over a range. The live list follows
 * /ws/calls; filtered to a cohort (?<dimension>=<value>, which the pushed entries cannot tell), it reads
 * GET /v1/calls/ with the filter every few seconds instead. */
"use strict";

(function (RS) {
  const DEFAULT_METRICS = ["rtt", "jitter", "packetsLost", "availableBandwidth"];
  const PAGE_SIZE = 20;
  const ENDED_SHOWN = 8;
  const ENDED_REFRESH_MS = 15000;
  const HISTORY_REFRESH_MS = 60000;
  const HISTORY = { "24h": { bucket: "1h" }, "7d": { bucket: "6h" } };
  const VERDICTS = ["good", "fair", "poor", "unknown"];
  const FILTERED_REFRESH_MS = 3000;
  const DIMENSIONS = JSON.parse(document.getElementById("dimensions-data").textContent);

  const panels = new Map(); // metric -> MetricPanel
  let range = null;

  const liveList = document.getElementById("live-calls");
  const endedList = document.getElementById("ended-calls");
  const search = document.getElementById("call-search");
  const order = document.getElementById("call-order");
  const chartsArea = document.getElementById("charts");
  const chips = document.getElementById("chips");
  const picker = document.getElementById("add-metric");

  function text(id, value) { document.getElementById(id).textContent = value; }

  // --- the live calls: a page of the fleet, worst first -------------------------------

  const params = new URLSearchParams(location.search);
  const view = { query: params.get("q") || "", order: params.get("order") === "recent" ? "recent" : "worst", page: 0,
                 filters: filtersFromUrl() };
  search.value = view.query;
  order.value = view.order;
  const rows = new Map(); // call -> its <tr>, for the rows on the page
  const fresh = new Set(); // calls started since the last render: they flash once

  function mosText(call) {
    const mos = RS.mosOf(call);
    return mos === null ? "–" : mos.toFixed(2);
  }

  function peersCell(call) {
    const peers = call.peers || [];
    const worst = call.quality && call.quality.worst_peer;
    const cell = RS.el("td", { class: "peers", title: peers.join(", ") },
      RS.el("span", { class: "peer-count" }, peers.length === 1 ? "1 peer" : peers.length + " peers"));
    if (worst && peers.length > 1) cell.append(RS.el("span", { class: "worst-peer", title: "worst peer" }, worst));
    return cell;
  }

  /** One row; rebuilt only when what it shows changed, so a row under the pointer stays put. */
  function row(call) {
    const q = call.quality || {};
    const alerts = feed.alertsOf(call.call);
    const key = [mosText(call), q.verdict, (q.problems || []).join(","), q.worst_peer, (call.peers || []).join(","),
                 alerts.join(",")].join("|");
    let tr = rows.get(call.call);
    if (tr && tr.dataset.key === key) return tr;
    const verdict = q.verdict || "unknown";
    const next = RS.el("tr", { dataset: { call: call.call, verdict: verdict, key: key, mos: RS.mosOf(call) === null ? "" : RS.mosOf(call) } },
      RS.el("td", { class: "verdict-col" }, RS.el("span", { class: "verdict-dot", title: verdict })),
      RS.el("td", { class: "name" }, RS.el("a", { href: RS.callUrl(call.call), title: call.call }, call.call)),
      RS.el("td", { class: "num mos" }, mosText(call)),
      RS.el("td", { class: "problems-cell" }, alerts.length ? RS.el("span", { class: "alert-badge", title: "firing: " + alerts.join(", "),
        dataset: { alerts: alerts.join(",") } }, "alert") : null, (q.problems || []).map(RS.problemBadge)),
      peersCell(call),
      RS.el("td", { class: "num duration", dataset: { started: call.started || "" } }, ""));
    if (tr) tr.replaceWith(next);
    rows.set(call.call, next);
    return next;
  }

  /** The dimension filters of the URL: {turn_server: "turn-2.example.com:443"}. */
  function filtersFromUrl() {
    const found = new URLSearchParams(location.search);
    return Object.fromEntries(DIMENSIONS.filter((name) => found.get(name)).map((name) => [name, found.get(name)]));
  }

  function filtered() { return Object.keys(view.filters).length > 0; }

  function filterWords() { return Object.entries(view.filters).map(([name, value]) => name + " = " + value).join(", "); }

  // The filtered list: the server's page of it (`answer`), each page's cursor, and which request is current.
  const remote = { answer: null, error: null, cursors: [null], timer: null, generation: 0 };

  /** The filtered list from its first page; what it showed stays until the answer comes. */
  function restartFiltered() {
    remote.cursors = [null];
    loadFiltered(0);
  }

  /** Page `page` of the filtered list (the current one by default); the page changes when it has come. */
  async function loadFiltered(page = view.page) {
    clearTimeout(remote.timer);
    const generation = ++remote.generation;
    if (!filtered()) return;
    const query = new URLSearchParams({ state: "live", sort: view.order, limit: PAGE_SIZE });
    if (view.query) query.set("q", view.query);
    for (const [name, value] of Object.entries(view.filters)) query.set(name, value);
    if (remote.cursors[page]) query.set("cursor", remote.cursors[page]);
    try {
      const answer = await RS.getJSON("/v1/calls/?" + query);
      if (generation !== remote.generation) return;
      if (!answer.calls.length && page > 0) { // the calls of this page ended: back to the first
        restartFiltered();
        return;
      }
      view.page = page;
      Object.assign(remote, { answer: answer, error: null });
    } catch (error) {
      if (generation !== remote.generation) return;
      Object.assign(remote, { answer: null, error: error });
    }
    liveList.dataset.filteredLoads = Number(liveList.dataset.filteredLoads || 0) + 1;
    renderList();
    remote.timer = setTimeout(() => loadFiltered(), FILTERED_REFRESH_MS);
  }

  /** This page's URL with `filters` in place of the current ones (the rest of its choices kept). */
  function urlWith(filters) {
    const next = new URLSearchParams(location.search);
    for (const name of new Set(DIMENSIONS.concat(Object.keys(view.filters)))) next.delete(name);
    for (const [name, value] of Object.entries(filters)) next.set(name, value);
    const query = next.toString();
    return location.pathname + (query ? "?" + query : "");
  }

  /** Filter the live list to the calls with a peer in every one of `filters` ({} for all), kept in the URL. */
  function setFilters(filters, fromHistory) {
    if (!fromHistory) history.pushState(null, "", urlWith(filters));
    view.filters = filters;
    view.page = 0;
    Object.assign(remote, { answer: null, error: null });
    renderFilters();
    markCurrentLinks();
    restartFiltered();
    renderList();
  }

  function renderFilters() {
    const bar = document.getElementById("filters");
    const names = Object.keys(view.filters);
    bar.hidden = names.length === 0;
    bar.replaceChildren(RS.el("span", { class: "filters-label" }, "Filtered:"), ...names.map((name) => {
      const value = view.filters[name];
      const rest = Object.fromEntries(Object.entries(view.filters).filter(([other]) => other !== name));
      return RS.el("span", { class: "chip filter-chip", title: "Calls with a peer that " + RS.dims.cohortPhrase(name, value),
        dataset: { dimension: name, value: value } }, name + " = " + value,
        RS.el("button", { type: "button", title: "Clear this filter", "aria-label": "Clear the filter " + name,
          onclick: () => setFilters(rest) }, "✕"));
    }));
  }

  /** A link to the list filtered to a cohort ({dimension: value}): followed in place (no reload), or opened
   * elsewhere as a URL. */
  function cohortLink(filters, attrs, ...children) {
    const onclick = (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      setFilters(filters);
    };
    const key = filterKey(filters);
    return RS.el("a", Object.assign({ href: urlWith(filters), onclick: onclick, dataset: { filters: key },
      "aria-current": key === filterKey(view.filters) ? "true" : null }, attrs), ...children);
  }

  /** The same string for the same filters, whatever their order. */
  function filterKey(filters) {
    return JSON.stringify(Object.entries(filters).sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  /** The links to the cohort listed now say so (aria-current), the others not. */
  function markCurrentLinks() {
    const key = filterKey(view.filters);
    for (const link of document.querySelectorAll("a[data-filters]")) {
      if (link.dataset.filters === key) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    }
  }

  function matching() {
    const all = feed.list(view.order);
    if (!view.query) return all;
    const needle = view.query.toLowerCase();
    return all.filter((c) => c.call.toLowerCase().includes(needle));
  }

  function updateDurations() {
    const now = Date.now();
    for (const cell of liveList.querySelectorAll("td.duration")) {
      const started = Number(cell.dataset.started);
      cell.textContent = started ? RS.duration(now - started) : "";
    }
  }

  /** The page to show: {page, count (matching calls), pages, more (a next page)}, from the feed or the server. */
  function currentPage() {
    if (filtered()) {
      const answer = remote.answer || { calls: [], count: 0, next: null };
      return { page: answer.calls, count: answer.count, pages: Math.max(1, Math.ceil(answer.count / PAGE_SIZE)),
               more: Boolean(answer.next) };
    }
    const shown = matching();
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    view.page = Math.min(view.page, pages - 1);
    const first = view.page * PAGE_SIZE;
    return { page: shown.slice(first, first + PAGE_SIZE), count: shown.length, pages: pages, more: view.page < pages - 1 };
  }

  function emptyText() {
    if (remote.error && filtered()) return "The filtered list is unavailable: " + remote.error.message;
    if (filtered() && !remote.answer) return "Listing the calls with " + filterWords() + "…";
    if (!feed.calls.size) return "No call in progress. Calls appear here as soon as their first stats arrive.";
    if (filtered()) return "No live call has a peer with " + filterWords() + (view.query ? " and an id with “" + view.query + "”." : ".");
    return "No live call matches “" + view.query + "”.";
  }

  function renderList() {
    const { page, count, pages, more } = currentPage();
    const first = view.page * PAGE_SIZE;
    const onPage = new Set(page.map((c) => c.call));
    for (const call of rows.keys()) if (!onPage.has(call)) rows.delete(call);
    liveList.replaceChildren(...page.map((c) => {
      const tr = row(c);
      tr.classList.toggle("fresh", fresh.has(c.call));
      return tr;
    }));
    fresh.clear();
    updateDurations();
    Object.assign(liveList.dataset, { count: count, total: feed.calls.size, page: view.page + 1, pages: pages,
      filtered: filtered() ? (remote.answer ? "loaded" : "loading") : "" });
    text("calls-count", view.query || filtered() ? count + " of " + feed.calls.size : feed.calls.size);
    text("pager-range", count ? (first + 1) + "–" + (first + page.length) + " of " + count : "");
    document.getElementById("page-prev").disabled = view.page === 0;
    document.getElementById("page-next").disabled = !more;
    document.getElementById("pager").hidden = view.page === 0 && !more;
    const none = document.getElementById("no-live");
    none.hidden = page.length > 0;
    none.textContent = emptyText();
  }

  /** Tiles from the fleet figures the server computed over every live call (not only this page). */
  function renderTiles() {
    const fleet = feed.fleet;
    const verdicts = (fleet && fleet.verdicts) || {};
    text("live-count", fleet ? fleet.live : feed.calls.size);
    text("peer-count", fleet ? fleet.peers + (fleet.peers === 1 ? " peer" : " peers") : "");
    for (const verdict of VERDICTS) text("verdict-" + verdict, verdicts[verdict] === undefined ? "–" : verdicts[verdict]);
    const mos = fleet && fleet.percentiles && fleet.percentiles.mos;
    text("fleet-mos", mos && mos.p50 !== null && mos.p50 !== undefined ? mos.p50.toFixed(2) : "–");
    text("fleet-detail", mos && mos.p5 !== null && mos.p5 !== undefined ? "median · 5th percentile " + mos.p5.toFixed(2) : "median of live calls");
  }

  let pending = null;
  function renderSoon() {
    if (pending) return;
    pending = requestAnimationFrame(() => {
      pending = null;
      renderList();
      renderTiles();
    });
  }

  let cohortAlertsChanged = () => {};
  const feed = new RS.FleetFeed({
    change: (message) => {
      if (message.type === "snapshot") RS.setFeed("live", "live");
      if (!message.type || message.type === "alert") cohortAlertsChanged();
      liveList.dataset.updates = Number(liveList.dataset.updates || 0) + 1;
      for (const started of message.started || []) fresh.add(started.call);
      if ((message.ended || []).length) refreshEndedSoon();
      renderSoon();
    },
    status: (state, message) => RS.setFeed(state, message),
  });

  /** The list again from its first page (a search or an order changed). */
  function relist() {
    if (filtered()) {
      restartFiltered();
      return;
    }
    view.page = 0;
    renderList();
  }

  search.addEventListener("input", () => {
    view.query = search.value.trim();
    RS.setParam("q", view.query, "");
    relist();
  });
  order.addEventListener("change", () => {
    view.order = order.value;
    RS.setParam("order", view.order, "worst");
    relist();
  });
  function turnPage(step) {
    if (filtered()) {
      if (step > 0) remote.cursors[view.page + 1] = remote.answer && remote.answer.next;
      loadFiltered(Math.max(0, view.page + step));
      return;
    }
    view.page = Math.max(0, view.page + step);
    renderList();
  }
  document.getElementById("page-prev").addEventListener("click", () => turnPage(-1));
  document.getElementById("page-next").addEventListener("click", () => turnPage(1));
  window.addEventListener("popstate", () => setFilters(filtersFromUrl(), true));

  // --- calls ended in the last hour ----------------------------------------------------

  function endedRow(c) {
    // An ended call's quality comes from its summary, written a few seconds after the end.
    const q = c.quality || { verdict: "pending" };
    const mos = q.mos === null || q.mos === undefined ? (c.quality ? "–" : "…") : q.mos.toFixed(2);
    const end = c.ended || c.last_seen;
    return RS.el("li", { dataset: { call: c.call, state: c.state, verdict: q.verdict || "unknown", endReason: c.end_reason || "" } },
      RS.el("span", { class: "verdict-dot", title: q.verdict || "unknown" }),
      RS.el("a", { class: "call-name", href: RS.callUrl(c.call), title: c.call }, c.call),
      RS.el("span", { class: "call-time", title: c.quality ? "mean MOS over the call" : "summarised a few seconds after the end" }, mos),
      RS.el("span", { class: "call-meta" }, RS.duration(end - c.started) + " · " + c.peers.length + (c.peers.length === 1 ? " peer" : " peers")
        + (c.end_reason ? " · " + RS.endReason(c) : "")),
      RS.el("span", { class: "call-when" }, "ended " + RS.when(end)));
  }

  let endedTimer = null;
  function refreshEndedSoon() {
    clearTimeout(endedTimer);
    endedTimer = setTimeout(refreshEnded, 800);
  }

  async function refreshEnded() {
    clearTimeout(endedTimer);
    try {
      const answer = await RS.getJSON("/v1/calls/?state=ended&since=1h&limit=" + ENDED_SHOWN);
      const ended = answer.calls.slice(0, ENDED_SHOWN);
      endedList.replaceChildren(...ended.map(endedRow));
      document.getElementById("no-ended").hidden = ended.length > 0;
      text("hour-count", answer.count ? answer.count + (answer.count === 1 ? " call" : " calls") : "");
    } catch (error) {
      text("hour-count", "unavailable: " + error.message);
    }
    endedTimer = setTimeout(refreshEnded, ENDED_REFRESH_MS);
  }

  // --- history: calls per hour, poor share, median MOS -----------------------------------

  const historyCharts = new Map(); // series name -> uPlot
  let historyRange = "24h";
  let historyTimer = null;

  function historyChart(name, data, options) {
    const host = document.querySelector('.history-chart[data-series="' + name + '"]');
    const old = historyCharts.get(name);
    if (old) old.destroy();
    const axis = { stroke: "#5d6880", grid: { stroke: "#edf0f5", width: 1 }, ticks: { show: false }, font: "10px system-ui, sans-serif" };
    const plot = new uPlot({
      width: Math.max(200, host.clientWidth), height: 92, ms: 1, legend: { show: false },
      cursor: { drag: { x: false, y: false, setScale: false } },
      scales: { x: { time: true, range: () => options.x }, y: { range: options.y } },
      axes: [
        Object.assign({}, axis, { size: 22, space: 70,
          values: (u, splits, i, space, increment) => splits.map((ms) => RS.tickLabel(ms, increment, options.x[1] - options.x[0])) }),
        Object.assign({}, axis, { size: 40, space: 18, values: (u, splits) => splits.map(options.format) }),
      ],
      series: [{}, Object.assign({ spanGaps: false, points: { show: false } }, options.series)],
    }, data, host);
    historyCharts.set(name, plot);
  }

  async function loadHistory() {
    clearTimeout(historyTimer);
    const chosen = historyRange;
    const panel = document.getElementById("history");
    try {
      const answer = await RS.getJSON("/v1/fleet/?duration=" + chosen + "&bucket=" + HISTORY[chosen].bucket);
      if (chosen !== historyRange) return;
      const buckets = answer.buckets;
      const hours = answer.bucket_ms / 3600000;
      const x = buckets.map((b) => b.time + answer.bucket_ms / 2);
      const span = [buckets.length ? buckets[0].time : Date.now() - 86400000,
                    buckets.length ? buckets[buckets.length - 1].time + answer.bucket_ms : Date.now()];
      const bars = uPlot.paths.bars({ size: [0.8, 48] });
      const ended = buckets.reduce((sum, b) => sum + b.calls, 0);
      const poor = buckets.reduce((sum, b) => sum + (b.calls ? b.poor_share * b.calls : 0), 0);
      const minutes = buckets.reduce((sum, b) => sum + (b.minutes || 0), 0);
      text("history-totals", ended ? RS.format(ended, "") + (ended === 1 ? " call" : " calls") + " ended · "
        + RS.format(minutes, "") + " call minutes · " + RS.format(100 * poor / ended, "") + "% poor" : "");
      panel.dataset.buckets = buckets.length;
      panel.dataset.calls = ended;
      document.getElementById("no-history").hidden = ended > 0;
      historyChart("calls", [x, buckets.map((b) => b.calls / hours)], {
        x: span, y: (u, min, max) => [0, Math.max(1, max * 1.15)], format: (v) => RS.format(v, ""),
        series: { stroke: "#2563eb", fill: "rgba(37, 99, 235, 0.55)", paths: bars, value: (u, v) => RS.format(v, "") },
      });
      historyChart("poor", [x, buckets.map((b) => (b.calls ? b.poor_share * 100 : null))], {
        x: span, y: (u, min, max) => [0, Math.max(10, Math.min(100, max * 1.2))], format: (v) => RS.format(v, "") + "%",
        series: { stroke: "#b91c1c", fill: "rgba(185, 28, 28, 0.5)", paths: bars },
      });
      historyChart("mos", [x, buckets.map((b) => b.mos_p50)], {
        x: span, y: () => [1, 4.5], format: (v) => v.toFixed(1),
        series: { stroke: "#15803d", width: 1.75, points: { show: true, size: 4, fill: "#15803d" } },
      });
    } catch (error) {
      panel.dataset.error = error.message;
      document.getElementById("no-history").hidden = false;
      text("no-history", "History unavailable: " + error.message);
    }
    historyTimer = setTimeout(loadHistory, HISTORY_REFRESH_MS);
  }

  document.getElementById("history-ranges").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-history]");
    if (!button) return;
    historyRange = button.dataset.history;
    for (const b of document.querySelectorAll("#history-ranges button")) b.classList.toggle("active", b === button);
    loadHistory();
  });

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
    RS.setParam("metrics", names.join(","), null);
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
  new RS.RangeControl((spec) => {
    range = spec;
    text("range-label", spec.label);
    for (const panel of panels.values()) panel.setRange(spec);
  });
  renderFilters();
  if (filtered()) loadFiltered();
  cohortAlertsChanged = RS.startWhy(DIMENSIONS, feed, cohortLink);
  refreshEnded();
  loadHistory();
  setInterval(updateDurations, 1000);
})(window.RS);
