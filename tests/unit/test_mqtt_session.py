"""The sans-I/O MQTT session, both roles, without sockets: bytes in, events out, time passed in."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devicecloud.protocols import mqtt
from devicecloud.protocols.mqtt import Connack, Connect, Pingreq, Pingresp, Puback, Publish, Pubrec
from devicecloud.protocols.mqtt_session import Close, Event, MqttSession, Send, State

T0 = 1000.0


def wire(*packets: mqtt.Packet) -> bytes:
    return b"".join(mqtt.encode(packet) for packet in packets)


def server(keepalive: int = 60) -> MqttSession:
    """A server session whose CONNECT is accepted."""
    session = MqttSession("server", T0)
    assert session.receive(wire(Connect(client_id="c", keepalive=keepalive)), T0) == [
        Connect(client_id="c", keepalive=keepalive)]
    connack, held = session.accept()
    assert connack == mqtt.encode(Connack(False, 0)) and held == ()
    return session


def client(keepalive: int = 60) -> MqttSession:
    """A client session whose CONNECT is accepted."""
    session = MqttSession("client", T0)
    assert session.connect(Connect(client_id="c", keepalive=keepalive)) == wire(
        Connect(client_id="c", keepalive=keepalive))
    assert session.receive(wire(Connack(False, 0)), T0) == [Connack(False, 0)]
    return session


def closed(events: Sequence[Event], reason: str) -> bool:
    return isinstance(events[-1], Close) and reason in events[-1].reason


# CONNECT first ---------------------------------------------------------------------------------

@pytest.mark.parametrize("first", [Pingreq(), Publish("t", b"x"), mqtt.Subscribe(1, [("t", 0)])])
def test_a_server_wants_connect_first(first: mqtt.Packet) -> None:
    session = MqttSession("server", T0)
    events = session.receive(wire(first, Connect(client_id="c")), T0)
    assert len(events) == 1 and closed(events, "first packet must be CONNECT")
    assert session.state is State.CLOSED
    assert session.receive(wire(Pingreq()), T0) == ()


def test_a_second_connect_is_a_violation() -> None:
    session = server()
    events = session.receive(wire(Pingreq(), Connect(client_id="c"), Pingreq()), T0)
    assert events[0] == Send(mqtt.encode(Pingresp()))
    assert len(events) == 2 and closed(events, "second CONNECT")


def test_packets_wait_while_the_connect_is_checked() -> None:
    session = MqttSession("server", T0)
    events = session.receive(wire(Connect(client_id="c"), Publish("t", b"1"), Pingreq()), T0)
    assert events == [Connect(client_id="c")] and session.state is State.CHECKING
    assert session.receive(wire(Publish("t", b"2")), T0 + 1) == []
    _, held = session.accept()
    assert held == [Publish("t", b"1"), Send(mqtt.encode(Pingresp())), Publish("t", b"2")]


def test_a_refused_connect_ends_the_session() -> None:
    session = MqttSession("server", T0)
    session.receive(wire(Connect(client_id="c"), Publish("t", b"1")), T0)
    assert session.refuse(5) == mqtt.encode(Connack(False, 5))
    assert session.state is State.CLOSED and session.next_deadline() is None


def test_a_bad_connect_is_answered_with_its_connack_code() -> None:
    session = MqttSession("server", T0)
    events = session.receive(wire(Connect(protocol_level=5, client_id="c")), T0)
    assert events[0] == Send(mqtt.encode(Connack(False, 1)))
    assert closed(events, "malformed packet: unsupported protocol")


def test_malformed_bytes_close_after_the_packets_before_them() -> None:
    session = server()
    events = session.receive(wire(Pingreq()) + b"\xf0\x00", T0)
    assert events[0] == Send(mqtt.encode(Pingresp()))
    assert len(events) == 2 and closed(events, "reserved packet type 15")


def test_nothing_follows_disconnect() -> None:
    session = server()
    assert session.receive(wire(mqtt.Disconnect(), Pingreq()), T0) == [mqtt.Disconnect()]
    assert session.state is State.CLOSED


def test_a_client_wants_one_connack_first() -> None:
    session = MqttSession("client", T0)
    assert closed(session.receive(wire(Pingresp()), T0), "first packet must be CONNACK")
    assert closed(client().receive(wire(Connack(False, 0)), T0), "second CONNACK")
    refused = MqttSession("client", T0)
    assert refused.receive(wire(Connack(False, 4)), T0) == [Connack(False, 4)]
    assert refused.state is State.CLOSED


# Keepalive ------------------------------------------------------------------------------------

def test_the_connect_is_due_within_the_connect_timeout() -> None:
    session = MqttSession("server", T0, connect_timeout=10)
    assert session.next_deadline() == T0 + 10
    assert session.timeout(T0 + 9.9) == ()
    assert closed(session.timeout(T0 + 10), "no CONNECT within 10 s")
    checking = MqttSession("server", T0)
    checking.receive(wire(Connect(client_id="c")), T0 + 1)
    assert checking.next_deadline() == T0 + 10


def test_a_server_keepalive_expires_at_one_and_a_half_times() -> None:
    session = server(keepalive=2)
    assert session.next_deadline() == T0 + 3
    session.receive(wire(Pingreq()), T0 + 2.5)
    assert session.next_deadline() == T0 + 5.5
    assert session.timeout(T0 + 5.4) == ()
    assert closed(session.timeout(T0 + 5.5), "keepalive expired")
    assert server(keepalive=0).next_deadline() is None


def test_a_client_pings_every_three_quarters_of_its_keepalive() -> None:
    session = client(keepalive=20)
    assert session.next_deadline() == T0 + 15
    assert session.timeout(T0 + 14) == ()
    assert session.timeout(T0 + 15.5) == (Send(mqtt.encode(Pingreq())),)
    assert session.next_deadline() == T0 + 30.5
    assert session.receive(wire(Pingresp()), T0 + 31) == [Pingresp()]


# QoS, received ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [server, client])
def test_qos0_messages_come_out_as_they_are(make: Callable[[], MqttSession]) -> None:
    session = make()
    messages = [Publish("t", bytes([i])) for i in range(3)]
    assert session.receive(wire(*messages), T0) == messages


@pytest.mark.parametrize("make", [server, client])
def test_qos1_is_acknowledged_when_the_application_says_so(make: Callable[[], MqttSession]) -> None:
    session = make()
    message = Publish("t", b"x", 1, packet_id=7)
    assert session.receive(wire(message), T0) == [message]
    assert session.receive(wire(Publish("t", b"x", 1, dup=True, packet_id=7)), T0) == [
        Publish("t", b"x", 1, dup=True, packet_id=7)]  # at least once: a resend comes again
    assert session.acknowledge(message) == mqtt.encode(Puback(7))


@pytest.mark.parametrize("make", [server, client])
def test_qos2_is_delivered_once_until_its_pubrel(make: Callable[[], MqttSession]) -> None:
    session = make()
    message = Publish("t", b"x", 2, packet_id=9)
    resent = Publish("t", b"x", 2, dup=True, packet_id=9)
    assert session.receive(wire(message), T0) == [message]
    assert session.receive(wire(resent), T0) == []  # its PUBREC is not out yet: it will be
    assert session.acknowledge(message) == mqtt.encode(Pubrec(9))
    assert session.receive(wire(resent), T0) == [Send(mqtt.encode(Pubrec(9)))]
    assert session.receive(wire(mqtt.Pubrel(9)), T0) == [Send(mqtt.encode(mqtt.Pubcomp(9)))]
    assert session.receive(wire(message), T0) == [message]  # a new message with the same id


# QoS, sent -------------------------------------------------------------------------------------

def test_qos1_sent_is_settled_by_its_puback() -> None:
    session = client()
    data = session.publish("t", b"x", 1)
    assert data == mqtt.encode(Publish("t", b"x", 1, packet_id=1))
    assert session.receive(wire(Puback(1)), T0) == [Puback(1)]
    assert session.receive(wire(Puback(1)), T0) == [Puback(1)]  # a stray one passes on
    assert session.publish("t", b"y", 1, packet_id=1) == mqtt.encode(
        Publish("t", b"y", 1, packet_id=1))  # settled: the id is free again


def test_qos2_sent_goes_through_pubrec_pubrel_pubcomp() -> None:
    session = client()
    session.publish("t", b"x", 2, packet_id=5)
    assert session.receive(wire(Pubrec(5)), T0) == [Send(mqtt.encode(mqtt.Pubrel(5)))]
    assert session.receive(wire(Pubrec(5)), T0) == [Send(mqtt.encode(mqtt.Pubrel(5)))]  # again
    assert session.receive(wire(mqtt.Pubcomp(5)), T0) == [mqtt.Pubcomp(5)]
    assert session.receive(wire(Pubrec(5)), T0) == [Pubrec(5)]  # unknown now: passes on
    session.publish("t", b"x", 1, packet_id=6)
    with pytest.raises(ValueError, match="in use"):
        session.publish("t", b"x", 2, packet_id=6)


def test_subscribe_is_settled_by_its_suback() -> None:
    session = client()
    packet_id, data = session.subscribe([("a/+", 1)])
    assert data == mqtt.encode(mqtt.Subscribe(packet_id, [("a/+", 1)]))
    assert session.receive(wire(mqtt.Suback(packet_id, [1])), T0) == [mqtt.Suback(packet_id, [1])]


def test_packet_ids_wrap_and_skip_those_in_use() -> None:
    session = client()
    first = session.publish("t", b"", 1)
    assert first == mqtt.encode(Publish("t", b"", 1, packet_id=1))
    for packet_id in range(2, 65536):
        session.publish("t", b"", 1)
        if packet_id != 2:
            session.receive(wire(Puback(packet_id)), T0)
    assert session.publish("t", b"", 1) == mqtt.encode(Publish("t", b"", 1, packet_id=3))
    session.receive(wire(Puback(3)), T0)
    for _ in range(65533):
        session.publish("t", b"", 1)
    with pytest.raises(RuntimeError, match="every packet id"):
        session.publish("t", b"", 1)


@given(st.lists(st.tuples(st.integers(1, 65535), st.sampled_from([0, 1, 2])), max_size=40))
def test_every_qos2_id_is_delivered_once_per_release(sends: list[tuple[int, int]]) -> None:
    session = server()
    delivered: dict[int, int] = {}
    for packet_id, step in sends:
        if step == 2:
            session.receive(wire(mqtt.Pubrel(packet_id)), T0)
            delivered.pop(packet_id, None)
            continue
        message = Publish("t", b"", 2, dup=bool(step), packet_id=packet_id)
        for event in session.receive(wire(message), T0):
            if isinstance(event, Publish):
                delivered[packet_id] = delivered.get(packet_id, 0) + 1
                session.acknowledge(event)
    assert all(count == 1 for count in delivered.values())
