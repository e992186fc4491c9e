"""The sans-I/O MQTT 3.1.1 codec: round trips, framing limits, malformed input, topic matching."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devicecloud.protocols.mqtt import (
    DEFAULT_MAX_PACKET_SIZE,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    IdentifierRejected,
    MalformedPacket,
    Packet,
    Parser,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Role,
    Suback,
    Subscribe,
    UnacceptableProtocol,
    Unsuback,
    Unsubscribe,
    Will,
    decode_remaining_length,
    encode,
    encode_remaining_length,
    publish_frame,
    publish_topic,
    require_connect,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

# ---------------------------------------------------------------------------------------------
# Strategies

_text_chars = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
_level_chars = st.characters(exclude_characters="\x00/+#", exclude_categories=["Cs"])

texts = st.text(_text_chars, max_size=30)
packet_ids = st.integers(1, 0xFFFF)
qoses = st.integers(0, 2)
payloads = st.binary(max_size=600)
topic_names = st.text(
    st.characters(exclude_characters="\x00+#", exclude_categories=["Cs"]), min_size=1, max_size=40
)
_levels = st.lists(
    st.one_of(st.just("+"), st.text(_level_chars, max_size=8)), min_size=1, max_size=5
)
topic_filters = st.builds(
    lambda levels, hash_tail: "/".join(levels + (["#"] if hash_tail else [])),
    _levels,
    st.booleans(),
).filter(bool) | st.just("#")


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    name, level = draw(st.sampled_from([("MQTT", 4), ("MQIsdp", 3)]))
    clean = draw(st.booleans())
    client_id = draw(texts)
    if not client_id and (level == 3 or not clean):
        client_id = "c"
    username = draw(st.none() | texts)
    password = draw(st.none() | st.binary(max_size=40)) if username is not None else None
    will = draw(st.none() | st.builds(Will, topic_names, payloads, qoses, st.booleans()))
    keepalive = draw(st.integers(0, 0xFFFF))
    return Connect(name, level, client_id, clean, keepalive, username, password, will)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qoses)
    return Publish(
        draw(topic_names),
        draw(payloads),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
    )


packets: st.SearchStrategy[Packet] = st.one_of(
    connects(),
    st.builds(Connack, st.just(True), st.just(0)),
    st.builds(Connack, st.just(False), st.integers(0, 5)),
    publishes(),
    st.builds(Puback, packet_ids),
    st.builds(Pubrec, packet_ids),
    st.builds(Pubrel, packet_ids),
    st.builds(Pubcomp, packet_ids),
    st.builds(
        Subscribe, packet_ids, st.lists(st.tuples(topic_filters, qoses), min_size=1, max_size=5)
    ),
    st.builds(
        Suback,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, SUBACK_FAILURE]), min_size=1, max_size=5),
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=5)),
    st.builds(Unsuback, packet_ids),
    st.builds(Pingreq),
    st.builds(Pingresp),
    st.builds(Disconnect),
)


def feed_in_chunks(parser: Parser, data: bytes, cuts: list[int]) -> list[Packet]:
    out: list[Packet] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        out += parser.feed(data[previous:cut])
        previous = cut
    return out


# ---------------------------------------------------------------------------------------------
# Round trips


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packets, min_size=1, max_size=8), st.data())
def test_round_trip_in_random_chunks(sent: list[Packet], data: st.DataObject) -> None:
    wire = b"".join(encode(packet) for packet in sent)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    parser = Parser(role=None)
    assert feed_in_chunks(parser, wire, cuts) == sent
    assert parser.buffered == 0


@pytest.mark.parametrize(
    "packet",
    [
        Connect(
            client_id="dev-1",
            username="user",
            password=b"\x00pw",
            will=Will("status/dev-1", b"offline", 1, True),
            keepalive=30,
        ),
        Connect(client_id="", clean_session=True),
        Connack(True, 0),
        Connack(False, 5),
        Publish("a/b", b"", 0),
        Publish("a/b", b"x" * 200, 2, True, True, 65535),
        Puback(1),
        Pubrec(2),
        Pubrel(3),
        Pubcomp(4),
        Subscribe(10, [("a/+/c", 0), ("#", 1), ("+", 2)]),
        Suback(10, [0, 1, 2, SUBACK_FAILURE]),
        Unsubscribe(11, ["a/#", "b"]),
        Unsuback(11),
        Pingreq(),
        Pingresp(),
        Disconnect(),
    ],
    ids=lambda packet: type(packet).__name__,
)
def test_every_packet_type_round_trips_byte_by_byte(packet: Packet) -> None:
    wire = encode(packet)
    parser = Parser(role=None)
    out: list[Packet] = []
    for index in range(len(wire)):
        out += parser.feed(wire[index : index + 1])
    assert out == [packet]


def test_known_wire_forms() -> None:
    assert encode(Pingreq()) == b"\xc0\x00"
    assert encode(Pingresp()) == b"\xd0\x00"
    assert encode(Disconnect()) == b"\xe0\x00"
    assert encode(Connack(True, 0)) == b"\x20\x02\x01\x00"
    assert encode(Puback(0x1234)) == b"\x40\x02\x12\x34"
    assert encode(Pubrel(1)) == b"\x62\x02\x00\x01"
    assert encode(Publish("a/b", b"hi", 1, retain=True, packet_id=5)) == (
        b"\x33\x09\x00\x03a/b\x00\x05hi"
    )
    assert encode(Subscribe(1, [("a", 1)])) == b"\x82\x06\x00\x01\x00\x01a\x01"
    assert encode(Connect(client_id="c", keepalive=60)) == (
        b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"
    )


def test_sequences_are_normalised_to_tuples() -> None:
    assert Subscribe(1, [("a", 0)]) == Subscribe(1, (("a", 0),))
    assert Suback(1, [0]).return_codes == (0,)
    assert Unsubscribe(1, ["a"]).topic_filters == ("a",)
    hash(Subscribe(1, [("a", 0)]))


def test_many_packets_in_one_feed_and_large_payload_in_small_chunks() -> None:
    parser = Parser()
    burst = b"".join(
        encode(Publish("t", bytes([i % 256]), 1, packet_id=i + 1)) for i in range(5000)
    )
    out = parser.feed(burst)
    assert len(out) == 5000 and out[-1] == Publish("t", bytes([4999 % 256]), 1, packet_id=5000)

    big = Publish("big/topic", bytes(range(256)) * 1000, 1, packet_id=9)
    wire = encode(big) + encode(Pingreq())
    received: list[Packet] = []
    for index in range(0, len(wire), 1000):
        received += parser.feed(wire[index : index + 1000])
    assert received == [big, Pingreq()]
    assert parser.buffered == 0


def test_partial_packet_is_kept_across_feeds() -> None:
    parser = Parser()
    wire = encode(Puback(1)) + encode(Publish("x/y", b"data", 0))
    assert parser.feed(wire[:7]) == [Puback(1)]
    assert parser.buffered == 3
    assert parser.feed(wire[7:]) == [Publish("x/y", b"data")]
    assert parser.feed(b"") == []


# ---------------------------------------------------------------------------------------------
# Remaining length


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 1),
        (127, 1),
        (128, 2),
        (16383, 2),
        (16384, 3),
        (2097151, 3),
        (2097152, 4),
        (268435455, 4),
    ],
)
def test_remaining_length_boundaries(value: int, size: int) -> None:
    encoded = encode_remaining_length(value)
    assert len(encoded) == size
    assert decode_remaining_length(encoded) == (value, size)
    assert decode_remaining_length(b"\x00" + encoded + b"\xff", 1) == (value, size)
    assert decode_remaining_length(encoded[:-1]) is None
    if value <= 2097152:
        # A real packet with exactly that remaining length decodes, fed in uneven pieces.
        packet: Packet = Pingreq() if value == 0 else Publish("t", b"\xaa" * (value - 3))
        wire = encode(packet)
        assert wire[1 : 1 + size] == encoded
        parser = Parser(max_packet_size=value + 1 + size)
        assert feed_in_chunks(parser, wire, [1, 2, size + 1, len(wire) // 2]) == [packet]
    else:
        # Too big to build here: the header alone is accepted and waits for the body...
        parser = Parser(max_packet_size=1 + size + value)
        assert parser.feed(b"\x30" + encoded + b"\x00\x01t") == []
        # ...and refused outright under the default limit.
        with pytest.raises(MalformedPacket, match="max_packet_size"):
            Parser().feed(b"\x30" + encoded)


@pytest.mark.parametrize("value", [-1, 268435456])
def test_remaining_length_out_of_range_is_not_encodable(value: int) -> None:
    with pytest.raises(ValueError):
        encode_remaining_length(value)


def test_fifth_remaining_length_byte_is_refused() -> None:
    with pytest.raises(MalformedPacket, match="4 bytes"):
        decode_remaining_length(b"\xff\xff\xff\xff\x01")
    with pytest.raises(MalformedPacket, match="4 bytes"):
        Parser(max_packet_size=1 << 30).feed(b"\x30\xff\xff\xff\x80")


def test_max_packet_size_is_exact_and_checked_before_buffering() -> None:
    limit = 1000
    fits = encode(Publish("t", b"x" * (limit - 6)))  # 1 + 2 header bytes + 3 topic bytes
    assert len(fits) == limit
    assert Parser(max_packet_size=limit).feed(fits) == [Publish("t", b"x" * (limit - 6))]
    too_big = encode(Publish("t", b"x" * (limit - 5)))
    parser = Parser(max_packet_size=limit)
    with pytest.raises(MalformedPacket, match="exceeds max_packet_size"):
        parser.feed(too_big[:3])  # the header alone is enough to refuse it
    assert DEFAULT_MAX_PACKET_SIZE == 256 * 1024
    with pytest.raises(MalformedPacket, match="exceeds"):
        Parser().feed(encode(Publish("t", b"x" * DEFAULT_MAX_PACKET_SIZE))[:8])


# ---------------------------------------------------------------------------------------------
# Malformed input


def pkt(first: int, body: bytes) -> bytes:
    """A packet with a correct one-byte remaining length around `body`."""
    assert len(body) < 128
    return bytes((first, len(body))) + body


def s(text: bytes) -> bytes:
    """An MQTT length-prefixed string or binary field."""
    return len(text).to_bytes(2, "big") + text


def connect_raw(flags: int, payload: bytes, name: bytes = b"MQTT", level: int = 4) -> bytes:
    return pkt(0x10, s(name) + bytes((level, flags)) + b"\x00\x3c" + payload)


PID = b"\x00\x01"

MALFORMED: list[tuple[str, bytes, Role | None, str]] = [
    # fixed header
    ("type-0", b"\x00\x00", None, "reserved packet type 0"),
    ("type-15", b"\xf0\x00", None, "reserved packet type 15"),
    ("type-0-first-byte-only", b"\x00", None, "reserved packet type 0"),
    ("subscribe-flags-0", pkt(0x80, PID + s(b"a") + b"\x00"), None, "SUBSCRIBE: fixed header"),
    ("unsubscribe-flags-0", pkt(0xA0, PID + s(b"a")), None, "UNSUBSCRIBE: fixed header"),
    ("pubrel-flags-0", pkt(0x60, PID), None, "PUBREL: fixed header"),
    ("puback-flags-2", pkt(0x42, PID), None, "PUBACK: fixed header"),
    ("pubrec-flags", pkt(0x51, PID), None, "PUBREC: fixed header"),
    ("pubcomp-flags", pkt(0x72, PID), None, "PUBCOMP: fixed header"),
    ("connect-flags", b"\x12" + connect_raw(2, s(b"c"))[1:], None, "CONNECT: fixed header"),
    ("connack-flags", pkt(0x21, b"\x00\x00"), "client", "CONNACK: fixed header"),
    ("suback-flags", pkt(0x92, PID + b"\x00"), "client", "SUBACK: fixed header"),
    ("pingreq-flags", b"\xc1\x00", None, "PINGREQ: fixed header"),
    ("pingresp-flags", b"\xd4\x00", "client", "PINGRESP: fixed header"),
    ("disconnect-flags", b"\xe8\x00", None, "DISCONNECT: fixed header"),
    ("publish-qos-3", pkt(0x36, s(b"a") + PID), None, "QoS 3"),
    ("publish-dup-qos-0", pkt(0x38, s(b"a")), None, "DUP set on a QoS 0"),
    ("varint-5-bytes", b"\x30\xff\xff\xff\xff\x01", None, "longer than 4 bytes"),
    ("too-large", b"\x30\xff\xff\x7f", None, "exceeds max_packet_size"),
    # packet ids
    ("publish-packet-id-0", pkt(0x32, s(b"a") + b"\x00\x00"), None, "PUBLISH: packet id 0"),
    ("publish-missing-packet-id", pkt(0x32, s(b"a") + b"\x00"), None, "too short"),
    ("puback-packet-id-0", pkt(0x40, b"\x00\x00"), None, "PUBACK: packet id 0"),
    ("pubrec-packet-id-0", pkt(0x50, b"\x00\x00"), None, "PUBREC: packet id 0"),
    ("pubrel-packet-id-0", pkt(0x62, b"\x00\x00"), None, "PUBREL: packet id 0"),
    ("pubcomp-packet-id-0", pkt(0x70, b"\x00\x00"), None, "PUBCOMP: packet id 0"),
    ("unsuback-packet-id-0", pkt(0xB0, b"\x00\x00"), "client", "UNSUBACK: packet id 0"),
    ("suback-packet-id-0", pkt(0x90, b"\x00\x00\x00"), "client", "SUBACK: packet id 0"),
    ("subscribe-packet-id-0", pkt(0x82, b"\x00\x00" + s(b"a") + b"\x00"), None, "packet id 0"),
    ("unsubscribe-packet-id-0", pkt(0xA2, b"\x00\x00" + s(b"a")), None, "packet id 0"),
    ("subscribe-no-packet-id", pkt(0x82, b"\x00"), None, "too short"),
    # strings and topic names
    ("topic-invalid-utf8", pkt(0x30, s(b"\xff")), None, "invalid UTF-8"),
    ("topic-overlong-utf8", pkt(0x30, s(b"\xc0\xaf")), None, "invalid UTF-8"),
    ("topic-surrogate", pkt(0x30, s(b"\xed\xa0\x80")), None, "invalid UTF-8"),
    ("topic-truncated-utf8", pkt(0x30, s(b"a\xe2\x82")), None, "invalid UTF-8"),
    ("topic-nul", pkt(0x30, s(b"a\x00b")), None, "U+0000"),
    ("topic-plus", pkt(0x30, s(b"a/+")), None, "wildcard"),
    ("topic-hash", pkt(0x30, s(b"a/#")), None, "wildcard"),
    ("topic-empty", pkt(0x30, s(b"")), None, "empty topic"),
    ("topic-overruns", pkt(0x30, b"\x00\x05a"), None, "overruns"),
    ("publish-no-topic-length", pkt(0x30, b"\x00"), None, "too short"),
    ("publish-empty", pkt(0x30, b""), None, "too short"),
    # CONNECT
    ("connect-reserved-flag", connect_raw(0x03, s(b"c")), None, "reserved flag"),
    (
        "connect-password-no-username",
        connect_raw(0x42, s(b"c") + s(b"pw")),
        None,
        "password flag without username",
    ),
    ("connect-will-qos-no-will", connect_raw(0x0A, s(b"c")), None, "without the will flag"),
    ("connect-will-retain-no-will", connect_raw(0x22, s(b"c")), None, "without the will flag"),
    ("connect-will-qos-3", connect_raw(0x1E, s(b"c") + s(b"w") + s(b"m")), None, "will QoS 3"),
    (
        "connect-will-topic-wildcard",
        connect_raw(0x06, s(b"c") + s(b"w/#") + s(b"m")),
        None,
        "will topic: wildcard",
    ),
    (
        "connect-will-topic-empty",
        connect_raw(0x06, s(b"c") + s(b"") + s(b"m")),
        None,
        "will topic: empty",
    ),
    ("connect-will-payload-missing", connect_raw(0x06, s(b"c") + s(b"w")), None, "too short"),
    ("connect-trailing", connect_raw(0x02, s(b"c") + b"\x00"), None, "trailing"),
    ("connect-username-missing", connect_raw(0x82, s(b"c")), None, "CONNECT username"),
    ("connect-password-missing", connect_raw(0xC2, s(b"c") + s(b"u")), None, "CONNECT password"),
    ("connect-client-id-utf8", connect_raw(0x02, s(b"\xfe")), None, "invalid UTF-8"),
    ("connect-client-id-nul", connect_raw(0x02, s(b"\x00")), None, "U+0000"),
    (
        "connect-protocol-name-utf8",
        pkt(0x10, s(b"MQ\xffT") + b"\x04\x02\x00\x3c" + s(b"c")),
        None,
        "protocol name: invalid UTF-8",
    ),
    ("connect-no-keepalive", pkt(0x10, s(b"MQTT") + b"\x04\x02"), None, "keepalive"),
    ("connect-no-level", pkt(0x10, s(b"MQTT")), None, "protocol level"),
    ("connect-no-client-id", pkt(0x10, s(b"MQTT") + b"\x04\x02\x00\x3c"), None, "client id"),
    ("connect-empty", pkt(0x10, b""), None, "too short"),
    # SUBSCRIBE / UNSUBSCRIBE
    ("subscribe-no-filters", pkt(0x82, PID), None, "no topic filters"),
    ("subscribe-qos-3", pkt(0x82, PID + s(b"a") + b"\x03"), None, "requested QoS 3"),
    ("subscribe-reserved-bits", pkt(0x82, PID + s(b"a") + b"\x04"), None, "reserved bits"),
    ("subscribe-missing-qos", pkt(0x82, PID + s(b"a")), None, "missing requested QoS"),
    (
        "subscribe-second-missing-qos",
        pkt(0x82, PID + s(b"a") + b"\x00" + s(b"b")),
        None,
        "missing requested QoS",
    ),
    ("subscribe-hash-not-last", pkt(0x82, PID + s(b"a/#/b") + b"\x00"), None, "'#'"),
    ("subscribe-hash-first", pkt(0x82, PID + s(b"#/b") + b"\x00"), None, "'#'"),
    ("subscribe-hash-not-alone", pkt(0x82, PID + s(b"a/b#") + b"\x00"), None, "'#'"),
    ("subscribe-plus-not-alone", pkt(0x82, PID + s(b"a/+b") + b"\x00"), None, "'+'"),
    ("subscribe-empty-filter", pkt(0x82, PID + s(b"") + b"\x00"), None, "empty topic filter"),
    ("subscribe-filter-utf8", pkt(0x82, PID + s(b"\xff") + b"\x00"), None, "invalid UTF-8"),
    ("subscribe-filter-overruns", pkt(0x82, PID + b"\x00\x09a\x00"), None, "overruns"),
    ("unsubscribe-no-filters", pkt(0xA2, PID), None, "no topic filters"),
    ("unsubscribe-bad-filter", pkt(0xA2, PID + s(b"a#/")), None, "'#'"),
    ("unsubscribe-empty-filter", pkt(0xA2, PID + s(b"")), None, "empty topic filter"),
    # fixed-size packets with the wrong remaining length
    ("puback-trailing", b"\x40\x03\x00\x01\x00", None, "must be 2, got 3"),
    ("puback-short", b"\x40\x01\x00", None, "must be 2, got 1"),
    ("pubrel-short", b"\x62\x00", None, "must be 2, got 0"),
    ("pingreq-trailing", b"\xc0\x01\x00", None, "must be 0, got 1"),
    ("disconnect-trailing", b"\xe0\x01\x00", None, "must be 0, got 1"),
    ("connack-short", b"\x20\x01\x00", "client", "must be 2, got 1"),
    ("unsuback-trailing", b"\xb0\x03\x00\x01\x00", "client", "must be 2, got 3"),
    # who may send what
    ("connack-from-client", pkt(0x20, b"\x00\x00"), "server", "never sent by a client"),
    ("suback-from-client", pkt(0x90, PID + b"\x00"), "server", "never sent by a client"),
    ("unsuback-from-client", pkt(0xB0, PID), "server", "never sent by a client"),
    ("pingresp-from-client", b"\xd0\x00", "server", "never sent by a client"),
    ("connect-from-server", connect_raw(0x02, s(b"c")), "client", "never sent by a server"),
    ("subscribe-from-server", pkt(0x82, PID + s(b"a") + b"\x00"), "client", "never sent"),
    ("unsubscribe-from-server", pkt(0xA2, PID + s(b"a")), "client", "never sent"),
    ("pingreq-from-server", b"\xc0\x00", "client", "never sent by a server"),
    ("disconnect-from-server", b"\xe0\x00", "client", "never sent by a server"),
    # server -> client payloads
    ("connack-reserved-flags", pkt(0x20, b"\x02\x00"), "client", "reserved acknowledge flag"),
    ("connack-reserved-code", pkt(0x20, b"\x00\x06"), "client", "reserved return code"),
    ("connack-session-refused", pkt(0x20, b"\x01\x05"), "client", "session present"),
    ("suback-bad-code", pkt(0x90, PID + b"\x00\x03"), "client", "reserved return code"),
    ("suback-empty", pkt(0x90, PID), "client", "no return codes"),
]


@pytest.mark.parametrize(
    ("raw", "role", "reason"),
    [pytest.param(raw, role, reason, id=name) for name, raw, role, reason in MALFORMED],
)
def test_malformed_packets_are_refused(raw: bytes, role: Role | None, reason: str) -> None:
    parser = Parser(role=role)
    with pytest.raises(MalformedPacket) as caught:
        parser.feed(raw)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert caught.value.connack_code is None
    # The same bytes fed one at a time fail the same way.
    parser = Parser(role=role)
    with pytest.raises(MalformedPacket) as caught:
        for index in range(len(raw)):
            parser.feed(raw[index : index + 1])
    assert reason in caught.value.reason


def test_error_keeps_preceding_packets_and_kills_the_parser() -> None:
    parser = Parser()
    with pytest.raises(MalformedPacket) as caught:
        parser.feed(encode(Pingreq()) + encode(Puback(3)) + b"\xf0\x00")
    assert caught.value.preceding == (Pingreq(), Puback(3))
    with pytest.raises(MalformedPacket, match="already failed"):
        parser.feed(encode(Pingreq()))


@settings(max_examples=500)
@given(st.binary(max_size=200), st.sampled_from(["server", "client", None]))
def test_arbitrary_bytes_only_ever_raise_malformed_packet(raw: bytes, role: Role | None) -> None:
    parser = Parser(role=role)
    with contextlib.suppress(MalformedPacket):
        parser.feed(raw)


@settings(max_examples=300)
@given(packets, st.integers(0, 200), st.integers(0, 255))
def test_mutated_packets_only_ever_raise_malformed_packet(
    packet: Packet, position: int, value: int
) -> None:
    wire = bytearray(encode(packet))
    wire[position % len(wire)] = value
    with contextlib.suppress(MalformedPacket):
        Parser(role=None).feed(bytes(wire))


# ---------------------------------------------------------------------------------------------
# CONNECT specifics


def test_mqisdp_level_3_is_accepted() -> None:
    raw = connect_raw(0x02, s(b"legacy-client"), name=b"MQIsdp", level=3)
    (packet,) = Parser().feed(raw)
    assert packet == Connect("MQIsdp", 3, "legacy-client", True, 60)
    assert encode(packet) == raw


def test_mqisdp_tolerates_flagged_but_absent_credentials() -> None:
    raw = connect_raw(0xC2, s(b"legacy"), name=b"MQIsdp", level=3)
    assert Parser().feed(raw) == [Connect("MQIsdp", 3, "legacy", True, 60, None, None)]
    with_user = connect_raw(0xC2, s(b"legacy") + s(b"bob"), name=b"MQIsdp", level=3)
    assert Parser().feed(with_user) == [Connect("MQIsdp", 3, "legacy", True, 60, "bob", None)]


def test_connect_with_everything() -> None:
    raw = connect_raw(0xF6, s(b"id") + s(b"lw/t") + s(b"\x00\x01") + s(b"u") + s(b"\xff"))
    assert Parser().feed(raw) == [
        Connect("MQTT", 4, "id", True, 60, "u", b"\xff", Will("lw/t", b"\x00\x01", 2, True))
    ]


@pytest.mark.parametrize(
    ("name", "level"), [(b"MQTT", 3), (b"MQTT", 5), (b"MQIsdp", 4), (b"MQTTX", 4), (b"", 4)]
)
def test_unknown_protocol_maps_to_connack_1(name: bytes, level: int) -> None:
    with pytest.raises(UnacceptableProtocol) as caught:
        Parser().feed(connect_raw(0x02, s(b"c"), name=name, level=level))
    assert caught.value.connack_code == 0x01
    assert isinstance(caught.value, MalformedPacket)


def test_unknown_protocol_is_detected_before_a_foreign_layout() -> None:
    # An MQTT 5 CONNECT has properties after keepalive; we must still answer 0x01.
    with pytest.raises(UnacceptableProtocol):
        Parser().feed(connect_raw(0x02, b"\x00" + s(b"c"), level=5))


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        (connect_raw(0x02, s(b"")), True),
        (connect_raw(0x00, s(b"")), False),
        (connect_raw(0x02, s(b""), name=b"MQIsdp", level=3), False),
    ],
)
def test_empty_client_id(raw: bytes, accepted: bool) -> None:
    if accepted:
        assert Parser().feed(raw) == [Connect(client_id="", clean_session=True)]
    else:
        with pytest.raises(IdentifierRejected) as caught:
            Parser().feed(raw)
        assert caught.value.connack_code == 0x02


def test_require_connect() -> None:
    connect = Connect(client_id="x")
    assert require_connect(connect) is connect
    with pytest.raises(MalformedPacket, match="first packet must be CONNECT, got PUBLISH"):
        require_connect(Publish("a", b""))


# ---------------------------------------------------------------------------------------------
# Encoder range checks


@pytest.mark.parametrize(
    "packet",
    [
        Puback(0),
        Puback(65536),
        Publish("a", b"", 1),
        Publish("a", b"", 0, packet_id=1),
        Publish("a", b"", 3, packet_id=1),
        Publish("a" * 65536, b""),
        Subscribe(1, [("a", 3)]),
        Connect(keepalive=70000),
        Connect(will=Will("w", b"", 3)),
        Connect(password=b"x" * 65536, username="u"),
        Suback(1, [256]),
    ],
    ids=repr,
)
def test_encode_refuses_unrepresentable_values(packet: Packet) -> None:
    with pytest.raises(ValueError):
        encode(packet)


def test_encode_refuses_non_packets() -> None:
    with pytest.raises(TypeError):
        encode("PINGREQ")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Topics


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("sport/tennis/player1", "sport/tennis/player1", True),
        ("sport/tennis/player1", "sport/tennis/player2", False),
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("sport/#", "sports", False),
        ("#", "anything/at/all", True),
        ("#", "/", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/tournament", False),
        ("sport/tennis/+", "sport/tennis", False),
        ("sport/+", "sport/", True),
        ("sport/+", "sport", False),
        ("+", "sport", True),
        ("+", "/finance", False),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+/tennis/#", "sport/tennis/player1", True),
        ("+/tennis/#", "sport/tennis", True),
        ("+/+/+", "a//c", True),
        ("a/+/c", "a/b/c/d", False),
        ("#", "$SYS/broker/uptime", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("a/$b/+", "a/$b/c", True),
        ("#", "a$", True),
        ("A/b", "a/b", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, matches: bool) -> None:
    validate_topic_filter(topic_filter)
    validate_topic_name(topic)
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "#/a", "a#", "a/b#", "+a", "a/+b", "++"])
def test_invalid_topic_filters(topic_filter: str) -> None:
    with pytest.raises(MalformedPacket):
        validate_topic_filter(topic_filter)


@pytest.mark.parametrize("topic", ["", "a/+", "#", "a/b#"])
def test_invalid_topic_names(topic: str) -> None:
    with pytest.raises(MalformedPacket):
        validate_topic_name(topic)


@given(topic_filters, topic_names)
def test_generated_filters_are_valid_and_match_like_a_reference(
    topic_filter: str, topic: str
) -> None:
    validate_topic_filter(topic_filter)
    expected = _reference_match(topic_filter.split("/"), topic.split("/"))
    if topic.startswith("$") and topic_filter[0] in "+#":
        expected = False
    assert topic_matches(topic_filter, topic) is expected


def _reference_match(filter_levels: list[str], topic_levels: list[str]) -> bool:
    if not filter_levels:
        return not topic_levels
    head, *rest = filter_levels
    if head == "#":
        return True
    if not topic_levels:
        return False
    return (head in ("+", topic_levels[0])) and _reference_match(rest, topic_levels[1:])


@given(st.text(min_size=1, max_size=300), st.binary(max_size=400))
def test_the_fast_publish_encoder_gives_what_encode_gives(topic: str, payload: bytes) -> None:
    assert publish_frame(publish_topic(topic), payload) == encode(Publish(topic, payload))
