"""Shared secrets: ingest keys and read tokens.

A file holds one secret per line (blank lines and `#` comments ignored) and
is re-read when it changes (checked at most once a second) or on demand
(SIGHUP), so keys are rotated without a restart. A file that cannot be read
at a reload keeps the secrets it had. Candidates are compared in constant
time: both sides are hashed to a fixed length and every secret is compared,
so neither the position nor the length of a match shows in the timing.
"""
import hashlib
import hmac
import logging
import os
import time

log = logging.getLogger("rtcscope.credentials")

CHECK_INTERVAL_SECONDS = 1.0


def _digest(secret):
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class Secrets:
    def __init__(self, path="", values=()):
        self.path = path or ""
        self._values = [value for value in values if value]
        self._digests = []
        self._signature = None
        self._checked = 0.0
        if self.path:
            self.reload(strict=True)
        else:
            self._digests = [_digest(value) for value in self._values]

    @property
    def enabled(self):
        return bool(self.path or self._values)

    def reload(self, strict=False):
        """Re-read the file; at start (`strict`) a missing or empty file is an error."""
        try:
            stat = os.stat(self.path)
            with open(self.path, encoding="utf-8") as secrets_file:
                lines = [line.strip() for line in secrets_file]
        except OSError as exc:
            if strict:
                raise
            log.error("cannot re-read %s (%s); keeping the previous secrets", self.path, exc)
            return
        secrets = [line for line in lines if line and not line.startswith("#")] + self._values
        if strict and not secrets:
            raise ValueError(f"{self.path} holds no secrets")
        self._digests = [_digest(secret) for secret in secrets]
        self._signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        log.info("loaded %d secrets from %s", len(self._digests), self.path)

    def _reload_if_changed(self):
        now = time.monotonic()
        if not self.path or now - self._checked < CHECK_INTERVAL_SECONDS:
            return
        self._checked = now
        try:
            stat = os.stat(self.path)
        except OSError:
            return
        if (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self._signature:
            self.reload()

    def matches(self, candidate):
        """True when `candidate` is one of the secrets."""
        self._reload_if_changed()
        if not candidate:
            return False
        wanted = _digest(candidate)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(wanted, digest)
        return found
