"""ACME's schedule and its reading of the stored certificate: when to look again, how long to
wait after failures, which stored certificate is good, which challenge tokens are read."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import trustme

from devicecloud.acme import (
    CHECK_EVERY,
    RENEW_BEFORE,
    Backoff,
    challenge_path,
    next_check,
    reason_to_order,
)

DAY = 86400.0


def test_checks_twice_a_day_and_when_renewal_falls_due() -> None:
    now = 1_000_000.0
    assert next_check(now + 90 * DAY, now) == CHECK_EVERY
    assert next_check(now + RENEW_BEFORE + 3600, now) == 3600  # due within the 12 hours
    assert next_check(now + 10 * DAY, now) == 0  # already due


def test_backoff_doubles_from_a_minute_to_an_hour() -> None:
    delays = [Backoff().delay(failures) for failures in range(1, 9)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def _store(folder: Path, *names: str, days: float) -> None:
    not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
    leaf = trustme.CA().issue_cert(*names, not_after=not_after)
    leaf.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(folder / "key.pem"))


def test_a_stored_certificate_is_kept_while_it_covers_the_names_for_30_days(
        tmp_path: Path) -> None:
    now = time.time()
    assert reason_to_order(tmp_path, ["a.test"], now) == "no certificate yet"
    _store(tmp_path, "a.test", "b.test", days=60)
    assert reason_to_order(tmp_path, ["a.test", "B.test"], now) is None
    assert reason_to_order(tmp_path, ["a.test", "c.test"], now) == \
        "the certificate does not cover c.test"
    _store(tmp_path, "a.test", days=10)
    assert reason_to_order(tmp_path, ["a.test"], now) == "the certificate expires in 10.0 days"


def test_a_key_that_is_not_the_certificates_is_ordered_anew(tmp_path: Path) -> None:
    _store(tmp_path, "a.test", days=60)
    other = tmp_path / "other"
    other.mkdir()
    _store(other, "a.test", days=60)
    (tmp_path / "key.pem").write_bytes((other / "key.pem").read_bytes())
    assert reason_to_order(tmp_path, ["a.test"], time.time()) == \
        "the stored key is not the certificate's"
    (tmp_path / "cert.pem").write_text("not PEM")
    assert "cannot be read" in str(reason_to_order(tmp_path, ["a.test"], time.time()))


def test_only_base64url_tokens_name_a_file(tmp_path: Path) -> None:
    assert challenge_path(tmp_path, "aB3_-x") == tmp_path / "challenges" / "aB3_-x"
    for bad in ("", "..", "a.b", "a/b", "a b", "é", "x" * 257, "a\n"):
        assert challenge_path(tmp_path, bad) is None, bad
