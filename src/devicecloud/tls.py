"""The certificate store every TLS listener of a process shares (HTTPS, WSS, MQTT over TLS).

`Certificates.context` is the one server context the listeners are given; it never changes. Its
SNI callback, which OpenSSL runs on every handshake (with or without a server name), hands the
connection the newest validated inner context. A reload therefore changes what new handshakes
present and leaves established connections alone.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from devicecloud.config import StartupError

log = logging.getLogger("devicecloud.tls")
WATCH_SECONDS = 1.0  # how often the files are checked for a change
NO_PAIR_WARNING_INTERVAL = 60.0  # seconds between two "no certificate yet" lines
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

Signature = tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]


class PairProblem(Exception):
    """Why a certificate/key pair cannot be used, in words for the log."""


@dataclass(frozen=True)
class Pair:
    """A validated certificate and key, loaded into a context of their own."""

    context: ssl.SSLContext
    expires_at: float
    names: list[str]


def server_context() -> ssl.SSLContext:
    """A server context as every listener needs it: TLS 1.2 or newer, no client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    return context


def certificate_names(certificate: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is for (its SAN, else its common name)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(attribute.value)
                for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    names: list[str] = san.get_values_for_type(x509.DNSName)
    return names + [str(address) for address in san.get_values_for_type(x509.IPAddress)]


def load_pair(cert: Path, key: Path, now: float | None = None) -> Pair:
    """Read and check the pair: readable PEM, the key matching the certificate, valid now."""
    try:
        pem = cert.read_bytes()
        key.read_bytes()
    except OSError as problem:
        raise PairProblem(f"cannot read {problem.filename}: "
                          f"{(problem.strerror or str(problem)).lower()}") from None
    try:
        leaf = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise PairProblem(f"{cert} holds no PEM certificate") from None
    context = server_context()
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as problem:
        if "KEY_VALUES_MISMATCH" in str(problem) or problem.reason == "KEY_VALUES_MISMATCH":
            raise PairProblem(f"the key {key} does not match the certificate {cert}") from None
        raise PairProblem(f"{cert} or {key} is not a usable PEM certificate chain and "
                          f"private key ({problem.reason or problem})") from None
    moment = time.time() if now is None else now
    not_before = leaf.not_valid_before_utc.timestamp()
    not_after = leaf.not_valid_after_utc.timestamp()
    if moment >= not_after:
        raise PairProblem(f"the certificate {cert} expired on {_date(not_after)}")
    if moment < not_before:
        raise PairProblem(f"the certificate {cert} is not valid before {_date(not_before)}")
    return Pair(context, not_after, certificate_names(leaf))


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


class Certificates:
    """One certificate store for every TLS listener of this process."""

    def __init__(self, cert: Path, key: Path, *, obtained: bool = False) -> None:
        """Load the pair; one that cannot be used stops the start naming the file and why.
        `obtained`: the files are ACME's to write. No pair yet, or one that cannot be used (an
        expired one), is then allowed: handshakes fail, said once a minute, until the renewal
        writes a new pair; and a reload may change the names (they follow --acme-domain)."""
        self.cert, self.key = cert, key
        self.obtained = obtained
        self.context = server_context()
        self.context.sni_callback = self._choose
        self.expires_at: float | None = None
        self.names: list[str] = []
        self._pair: Pair | None = None
        self._seen: Signature = self._signature()
        self._warned_at = -NO_PAIR_WARNING_INTERVAL
        if obtained and not cert.exists() and not key.exists():
            log.info("no TLS certificate in %s yet: TLS handshakes fail until there is one",
                     cert.parent)
            return
        try:
            self._use(load_pair(cert, key))
        except PairProblem as problem:
            if obtained:
                log.warning("the stored TLS certificate cannot be used (%s): TLS handshakes "
                            "fail until a new one is obtained", problem)
                return
            raise StartupError(f"cannot use the TLS certificate: {problem}; check --tls-cert "
                               "and --tls-key (DEVICECLOUD_TLS_CERT, DEVICECLOUD_TLS_KEY)"
                               ) from None

    def _use(self, pair: Pair) -> None:
        self._pair = pair
        self.expires_at, self.names = pair.expires_at, pair.names

    def _choose(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                context: ssl.SSLContext) -> int | None:
        pair = self._pair
        if pair is None:
            now = time.monotonic()
            if now - self._warned_at >= NO_PAIR_WARNING_INTERVAL:
                self._warned_at = now
                log.warning("TLS handshake refused: no certificate in %s yet", self.cert.parent)
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        connection.context = pair.context
        return None

    def _signature(self) -> Signature:
        return _stat(self.cert), _stat(self.key)

    def reload(self) -> bool:
        """Read the files again; True if a new pair is now in use. A pair that cannot be used
        is one error line with the reason, and the pair in use stays."""
        self._seen = self._signature()
        try:
            pair = load_pair(self.cert, self.key)
        except PairProblem as problem:
            log.error("TLS certificate not reloaded, the one in use stays: %s", problem)
            return False
        old = self._pair
        if old is not None and not self.obtained and not set(old.names) & set(pair.names):
            log.error("TLS certificate not reloaded, the one in use stays: the new certificate "
                      "%s is for %s, none of the names in use (%s); restart to change them",
                      self.cert, ", ".join(pair.names) or "no name", ", ".join(old.names))
            return False
        self._use(pair)
        log.info("TLS certificate loaded from %s: %s, valid until %s", self.cert,
                 ", ".join(pair.names) or "no name", _date(pair.expires_at))
        return True

    async def watch(self) -> None:
        """Every WATCH_SECONDS, reload if the files changed (mtime, size or inode) and have
        stayed so for one period (a pair being written is not read half-way), until cancelled."""
        previous = self._signature()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            current = self._signature()
            if current != self._seen and current == previous and None not in current:
                self.reload()
            previous = current


def describe(certificates: Certificates) -> str:
    """A few words on the pair in use, for the start's announcement."""
    if certificates.expires_at is None:
        return "no certificate yet"
    return f"{', '.join(certificates.names)} until {_date(certificates.expires_at)}"

