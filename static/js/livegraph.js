/* Live graphs: the graph websocket, a uPlot chart of one metric per call, and the range picker.
 *
 * Live mode follows /ws/graph/<metric> (SPEC §5, §18): a snapshot, then call_started,
 * drawn, points and call_ended; the x axis slides over the last five minutes. Range
 * mode draws /v1/series/?band=true (counters as rates, same shapes). Beyond --graph-lines
 * calls the server sends the fleet's p50–p95 band and the five worst calls, and that is
 * what the chart draws. */
"use strict";

(function (RS) {
  const LIVE_WINDOW_MS = 5 * 60 * 1000;
  const RANGE_REFRESH_MS = 10000;
  // Points further apart than this many buckets are drawn with a gap between them.
  const GAP_BUCKETS = 3;
  // Calls named under a chart; a busy service has more lines than a legend can list.
  const LEGEND_MAX = 12;
  const WORST_COLORS = ["#dc2626", "#ea580c", "#9333ea", "#ca8a04", "#db2777"];
  const FLEET_P50 = "#334155";
  const FLEET_P95 = "#64748b";
  const SFU_DASH = [6, 4];
  const FLEET_FILL = "rgba(100, 116, 139, 0.16)";

  /** 24-hour clock labels: seconds when ticks are closer than a minute, the date over long spans. */
  function tickLabel(ms, increment, span) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    const day = pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    if (increment < 60000) return hm + ":" + pad(d.getSeconds());
    if (span <= 36 * 3600 * 1000) return hm;
    return increment < 86400000 ? day + " " + hm : day;
  }

  /** A websocket of the server's (/ws/graph/<metric>, /ws/calls), reconnecting with backoff;
   * every (re)connection starts with a fresh snapshot. */
  class LiveFeed {
    constructor(path, handlers) {
      this.path = path;
      this.handlers = handlers;
      this.delay = 500;
      this.stopped = false;
      this.connect();
    }

    connect() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const socket = new WebSocket(scheme + "//" + location.host + this.path);
      this.socket = socket;
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "snapshot") this.delay = 500;
        const handler = this.handlers[message.type];
        if (handler) handler(message);
      };
      socket.onclose = (event) => {
        if (this.stopped || socket !== this.socket) return;
        if (event.code === 4404) {
          this.handlers.status("error", event.reason || "unknown metric");
          return;
        }
        this.handlers.status("reconnecting", "reconnecting");
        this.timer = setTimeout(() => this.connect(), this.delay);
        this.delay = Math.min(this.delay * 2, 10000);
      };
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.socket) this.socket.close(1000);
    }
  }

  function graphPath(metric) { return "/ws/graph/" + encodeURIComponent(metric); }

  /** One metric on uPlot: what the server sends, a line per call, or the fleet's p50–p95 band and the
   * worst calls. `data-points` / `data-calls` / `data-mode` / `data-lines` tell what it holds and draws. */
  class SeriesChart {
    constructor(container, metricName, height, unit) {
      this.container = container;
      this.metric = RS.metric(metricName);
      this.unit = unit === undefined ? this.metric.display_unit : unit;
      this.height = height;
      this.calls = new Map(); // call -> Map(ms -> value), oldest first: the lines
      this.bucketMs = 2000;
      this.window = null; // [min, max] ms of the x axis
      this.bands = []; // [{from, to}] shaded spans (quality problems)
      this.mode = "lines"; // or "band": the fleet's p50–p95 band under the drawn calls
      this.drawn = []; // the calls drawn as lines, worst first, as the server ranks them
      this.band = null; // {p50: Map(ms -> value), p95: Map(ms -> value)} in band mode
      this.bandCalls = 0; // the calls the band is taken across
      this.linkTo = RS.callUrl; // a line's page (null: lines are not calls, e.g. a call's peers)
      this.peers = null; // a call's peers, when the lines are some of them: each named as the call page names it
      this.empty = RS.el("div", { class: "chart-empty" }, "No data yet");
      this.host = RS.el("div", { class: "chart-host" });
      this.legend = RS.el("div", { class: "chart-legend" });
      this.container.append(this.empty, this.host, this.legend);
      this.container.seriesChart = this;
      this.plot = null;
      this.plotKey = "";
      new ResizeObserver(() => this.resize()).observe(container);
    }

    /** A snapshot or a range: {calls, bucket_ms, mode, drawn, band}. */
    replace(message) {
      this.calls = new Map();
      if (message.bucket_ms) this.bucketMs = message.bucket_ms;
      for (const [call, points] of Object.entries(message.calls || {})) this.calls.set(call, new Map(points));
      this.mode = message.mode === "band" ? "band" : "lines";
      this.drawn = message.drawn || [];
      this.band = null;
      if (this.mode === "band") {
        this.band = { p50: new Map(message.band.p50), p95: new Map(message.band.p95) };
        this.bandCalls = message.band.calls;
      }
      this.render();
    }

    /** A `points` message: the drawn calls' new buckets and, in band mode, the band's. */
    merge(message) {
      for (const [call, points] of Object.entries(message.calls || {})) {
        if (!this.calls.has(call)) this.calls.set(call, new Map());
        const known = this.calls.get(call);
        for (const [ms, value] of points) known.set(ms, value);
      }
      if (message.band && this.band) {
        for (const label of ["p50", "p95"]) for (const [ms, value] of message.band[label]) this.band[label].set(ms, value);
        this.bandCalls = message.band.calls;
      }
      this.render();
    }

    /** A `drawn` message: the calls drawn now, worst first; those that joined come with their five minutes. */
    setDrawn(message) {
      for (const call of message.left || []) this.calls.delete(call);
      for (const [call, points] of Object.entries(message.calls || {})) this.calls.set(call, new Map(points));
      this.drawn = message.drawn || [];
      this.render();
    }

    /** A call started: in lines mode its line (its points follow); the band's calls are the server's. */
    addCall(call) {
      if (this.mode === "lines" && !this.calls.has(call)) {
        this.calls.set(call, new Map());
        this.render();
      }
    }

    remove(call) {
      if (this.calls.delete(call)) this.render();
    }

    trim(before) {
      const maps = [...this.calls.values()].concat(this.band ? [this.band.p50, this.band.p95] : []);
      for (const points of maps) {
        for (const ms of points.keys()) {
          if (ms >= before) break; // oldest first: the rest is newer
          points.delete(ms);
        }
      }
    }

    pointCount() {
      let count = this.band ? this.band.p50.size : 0;
      for (const points of this.calls.values()) count += points.size;
      return count;
    }

    /** A line's colour: the worst calls' over the band by rank, a call's or a peer's own otherwise. */
    colorOf(call) {
      const rank = this.drawn.indexOf(call);
      if (this.mode === "band" && rank >= 0) return WORST_COLORS[rank % WORST_COLORS.length];
      return this.linkTo ? RS.color(call) : RS.peerColor(call);
    }

    /** uPlot's aligned columns: `undefined` where a call has no bucket (spanned), `null` for a real gap. */
    aligned(names) {
      const xs = new Set();
      const columns = names.map((call) => {
        const points = [...this.calls.get(call).entries()].sort((a, b) => a[0] - b[0]);
        const column = new Map();
        points.forEach(([ms, value], i) => {
          if (i > 0 && ms - points[i - 1][0] > GAP_BUCKETS * this.bucketMs) {
            column.set(points[i - 1][0] + this.bucketMs, null);
            xs.add(points[i - 1][0] + this.bucketMs);
          }
          column.set(ms, value);
          xs.add(ms);
        });
        return column;
      });
      const x = [...xs].sort((a, b) => a - b);
      return [x, ...columns.map((column) => x.map((ms) => column.get(ms)))];
    }

    /** The band's columns (p50, p95) and the drawn calls' lines on the buckets any of them has. */
    bandAligned(lines) {
      const xs = new Set(this.band.p50.keys());
      for (const ms of this.band.p95.keys()) xs.add(ms);
      for (const call of lines) for (const ms of this.calls.get(call).keys()) xs.add(ms);
      const x = [...xs].sort((a, b) => a - b);
      return [x, x.map((ms) => this.band.p50.get(ms)), x.map((ms) => this.band.p95.get(ms)),
        ...lines.map((call) => {
          const points = this.calls.get(call);
          return x.map((ms) => points.get(ms));
        })];
    }

    render() {
      if (this.pending) return;
      this.pending = requestAnimationFrame(() => {
        this.pending = null;
        this.draw();
      });
    }

    draw() {
      const band = this.mode === "band";
      const lines = band ? this.drawn.filter((call) => this.calls.has(call)) : [...this.calls.keys()].sort();
      const data = band ? this.bandAligned(lines) : this.aligned(lines);
      this.data = data;
      const count = this.pointCount();
      Object.assign(this.container.dataset, {
        points: count, calls: band ? this.bandCalls : lines.length, mode: this.mode, lines: lines.length,
      });
      this.empty.hidden = count > 0;
      const key = (band ? "band\n" : "lines\n") + lines.join("\n");
      if (key !== this.plotKey || !this.plot) this.build(band, lines, data);
      else this.plot.batch(() => {
        this.plot.setData(data);
        this.fitX();
      });
      if (band) this.legendCount.textContent = this.bandCalls + " calls in the band";
      this.updateLegend();
    }

    /** A line of a call's peer that is a media server's view of it: dashed, in the peer's colour. */
    isSfuView(line) {
      return !this.linkTo && RS.sfuView(line) !== null;
    }

    /** `peers`: a call's, when `label` is one of them: a peer and its SFU view are named as the call page names them. */
    legendItem(color, label, href, dashed, peers) {
      const value = RS.el("span", { class: "legend-value" });
      const swatch = RS.el("span", { class: "legend-swatch" + (dashed ? " dashed" : "") });
      swatch.style.background = color;
      swatch.style.color = color; // a dashed swatch's dashes
      const name = href ? RS.el("a", { href: href, title: label }, label)
        : peers ? RS.el("span", { class: "legend-label", title: label }, RS.peerName(label), RS.viewLabel(label, peers))
          : RS.el("span", { class: "legend-label" }, label);
      this.legend.append(RS.el("span", { class: "legend-item", dataset: href ? { call: label } : { series: label } }, swatch, name, value));
      return value;
    }

    /** One entry per series: its colour, a link to the call's page and its latest value (or the value under the cursor). */
    buildLegend(band, lines, colors, total) {
      this.legendValues = [];
      if (band) {
        this.legendValues.push(this.legendItem(FLEET_P50, "fleet p50"), this.legendItem(FLEET_P95, "fleet p95", null, true));
        this.legendCount = RS.el("span", { class: "legend-more" });
        this.legend.append(this.legendCount);
        if (lines.length) this.legend.append(RS.el("span", { class: "legend-break" }, "worst calls:"));
      }
      lines.slice(0, LEGEND_MAX).forEach((call, i) => {
        this.legendValues.push(this.legendItem(colors[i], call, this.linkTo && this.linkTo(call), this.isSfuView(call),
          this.linkTo ? null : this.peers || lines));
      });
      if (!band && total > LEGEND_MAX) {
        this.legend.append(RS.el("span", { class: "legend-more" }, "and " + (total - LEGEND_MAX) + " more calls"));
      }
    }

    updateLegend() {
      const data = this.data;
      const idx = this.plot && this.plot.cursor.idx;
      this.legendValues.forEach((node, i) => {
        const column = data[i + 1];
        let value = null;
        if (idx !== null && idx !== undefined) value = column[idx];
        else for (let j = column.length - 1; j >= 0 && (value === null || value === undefined); j--) value = column[j];
        node.textContent = RS.format(value, this.unit);
      });
    }

    fitX() {
      if (this.window) this.plot.setScale("x", { min: this.window[0], max: this.window[1] });
    }

    build(band, lines, data) {
      if (this.plot) this.plot.destroy();
      this.plotKey = (band ? "band\n" : "lines\n") + lines.join("\n");
      this.legend.replaceChildren();
      const colors = lines.map((call) => this.colorOf(call));
      this.buildLegend(band, lines, colors, lines.length);
      const unit = this.unit;
      const format = (u, v) => RS.format(v, unit);
      const axis = { stroke: "#5d6880", grid: { stroke: "#edf0f5", width: 1 }, ticks: { stroke: "#dde2ea", width: 1, size: 4 },
                     font: "11px system-ui, sans-serif" };
      const callSeries = lines.map((call, i) => ({
        label: call, stroke: colors[i], width: band ? 1.5 : 1.75, spanGaps: false,
        dash: this.isSfuView(call) ? SFU_DASH : undefined, points: { size: 5, fill: colors[i] }, value: format,
      }));
      const fleetSeries = band ? [
        { label: "fleet p50", stroke: FLEET_P50, width: 1.5, points: { show: false }, value: format },
        { label: "fleet p95", stroke: FLEET_P95, width: 1, dash: [4, 3], points: { show: false }, value: format },
      ] : [];
      const options = {
        width: Math.max(200, this.container.clientWidth),
        height: this.height,
        ms: 1,
        cursor: { drag: { x: false, y: false, setScale: false }, points: { size: 6 } },
        legend: { show: false },
        scales: {
          x: { time: true, auto: false },
          y: { range: (u, min, max) => (min === null ? [0, 1] : [Math.min(0, min), max > 0 ? max * 1.12 : 1]) },
        },
        axes: [
          Object.assign({}, axis, {
            size: 34, space: 64,
            values: (u, splits, axisIdx, space, increment) =>
              splits.map((ms) => tickLabel(ms, increment, u.scales.x.max - u.scales.x.min)),
          }),
          Object.assign({}, axis, {
            size: 58, label: unit || "value", labelSize: 18, labelFont: "600 11px system-ui, sans-serif",
            values: (u, splits) => splits.map((v) => RS.format(v, unit, false)),
          }),
        ],
        series: [{ value: (u, ms) => (ms === null ? "" : RS.dateTime(ms)) }].concat(fleetSeries, callSeries),
        bands: band ? [{ series: [2, 1], fill: FLEET_FILL }] : [],
        hooks: { drawClear: [(u) => this.drawBands(u)], setCursor: [() => this.updateLegend()] },
      };
      this.plot = new uPlot(options, data, this.host);
      this.fitX();
    }

    drawBands(u) {
      if (!this.bands.length) return;
      const ctx = u.ctx;
      ctx.save();
      ctx.fillStyle = "rgba(185, 28, 28, 0.09)";
      for (const band of this.bands) {
        const left = u.valToPos(band.from, "x", true);
        const right = Math.max(u.valToPos(band.to, "x", true), left + 2);
        ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
      }
      ctx.restore();
    }

    setWindow(min, max) {
      this.window = [min, max];
      this.render();
    }

    resize() {
      if (this.plot) this.plot.setSize({ width: Math.max(200, this.container.clientWidth), height: this.height });
    }
  }

  /** A card with one metric's chart, live over the websocket or over a REST range. */
  class MetricPanel {
    constructor(parent, metricName, options) {
      this.options = options || {};
      this.metric = RS.metric(metricName);
      const unit = this.options.unit === undefined ? this.metric.display_unit : this.options.unit;
      this.note = RS.el("span", { class: "chart-note" });
      const name = this.options.title
        ? RS.el("span", { title: this.options.description || "" }, this.options.title)
        : RS.el("a", { href: "/graph/" + encodeURIComponent(metricName) + "/", title: this.metric.description }, metricName);
      const title = RS.el("span", { class: "chart-title" }, name, RS.el("span", { class: "chart-unit" }, unit));
      const head = RS.el("div", { class: "chart-head" }, title, this.note);
      if (this.options.onRemove) {
        head.append(RS.el("button", { type: "button", class: "chart-remove", title: "Remove this graph",
                                      "aria-label": "Remove " + metricName, onclick: () => this.options.onRemove(this) }, "×"));
      }
      this.body = RS.el("div", { class: "chart-body", dataset: { metric: metricName } });
      this.element = this.options.bare ? parent : RS.el("section", { class: "chart-card" });
      this.element.append(head, this.body);
      if (!this.options.bare) parent.append(this.element);
      this.chart = new SeriesChart(this.body, metricName, this.options.height || 236, unit);
      if (this.options.byPeer) this.chart.linkTo = null;
    }

    setRange(spec) {
      this.stop();
      this.spec = spec;
      if (spec.kind === "live") return this.live();
      this.chart.setWindow(spec.start || Date.now() - spec.seconds * 1000, spec.end || Date.now());
      this.load();
      if (spec.kind === "duration") this.refresh = setInterval(() => this.load(), RANGE_REFRESH_MS);
    }

    live() {
      const emit = this.options.onEvent || (() => {});
      this.note.textContent = "live · 5 min";
      this.chart.replace({});
      this.slide();
      this.slider = setInterval(() => this.slide(), 1000);
      this.feed = new LiveFeed(graphPath(this.metric.name), {
        snapshot: (m) => { this.chart.replace(m); emit(m); emit({ type: "status", state: "live" }); },
        points: (m) => this.chart.merge(m),
        drawn: (m) => { this.chart.setDrawn(m); emit(m); },
        call_started: (m) => { this.chart.addCall(m.call); emit(m); },
        call_ended: (m) => { this.chart.remove(m.call); emit(m); },
        status: (state, text) => {
          if (state === "error") this.note.textContent = text;
          emit({ type: "status", state: state, text: text });
        },
      });
    }

    slide() {
      const now = Date.now();
      this.chart.trim(now - LIVE_WINDOW_MS - 2 * this.chart.bucketMs);
      this.chart.setWindow(now - LIVE_WINDOW_MS, now);
    }

    async load() {
      const spec = this.spec;
      let query = "/v1/series/?metric=" + encodeURIComponent(this.metric.name);
      query += spec.kind === "duration" ? "&duration=" + spec.duration : "&start=" + spec.start + "&end=" + spec.end;
      if (this.options.call) query += "&call=" + encodeURIComponent(this.options.call);
      if (this.options.byPeer) query += "&by=peer";
      else if (!this.options.call) query += "&band=true";
      try {
        const series = await RS.getJSON(query);
        if (spec !== this.spec) return;
        this.chart.setWindow(series.start, series.end);
        this.chart.replace(this.options.byPeer ? { calls: series.peers, bucket_ms: series.bucket_ms } : series);
        const bucket = series.bucket_ms < 60000 ? series.bucket_ms / 1000 + " s" : series.bucket_ms / 60000 + " min";
        // One call's line adds up its peers' rates and averages their gauges.
        const across = this.options.byPeer ? "per peer" : series.type === "counter" ? "sum of peers" : "mean of peers";
        this.note.textContent = (this.options.call ? across : spec.label) + " · " + bucket + " buckets";
        if (this.options.onLoad) this.options.onLoad(series);
      } catch (error) {
        this.note.textContent = "could not load: " + error.message;
      }
    }

    stop() {
      if (this.feed) this.feed.stop();
      clearInterval(this.slider);
      clearInterval(this.refresh);
      this.feed = null;
    }

    destroy() {
      this.stop();
      if (this.chart.plot) this.chart.plot.destroy();
      this.element.remove();
    }
  }

  const PRESETS = { "10m": ["10 min", 600], "30m": ["30 min", 1800], "1h": ["1 hour", 3600] };

  /** The Live / 10 min / 30 min / 1 hour / Custom buttons and form; kept in the URL. */
  class RangeControl {
    constructor(onChange) {
      this.onChange = onChange;
      this.buttons = document.getElementById("ranges");
      this.form = document.getElementById("custom-range");
      this.error = document.getElementById("custom-error");
      this.buttons.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-range]");
        if (button) this.choose(button.dataset.range);
      });
      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        const start = new Date(this.form.start.value).getTime();
        const end = new Date(this.form.end.value).getTime();
        if (!(start < end)) {
          this.error.textContent = "The end must be after the start.";
          return;
        }
        this.error.textContent = "";
        this.apply({ kind: "custom", start: start, end: end, label: RS.when(start) + " – " + RS.when(end) });
      });
      const params = new URLSearchParams(location.search);
      const range = params.get("range") || "live";
      const start = Number(params.get("start")), end = Number(params.get("end"));
      if (range === "custom" && start < end) {
        this.fillForm(start, end);
        this.apply({ kind: "custom", start: start, end: end, label: RS.when(start) + " – " + RS.when(end) });
      } else {
        this.choose(PRESETS[range] ? range : "live");
      }
    }

    fillForm(start, end) {
      this.form.start.value = RS.localInput(start);
      this.form.end.value = RS.localInput(end);
    }

    choose(range) {
      if (range === "custom") {
        this.form.hidden = false;
        if (!this.form.start.value) this.fillForm(Date.now() - 3600000, Date.now());
        this.mark("custom");
        return;
      }
      if (range === "live") this.apply({ kind: "live", label: "Live · last 5 min" });
      else this.apply({ kind: "duration", duration: range, seconds: PRESETS[range][1], label: "Last " + PRESETS[range][0] });
    }

    mark(range) {
      for (const button of this.buttons.querySelectorAll("button")) {
        button.classList.toggle("active", button.dataset.range === range);
      }
    }

    apply(spec) {
      this.spec = spec;
      this.form.hidden = spec.kind !== "custom";
      this.mark(spec.kind === "duration" ? spec.duration : spec.kind);
      const params = new URLSearchParams(location.search);
      params.delete("start");
      params.delete("end");
      if (spec.kind === "live") params.delete("range");
      else params.set("range", spec.kind === "duration" ? spec.duration : "custom");
      if (spec.kind === "custom") {
        params.set("start", spec.start);
        params.set("end", spec.end);
      }
      const query = params.toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
      this.onChange(spec);
    }
  }

  Object.assign(RS, { LiveFeed, graphPath, tickLabel, SeriesChart, MetricPanel, RangeControl, LIVE_WINDOW_MS });
})(window.RS);
