"""The ordering rule and push pacing, driven without sockets."""

from __future__ import annotations

import asyncio

from devicecloud.gateways.outbox import Outbox, Payload


def make(pace: float | None) -> tuple[Outbox, list[Payload]]:
    sent: list[Payload] = []
    return Outbox(sent.append, pace), sent


async def test_answers_keep_request_order() -> None:
    outbox, sent = make(None)
    first, second = outbox.expect(), outbox.expect()
    outbox.answer(second, "2")
    assert sent == []
    outbox.answer(first, "1")
    assert sent == ["1", "2"]


async def test_pushes_wait_for_pending_answers_and_coalesce() -> None:
    outbox, sent = make(None)
    slot = outbox.expect()
    outbox.push("a", "a=1")
    outbox.push("b", "b=1")
    outbox.push("a", "a=2")
    assert sent == []
    outbox.answer(slot, "answer")
    assert sent == ["answer", "b=1", "a=2"]


async def test_pacing_holds_pushes_until_a_request_is_answered() -> None:
    outbox, sent = make(2.0)
    outbox.push("a", "a")
    outbox.push("b", "b1")
    outbox.push("b", "b2")
    assert sent == ["a"]
    outbox.answer(outbox.expect(False), "pong")  # a heartbeat does not release pacing
    assert sent == ["a", "pong"]
    outbox.answer(outbox.expect(True), "list")
    assert sent == ["a", "pong", "list", "b2"]
    outbox.close()


async def test_pacing_gives_up_after_its_timeout() -> None:
    outbox, sent = make(0.05)
    outbox.push("a", "a")
    outbox.push("b", "b")
    await asyncio.sleep(0.1)
    assert sent == ["a", "b"]
    outbox.close()


async def test_held_pushes_coalesce_until_released_and_answers_still_go_out() -> None:
    outbox, sent = make(None)
    outbox.hold()
    outbox.push("a", "a=1")
    outbox.push("a", "a=2")
    outbox.answer(outbox.expect(), "answer")
    assert sent == ["answer"]
    outbox.release()
    assert sent == ["answer", "a=2"]
