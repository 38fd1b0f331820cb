/* Peers' dimensions in words (SPEC §15): the names the API uses, what a person calls them, a value as it
 * reads best, and a cohort as the verb phrase of "18 of 24 poor peers ___". Shared by the dashboard's why
 * panel and breakdown and by the call page. */
"use strict";

(function (RS) {
  // Built-in dimensions in the order a person asks about them: who, through what, where, what they send.
  const LABELS = {
    browser: "Browser", browser_version: "Browser version", os: "OS", os_version: "OS version",
    network_type: "Network", candidate_type: "Route", relay_protocol: "Relay protocol", turn_server: "TURN server",
    transport: "Transport", country: "Country", asn: "Network operator (AS)", audio_codec: "Audio codec",
    video_codec: "Video codec", app: "Application", emitter: "Media server",
  };
  const GROUPS = [
    ["Who", ["browser", "browser_version", "os", "os_version", "app"]],
    ["How they connect", ["network_type", "candidate_type", "relay_protocol", "turn_server", "transport", "emitter"]],
    ["Where", ["country", "asn"]],
    ["What they send", ["audio_codec", "video_codec"]],
  ];
  const BUILTIN = new Set(Object.keys(LABELS));
  // Dimensions only a relayed peer has: without them, a peer is direct (not unknown).
  const NOT_RELAYED = new Set(["relay_protocol", "turn_server"]);
  // What a value past the server's --max-dimension-values becomes.
  const OTHER = "other";

  const NETWORKS = { wifi: "Wi-Fi", ethernet: "ethernet", cellular: "cellular", vpn: "a VPN", bluetooth: "Bluetooth",
    wimax: "WiMAX" };
  const ROUTES = { host: "direct", srflx: "direct through NAT", prflx: "direct (peer-reflexive)", relay: "relayed" };
  const ROUTE_PHRASES = { host: "connect directly (host candidates)", srflx: "connect directly through NAT (srflx)",
    prflx: "connect directly (peer-reflexive)", relay: "are relayed" };

  let regions = null;
  try { regions = new Intl.DisplayNames(["en"], { type: "region" }); } catch (error) { regions = null; }
  /** "Germany" for DE, the code itself when the browser has no name for it. */
  function countryName(code) {
    try { return (regions && regions.of(code)) || code; } catch (error) { return code; }
  }

  function label(name) { return LABELS[name] || "Tag " + name; }

  /** A value as it reads best beside its label: Wi-Fi, TCP, relayed, Germany (DE); null: unknown. */
  function valueText(name, value) {
    if (value === null || value === undefined) return NOT_RELAYED.has(name) ? "not relayed" : "unknown";
    if (name === "network_type") return NETWORKS[value] || value;
    if (name === "candidate_type") return ROUTES[value] || value;
    if (name === "relay_protocol" || name === "transport") return value.toUpperCase();
    if (name === "country") {
      const country = countryName(value);
      return country === value ? value : country + " (" + value + ")";
    }
    return value;
  }

  /** What the peers of a cohort have in common, as a verb phrase for "poor peers": "are relayed over TCP". */
  function cohortPhrase(name, value) {
    if (value === null || value === undefined) return NOT_RELAYED.has(name) ? "are not relayed" : "have no known " + label(name).toLowerCase();
    if (value === OTHER) return "have an uncommon " + label(name).toLowerCase() + " (beyond the value bound)";
    switch (name) {
      case "browser": return "use " + value;
      case "browser_version": return "use browser version " + value;
      case "os": return "run " + value;
      case "os_version": return "run OS version " + value;
      case "network_type": return "are on " + (NETWORKS[value] || value);
      case "candidate_type": return ROUTE_PHRASES[value] || "connect through " + value + " candidates";
      case "relay_protocol": return "relay over " + value.toUpperCase();
      case "turn_server": return "are relayed through " + value;
      case "transport": return "connect over " + value.toUpperCase();
      case "audio_codec": case "video_codec": return "send " + value;
      case "country": return "are in " + countryName(value);
      case "asn": return "are on " + value;
      case "app": return "use the app " + value;
      case "emitter": return "go through media server " + value;
      default: return "have " + name + "=" + value;
    }
  }

  /** A share as a person says it: "6 %", "0.4 %", "100 %". */
  function percent(share) {
    if (share === null || share === undefined || Number.isNaN(share)) return "–";
    const value = share * 100;
    if (value > 0 && value < 1) return "<1 %";
    return (value < 10 && value % 1 ? value.toFixed(1) : Math.round(value)) + " %";
  }

  /** Known dimension names grouped for a chooser: [[group label, [names]]...], application tags last. */
  function grouped(names) {
    const known = new Set(names);
    const out = GROUPS.map(([title, members]) => [title, members.filter((n) => known.has(n))]).filter(([, m]) => m.length);
    const tags = names.filter((n) => !BUILTIN.has(n));
    if (tags.length) out.push(["Application tags", tags]);
    return out;
  }

  RS.dims = { label, valueText, cohortPhrase, percent, grouped, countryName, BUILTIN };
})(window.RS);
