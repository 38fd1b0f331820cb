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
  var WS_PATH = "/v1/stats/ws";
  // Browsers refuse a keepalive request (fetch keepalive or sendBeacon) once the
  // page's keepalive requests in flight would exceed 64 KiB; every monitor on
  // the page shares that budget, so it is counted here, not per monitor.
  var KEEPALIVE_LIMIT = 64 * 1024;
  var keepaliveBytes = 0;
  // Stats fields that identify a person's network, and stats types of no use to the server. A local
  // relay candidate keeps of its `url` the TURN server's host:port (turnServer), nothing else.
  var PRIVATE_FIELDS = ["address", "ip", "port", "relatedAddress", "relatedPort", "url", "usernameFragment"];
  // turn: or turns: URL (RFC 7065): host or [IPv6], optional port, then parameters.
  var TURN_URL = /^(turns?):(?:\/\/)?(?:[^@?#\/]*@)?(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(\d{1,5}))?(?:[?#\/]|$)/i;
  var TURN_PORTS = {turn: "3478", turns: "5349"};
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
    transport: "websocket", // "websocket" (POST where a websocket cannot be opened) or "post"
    ackTimeout: 30000,    // ms a websocket frame may wait for its answer before the connection is replaced
    maxBatchBytes: 60000, // largest request body; stays under the 64 KiB keepalive limit
    finalBytes: 16384,    // most sample bytes in the closing beacon, leaving room for other monitors
    maxQueue: 600,        // samples queued while the server cannot take them (a request in flight aside); the oldest go
    minBackoff: 1000,     // ms of the first wait after a network error or a 503 without Retry-After
    maxBackoff: 60000,
    tags: null,           // {name: value}: the application's tags of this peer (the server keeps those it lists)
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
      var server = stat.type === "local-candidate" && stat.candidateType === "relay" && turnServer(stat.url);
      if (server) {
        copy.url = server;
      }
      stats.push(copy);
    });
    return stats;
  }

  /** "host:port" of a TURN server's URL (its default port when it names none), without scheme,
   * parameters or credentials; null for anything else. */
  function turnServer(url) {
    var match = typeof url === "string" && TURN_URL.exec(url);
    if (!match) {
      return null;
    }
    return match[2].toLowerCase() + ":" + (match[3] || TURN_PORTS[match[1].toLowerCase()]);
  }

  /** The `tags` option as {name: string}: values are sent as strings (app_version: 5.2 is "5.2"). */
  function cleanTags(tags) {
    var clean = {};
    var any = false;
    for (var name in tags || {}) {
      if (Object.prototype.hasOwnProperty.call(tags, name) && tags[name] != null) {
        clean[name] = String(tags[name]);
        any = true;
      }
    }
    return any ? clean : null;
  }

  function tagQuery(tags) {
    var query = "";
    for (var name in tags || {}) {
      query += "&tag." + encodeURIComponent(name) + "=" + encodeURIComponent(tags[name]);
    }
    return query;
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
    this.tags = cleanTags(settings.tags);
    this.url = server + WRITE_PATH + (settings.key ? "?key=" + encodeURIComponent(settings.key) : "");
    var base = server || (root.location ? root.location.origin : "");
    this.wsUrl = base.replace(/^http/, "ws") + WS_PATH + "?call=" + encodeURIComponent(this.call) +
      "&peer=" + encodeURIComponent(this.peer) + (settings.key ? "&key=" + encodeURIComponent(settings.key) : "") +
      tagQuery(this.tags);
    this.transport = settings.transport === "post" || typeof root.WebSocket !== "function" ? "post" : "websocket";
    this._ws = null;          // {socket, open, sent, base, flight, timer} of the websocket in use
    this._wsEverOpen = false;  // once open, a closed websocket is reopened (a restart); never open: POST
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
      var flight = this._ws && this._ws.flight;
      return this._queue.length + (this._inFlight ? this._inFlight.samples.length : 0) +
        (flight ? flight.samples.length : 0);
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
      if (self.tags) {
        sample.tags = self.tags;   // for POST; the websocket sends them once, on its URL
      }
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
    this._queue.push({sample: sample, json: json, bytes: utf8Length(json)});
    this._trim();
  };

  /** Keep at most maxQueue samples queued: the oldest go first. A request in flight is not counted:
   * its samples are older than any queued, cannot be taken back, and the server may yet take them.
   * Counting them would drop the newest samples beside a request that then fails; instead a failed
   * request's samples come back to the front of the queue (_putBack) and go first. */
  Monitor.prototype._trim = function () {
    var excess = this._queue.length - this.settings.maxQueue;
    if (excess > 0) {
      this._queue.splice(0, excess);
      this.stats.dropped += excess;
    }
  };

  /** Samples of a request or frame that did not land go back in front of the newer ones queued. */
  Monitor.prototype._putBack = function (samples) {
    this._queue = samples.concat(this._queue);
    this._trim();
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
    if (this.transport === "websocket") {
      this._wsSend(now);
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
      this._putBack(samples);
      this._maybeSend(true);
      return;
    }
    if (status === 0 || RETRY_STATUSES[status]) {
      this._putBack(samples);
      this._waitAndRetry(waitMs, (message || "server answered " + status), status);
      return;
    }
    this.stats.rejected += samples.length;   // 400, 401, 403, 413: sending again cannot help
    this._error("server refused " + samples.length + " sample(s) with " + status, status);
  };

  /** Back off (`waitMs` when the server said how long, else doubling with jitter), then send again. */
  Monitor.prototype._waitAndRetry = function (waitMs, message, status) {
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
    this._error(message + "; retrying in " + Math.round(wait) + " ms", status);
  };

  // --- websocket transport: one connection, one frame in flight, deltas per connection ---------

  /** Send the queue as one frame on the open websocket, opening one first if there is none. */
  Monitor.prototype._wsSend = function (now) {
    var ws = this._ws;
    if (!ws) {
      this._wsOpen();
    } else if (ws.open && !ws.flight) {
      this._lastSend = now;
      this._wsFrame(this._take(this._batchBytes), []);
    }
  };

  Monitor.prototype._wsOpen = function () {
    var self = this;
    var socket;
    try {
      socket = new root.WebSocket(self.wsUrl);
    } catch (e) {
      self._wsClosed(null, {code: 0});
      return;
    }
    var ws = {socket: socket, open: false, sent: 0, base: null, flight: null, timer: null};
    self._ws = ws;
    socket.onopen = function () {
      ws.open = true;
      self._wsEverOpen = true;
      self._maybeSend(true);
    };
    socket.onmessage = function (event) {
      self._wsAnswer(ws, event.data);
    };
    socket.onclose = function (event) {
      self._wsClosed(ws, event);
    };
  };

  /** One frame: a full report first on a connection, then what changed since the previous one. */
  Monitor.prototype._wsFrame = function (samples, extra) {
    var ws = this._ws;
    var messages = [];
    var numbered = [];
    samples.forEach(function (entry) {
      var sample = entry.sample;
      var first = ws.sent + messages.length + 1;
      if (sample.report) {
        var stats = statMap(sample.report);
        var message = ws.base ? statDelta(ws.base, stats) : {report: sample.report};
        message.ts = sample.ts;
        messages.push(message);
        ws.base = stats;
      }
      if (sample.stats) {
        messages.push({ts: sample.ts, kind: sample.kind, stats: sample.stats});
      }
      numbered.push({entry: entry, first: first, last: ws.sent + messages.length, refused: null});
    });
    messages = messages.concat(extra);
    var flight = {samples: samples, numbered: numbered, last: ws.sent + messages.length, delivered: false};
    flight.promise = new Promise(function (resolve) { flight.resolve = resolve; });
    ws.flight = flight;
    ws.sent += messages.length;
    ws.timer = setTimeout(function () {
      ws.socket.close(4000, "no answer in time");
    }, this.settings.ackTimeout);
    ws.socket.send(JSON.stringify(messages));
    return flight;
  };

  Monitor.prototype._wsAnswer = function (ws, text) {
    var answer;
    try {
      answer = JSON.parse(text);
    } catch (e) {
      return;
    }
    var flight = ws.flight;
    if (ws !== this._ws || !flight) {
      return;
    }
    if (answer.type === "error") {
      // The server dropped its report state with a refused report: the next one goes full.
      ws.base = null;
      flight.numbered.forEach(function (item) {
        if (item.first <= answer.seq && answer.seq <= item.last && !item.refused) {
          item.refused = answer.error.code;
        }
      });
      this._error("server refused message " + answer.seq + ": " + answer.error.message, 400);
    } else if (answer.type === "ack" && answer.seq >= flight.last) {
      this._wsSettle(ws, flight, Infinity);
    } else if (answer.type === "busy") {
      ws.sent = answer.seq - 1;
      ws.base = null;
      this._wsSettle(ws, flight, answer.seq);
      this._waitAndRetry(answer.retry_after * 1000, "server busy (" + answer.code + ")", 503);
    }
  };

  /** The frame's answer: samples before message `notTaken` are handled, the rest go back to the queue. */
  Monitor.prototype._wsSettle = function (ws, flight, notTaken) {
    clearTimeout(ws.timer);
    ws.flight = null;
    var again = [];
    var self = this;
    flight.numbered.forEach(function (item) {
      if (item.last >= notTaken || item.refused === "need_full_report") {
        again.push(item.entry);
      } else if (item.refused) {
        self.stats.rejected += 1;
      } else {
        self.stats.delivered += 1;
      }
    });
    this._putBack(again);
    flight.delivered = notTaken === Infinity;
    flight.resolve();
    if (flight.delivered) {
      this._failures = 0;
      if (!this.stopped && this._queue.length) {
        this._maybeSend(true);
      }
    }
  };

  /** A closed websocket: what it had in flight is sent again, on a new connection (with backoff)
   * once a websocket has opened here (a server restart, a network change), else by POST (a proxy
   * or a server that does not take websockets). */
  Monitor.prototype._wsClosed = function (ws, event) {
    if (ws !== this._ws && ws !== null) {
      return;
    }
    this._ws = null;
    if (ws) {
      clearTimeout(ws.timer);
      if (ws.flight) {
        this._putBack(ws.flight.samples);
        ws.flight.resolve();
      }
    }
    if (this.stopped) {
      return;
    }
    if (!this._wsEverOpen) {
      this.transport = "post";
      this._error("no websocket to " + this.wsUrl + " (" + event.code + "); sending by POST", 0);
      this._maybeSend(true);
      return;
    }
    this._waitAndRetry(null, "websocket closed (" + event.code + ")", 0);
  };

  function statMap(report) {
    var stats = {};
    report.forEach(function (stat) {
      stats[stat.id] = stat;
    });
    return stats;
  }

  function sameValue(a, b) {
    return a === b || (typeof a === "object" && a !== null && JSON.stringify(a) === JSON.stringify(b));
  }

  /** What changed from `before` to `after` ({id: stat}): new stats whole, changed fields, null for a
   * field that is gone, and the ids of stats that are gone. */
  function statDelta(before, after) {
    var delta = {};
    var removed = [];
    for (var id in after) {
      var stat = after[id];
      var old = before[id];
      if (!old) {
        delta[id] = stat;
        continue;
      }
      var changes = null;
      for (var name in stat) {
        if (!sameValue(old[name], stat[name])) {
          (changes = changes || {})[name] = stat[name];
        }
      }
      for (name in old) {
        if (!(name in stat)) {
          (changes = changes || {})[name] = null;
        }
      }
      if (changes) {
        delta[id] = changes;
      }
    }
    for (id in before) {
      if (!(id in after)) {
        removed.push(id);
      }
    }
    return {delta: delta, removed: removed};
  }

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
      var ws = self._ws;
      if (ws && ws.flight) {
        return until(ws.flight.promise, deadline).then(drain);
      }
      if (!self._queue.length) {
        return null;
      }
      if (self.transport === "websocket") {
        if (!ws || !ws.open) {
          return null;   // the beacon carries what is left
        }
        var frame = self._wsFrame(self._take(self._batchBytes), []);
        return until(frame.promise, deadline).then(function () {
          return frame.delivered ? drain() : null;
        });
      }
      var delivered = self.stats.delivered;
      return until(self._send(self._take(self._batchBytes)), deadline).then(function () {
        return self.stats.delivered > delivered ? drain() : null;
      });
    }
    /** The end over the websocket once all was sent on it: then no beacon is needed. */
    function endOnSocket() {
      var ws = self._ws;
      if (!ws || !ws.open || ws.flight || self._queue.length || self._ended || Date.now() >= deadline) {
        return false;
      }
      var frame = self._wsFrame([], [{event: "end", reason: "stop"}]);
      return until(frame.promise, deadline).then(function () {
        return frame.delivered;
      });
    }
    return Promise.resolve().then(drain).then(endOnSocket).then(function (ended) {
      if (ended && !self._ended) {
        self._ended = true;
        root.removeEventListener("pagehide", self._onPageHide);
        self._ws.socket.close(1000, "monitor stopped");
        return;
      }
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
    var ws = this._ws;
    if (ws) {
      // What the socket has not acknowledged goes in the beacon too (a resend lands once), and the
      // end goes both ways: the socket closes as the page goes, maybe before the beacon arrives.
      if (ws.flight) {
        this._queue = ws.flight.samples.concat(this._queue);
        clearTimeout(ws.timer);
        ws.flight.resolve();
        ws.flight = null;
      }
      if (ws.open) {
        try {
          ws.socket.send(JSON.stringify([{event: "end", reason: settled ? "stop" : "pagehide"}]));
        } catch (e) {
          // closing already: the beacon carries the end
        }
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
