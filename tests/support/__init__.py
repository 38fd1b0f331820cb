"""What the tests and the benchmarks share, none of it a test: a real influxd
(`influxd`), server processes (`processes`), requests to the server (`api`),
samples and clients' reports (`samples`, `reports`), waits with deadlines
(`waits`) and alert rules (`alerts`). Test modules import from here, never
from one another; the fixtures built on it are in tests/conftest.py."""
