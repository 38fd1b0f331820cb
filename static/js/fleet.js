/* The fleet's live calls from /ws/calls (SPEC §10): each call's current quality and the fleet's figures,
 * pushed by the server every tick; the order is the server's `sort=worst`. */
"use strict";

(function (RS) {
  const PROBLEMS = {
    high_loss: ["loss", "High packet loss"], high_rtt: ["rtt", "High round-trip time"],
    high_jitter: ["jitter", "High jitter"], freezes: ["freezes", "Video freezes"],
    cpu_limited: ["cpu", "Video limited by CPU"], bandwidth_limited: ["bandwidth", "Video limited by bandwidth"],
    ice_failed: ["ice", "ICE failed (the media server's view)"],
  };

  function mosOf(call) {
    const mos = call.quality && call.quality.mos;
    return mos === null || mos === undefined ? null : mos;
  }

  function problemsOf(call) { return (call.quality && call.quality.problems) || []; }

  function byId(a, b) { return a.call < b.call ? -1 : a.call > b.call ? 1 : 0; }

  /** As GET /v1/calls/?sort=worst: lowest MOS first, unknown last; then more problems; then call id. */
  function worstFirst(a, b) {
    const ma = mosOf(a), mb = mosOf(b);
    if (ma !== mb) {
      if (ma === null) return 1;
      if (mb === null) return -1;
      return ma - mb;
    }
    return problemsOf(b).length - problemsOf(a).length || byId(a, b);
  }

  function recentFirst(a, b) { return (b.started || 0) - (a.started || 0) || byId(a, b); }

  const ORDERS = { worst: worstFirst, recent: recentFirst };

  /** A problem badge: a short word, the long name as its title. */
  function problemBadge(code) {
    const [short, long] = PROBLEMS[code] || [code, code];
    return RS.el("span", { class: "problem-badge", title: long, dataset: { problem: code } }, short);
  }

  /** The live call list, kept from the snapshot and the `calls` diffs; `onChange(message)` after each. */
  class FleetFeed {
    constructor(handlers) {
      this.handlers = handlers;
      this.calls = new Map(); // call -> {call, peers, started, quality}
      this.fleet = null;
      this.sorted = new Map(); // order -> the calls in that order, until the next change
      this.firing = new Map(); // call -> Map(alert id -> rule) of its firing alerts
      this.cohorts = new Map(); // alert id -> the firing cohort alert
      RS.getJSON("/v1/alerts/").then((answer) => {
        for (const alert of answer.alerts) this.alert(alert);
        this.update({});
      }).catch(() => {});
      this.feed = new RS.LiveFeed("/ws/calls", {
        snapshot: (m) => {
          this.calls = new Map(m.calls.map((c) => [c.call, c]));
          this.update(m);
        },
        calls: (m) => {
          for (const ended of m.ended || []) this.calls.delete(ended.call);
          for (const started of m.started || []) this.calls.set(started.call, started);
          for (const changed of m.changed || []) {
            const known = this.calls.get(changed.call);
            if (known) Object.assign(known, changed);
          }
          this.update(m);
        },
        alert: (m) => { this.alert(m); this.update(m); },
        status: (state, text) => { if (this.handlers.status) this.handlers.status(state, text); },
      });
    }

    /** Keep a call's firing alerts, or a cohort's (scope "cohort", SPEC §15), from an alert event (the webhook object). */
    alert(event) {
      if (event.scope === "cohort") {
        if (event.state === "firing") this.cohorts.set(event.id, event);
        else this.cohorts.delete(event.id);
        return;
      }
      const alerts = this.firing.get(event.call) || new Map();
      if (event.state === "firing") alerts.set(event.id, event.rule);
      else alerts.delete(event.id);
      if (alerts.size) this.firing.set(event.call, alerts);
      else this.firing.delete(event.call);
    }

    /** The cohort alerts firing now, the oldest first. */
    cohortAlerts() {
      return [...this.cohorts.values()].sort((a, b) => a.since - b.since || (a.id < b.id ? -1 : 1));
    }

    /** The rules firing on a call now. */
    alertsOf(call) {
      return [...(this.firing.get(call) || new Map()).values()].sort();
    }

    update(message) {
      if (message.fleet) this.fleet = message.fleet;
      this.sorted.clear();
      this.handlers.change(message);
    }

    /** Every live call in `order` ("worst" or "recent"), sorted once per change. */
    list(order) {
      if (!this.sorted.has(order)) this.sorted.set(order, [...this.calls.values()].sort(ORDERS[order] || worstFirst));
      return this.sorted.get(order);
    }
  }

  Object.assign(RS, { FleetFeed, PROBLEMS, problemBadge, mosOf, problemsOf });
})(window.RS);
