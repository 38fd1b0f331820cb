/* The call page's alerts: each alert of the call with its latest state, oldest first,
   read from /v1/alerts/ and read again when /ws/calls says one of this call's fired or resolved. */
"use strict";

(function (RS) {
  const call = document.getElementById("call-head").dataset.call;
  const list = document.getElementById("alerts");
  const empty = document.getElementById("no-alerts");

  function render(alerts) {
    list.replaceChildren(...alerts.map((alert) => {
      const firing = alert.state === "firing";
      const span = firing ? "since " + RS.when(alert.since) + ", firing"
        : RS.when(alert.since) + " – " + RS.clock(alert.at) + " (" + RS.duration(alert.at - alert.since) + ")";
      return RS.el("li", { dataset: { state: alert.state, severity: alert.severity } },
        RS.el("span", { class: "alert-name" }, alert.rule),
        RS.el("span", { class: "alert-when" }, span + (alert.peer ? " · " + alert.peer : "")),
        RS.el("span", { class: "alert-detail" }, alert.severity + " · " + (firing ? "value " : "last value ")
          + RS.format(alert.value) + ", threshold " + RS.format(alert.threshold)));
    }));
    empty.hidden = alerts.length > 0;
  }

  /** Read the call's alerts: since its start (`startedMs`), within the last 400 days at most. */
  async function load(startedMs) {
    const seconds = Math.min(400 * 86400, Math.ceil((Date.now() - (startedMs || Date.now())) / 1000) + 3600);
    try {
      const answer = await RS.getJSON("/v1/alerts/?state=all&since=" + seconds + "s&call=" + encodeURIComponent(call));
      render(answer.alerts.slice().sort((a, b) => a.since - b.since || a.rule.localeCompare(b.rule)));
    } catch (error) {
      empty.hidden = false;
      empty.textContent = "Alerts unavailable: " + error.message;
    }
  }

  RS.callAlerts = { call, load };
})(window.RS);
