/* The /demo loopback call: two RTCPeerConnections in one page, both monitored with rtcscope.js. */
(function () {
  "use strict";

  var page = {
    callId: document.getElementById("call-id"),
    state: document.getElementById("call-state"),
    callLink: document.getElementById("call-link"),
    hangUp: document.getElementById("hang-up"),
    newCall: document.getElementById("new-call"),
    notice: document.getElementById("notice"),
    localVideo: document.getElementById("local-video"),
    remoteVideo: document.getElementById("remote-video")
  };

  /** A call id that is new on every load and reads well on the dashboard: demo-20261124-103012-x7k2. */
  function newCallId() {
    var now = new Date();
    var pad = function (n) { return String(n).padStart(2, "0"); };
    var stamp = now.getFullYear() + pad(now.getMonth() + 1) + pad(now.getDate()) + "-" +
      pad(now.getHours()) + pad(now.getMinutes()) + pad(now.getSeconds());
    return "demo-" + stamp + "-" + Math.random().toString(36).slice(2, 6);
  }

  var call = newCallId();
  var demo = {call: call, connections: {}, monitors: {}, stream: null};
  window.demo = demo;  // for the console (and the browser tests)

  RS.setFeed("connecting", "starting");
  page.callId.textContent = call;
  page.callLink.href = "/calls/" + encodeURIComponent(call) + "/";
  document.title = call + " · Loopback demo · rtcscope";

  function setState(state, text) {
    page.state.dataset.state = state;
    page.state.textContent = text || state;
  }

  function showNotice(text) {
    page.notice.textContent = text;
    page.notice.hidden = false;
  }

  /** Camera and microphone; without them, a drawn clock and a tone, so the demo still runs. */
  function openMedia() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.resolve(syntheticMedia("this browser cannot open a camera here (is the page served over http://127.0.0.1 or https?)"));
    }
    return navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 480}})
      .catch(function (error) {
        return syntheticMedia("no camera or microphone (" + error.name + ")");
      });
  }

  function syntheticMedia(reason) {
    showNotice("Using a generated picture and tone: " + reason + ".");
    var canvas = document.createElement("canvas");
    canvas.width = 640;
    canvas.height = 480;
    var context = canvas.getContext("2d");
    setInterval(function () {
      var t = Date.now() / 1000;
      context.fillStyle = "hsl(" + Math.round(t * 20) % 360 + ", 45%, 30%)";
      context.fillRect(0, 0, 640, 480);
      context.fillStyle = "#fff";
      context.font = "bold 64px sans-serif";
      context.textAlign = "center";
      context.fillText(new Date().toLocaleTimeString(), 320, 240 + 20 * Math.sin(t * 2));
    }, 1000 / 30);
    var stream = canvas.captureStream(30);
    var AudioContext = window.AudioContext || window.webkitAudioContext;
    if (AudioContext) {
      var audio = new AudioContext();
      var tone = audio.createOscillator();
      var destination = audio.createMediaStreamDestination();
      tone.frequency.value = 440;
      tone.connect(destination);
      tone.start();
      destination.stream.getAudioTracks().forEach(function (track) { stream.addTrack(track); });
    }
    return stream;
  }

  // --- what each end shows, from the samples its monitor sends --------------------------------

  function statsOf(report) {
    var values = {rtt: null, jitter: null, bytes: 0, lost: 0, fps: null, width: null, height: null};
    var pairs = {}, selected = null;
    report.forEach(function (stat) {
      var kind = stat.kind || stat.mediaType;
      if (stat.type === "candidate-pair") pairs[stat.id] = stat;
      if (stat.type === "transport" && stat.selectedCandidatePairId) selected = stat.selectedCandidatePairId;
      if (stat.type === "remote-inbound-rtp" || stat.type === "remote-outbound-rtp") {
        if (stat.roundTripTime != null) values.rtt = Math.max(values.rtt || 0, stat.roundTripTime * 1000);
      }
      if ((stat.type === "inbound-rtp" || stat.type === "remote-inbound-rtp") && stat.jitter != null) {
        values.jitter = Math.max(values.jitter || 0, stat.jitter * 1000);
      }
      if (stat.type === "inbound-rtp" || stat.type === "remote-inbound-rtp") values.lost += stat.packetsLost || 0;
      if (stat.type === "outbound-rtp") values.bytes += stat.bytesSent || 0;
      if (stat.type === "inbound-rtp") values.bytes += stat.bytesReceived || 0;
      if (kind === "video" && (stat.type === "inbound-rtp" || (stat.type === "outbound-rtp" && values.fps == null))) {
        if (stat.framesPerSecond != null) values.fps = stat.framesPerSecond;
        if (stat.frameWidth) { values.width = stat.frameWidth; values.height = stat.frameHeight; }
      }
    });
    if (values.rtt == null && pairs[selected] && pairs[selected].currentRoundTripTime != null) {
      values.rtt = pairs[selected].currentRoundTripTime * 1000;
    }
    return values;
  }

  function formatBitrate(bitsPerSecond) {
    if (bitsPerSecond >= 1e6) return (bitsPerSecond / 1e6).toFixed(2) + " Mbit/s";
    return Math.round(bitsPerSecond / 1e3) + " kbit/s";
  }

  function showSample(peer, sample, previous) {
    var card = document.getElementById(peer);
    var set = function (name, text) { card.querySelector('[data-stat="' + name + '"]').textContent = text; };
    var now = statsOf(sample.report);
    set("rtt", now.rtt == null ? "–" : now.rtt.toFixed(1) + " ms");
    set("jitter", now.jitter == null ? "–" : now.jitter.toFixed(1) + " ms");
    set("lost", String(now.lost));
    set("fps", now.fps == null ? "–" : now.fps + " fps");
    set("size", now.width ? now.width + "×" + now.height : "–");
    if (previous && sample.ts > previous.ts) {
      set("bitrate", formatBitrate(Math.max(0, now.bytes - previous.bytes) * 8000 / (sample.ts - previous.ts)));
    }
    return {ts: sample.ts, bytes: now.bytes};
  }

  function showSending(peer, monitor) {
    var stats = monitor.stats;
    var retrying = stats.lastError && monitor.queued > 1;
    var text = stats.delivered + " samples delivered, " + monitor.queued + " waiting";
    if (retrying) text += " · " + stats.lastError;
    document.getElementById(peer).querySelector('[data-stat="sending"]').textContent = text;
    // The top bar's feed indicator tells how sending goes on this page.
    if (retrying) RS.setFeed("reconnecting", "retrying");
    else if (stats.delivered) RS.setFeed("live", "sending stats");
  }

  // --- the call --------------------------------------------------------------------------------

  // A server started with --ingest-keys takes this page's samples when it is opened as /demo?key=KEY.
  var ingestKey = new URLSearchParams(location.search).get("key");

  function watch(peer, connection) {
    var previous = null;
    var monitor = RTCScope.monitor(connection, {
      call: call,
      peer: peer,
      interval: 1000,
      key: ingestKey,
      onsample: function (sample) {
        previous = showSample(peer, sample, previous);
        setTimeout(function () { showSending(peer, monitor); }, 0);
      },
      onerror: function (message, status) {
        if (status === 401 || status === 403) {
          showNotice("This server needs an ingest key (--ingest-keys): open /demo?key=YOUR_KEY. It answered " +
            status + (ingestKey ? " to the key given." : "."));
          RS.setFeed("error", "not accepted");
        }
      }
    });
    return monitor;
  }

  function start() {
    return openMedia().then(function (stream) {
      demo.stream = stream;
      page.localVideo.srcObject = stream;
      var caller = new RTCPeerConnection();
      var callee = new RTCPeerConnection();
      demo.connections = {caller: caller, callee: callee};
      caller.onicecandidate = function (event) { if (event.candidate) callee.addIceCandidate(event.candidate); };
      callee.onicecandidate = function (event) { if (event.candidate) caller.addIceCandidate(event.candidate); };
      callee.ontrack = function (event) { page.remoteVideo.srcObject = event.streams[0]; };
      caller.onconnectionstatechange = function () {
        if (caller.connectionState === "connected") setState("live");
        if (caller.connectionState === "failed") setState("failed", "connection failed");
      };
      stream.getTracks().forEach(function (track) { caller.addTrack(track, stream); });
      demo.monitors = {caller: watch("caller", caller), callee: watch("callee", callee)};
      page.hangUp.disabled = false;
      return caller.createOffer()
        .then(function (offer) { return caller.setLocalDescription(offer); })
        .then(function () { return callee.setRemoteDescription(caller.localDescription); })
        .then(function () { return callee.createAnswer(); })
        .then(function (answer) { return callee.setLocalDescription(answer); })
        .then(function () { return caller.setRemoteDescription(callee.localDescription); });
    }).catch(function (error) {
      setState("failed", "failed");
      RS.setFeed("error", "no call");
      showNotice("The call could not start: " + error);
    });
  }

  function hangUp() {
    page.hangUp.disabled = true;
    var stopped = Object.keys(demo.monitors).map(function (peer) { return demo.monitors[peer].stop(); });
    return Promise.all(stopped).then(function () {
      Object.keys(demo.connections).forEach(function (peer) { demo.connections[peer].close(); });
      if (demo.stream) demo.stream.getTracks().forEach(function (track) { track.stop(); });
      setState("ended");
      RS.setFeed("paused", "call ended");
    });
  }

  page.hangUp.addEventListener("click", hangUp);
  page.newCall.addEventListener("click", function () { location.reload(); });
  demo.hangUp = hangUp;
  start();
})();
