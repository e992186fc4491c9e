"""A certificate for `--acme-domain`, obtained and renewed by ACME (RFC 8555) with the HTTP-01
challenge, without a restart. Everything lives in the data directory's `tls/` folder:

    account.key   the ACME account's key (made once, mode 0600, reused)
    key.pem       the certificate's key (a new one at each order, mode 0600)
    cert.pem      the certificate with its chain
    challenges/   one file per pending HTTP-01 token holding its key authorization, which
                  web/acme_http.py answers (so whichever process the CA reaches answers it)
    acme.lock     held by the one process that orders; the others load the new files as they
                  change (the certificates' own watch)

The protocol is the `acme` library's; it is synchronous, so each check runs on a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, TypeVar, cast

import requests
from acme import challenges, crypto_util, errors, messages
from acme.client import ClientNetwork, ClientV2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from devicecloud import __version__
from devicecloud.config import Settings, StartupError

log = logging.getLogger(__name__)
T = TypeVar("T")

RENEW_BEFORE = 30 * 86400.0  # renew when fewer seconds than this remain
CHECK_EVERY = 12 * 3600.0  # look at the certificate twice a day
LOCK_RETRY = 60.0  # how often a process without the lock tries to take it over
ORDER_SECONDS = 90  # the CA's validation and issuance, at most
NETWORK_SECONDS = 30  # one request to the CA, at most
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # an HTTP-01 token is base64url


class Reloadable(Protocol):
    """What serves the certificate: told to load the files again once they are replaced."""

    def reload(self) -> bool: ...


class AcmeFailure(Exception):
    """An order that did not give a certificate, said in one line."""


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after the n-th failure in a row: `first`, doubling, at most `most`."""

    first: float = 60.0
    most: float = 3600.0

    def delay(self, failures: int) -> float:
        return min(self.most, self.first * 2.0 ** max(0, failures - 1))


def challenge_path(tls_dir: Path, token: str) -> Path | None:
    """Where the key authorization for `token` is kept, or None for a token that is not one."""
    if TOKEN.fullmatch(token) is None:
        return None
    return tls_dir / "challenges" / token


def next_check(expires_at: float, now: float) -> float:
    """Seconds until the next look at a certificate good until `expires_at`: twice a day, or
    sooner when its renewal falls due."""
    return min(CHECK_EVERY, max(0.0, expires_at - RENEW_BEFORE - now))


def reason_to_order(tls_dir: Path, domains: Sequence[str], now: float) -> str | None:
    """Why a new certificate is needed (none stored, a name missing, a key that is not its,
    fewer than 30 days left), or None while the stored one is good."""
    try:
        certificate = x509.load_pem_x509_certificate((tls_dir / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((tls_dir / "key.pem").read_bytes(), None)
    except FileNotFoundError:
        return "no certificate yet"
    except (OSError, ValueError, TypeError) as problem:
        return f"the stored certificate or key cannot be read ({problem})"
    if key.public_key() != certificate.public_key():
        return "the stored key is not the certificate's"
    missing = [name for name in domains if name.lower() not in names_of(certificate)]
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    left = certificate.not_valid_after_utc.timestamp() - now
    if left < RENEW_BEFORE:
        return f"the certificate expires in {left / 86400:.1f} days"
    return None


def names_of(certificate: x509.Certificate) -> set[str]:
    """The DNS names a certificate covers, lower case."""
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return {name.lower() for name in alternatives.value.get_values_for_type(x509.DNSName)}


def expiry_of(path: Path) -> float:
    """The notAfter of the first certificate in `path`, as a timestamp."""
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.not_valid_after_utc.timestamp()


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` by `data`: written to a temporary file, fsynced, then renamed over it."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(draft, path)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise


def sync_folder(folder: Path) -> None:
    """Make the renames done in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def describe(problem: Exception, directory: str) -> str:
    """One line for an order that failed: the CA's own words where it gave some."""
    if isinstance(problem, messages.Error):
        said = problem.detail or problem.title or problem.description or problem.typ
        return f"the CA refused ({problem.code or problem.typ}): {said}"
    if isinstance(problem, errors.IssuanceError):
        return describe(problem.error, directory)
    if isinstance(problem, errors.ValidationError):
        failures = [f"{authorization.body.identifier.value}: {challenge.error.detail}"
                    for authorization in problem.failed_authzrs
                    for challenge in authorization.body.challenges if challenge.error]
        return "the HTTP-01 challenge failed: " + "; ".join(failures)
    if isinstance(problem, errors.TimeoutError):
        return f"the CA did not validate and issue within {ORDER_SECONDS} s"
    if isinstance(problem, requests.RequestException):
        text = str(problem)
        found = re.search(r"\[Errno -?\d+\] ([^'\")]+)|(certificate verify failed[^'\")]*)", text)
        reason = next(part for part in found.groups() if part) if found else text
        return f"cannot reach the ACME server {directory}: {reason.strip()}"
    if isinstance(problem, OSError) and problem.filename:
        return f"{problem.filename}: {(problem.strerror or str(problem)).lower()}"
    return f"{type(problem).__name__}: {problem}"


class _Network(ClientNetwork):
    """The library's network, trusting `ca` (a PEM bundle) for the CA's HTTPS if given."""

    def __init__(self, key: JWK, ca: Path | None) -> None:
        super().__init__(key, alg=ES256, user_agent=f"devicecloud/{__version__}",
                         timeout=NETWORK_SECONDS)
        if ca is not None:
            self.verify_ssl = str(ca)  # type: ignore[assignment]  # requests' verify: a path


class Renewal:
    """Keeps `cert.pem` and `key.pem` in `settings.tls_dir` good for every `acme_domain`."""

    def __init__(self, settings: Settings, certificates: Reloadable,
                 backoff: Backoff = Backoff()) -> None:
        self.folder = settings.tls_dir
        self.domains = list(settings.acme_domain)
        self.email = settings.acme_email
        self.directory = settings.acme_directory
        self.ca = settings.acme_ca
        if self.ca is not None and not self.ca.is_file():
            raise StartupError(f"--acme-ca (or DEVICECLOUD_ACME_CA) {self.ca} is not a file; "
                               "give the PEM bundle of the ACME CA's HTTPS certificate")
        self.certificates = certificates
        self.backoff = backoff

    async def run(self) -> None:
        """Check now, then twice a day (sooner when renewal falls due); a failure is logged in
        one line and retried after the backoff. Only the process holding `acme.lock` runs."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with await self._hold_lock():
            failures = 0
            while True:
                try:
                    ordered, expires_at = await off_loop(self.check)
                except Exception as problem:  # whatever goes wrong, serving goes on
                    failures += 1
                    delay = self.backoff.delay(failures)
                    line = describe(problem, self.directory).replace("\n", "; ")
                    log.error("ACME: no certificate for %s: %s; retrying in %s",
                              ", ".join(self.domains), line, _duration(delay),
                              exc_info=not isinstance(problem, (errors.Error, AcmeFailure,
                                                                requests.RequestException,
                                                                OSError)))
                else:
                    failures = 0
                    if ordered and not self.certificates.reload():
                        log.warning("ACME: the new certificate is stored in %s but not in use "
                                    "(the line before says why)", self.folder)
                    delay = next_check(expires_at, time.time())
                    log.info("ACME: the certificate for %s is %s, good until %s; next check in %s",
                             ", ".join(self.domains), "new" if ordered else "kept",
                             _date(expires_at), _duration(delay))
                await asyncio.sleep(delay)

    async def _hold_lock(self) -> IO[str]:
        """`acme.lock`, held; waits while another process holds it."""
        told = False
        while True:
            lock = open(self.folder / "acme.lock", "a+")  # noqa: SIM115 - held by the caller
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                if not told:
                    log.info("ACME: another process of this server renews the certificate")
                    told = True
                await asyncio.sleep(LOCK_RETRY)
            else:
                return lock

    def check(self) -> tuple[bool, float]:
        """Order a certificate if one is needed (blocking); whether it did, and the expiry."""
        reason = reason_to_order(self.folder, self.domains, time.time())
        if reason is not None:
            log.info("ACME: ordering a certificate for %s from %s: %s",
                     ", ".join(self.domains), self.directory, reason)
            self.order()
        return reason is not None, expiry_of(self.folder / "cert.pem")

    def order(self) -> None:
        """Order, answer HTTP-01 for every name, finalise with a new key and store the result."""
        network = _Network(JWKEC(key=self._account_key()), self.ca)
        try:
            self._order(network)
        finally:
            network.session.close()

    def _order(self, network: ClientNetwork) -> None:
        client = ClientV2(ClientV2.get_directory(self.directory, network), network)
        try:
            client.new_account(messages.NewRegistration.from_data(
                email=self.email, terms_of_service_agreed=True))
        except errors.ConflictError as existing:  # this key's account: use it
            network.account = messages.RegistrationResource(uri=existing.location,
                                                            body=messages.Registration())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        order = client.new_order(crypto_util.make_csr(key_pem, self.domains))
        with self._answering(client, network, order):
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_SECONDS)
            order = client.poll_and_finalize(order, deadline)
        write_atomically(self.folder / "key.pem", key_pem, 0o600)
        write_atomically(self.folder / "cert.pem", order.fullchain_pem.encode())
        sync_folder(self.folder)

    @contextlib.contextmanager
    def _answering(self, client: ClientV2, network: ClientNetwork,
                   order: messages.OrderResource) -> Iterator[None]:
        """Publish the key authorization of each pending authorization's HTTP-01 challenge and
        tell the CA to validate; the files are removed when the block ends."""
        folder = self.folder / "challenges"
        folder.mkdir(mode=0o755, exist_ok=True)
        published: list[Path] = []
        try:
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue
                offered = [challenge for challenge in authorization.body.challenges
                           if isinstance(challenge.chall, challenges.HTTP01)]
                if not offered:
                    raise AcmeFailure(f"the CA offers no HTTP-01 challenge for "
                                      f"{authorization.body.identifier.value}")
                response, validation = offered[0].response_and_validation(network.key)
                path = challenge_path(self.folder, offered[0].chall.encode("token"))
                if path is None:
                    raise AcmeFailure("the CA sent a challenge token that is not base64url")
                write_atomically(path, validation.encode())
                published.append(path)
                client.answer_challenge(offered[0], response)
            yield
        finally:
            for path in published:
                path.unlink(missing_ok=True)

    def _account_key(self) -> ec.EllipticCurvePrivateKey:
        """The account's key: read, or made once (P-256, mode 0600)."""
        path = self.folder / "account.key"
        if not path.exists():
            made = ec.generate_private_key(ec.SECP256R1())
            with contextlib.suppress(FileExistsError):
                write_atomically(path, made.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption()), 0o600)
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AcmeFailure(f"{path} is not an EC key; move it away to have a new one made")
        return key


async def off_loop(call: Callable[[], T]) -> T:
    """`call()` on a daemon thread of its own: a stop of the server does not wait for an order
    that hangs on the CA (the files it writes are renamed into place whole, or not at all)."""
    loop = asyncio.get_running_loop()
    settled: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, problem: BaseException | None) -> None:
        if settled.done():  # cancelled meanwhile
            return
        if problem is not None:
            settled.set_exception(problem)
        else:
            settled.set_result(cast(T, result))

    def run() -> None:
        try:
            result, problem = call(), None
        except Exception as failure:
            result, problem = None, failure
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, problem)

    threading.Thread(target=run, name="acme", daemon=True).start()
    return await settled


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"


def _date(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
