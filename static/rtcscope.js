/*! rtcscope.js: sends RTCPeerConnection.getStats() to an rtcscope-server. No dependencies.
 *
 *   <script src="https://rtcscope.example/rtcscope.js"></script>
 *   const monitor = RTCScope.monitor(pc, {call: "c-42", peer: "alice"});
 *   ...
 *   monitor.stop();   // or just close the page: the call ends either way
 *
 * As an ES module: `import "/rtcscope.js"` and use globalThis.RTCScope.
 * Documented in docs/client.md.
 */
(function (root) {
  "use strict";

  var WRITE_PATH = "/v1/stats/write/";
  // Browsers refuse a keepalive request (fetch keepalive or sendBeacon) once the
  // page's keepalive requests in flight would exceed 64 KiB; every monitor on
  // the page shares that budget, so it is counted here, not per monitor.
  var KEEPALIVE_LIMIT = 64 * 1024;
  var keepaliveBytes = 0;
  // Stats fields that identify a person's network, and stats types of no use to the server.
  var PRIVATE_FIELDS = ["address", "ip", "port", "relatedAddress", "relatedPort", "url", "usernameFragment"];
  var SKIPPED_TYPES = {certificate: true};
  var RETRY_STATUSES = {429: true, 500: true, 502: true, 503: true, 504: true};
  var STOP_TIMEOUT_MS = 3000;

  var DEFAULTS = {
    server: null,         // rtcscope-server origin; default: where this script came from, else this page
    call: null,           // call id shared by every peer of the call; default: a fresh one
    peer: null,           // this end's id; default: a fresh one, so several monitors never collide
    interval: 1000,       // ms between getStats() polls
    sendInterval: 2000,   // ms between sends: each request carries the samples polled since the last
    key: null,            // ingest key, sent as ?key= (sendBeacon cannot set headers)
    maxBatchBytes: 60000, // largest request body; stays under the 64 KiB keepalive limit
    finalBytes: 16384,    // most sample bytes in the closing beacon, leaving room for other monitors
    maxQueue: 600,        // samples kept while the server cannot take them; the oldest go beyond
    minBackoff: 1000,     // ms of the first wait after a network error or a 503 without Retry-After
    maxBackoff: 60000,
    onsample: null,       // function (sample): sees (and may add "stats" to) every sample before it is queued
    onerror: null         // function (message, status): a refused or failed request, or a failing getStats()
  };

  var scriptOrigin = (function () {
    var script = typeof document !== "undefined" && document.currentScript;
    try {
      return script && script.src ? new URL(script.src).origin : "";
    } catch (e) {
      return "";
    }
  })();

  function randomId(prefix) {
    var cryptoObject = root.crypto;
    if (cryptoObject && cryptoObject.randomUUID) {
      return prefix + cryptoObject.randomUUID().slice(0, 13);
    }
    return prefix + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 8);
  }

  function utf8Length(text) {
    if (!/[^\x00-\x7f]/.test(text)) {
      return text.length;
    }
    return root.TextEncoder ? new TextEncoder().encode(text).length : text.length * 3;
  }

  /** The getStats() report as a plain array, without addresses and certificates. */
  function cleanReport(report) {
    var stats = [];
    report.forEach(function (stat) {
      if (SKIPPED_TYPES[stat.type]) {
        return;
      }
      var copy = {};
      for (var name in stat) {
        if (PRIVATE_FIELDS.indexOf(name) < 0) {
          copy[name] = stat[name];
        }
      }
      stats.push(copy);
    });
    return stats;
  }

  /** Milliseconds to wait from a Retry-After header (seconds or an HTTP date), or null. */
  function retryAfter(response) {
    var value = response.headers.get("Retry-After");
    if (!value) {
      return null;
    }
    if (/^\d+$/.test(value.trim())) {
      return Number(value) * 1000;
    }
    var date = Date.parse(value);
    return isNaN(date) ? null : Math.max(0, date - Date.now());
  }

  /** POST with keepalive while the page's budget allows it, so that the request survives the
   * page closing; returns {keepalive, response: Promise}. The answer is read to its end: until
   * then Chrome counts the request against the page's keepalive budget. */
  function post(url, body, bytes, allowKeepalive) {
    var keepalive = allowKeepalive !== false && keepaliveBytes + bytes <= KEEPALIVE_LIMIT;
    var response = fetch(url, {
      method: "POST",
      body: body,
      headers: {"Content-Type": "application/json"},
      keepalive: keepalive,
      credentials: "omit",
      mode: "cors"
    }).then(function (result) {
      var done = function () { return result; };
      return result.text().then(done, done);
    });
    if (keepalive) {
      keepaliveBytes += bytes;
      response = response.then(function (result) {
        keepaliveBytes -= bytes;
        return result;
      }, function (error) {
        keepaliveBytes -= bytes;
        throw error;
      });
    }
    return {keepalive: keepalive, response: response};
  }

  function Monitor(pc, options) {
    var settings = {};
    for (var name in DEFAULTS) {
      settings[name] = options[name] != null ? options[name] : DEFAULTS[name];
    }
    var server = (settings.server != null ? settings.server : scriptOrigin).replace(/\/+$/, "");
    this.pc = pc;
    this.settings = settings;
    this.call = settings.call || randomId("call-");
    this.peer = settings.peer || randomId("peer-");
    this.url = server + WRITE_PATH + (settings.key ? "?key=" + encodeURIComponent(settings.key) : "");
    this.stopped = false;
    this._ended = false;
    this.stats = {polled: 0, delivered: 0, dropped: 0, rejected: 0, backoffs: 0, beaconed: 0, lastError: null};
    this._queue = [];         // [{json, bytes}], oldest first
    this._inFlight = null;    // {samples, keepalive, promise} of the request being sent
    this._lastSend = -Infinity;
    this._retryAt = 0;
    this._retryTimer = null;
    this._failures = 0;
    this._batchBytes = settings.maxBatchBytes;
    this._timer = null;
    this._onPageHide = this._end.bind(this, false);
    this._onHidden = this._sendWhenHidden.bind(this);
    root.addEventListener("pagehide", this._onPageHide);
    if (typeof document !== "undefined") {
      document.addEventListener("visibilitychange", this._onHidden);
    }
    this._poll();
  }

  Object.defineProperty(Monitor.prototype, "queued", {
    get: function () {
      return this._queue.length + (this._inFlight ? this._inFlight.samples.length : 0);
    }
  });

  Monitor.prototype._poll = function () {
    var self = this;
    self._timer = null;
    if (self.stopped) {
      return;
    }
    if (self.pc.signalingState === "closed") {
      self.stop();
      return;
    }
    var started = Date.now();
    Promise.resolve().then(function () {
      return self.pc.getStats();
    }).then(function (report) {
      if (self.stopped) {
        return;
      }
      var sample = {call: self.call, peer: self.peer, ts: Date.now(), report: cleanReport(report)};
      if (self.settings.onsample) {
        self.settings.onsample(sample);
      }
      self._enqueue(sample);
      self._maybeSend();
    }).catch(function (error) {
      self._error("polling getStats() failed: " + error);
    }).then(function () {
      if (!self.stopped) {
        var wait = Math.max(0, self.settings.interval - (Date.now() - started));
        self._timer = setTimeout(self._poll.bind(self), wait);
      }
    });
  };

  Monitor.prototype._enqueue = function (sample) {
    var json = JSON.stringify(sample);
    this.stats.polled += 1;
    this._queue.push({json: json, bytes: utf8Length(json)});
    this._trim();
  };

  /** Keep at most maxQueue samples (counting the request in flight): the oldest queued go first. */
  Monitor.prototype._trim = function () {
    var excess = Math.min(this.queued - this.settings.maxQueue, this._queue.length);
    if (excess > 0) {
      this._queue.splice(0, excess);
      this.stats.dropped += excess;
    }
  };

  /** The oldest queued samples that fit in `budget` bytes (at least one), taken off the queue. */
  Monitor.prototype._take = function (budget) {
    var taken = [];
    var bytes = 2;
    while (this._queue.length && (!taken.length || bytes + this._queue[0].bytes + 1 <= budget)) {
      var sample = this._queue.shift();
      bytes += sample.bytes + 1;
      taken.push(sample);
    }
    return taken;
  };

  Monitor.prototype._maybeSend = function (force) {
    var now = Date.now();
    var due = now - this._lastSend >= this.settings.sendInterval - this.settings.interval / 2;
    if (this.stopped || this._inFlight || !this._queue.length || now < this._retryAt || !(due || force)) {
      return;
    }
    this._lastSend = now;
    this._send(this._take(this._batchBytes));
  };

  Monitor.prototype._send = function (samples) {
    var self = this;
    var body = "[" + samples.map(function (s) { return s.json; }).join(",") + "]";
    var bytes = samples.reduce(function (sum, s) { return sum + s.bytes + 1; }, 1);
    // Retries go without keepalive: a keepalive request can fail on a budget this script does not
    // see (beacons of other scripts on the page).
    var request = post(self.url, body, bytes, !self._failures);
    var flight = {samples: samples, keepalive: request.keepalive};
    self._inFlight = flight;
    flight.promise = request.response.then(function (response) {
      self._inFlight = null;
      self._settle(samples, response.status, response.status === 503 || response.status === 429
        ? retryAfter(response) : null);
    }, function (error) {
      self._inFlight = null;
      self._settle(samples, 0, null, "network error: " + error);
    });
    return flight.promise;
  };

  Monitor.prototype._settle = function (samples, status, waitMs, message) {
    var delivered = status >= 200 && status < 300;
    if (this._ended && !delivered) {
      this.stats.dropped += samples.length;   // the closing beacon has gone without these
      return;
    }
    if (delivered) {
      this.stats.delivered += samples.length;
      this._failures = 0;
      this._batchBytes = this.settings.maxBatchBytes;
      if (!this.stopped && this._queue.length) {
        this._maybeSend(true);   // catch up after a back-off without waiting for the next poll
      }
      return;
    }
    if (status === 413 && samples.length > 1) {
      this._batchBytes = Math.max(1, Math.floor(this._batchBytes / 2));
      this._queue = samples.concat(this._queue);
      this._maybeSend(true);
      return;
    }
    if (status === 0 || RETRY_STATUSES[status]) {
      this._queue = samples.concat(this._queue);
      this._trim();
      this._failures += 1;
      this.stats.backoffs += 1;
      var backoff = Math.min(this.settings.maxBackoff,
        this.settings.minBackoff * Math.pow(2, this._failures - 1)) * (0.8 + 0.4 * Math.random());
      var wait = waitMs != null ? waitMs : backoff;
      this._retryAt = Date.now() + wait;
      clearTimeout(this._retryTimer);
      if (!this.stopped) {
        this._retryTimer = setTimeout(this._retry.bind(this), wait);
      }
      this._error((message || "server answered " + status) + "; retrying in " + Math.round(wait) + " ms", status);
      return;
    }
    this.stats.rejected += samples.length;   // 400, 401, 403, 413: sending again cannot help
    this._error("server refused " + samples.length + " sample(s) with " + status, status);
  };

  Monitor.prototype._retry = function () {
    this._retryAt = 0;
    this._maybeSend(true);
  };

  /** `status`: the HTTP status of a refused request, 0 for a network error, absent otherwise. */
  Monitor.prototype._error = function (message, status) {
    this.stats.lastError = message;
    if (this.settings.onerror) {
      this.settings.onerror(message, status);
    }
  };

  /** A hidden page may never come back (mobile browsers kill it): send what is queued now. */
  Monitor.prototype._sendWhenHidden = function () {
    if (document.visibilityState === "hidden" && !this.stopped) {
      this._maybeSend(true);
    }
  };

  /** Stop polling, send what is left, then the end event: the call ends for this peer at once.
   * The promise resolves once the end event is handed to the browser (within STOP_TIMEOUT_MS). */
  Monitor.prototype.stop = function () {
    if (this.stopped) {
      return Promise.resolve();
    }
    var self = this;
    var deadline = Date.now() + STOP_TIMEOUT_MS;
    self._detach();
    // The request in flight lands first and the queue is sent while the server takes it, so the
    // end event is the last thing the server receives and the beacon carries only what is left.
    function drain() {
      if (Date.now() >= deadline) {
        return null;
      }
      if (self._inFlight) {
        return until(self._inFlight.promise, deadline).then(drain);
      }
      if (!self._queue.length) {
        return null;
      }
      var delivered = self.stats.delivered;
      return until(self._send(self._take(self._batchBytes)), deadline).then(function () {
        return self.stats.delivered > delivered ? drain() : null;
      });
    }
    return Promise.resolve().then(drain).then(function () {
      self._end(true);
    });
  };

  function until(promise, deadline) {
    return Promise.race([promise, new Promise(function (resolve) {
      setTimeout(resolve, Math.max(0, deadline - Date.now()));
    })]);
  }

  /** Stop polling and retrying; the pagehide listener stays until the end event is sent. */
  Monitor.prototype._detach = function () {
    this.stopped = true;
    clearTimeout(this._timer);
    clearTimeout(this._retryTimer);
    if (typeof document !== "undefined") {
      document.removeEventListener("visibilitychange", this._onHidden);
    }
  };

  /** The closing beacon: the newest queued samples that fit, then {"event": "end", "reason"}, once.
   * On pagehide (also while stop() waits) a request in flight without keepalive is about to be
   * cancelled, so its samples go too. */
  Monitor.prototype._end = function (settled) {
    if (this._ended) {
      return;
    }
    root.removeEventListener("pagehide", this._onPageHide);
    if (!settled) {
      this._detach();
      if (this._inFlight && !this._inFlight.keepalive) {
        this._queue = this._inFlight.samples.concat(this._queue);
      }
    }
    this._ended = true;
    // The reason tells the call's page why this peer ended: the page closed, or stop() was called.
    var end = JSON.stringify({call: this.call, peer: this.peer, event: "end", reason: settled ? "stop" : "pagehide"});
    var parts = [end];
    var bytes = end.length + 2;
    for (var i = this._queue.length - 1; i >= 0; i--) {
      if (bytes + this._queue[i].bytes + 1 > this.settings.finalBytes) {
        break;
      }
      parts.unshift(this._queue[i].json);
      bytes += this._queue[i].bytes + 1;
    }
    var sent = parts.length - 1;
    if (beacon(this.url, "[" + parts.join(",") + "]")) {
      this.stats.beaconed += sent;
      this.stats.dropped += this._queue.length - sent;
    } else {
      this.stats.dropped += this._queue.length;
      if (!beacon(this.url, "[" + end + "]")) {
        post(this.url, "[" + end + "]", end.length + 2).response.catch(function () {});
      }
    }
    this._queue = [];
  };

  /** sendBeacon with a text/plain body (no CORS preflight; the server sniffs JSON). */
  function beacon(url, body) {
    try {
      return !!(root.navigator && root.navigator.sendBeacon && root.navigator.sendBeacon(url, body));
    } catch (e) {
      return false;
    }
  }

  var RTCScope = {
    version: "1.0.0",
    /** Start monitoring `pc`; see DEFAULTS for the options. Returns the Monitor. */
    monitor: function (pc, options) {
      if (!pc || typeof pc.getStats !== "function") {
        throw new TypeError("RTCScope.monitor needs an RTCPeerConnection");
      }
      return new Monitor(pc, options || {});
    },
    Monitor: Monitor
  };

  root.RTCScope = RTCScope;
  if (typeof module === "object" && module.exports) {
    module.exports = RTCScope;
  }
})(typeof globalThis !== "undefined" ? globalThis : self);
