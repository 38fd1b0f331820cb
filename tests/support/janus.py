"""Start a real Janus (Debian's `janus` package) on free ports, its sample event
handler posting to a given backend URL, for the integration tests."""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import urllib.request

import tornado.web

from tests.support.influxd import free_port
from tests.support.waits import wait_for_http

LIBRARIES = "/usr/lib/x86_64-linux-gnu/janus"
# Only what the tests use is loaded: one transport, two plugins, one event handler.
MODULES = {"transports": ("libjanus_http.so",), "plugins": ("libjanus_echotest.so", "libjanus_videoroom.so"),
           "events": ("libjanus_sampleevh.so",)}
JAVASCRIPT = "/usr/share/javascript"  # janus.js (libjs-janus-gateway) and adapter.js (libjs-webrtc-adapter)
CLIENT_JS = pathlib.Path(__file__).resolve().parents[2] / "static" / "rtcscope.js"

JANUS_JCFG = """\
general: {{
    configs_folder = "{base}/conf"
    plugins_folder = "{base}/plugins"
    transports_folder = "{base}/transports"
    events_folder = "{base}/events"
    loggers_folder = "{base}/loggers"
    debug_level = 4
    server_name = "{server_name}"
    session_timeout = {session_timeout}
    admin_secret = "{admin_secret}"
}}
media: {{
    rtp_port_range = "{rtp_ports}"
}}
nat: {{
    ice_enforce_list = "{ice_address}"
    ignore_mdns = true
}}
events: {{
    broadcast = true
    stats_period = {stats_period}
    combine_media_stats = {combine_media_stats}
}}
"""
HTTP_JCFG = """\
general: {{
    base_path = "/janus"
    http = true
    ip = "127.0.0.1"
    port = {port}
    https = false
}}
admin: {{
    admin_http = false
}}
"""
SAMPLEEVH_JCFG = """\
general: {{
    enabled = true
    events = "{events}"
    grouping = {grouping}
    json = "plain"
    backend = "{backend}"
{credentials}    max_retransmissions = {max_retransmissions}
    retransmissions_backoff = 100
}}
"""
VIDEOROOM_JCFG = """\
general: {
}
room-1234: {
    description = "rtcscope test room"
    publishers = 6
    bitrate = 256000
}
"""


def host_address():
    """The machine's own non-loopback IPv4 address, or None: Janus never gathers ICE
    candidates on a loopback interface (ice.c skips IFF_LOOPBACK), so media between
    it and a browser on this machine goes over this address (and stays in the machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


class Janus:
    """One Janus process with its own configuration folder; `stop()`/`start()` again
    keep it. `backend` is the URL its sample event handler posts to."""

    def __init__(self, backend, *, base_dir=None, server_name="janus-test", stats_period=1, grouping=True,
                 events="all", session_timeout=60, backend_user=None, backend_pwd=None, max_retransmissions=5,
                 combine_media_stats=False):
        self.base = base_dir or tempfile.mkdtemp(prefix="rtcscope-janus-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.server_name = server_name
        self.admin_secret = os.urandom(8).hex()
        self.ice_address = host_address()
        rtp_start = 20000 + self.port % 20000 // 100 * 100  # a range of its own, beside other Januses' on this machine
        options = {"base": self.base, "server_name": server_name, "session_timeout": session_timeout,
                   "admin_secret": self.admin_secret, "rtp_ports": f"{rtp_start}-{rtp_start + 99}",
                   "ice_address": self.ice_address or "127.0.0.1", "stats_period": stats_period,
                   "combine_media_stats": str(combine_media_stats).lower()}
        credentials = "" if backend_user is None else (f'    backend_user = "{backend_user}"\n'
                                                        f'    backend_pwd = "{backend_pwd}"\n')
        configs = {"janus.jcfg": JANUS_JCFG.format(**options),
                   "janus.transport.http.jcfg": HTTP_JCFG.format(port=self.port),
                   "janus.eventhandler.sampleevh.jcfg": SAMPLEEVH_JCFG.format(
                       events=events, grouping=str(grouping).lower(), backend=backend, credentials=credentials,
                       max_retransmissions=max_retransmissions),
                   "janus.plugin.echotest.jcfg": "general: {\n}\n",
                   "janus.plugin.videoroom.jcfg": VIDEOROOM_JCFG}
        os.makedirs(os.path.join(self.base, "conf"), exist_ok=True)
        os.makedirs(os.path.join(self.base, "loggers"), exist_ok=True)
        for name, text in configs.items():
            with open(os.path.join(self.base, "conf", name), "w") as config:
                config.write(text)
        for folder, libraries in MODULES.items():
            os.makedirs(os.path.join(self.base, folder), exist_ok=True)
            for library in libraries:
                link = os.path.join(self.base, folder, library)
                if not os.path.lexists(link):
                    os.symlink(os.path.join(LIBRARIES, folder, library), link)
        self.log_path = os.path.join(self.base, "janus.log")
        self.process = None

    def start(self, timeout=30):
        binary = shutil.which("janus")
        if binary is None:
            raise RuntimeError("janus not found: install Debian's janus and janus-demos packages (make install)")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "-C", os.path.join(self.base, "conf", "janus.jcfg"),
                 "-F", os.path.join(self.base, "conf"), "-o"], stdout=log, stderr=subprocess.STDOUT)
        wait_for_http(self.process, self.url + "/info", timeout, lambda: f"janus (see {self.log_path})")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self):
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def request(self, path, body):
        """One Janus API request over its HTTP transport: the answer, decoded."""
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def create_session(self):
        return self.request("", {"janus": "create", "transaction": os.urandom(6).hex()})["data"]["id"]

    def attach(self, session, plugin="janus.plugin.echotest", opaque_id=None):
        body = {"janus": "attach", "plugin": plugin, "transaction": os.urandom(6).hex()}
        if opaque_id is not None:
            body["opaque_id"] = opaque_id
        return self.request(f"/{session}", body)["data"]["id"]

    def detach(self, session, handle):
        return self.request(f"/{session}/{handle}", {"janus": "detach", "transaction": os.urandom(6).hex()})


# A page that joins Janus with janus.js, as an application does, and monitors its own
# peer connection with rtcscope.js: echotest (one handle) or videoroom (a publisher
# handle, and a subscriber handle per other publisher), every handle attached with
# opaqueId "<call>/<peer>". Fake camera and microphone (Chromium's flags).
PAGE = """<!doctype html>
<script src="/js/webrtc-adapter/adapter.js"></script>
<script src="/js/janus-gateway/janus.js"></script>
<script src="/rtcscope.js"></script>
<script>
window.handles = [];
window.monitors = [];
window.states = [];
Janus.init({debug: false, callback: () => {}});

function connect(janusUrl) {
  return new Promise((resolve, reject) => {
    const janus = new Janus({server: janusUrl, success: () => resolve(janus), error: reject,
                             destroyed: () => states.push("destroyed")});
  });
}

function attach(janus, plugin, opaqueId, callbacks) {
  return new Promise((resolve, reject) => {
    janus.attach({plugin, opaqueId, success: resolve, error: reject,
                  iceState: (state) => states.push("ice " + state),
                  webrtcState: (on) => states.push("webrtc " + on), ...callbacks});
  });
}

function monitor(handle, options) {
  const pc = handle.webrtcStuff.pc;
  monitors.push(RTCScope.monitor(pc, {server: options.server, call: options.call, peer: options.peer,
                                      key: options.key || null, transport: "post"}));
}

// Echotest: what this page sends comes back to it through Janus.
window.echotest = async function (options) {
  const janus = window.janus = await connect(options.janus);
  let handle;
  const up = new Promise((resolve) => {
    attach(janus, "janus.plugin.echotest", options.opaqueId, {
      webrtcState: (on) => { states.push("webrtc " + on); if (on) resolve(); },
      onmessage: (message, jsep) => { if (jsep) handle.handleRemoteJsep({jsep}); },
    }).then((attached) => {
      handle = attached;
      handles.push(handle);
      handle.createOffer({tracks: [{type: "audio", capture: true, recv: true}, {type: "video", capture: true, recv: true}],
                          success: (jsep) => handle.send({message: {audio: true, video: true}, jsep})});
    });
  });
  await up;
  if (options.server) monitor(handle, options);
  return handle.getId();
};

// Videoroom: publish in room 1234, subscribe to every other publisher (one handle each).
window.videoroom = async function (options) {
  const janus = window.janus = await connect(options.janus);
  const subscribed = new Set();
  const subscribe = async (feed) => {
    if (subscribed.has(feed)) return;
    subscribed.add(feed);
    let subscriber;
    subscriber = await attach(janus, "janus.plugin.videoroom", options.opaqueId, {
      onmessage: (message, jsep) => {
        if (jsep) subscriber.createAnswer({jsep, tracks: [{type: "data"}], success: (answer) =>
          subscriber.send({message: {request: "start", room: 1234}, jsep: answer})});
      },
    });
    handles.push(subscriber);
    subscriber.send({message: {request: "join", room: 1234, ptype: "subscriber", streams: [{feed}]}});
  };
  let publisher;
  const up = new Promise((resolve) => {
    attach(janus, "janus.plugin.videoroom", options.opaqueId, {
      webrtcState: (on) => { states.push("webrtc " + on); if (on) resolve(); },
      onmessage: (message, jsep) => {
        if (jsep) publisher.handleRemoteJsep({jsep});
        for (const feed of message.publishers || []) subscribe(feed.id);
        if (message.videoroom === "joined") {
          publisher.createOffer({tracks: [{type: "audio", capture: true, recv: false},
                                          {type: "video", capture: true, recv: false}],
                                 success: (jsep) => publisher.send({message: {request: "publish"}, jsep})});
        }
      },
    }).then((attached) => {
      publisher = attached;
      handles.push(publisher);
      publisher.send({message: {request: "join", room: 1234, ptype: "publisher", display: options.peer}});
    });
  });
  await up;
  if (options.server) monitor(publisher, options);
  return publisher.getId();
};

// Hanging up as an application does: stop the monitors, then detach every handle.
window.hangup = async function () {
  await Promise.all(monitors.map((m) => m.stop()));
  await Promise.all(handles.map((handle) => new Promise((resolve) => handle.detach({success: resolve, error: resolve}))));
};
</script>
"""


class _Page(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE)


class _Client(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/javascript")
        self.finish(CLIENT_JS.read_bytes())


def page_application(*handlers):
    """The application's page (/call), janus.js and adapter.js as Debian ships them
    (/js/), and rtcscope.js (/rtcscope.js): another origin than Janus's and the server's."""
    return tornado.web.Application([(r"/call", _Page), (r"/rtcscope.js", _Client),
                                    (r"/js/(.*)", tornado.web.StaticFileHandler, {"path": JAVASCRIPT}), *handlers])


CAPTURES = pathlib.Path(__file__).resolve().parents[1] / "data" / "janus"


def posts(name):
    """The bodies of a captured Janus session (tests/data/janus/NAME.jsonl), one post a line."""
    return (CAPTURES / f"{name}.jsonl").read_bytes().splitlines()


def view_events(opaque_id, start_ms, *, emitter, handle, rtt=40.0, loss=0.0, seconds=6, detach=False):
    """What Janus's event handler posts of one handle, as one grouped post: its attach with
    `opaque_id` (`<call>/<peer>` or `<call>`), audio statistics every second (round trip
    `rtt` ms, `loss` of the packets it receives lost), and with `detach` its detach."""
    def event(kind, subtype, at_ms, body):
        return {"emitter": emitter, "type": kind, "subtype": subtype, "timestamp": at_ms * 1000,
                "session_id": handle, "handle_id": handle, "opaque_id": opaque_id, "event": body}
    lost_each = round(100 * loss)
    events = [event(2, None, start_ms, {"name": "attached", "plugin": "janus.plugin.videoroom", "opaque_id": opaque_id})]
    for second in range(1, seconds + 1):
        events.append(event(32, 3, start_ms + second * 1000, {
            "mid": "0", "mindex": 0, "media": "audio", "codec": "opus", "base": 48000, "rtt": rtt,
            "lost": lost_each * second, "lost-by-remote": 0, "jitter-local": 2, "jitter-remote": 2,
            "in-link-quality": 100, "in-media-link-quality": 100, "out-link-quality": 100, "out-media-link-quality": 100,
            "packets-received": (100 - lost_each) * second, "packets-sent": 100 * second,
            "bytes-received": 8000 * second, "bytes-sent": 8000 * second, "nacks-received": 0, "nacks-sent": 0}))
    if detach:
        events.append(event(2, None, start_ms + (seconds + 1) * 1000, {"name": "detached",
                                                                      "plugin": "janus.plugin.videoroom"}))
    return json.dumps(events)
