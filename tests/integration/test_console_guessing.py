"""Guessing and lock-out in the console: the throttle's counting (in memory and in Redis), log-in
limits that an attacker cannot impose on the owner, X-Forwarded-For believed only from configured
proxies, pairing-code limits per account, address and service, counts shared by three processes,
and sessions ended everywhere by a password change or "log out everywhere"."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from starlette.requests import Request
from support.clients import WsDevice
from support.console_client import PASSWORD, ConsoleUser
from support.server import CLUSTER_POSTGRES, Server, postgres_database, postgres_problem
from support.services import PrivateRedis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devicecloud.web.console.pages import client_address
from devicecloud.web.console.state import (
    LOGINS_PER_ADDRESS,
    LOGINS_PER_EMAIL,
    PAIRINGS_EVERYWHERE,
    PAIRINGS_PER_ACCOUNT,
    PAIRINGS_PER_ADDRESS,
)
from devicecloud.web.console.throttle import Rule, Throttle, in_words

ADMIN_URL = CLUSTER_POSTGRES
LOCKED = re.compile(r"Too many failed log-ins\. Try again in \d+ minutes?\.")



needs_postgres = pytest.mark.skipif(bool(postgres_problem()), reason=postgres_problem() or "-")


def visitor(server: Server, address: str = "127.0.0.1") -> ConsoleUser:
    """A browser on `address` (any 127.x.y.z reaches the server over loopback)."""
    user = ConsoleUser(server)
    user.http = httpx.Client(base_url=server.url,
                             transport=httpx.HTTPTransport(local_address=address))
    user.get("/console/login")
    return user


def owner(server: Server) -> ConsoleUser:
    """An account, logged out, on 127.0.0.1; this browser has logged in to it once."""
    user = ConsoleUser.sign_up(server)
    user.post("/console/logout")
    user.get("/console/login")
    assert user.post("/console/login", email=user.email, password=PASSWORD).status_code == 303
    user.get("/console/devices")
    user.post("/console/logout")
    user.get("/console/login")
    return user


def log_in(user: ConsoleUser, email: str, password: str = PASSWORD,
           **headers: str) -> httpx.Response:
    return user.http.post("/console/login", data={"csrf": user.csrf, "email": email,
                                                  "password": password}, headers=headers)


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("guessing") / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()
    assert "Traceback" not in instance.log()


# The throttle itself ------------------------------------------------------------------------------

async def _counts_in_a_sliding_window(throttle: Throttle, now: list[float]) -> None:
    rule, other = Rule("test:a", 3, 60), Rule("test:b", 100, 60)
    start = now[0]
    for _ in range(3):
        assert (await throttle.attempt((rule, "k"), (other, "k"))).wait == 0
        now[0] += 10
    refused = await throttle.attempt((rule, "k"), (other, "k"))
    assert refused.wait == 30  # the oldest of the three leaves the window at 60
    assert (await throttle.attempt((rule, "elsewhere"))).wait == 0
    now[0] = start + 60.5
    allowed = await throttle.attempt((rule, "k"))  # refused attempts did not count
    assert allowed.wait == 0  # with the two of 10 and 20 seconds: three
    assert (await throttle.attempt((rule, "k"))).wait == 10  # until the one of 10 is 60 old
    await allowed.forgive()  # one fewer
    assert (await throttle.attempt((rule, "k"))).wait == 0
    await allowed.clear((rule, "k"))
    for _ in range(3):
        assert (await throttle.attempt((rule, "k"))).wait == 0


async def test_the_throttle_in_memory() -> None:
    now = [1000.0]
    await _counts_in_a_sliding_window(Throttle(clock=lambda: now[0]), now)
    assert in_words(1) == "1 second" and in_words(59) == "59 seconds"
    assert in_words(60) == "1 minute" and in_words(61) == "2 minutes"


async def test_the_throttle_in_redis_and_without_it(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    now = [1000.0]
    throttle = Throttle(Redis.from_url(redis.url), clock=lambda: now[0])
    try:
        await _counts_in_a_sliding_window(throttle, now)
        other = Throttle(Redis.from_url(redis.url), clock=lambda: now[0])  # another process
        assert (await other.attempt((Rule("test:a", 3, 60), "k"))).wait > 0
        assert not throttle.local._keys  # nothing was counted in memory
        await other.close()
        redis.stop()
        rule = Rule("test:down", 2, 60)
        for _ in range(2):
            assert (await throttle.attempt((rule, "k"))).wait == 0
        assert (await throttle.attempt((rule, "k"))).wait > 0  # counted here meanwhile
        unreachable = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(unreachable) == 1
    finally:
        await throttle.close()
        if redis.process is not None and redis.process.poll() is None:
            redis.stop()


@pytest.mark.parametrize(("peer", "counted"), [
    ("203.0.113.9", "203.0.113.9"), ("::ffff:203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
    ("testclient", "testclient")])
def test_an_ipv6_client_is_counted_by_its_64(peer: str, counted: str) -> None:
    request = Request({"type": "http", "client": (peer, 50000), "headers": []})
    assert client_address(request) == counted


# Log-ins ------------------------------------------------------------------------------------------

def test_an_attacker_elsewhere_does_not_lock_the_owner_out(alone: Server) -> None:
    ada = owner(alone)
    attacker = visitor(alone, "127.0.0.2")
    for _ in range(5):
        assert log_in(attacker, ada.email, "not the password").status_code == 401
    locked = log_in(attacker, ada.email, PASSWORD)
    assert locked.status_code == 429 and LOCKED.search(locked.text)
    assert log_in(ada, ada.email).status_code == 303  # her own address still works
    newcomer = visitor(alone, "127.0.0.3")  # and so does any other
    assert log_in(newcomer, ada.email).status_code == 303


def test_one_address_has_twenty_failures_for_all_emails(alone: Server) -> None:
    address = visitor(alone, "127.0.0.4")
    for n in range(LOGINS_PER_ADDRESS.limit):
        assert log_in(address, f"nobody{n}@example.com", "wrong").status_code == 401
    bea = ConsoleUser.sign_up(alone)
    assert log_in(address, bea.email).status_code == 429


async def test_parallel_guesses_count_before_they_are_checked(alone: Server) -> None:
    cid = owner(alone)
    attacker = visitor(alone, "127.0.0.5")
    async with httpx.AsyncClient(base_url=alone.url, cookies=attacker.http.cookies,
                                 transport=httpx.AsyncHTTPTransport(
                                     local_address="127.0.0.5")) as http:
        replies = await asyncio.gather(*(http.post("/console/login", data={
            "csrf": attacker.csrf, "email": cid.email, "password": "wrong"})
            for _ in range(15)))
    codes = sorted(reply.status_code for reply in replies)
    assert codes == [401] * 5 + [429] * 10
    metrics = httpx.get(f"{alone.url}/metrics").text
    counted = re.search(r'devicecloud_rate_limited_total\{limit="ip.logins"\} (\S+)', metrics)
    assert counted is not None and float(counted.group(1)) >= 10  # every refusal, by its limit


def test_forwarded_for_is_ignored_by_default(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        spoofer = visitor(server)  # 127.0.0.1, which uvicorn believes by default
        for n in range(LOGINS_PER_ADDRESS.limit):
            reply = log_in(spoofer, f"nobody{n}@example.com", "wrong",
                           **{"X-Forwarded-For": f"198.51.100.{n}"})
            assert reply.status_code == 401
        # all counted under the real address: a new forwarded-for address changes nothing
        fresh = ConsoleUser.sign_up(server)
        assert log_in(spoofer, fresh.email, **{"X-Forwarded-For": "198.51.100.99"}
                      ).status_code == 429
    finally:
        assert server.stop() == 0, server.log()


def test_forwarded_for_is_believed_from_a_configured_proxy(tmp_path: Path) -> None:
    proxied = Server(tmp_path / "data", extra_args=("--trusted-proxies", "127.0.0.7")).start()
    try:
        eve = ConsoleUser.sign_up(proxied)
        proxy = visitor(proxied, "127.0.0.7")
        for _ in range(5):
            assert log_in(proxy, eve.email, "wrong",
                          **{"X-Forwarded-For": "198.51.100.1"}).status_code == 401
        assert log_in(proxy, eve.email, **{"X-Forwarded-For": "198.51.100.1"}).status_code == 429
        assert log_in(proxy, eve.email, **{"X-Forwarded-For": "198.51.100.2"}).status_code == 303
        untrusted = visitor(proxied, "127.0.0.8")  # not the proxy: its header means nothing
        for _ in range(5):
            log_in(untrusted, eve.email, "wrong", **{"X-Forwarded-For": "198.51.100.3"})
        assert log_in(untrusted, eve.email, **{"X-Forwarded-For": "198.51.100.4"}
                      ).status_code == 429
    finally:
        assert proxied.stop() == 0, proxied.log()


def test_many_addresses_share_one_cap_per_email_but_not_her_own_browser(alone: Server) -> None:
    fay = owner(alone)
    guesses = 0
    for a in range(LOGINS_PER_EMAIL.limit // 4):  # four guesses from each of 25 addresses
        attacker = visitor(alone, f"127.0.1.{a + 1}")
        for _ in range(4):
            assert log_in(attacker, fay.email, "wrong").status_code == 401
            guesses += 1
    assert guesses == LOGINS_PER_EMAIL.limit
    assert log_in(visitor(alone, "127.0.2.1"), fay.email).status_code == 429
    assert log_in(fay, fay.email).status_code == 303  # she logged in from this browser before


# Pairing codes ------------------------------------------------------------------------------------

def _pair(user: ConsoleUser, code: str) -> str:
    return user.flash(user.post("/console/devices/pair", code=code))


def _signed_up_at(server: Server, address: str) -> ConsoleUser:
    user = visitor(server, address)
    user.get("/console/signup")
    user.email = f"{address.replace('.', '-')}-{id(user)}@example.com"
    assert user.post("/console/signup", email=user.email, password=PASSWORD).status_code == 303
    user.get("/console/devices")
    return user


def test_wrong_pairing_codes_are_limited_per_address(alone: Server) -> None:
    first, second = _signed_up_at(alone, "127.0.3.1"), _signed_up_at(alone, "127.0.3.1")
    for user in (first, second):
        for _ in range(PAIRINGS_PER_ACCOUNT.limit):
            assert "unknown, used or expired" in _pair(user, "0000-0000")
    third = _signed_up_at(alone, "127.0.3.1")
    assert PAIRINGS_PER_ADDRESS.limit == 2 * PAIRINGS_PER_ACCOUNT.limit
    assert "Too many wrong pairing codes" in _pair(third, "0000-0001")
    assert "letters and digits" in _pair(third, "12ab")  # not a guess: not counted, no wait


async def test_many_accounts_on_many_addresses_share_one_cap(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        per_address = PAIRINGS_PER_ADDRESS.limit // PAIRINGS_PER_ACCOUNT.limit
        addresses = PAIRINGS_EVERYWHERE.limit // PAIRINGS_PER_ADDRESS.limit
        for a in range(addresses):
            for _ in range(per_address):
                user = _signed_up_at(server, f"127.0.4.{a + 1}")
                for _ in range(PAIRINGS_PER_ACCOUNT.limit):
                    assert "unknown, used or expired" in _pair(user, "0000-0000")
        late = _signed_up_at(server, "127.0.5.1")
        assert "Too many wrong pairing codes" in _pair(late, "0000-0002")
        # every guess was counted; a right code is refused too while the cap holds
        device = await WsDevice.connect(server.ws_url, server.register())
        code = (await device.request(112))["body"]["pairCode"]
        await device.close()
        assert "Too many wrong pairing codes" in _pair(late, code)
    finally:
        assert server.stop() == 0, server.log()


# Three processes, one PostgreSQL, one Redis ---------------------------------------------------

@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivateRedis, list[Server]]]:
    folder = tmp_path_factory.mktemp("trio")
    redis = PrivateRedis(folder)
    redis.start()
    url = postgres_database(folder / "data", ADMIN_URL)
    processes = [Server(folder / "data", extra_args=("--bus-url", redis.url),
                        env={"DEVICECLOUD_DATABASE_URL": url}).start() for _ in range(3)]
    yield redis, processes
    for process in processes:
        assert process.stop() == 0, process.log()
        assert "Traceback" not in process.log()
    if redis.process is not None and redis.process.poll() is None:
        redis.stop()


def _on(user: ConsoleUser, server: Server) -> ConsoleUser:
    """The same browser (its cookies), talking to another process."""
    other = ConsoleUser(server)
    other.http.cookies.update(user.http.cookies)
    other.email, other.csrf = user.email, user.csrf  # the CSRF token lives in the cookie
    return other


@needs_postgres
def test_five_failures_over_three_processes_lock_out_on_all(
        trio: tuple[PrivateRedis, list[Server]]) -> None:
    _, (a, b, c) = trio
    gil = ConsoleUser.sign_up(a)
    attacker = visitor(a, "127.0.6.1")
    browsers = [_on(attacker, server) for server in (a, b, c)]
    for browser in (browsers[0], browsers[1], browsers[2], browsers[0], browsers[1]):
        assert log_in(browser, gil.email, "wrong").status_code == 401
    for browser in browsers:
        assert log_in(browser, gil.email).status_code == 429


@needs_postgres
def test_pairing_guesses_count_over_processes(trio: tuple[PrivateRedis, list[Server]]) -> None:
    _, servers = trio
    hal = ConsoleUser.sign_up(servers[0])
    on = [_on(hal, server) for server in servers]
    for n in range(PAIRINGS_PER_ACCOUNT.limit):
        assert "unknown, used or expired" in _pair(on[n % 3], "0000-0000")
    for user in on:
        assert "Too many wrong pairing codes" in _pair(user, "0000-0003")


@needs_postgres
async def test_log_out_everywhere_and_a_new_password_end_sessions_on_every_process(
        trio: tuple[PrivateRedis, list[Server]]) -> None:
    _, (a, b, _) = trio
    ivy = ConsoleUser.sign_up(a)
    token = a.register()
    ivy.bind(token)
    phone = ConsoleUser(b)  # a second browser, on the other process
    phone.get("/console/login")
    assert log_in(phone, ivy.email).status_code == 303
    assert phone.get("/console/devices").status_code == 200
    ivy.get("/console/account")
    changed = ivy.post("/console/account/password", password="wrong", new_password="n3w secret!",
                       new_password_again="n3w secret!")
    assert ivy.flash(changed) == "The current password is wrong."
    changed = ivy.post("/console/account/password", password=PASSWORD,
                       new_password="n3w secret!", new_password_again="n3w secret!")
    assert ivy.flash(changed) == "Password changed; every other session is logged out."
    assert ivy.get("/console/devices").status_code == 200  # this one goes on
    ended = phone.get("/console/devices", follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"].startswith("/console/login")
    phone.get("/console/login")
    assert log_in(phone, ivy.email).status_code == 401
    assert log_in(phone, ivy.email, "n3w secret!").status_code == 303
    # log out everywhere, from the phone on b: the browser on a is out, its live feed too
    phone.get("/console/account")
    assert phone.flash(phone.post("/console/account/logout-everywhere")) == \
        "You are logged out everywhere."
    with pytest.raises(InvalidStatus):
        await connect(f"ws://127.0.0.1:{a.http_port}/console/live/{token}",
                      additional_headers={"Cookie": ivy.cookie_header()}, origin=a.url)
    assert ivy.get("/console/devices", follow_redirects=False).status_code == 303


@needs_postgres
def test_redis_unreachable_counts_locally_and_says_so_once(
        trio: tuple[PrivateRedis, list[Server]]) -> None:
    redis, (a, _, _) = trio
    jo = ConsoleUser.sign_up(a)
    redis.stop()
    browser = visitor(a, "127.0.7.1")
    for _ in range(5):
        assert log_in(browser, jo.email, "wrong").status_code == 401
    assert log_in(browser, jo.email).status_code == 429
    assert a.log().count("log-ins and pairing codes are counted in this process only") == 1
