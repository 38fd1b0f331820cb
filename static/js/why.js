/* The dashboard's "why": what sets the poor peers apart now (GET /v1/fleet/explain/), the cohort alerts
 * firing, and the fleet broken down by one dimension (GET /v1/fleet/breakdown/), live or over 24 h / 7 d.
 * Every cohort is a link that filters the live list to its calls (`link`, from the dashboard). */
"use strict";

(function (RS) {
  const EXPLAIN_REFRESH_MS = 5000;
  const LIVE_BREAKDOWN_REFRESH_MS = 5000;
  const HISTORY_BREAKDOWN_REFRESH_MS = 60000;
  const UNAVAILABLE_RETRY_MS = 60000; // a server without the endpoint (404): ask again now and then
  const VALUES_SHOWN = 12;
  const RANGES = { live: "live", "24h": "the last 24 h", "7d": "the last 7 days" };

  function text(id, value) { document.getElementById(id).textContent = value; }
  function plural(n, one, many) { return RS.format(n, "") + " " + (n === 1 ? one : many); }

  /** Poll `load` every `everyMs` (slower while the server lacks the endpoint); `poke()` loads now. */
  class Poller {
    constructor(load, everyMs) {
      this.load = load;
      this.everyMs = everyMs;
      this.timer = null;
      this.generation = 0;
    }
    async poke() {
      clearTimeout(this.timer);
      const generation = ++this.generation;
      let delay = this.everyMs();
      try {
        await this.load(() => generation === this.generation);
      } catch (error) {
        if (error.status === 404) delay = UNAVAILABLE_RETRY_MS;
      }
      if (generation === this.generation) this.timer = setTimeout(() => this.poke(), delay);
    }
  }

  /** "The findings are unavailable: ..." in words for a 404 (a server without dimensions) or other errors. */
  function unavailable(what, error) {
    return error.status === 404 ? what + " is not available on this server." : what + " is unavailable: " + error.message;
  }

  // --- the findings now ----------------------------------------------------------------

  /** One finding in words: "18 of 24 poor peers are relayed through turn-2.example.com:443 — 6 % of all peers". */
  function findingItem(finding, answer, link) {
    const filters = { [finding.dimension]: finding.value };
    const sentence = [RS.el("strong", {}, finding.poor + " of " + answer.poor + " poor peers"), " ",
      RS.dims.cohortPhrase(finding.dimension, finding.value), " — " + RS.dims.percent(finding.peers / answer.peers) + " of all peers"];
    const words = finding.dimension + " = " + finding.value;
    const overall = answer.peers ? answer.poor / answer.peers : 0;
    const detail = RS.dims.percent(finding.poor_share) + " of its " + plural(finding.peers, "peer", "peers")
      + " are poor, against " + RS.dims.percent(overall) + " of the fleet"
      + (finding.lift ? " (" + RS.format(finding.lift, "") + "×)" : "");
    return RS.el("li", { class: "finding", dataset: { dimension: finding.dimension, value: finding.value, poor: finding.poor } },
      link(filters, { class: "finding-text", title: "List the calls with " + words }, sentence),
      RS.el("span", { class: "finding-detail" }, detail));
  }

  function renderFindings(answer, link) {
    const list = document.getElementById("findings");
    list.replaceChildren(...answer.findings.map((finding) => findingItem(finding, answer, link)));
    list.dataset.count = answer.findings.length;
    const empty = document.getElementById("no-findings");
    empty.hidden = answer.findings.length > 0;
    if (!answer.peers) empty.textContent = "No live peer yet.";
    else if (!answer.poor) empty.textContent = "Nothing to explain: none of the " + plural(answer.peers, "live peer", "live peers") + " is poor.";
    else empty.textContent = "Nothing stands out: the " + plural(answer.poor, "poor peer", "poor peers")
      + " have no browser, network, route, place or tag in common.";
    text("why-note", answer.peers ? plural(answer.poor, "poor peer", "poor peers") + " of " + RS.format(answer.peers, "") + " live"
      : "what the poor peers have in common");
  }

  // --- cohort alerts -------------------------------------------------------------------

  function renderCohortAlerts(alerts, link) {
    const list = document.getElementById("cohort-alerts");
    list.replaceChildren(...alerts.map((alert) => {
      const counts = alert.poor + " of " + alert.peers + " live peers poor (threshold " + RS.dims.percent(alert.threshold) + ")";
      return RS.el("li", { class: "cohort-alert", dataset: { id: alert.id, severity: alert.severity, dimension: alert.dimension, value: alert.value } },
        RS.el("span", { class: "alert-badge" }, alert.severity || "alert"),
        link({ [alert.dimension]: alert.value }, { class: "cohort-alert-text", title: "List the calls with " + alert.dimension + " = " + alert.value },
          RS.el("strong", {}, alert.rule), ": peers that " + RS.dims.cohortPhrase(alert.dimension, alert.value)),
        RS.el("span", { class: "cohort-alert-detail" }, counts + " · since " + RS.when(alert.since)));
    }));
    list.hidden = alerts.length === 0;
  }

  // --- the breakdown ---------------------------------------------------------------------

  function poorBar(row, overall) {
    const fill = RS.el("span", { class: "bar-fill" });
    fill.style.width = (100 * Math.min(1, row.poor_share || 0)) + "%";
    const mark = RS.el("span", { class: "bar-fleet", title: "fleet: " + RS.dims.percent(overall) });
    mark.style.left = (100 * Math.min(1, overall)) + "%";
    return RS.el("td", { class: "poor-cell", title: row.poor + " of " + row.peers + " poor" },
      RS.el("span", { class: "bar" }, fill, mark),
      RS.el("span", { class: "bar-value" }, RS.dims.percent(row.poor_share)));
  }

  /** A value's row; `hot` when the explanation of the same peers names it (the why panel's finding). */
  function breakdownRow(by, row, overall, hot, link) {
    const shown = RS.dims.valueText(by, row.value);
    const name = row.value === null
      ? RS.el("span", { class: "unknown-value", title: "peers without a " + RS.dims.label(by).toLowerCase() }, shown)
      : link({ [by]: row.value }, { title: "List the live calls with " + by + " = " + row.value }, shown);
    return RS.el("tr", { dataset: { value: row.value === null ? "" : row.value, poor: row.poor, peers: row.peers, hot: hot ? "1" : "" },
      title: hot ? "It sets the poor peers apart: see Why" : null },
      RS.el("td", { class: "value" }, name),
      RS.el("td", { class: "num" }, RS.format(row.peers, "")),
      poorBar(row, overall),
      RS.el("td", { class: "num mos" }, row.mos_p50 === null || row.mos_p50 === undefined ? "–" : row.mos_p50.toFixed(2)));
  }

  class Breakdown {
    constructor(names, link) {
      this.link = link;
      this.select = document.getElementById("breakdown-by");
      this.table = document.getElementById("breakdown-table");
      this.more = document.getElementById("breakdown-more");
      this.expanded = false;
      this.hot = new Set(); // the values the explanation names
      this.select.replaceChildren(...RS.dims.grouped(names).map(([title, members]) =>
        RS.el("optgroup", { label: title }, members.map((n) => RS.el("option", { value: n }, RS.dims.label(n))))));
      const params = new URLSearchParams(location.search);
      this.by = names.includes(params.get("by")) ? params.get("by") : names.includes("turn_server") ? "turn_server" : names[0];
      this.range = RANGES[params.get("since")] && params.get("since") !== "live" ? params.get("since") : "live";
      this.select.value = this.by;
      this.markRange();
      this.poller = new Poller((current) => this.load(current),
        () => (this.range === "live" ? LIVE_BREAKDOWN_REFRESH_MS : HISTORY_BREAKDOWN_REFRESH_MS));
      this.select.addEventListener("change", () => {
        this.by = this.select.value;
        this.expanded = false;
        RS.setParam("by", this.by, null);
        this.poller.poke();
      });
      document.getElementById("breakdown-ranges").addEventListener("click", (event) => {
        const button = event.target.closest("button[data-breakdown]");
        if (!button) return;
        this.range = button.dataset.breakdown;
        RS.setParam("since", this.range, "live");
        this.markRange();
        this.poller.poke();
      });
      this.more.addEventListener("click", () => {
        this.expanded = !this.expanded;
        if (this.answer) this.render(this.answer);
      });
    }

    markRange() {
      for (const b of document.querySelectorAll("#breakdown-ranges button")) b.classList.toggle("active", b.dataset.breakdown === this.range);
    }

    /** The breakdown, and the explanation of the same peers (which values to mark; without it, none). */
    async load(current) {
      const peers = this.range === "live" ? "state=live" : "state=ended&duration=" + this.range;
      try {
        const [answer, explained] = await Promise.all([
          RS.getJSON("/v1/fleet/breakdown/?by=" + encodeURIComponent(this.by) + "&" + peers),
          RS.getJSON("/v1/fleet/explain/?" + peers).catch(() => ({ findings: [] }))]);
        if (!current()) return;
        this.answer = answer;
        this.hot = new Set(explained.findings.filter((f) => f.dimension === answer.by).map((f) => f.value));
        this.render(answer);
      } catch (error) {
        if (!current()) return;
        this.answer = null;
        this.table.tBodies[0].replaceChildren();
        this.table.dataset.values = 0;
        this.more.hidden = true;
        text("breakdown-totals", "");
        const empty = document.getElementById("no-breakdown");
        empty.hidden = false;
        empty.textContent = unavailable("The breakdown", error);
        throw error;
      }
    }

    render(answer) {
      const overall = answer.peers ? answer.poor / answer.peers : 0;
      const values = this.expanded ? answer.values : answer.values.slice(0, VALUES_SHOWN);
      this.table.tBodies[0].replaceChildren(...values.map((row) =>
        breakdownRow(answer.by, row, overall, this.hot.has(row.value), this.link)));
      Object.assign(this.table.dataset, { by: answer.by, state: answer.state, values: answer.values.length });
      const hidden = answer.values.length - VALUES_SHOWN;
      this.more.hidden = hidden <= 0;
      this.more.textContent = this.expanded ? "Show the first " + VALUES_SHOWN : "Show " + plural(hidden, "more value", "more values");
      const peers = answer.state === "live" ? "live peers" : "peers ended in " + RANGES[this.range];
      text("breakdown-totals", answer.peers ? RS.format(answer.peers, "") + " " + peers + " · " + RS.dims.percent(overall)
        + " poor · the line marks the fleet's share" : "");
      const empty = document.getElementById("no-breakdown");
      empty.hidden = answer.values.length > 0;
      empty.textContent = answer.state === "live" ? "No live peer yet." : "No peer ended in " + RANGES[this.range] + ".";
    }
  }

  /** Start the panel: `names` the known dimensions, `feed` the FleetFeed (cohort alerts), `link(filters,
   * attrs, ...children)` an anchor that filters the live list ({dimension: value}). Returns `alertsChanged()`. */
  function startWhy(names, feed, link) {
    const explain = new Poller(async (current) => {
      try {
        const answer = await RS.getJSON("/v1/fleet/explain/?state=live");
        if (current()) renderFindings(answer, link);
      } catch (error) {
        if (!current()) return;
        document.getElementById("findings").replaceChildren();
        const empty = document.getElementById("no-findings");
        empty.hidden = false;
        empty.textContent = unavailable("The explanation", error);
        text("why-note", "");
        throw error;
      }
    }, () => EXPLAIN_REFRESH_MS);
    const breakdown = new Breakdown(names, link);
    explain.poke();
    breakdown.poller.poke();
    const alertsChanged = () => renderCohortAlerts(feed.cohortAlerts(), link);
    alertsChanged();
    return alertsChanged;
  }

  RS.startWhy = startWhy;
})(window.RS);
