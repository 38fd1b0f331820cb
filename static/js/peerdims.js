/* The call page's peers as people and connections: each peer's dimensions (GET /v1/calls/<call>/'s
 * "dimensions") in a card, read at a glance ("Chrome 131 on Windows 10", "relayed over TCP through
 * turn-2:443"), the changes during the call, and a peer P beside P@janus, the media server's view of it. */
"use strict";

(function (RS) {
  // A card's lines: a label and the dimensions it shows; every other dimension is an application tag.
  const LINES = [
    ["browser", "Browser", ["browser", "browser_version", "os", "os_version"]],
    ["network", "Network", ["network_type"]],
    ["route", "Route", ["candidate_type", "relay_protocol", "turn_server"]],
    ["transport", "Transport", ["transport"]],
    ["codecs", "Codecs", ["audio_codec", "video_codec"]],
    ["location", "Location", ["country", "asn"]],
    ["app", "Application", ["app"]],
    ["emitter", "Media server", ["emitter"]],
  ];
  const LINED = new Set(LINES.flatMap(([, , names]) => names));

  function dim(name, value) {
    return RS.el("span", { class: "dim", dataset: { dimension: name }, title: name + " = " + value }, RS.dims.valueText(name, value));
  }

  /** One line's words from a peer's values, or null when it knows none of them. */
  function lineWords(key, values) {
    const has = (name) => values[name] !== undefined && values[name] !== null;
    const parts = [];
    if (key === "browser") {
      if (has("browser")) parts.push(dim("browser", values.browser));
      if (has("browser_version")) parts.push(" ", dim("browser_version", values.browser_version));
      if (has("os")) parts.push(parts.length ? " on " : "", dim("os", values.os));
      if (has("os_version")) parts.push(" ", dim("os_version", values.os_version));
    } else if (key === "route") {
      if (has("candidate_type")) parts.push(dim("candidate_type", values.candidate_type));
      if (has("relay_protocol")) parts.push(parts.length ? " over " : "over ", dim("relay_protocol", values.relay_protocol));
      if (has("turn_server")) parts.push(parts.length ? " through " : "through ", dim("turn_server", values.turn_server));
    } else {
      const names = LINES.find(([k]) => k === key)[2];
      for (const name of names.filter(has)) parts.push(parts.length ? " · " : "", dim(name, values[name]));
    }
    return parts.length ? parts : null;
  }

  function tagNames(values) { return Object.keys(values).filter((n) => !LINED.has(n)).sort(); }

  function tagWords(values) {
    const parts = [];
    for (const name of tagNames(values)) {
      if (values[name] === null || values[name] === undefined) continue;
      if (parts.length) parts.push(" · ");
      parts.push(RS.el("span", { class: "tag" }, RS.el("span", { class: "tag-name" }, name), " ", dim(name, values[name])));
    }
    return parts.length ? parts : null;
  }

  function changeItem(change) {
    const from = RS.dims.valueText(change.dimension, change.from);
    const to = RS.dims.valueText(change.dimension, change.to);
    return RS.el("li", { dataset: { dimension: change.dimension } },
      RS.el("span", { class: "change-when" }, RS.clock(change.at)),
      RS.el("span", { class: "change-what" }, RS.dims.label(change.dimension) + " ",
        RS.el("span", { class: "change-from" }, from), " → ", RS.el("span", { class: "change-to" }, to)));
  }

  /** Peers in groups: a peer and its SFU views (`order` has them together, RS.sfuView), or a view alone. */
  function peerGroups(order) {
    const groups = [];
    for (const peer of order) {
      const view = RS.sfuView(peer);
      const last = groups[groups.length - 1];
      if (view && last && last[0] === view[0]) last.push(peer);
      else groups.push([peer]);
    }
    return groups;
  }

  function card(peer, group, d, lines) {
    const values = (d.dimensions || {})[peer] || {};
    const q = ((d.quality && d.quality.peers) || {})[peer] || {};
    const swatch = RS.el("span", { class: "swatch-inline" });
    swatch.style.background = RS.peerColor(peer);
    const rows = [];
    for (const [key, title] of lines) {
      const words = key === "tags" ? tagWords(values) : lineWords(key, values);
      // The media server's view knows little of the peer: no column of dashes; and its emitter is its own line.
      if (!words && (RS.sfuView(peer) || key === "emitter")) continue;
      rows.push(RS.el("dt", {}, title), RS.el("dd", { dataset: { line: key }, class: words ? "" : "unknown-value" }, words || "–"));
    }
    const changes = (d.dimension_changes || []).filter((c) => c.peer === peer).sort((a, b) => a.at - b.at);
    const label = RS.viewLabel(peer, group);
    return RS.el("article", { class: "peer-card", dataset: { peer: peer, view: label ? label.dataset.view : "", verdict: q.verdict || "unknown" } },
      RS.el("header", {}, swatch, RS.el("span", { class: "peer-name", title: peer }, RS.peerName(peer)),
        label,
        RS.el("span", { class: "badge", dataset: { verdict: q.verdict || "" } },
          (q.verdict || "") + (q.mos === null || q.mos === undefined ? "" : " " + q.mos.toFixed(2)))),
      Object.keys(values).length ? RS.el("dl", {}, rows) : RS.el("p", { class: "empty" }, "Nothing known yet of its browser, network or route."),
      changes.length ? RS.el("div", { class: "dim-changes" }, RS.el("span", { class: "changes-title" }, "Changed during the call"),
        RS.el("ul", {}, changes.map(changeItem))) : null);
  }

  /** The lines any peer of the call has something for: the cards line up, and no card is a column of dashes. */
  function usedLines(d) {
    const peers = Object.values(d.dimensions || {});
    const used = LINES.filter(([key]) => peers.some((values) => lineWords(key, values)));
    if (peers.some((values) => tagWords(values))) used.push(["tags", "Tags"]);
    return used;
  }

  /** Render the cards of summary `d` into `host` in `order` (peer ids, a peer's SFU views right after it);
   * the number of cards. */
  function renderPeerDimensions(host, d, order) {
    const known = order.concat(Object.keys(d.dimensions || {}).filter((p) => !order.includes(p)).sort());
    const lines = usedLines(d);
    const groups = peerGroups(known);
    host.replaceChildren(...groups.map((group) => RS.el("div", { class: "peer-group", dataset: { peers: group.length } },
      group.map((peer) => card(peer, group, d, lines)))));
    host.dataset.peers = known.length;
    return known.length;
  }

  RS.renderPeerDimensions = renderPeerDimensions;
})(window.RS);
