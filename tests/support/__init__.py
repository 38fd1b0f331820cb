"""What the tests and the benchmarks share, none of it a test: a real influxd and a slow
link to it (`influxd`), server processes (`processes`), nginx in front of them (`nginx`),
requests to the server (`api`), samples and real Chromium reports (`samples`, `reports`),
clients of its websockets (`websockets`), /metrics through prometheus_client's parser
(`metrics`), alert rules and a webhook receiver (`alerts`), headless Chromium (`browser`),
real calls in it monitored by rtcscope.js (`calls`), a TURN server (`turn`), a Janus (`janus`),
known fleets for the diagnosis API (`fleets`) and for the pages (`fleet`), and waits with
deadlines (`waits`). Test modules import from here, never from one another (tests/test_layout.py
checks it); the fixtures built on it are in tests/conftest.py."""
