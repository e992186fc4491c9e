"""Sans-I/O MQTT 3.1.1 codec (protocol level 4; MQTT 3.1 "MQIsdp" level 3 CONNECTs accepted).

Bytes in, packets out (`Parser.feed`), and packets back to bytes (`encode`). Every packet type
can be encoded and decoded, so the same module serves the broker side and test clients or load
generators. Every protocol violation found while decoding raises `MalformedPacket`; the two
CONNECT refusals that the server answers with a CONNACK before closing are subclasses carrying
`connack_code` (`UnacceptableProtocol` -> 0x01, `IdentifierRejected` -> 0x02).

Session-level rules are not the parser's, because it only sees packets: the first packet from a
client must be CONNECT (`require_connect` checks it), a second CONNECT is a protocol violation,
and nothing may follow DISCONNECT. `mqtt_session` keeps them.

`publish_topic` and `publish_frame` build PUBLISH frames from a topic encoded once, the fast path
for a connection's pushes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Literal

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "MAX_REMAINING_LENGTH",
    "SUBACK_FAILURE",
    "Connack",
    "ConnackCode",
    "Connect",
    "Disconnect",
    "IdentifierRejected",
    "MalformedPacket",
    "Packet",
    "PacketType",
    "Parser",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Role",
    "Suback",
    "Subscribe",
    "UnacceptableProtocol",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "decode_remaining_length",
    "encode",
    "encode_remaining_length",
    "publish_frame",
    "publish_topic",
    "require_connect",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

DEFAULT_MAX_PACKET_SIZE = 256 * 1024
MAX_REMAINING_LENGTH = 268_435_455  # the largest value four varint bytes hold
SUBACK_FAILURE = 0x80

Role = Literal["server", "client"]


class PacketType(IntEnum):
    """Control packet types (high nibble of the first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnackCode(IntEnum):
    """CONNACK return codes."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


# --------------------------------------------------------------------------------------------
# Errors


class MalformedPacket(Exception):
    """The peer broke the protocol; close the connection.

    `connack_code` is None for plain violations (close without CONNACK) and set on the CONNECT
    refusals the server should answer first. `preceding` holds the packets the failing
    `Parser.feed` call decoded before the bad one.
    """

    connack_code: ClassVar[int | None] = None

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.preceding: tuple[Packet, ...] = ()


class UnacceptableProtocol(MalformedPacket):
    """CONNECT with an unsupported protocol name/level pair; answer CONNACK 0x01 and close."""

    connack_code: ClassVar[int | None] = ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION


class IdentifierRejected(MalformedPacket):
    """CONNECT whose client id the spec forbids; answer CONNACK 0x02 and close.

    Raised for an empty client id with clean_session=False (3.1.1) and for any empty client id
    in MQTT 3.1. Length or character policies beyond that are the server's choice.
    """

    connack_code: ClassVar[int | None] = ConnackCode.IDENTIFIER_REJECTED


# --------------------------------------------------------------------------------------------
# Packets


def _tuple_of_pairs(items: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    return tuple((name, qos) for name, qos in items)


@dataclass(frozen=True, slots=True)
class Will:
    """The last-will message carried by CONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT (client -> server)."""

    protocol_name: str = "MQTT"
    protocol_level: int = 4
    client_id: str = ""
    clean_session: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK (server -> client)."""

    session_present: bool = False
    return_code: int = ConnackCode.ACCEPTED


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH (both directions); `packet_id` is set exactly when qos > 0."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class Puback:
    """PUBACK (both directions)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrec:
    """PUBREC (both directions)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrel:
    """PUBREL (both directions)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubcomp:
    """PUBCOMP (both directions)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE (client -> server): (topic_filter, requested_qos) pairs, stored as a tuple."""

    packet_id: int
    subscriptions: Sequence[tuple[str, int]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "subscriptions", _tuple_of_pairs(self.subscriptions))


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK (server -> client): granted QoS per filter, or SUBACK_FAILURE (0x80)."""

    packet_id: int
    return_codes: Sequence[int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "return_codes", tuple(self.return_codes))


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE (client -> server), filters stored as a tuple."""

    packet_id: int
    topic_filters: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "topic_filters", tuple(self.topic_filters))


@dataclass(frozen=True, slots=True)
class Unsuback:
    """UNSUBACK (server -> client)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pingreq:
    """PINGREQ (client -> server)."""


@dataclass(frozen=True, slots=True)
class Pingresp:
    """PINGRESP (server -> client)."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT (client -> server)."""


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)


def require_connect(packet: Packet) -> Connect:
    """Return `packet` if it is a CONNECT, else raise MalformedPacket (first-packet rule)."""
    if isinstance(packet, Connect):
        return packet
    raise MalformedPacket(f"first packet must be CONNECT, got {type(packet).__name__.upper()}")


# --------------------------------------------------------------------------------------------
# Topics


def validate_topic_name(topic: str) -> None:
    """Raise MalformedPacket unless `topic` is a valid topic name (non-empty, no wildcards)."""
    if not topic:
        raise MalformedPacket("empty topic name")
    if "+" in topic or "#" in topic:
        raise MalformedPacket(f"wildcard in topic name {topic[:64]!r}")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise MalformedPacket unless `topic_filter` is a valid subscription filter."""
    if not topic_filter:
        raise MalformedPacket("empty topic filter")
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            raise MalformedPacket(
                f"'#' must be alone in the last level of filter {topic_filter[:64]!r}"
            )
        if "+" in level and level != "+":
            raise MalformedPacket(f"'+' must fill a whole level of filter {topic_filter[:64]!r}")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether topic name `topic` matches `topic_filter` under MQTT rules.

    `+` matches exactly one (possibly empty) level, a trailing `#` matches the parent level and
    everything below it, and a wildcard in the first level never matches a topic starting with
    `$`. Both arguments are assumed valid.
    """
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    if topic[:1] == "$" and topic_filter[0] in "+#":
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    count = len(topic_levels)
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= count or (level != "+" and level != topic_levels[index]):
            return False
    return len(filter_levels) == count


# --------------------------------------------------------------------------------------------
# Remaining length


def encode_remaining_length(value: int) -> bytes:
    """The 1-4 byte variable-length encoding of `value` (0..268435455)."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {value} out of range")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_remaining_length(
    data: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, int] | None:
    """Decode the varint at `data[offset:]` as (value, bytes used); None if more bytes are needed.

    Raises MalformedPacket if a fourth byte still has its continuation bit set.
    """
    end = len(data)
    value = 0
    shift = 0
    for used in range(1, 5):
        index = offset + used - 1
        if index >= end:
            return None
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, used
        shift += 7
    raise MalformedPacket("remaining length longer than 4 bytes")


# --------------------------------------------------------------------------------------------
# Encoding

_U16 = struct.Struct(">H")


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} out of range 0..65535")
    return _U16.pack(value)


def _packet_id(value: int | None) -> bytes:
    if value is None or not 1 <= value <= 0xFFFF:
        raise ValueError(f"packet id {value!r} out of range 1..65535")
    return _U16.pack(value)


def _binary(data: bytes, what: str) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"{what} longer than 65535 bytes")
    return _U16.pack(len(data)) + data


def _string(text: str, what: str) -> bytes:
    return _binary(text.encode("utf-8"), what)


def _qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos!r} is not 0, 1 or 2")
    return qos


def _frame(first: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes((first, size)) + body
    return bytes((first,)) + encode_remaining_length(size) + body


def _encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    parts = [
        _string(packet.protocol_name, "protocol name"),
        b"",
        _u16(packet.keepalive, "keepalive"),
        _string(packet.client_id, "client id"),
    ]
    will = packet.will
    if will is not None:
        flags |= 0x04 | (_qos(will.qos) << 3) | (0x20 if will.retain else 0)
        parts.append(_string(will.topic, "will topic"))
        parts.append(_binary(will.payload, "will payload"))
    if packet.username is not None:
        flags |= 0x80
        parts.append(_string(packet.username, "username"))
    if packet.password is not None:
        flags |= 0x40
        parts.append(_binary(packet.password, "password"))
    parts[1] = bytes((packet.protocol_level, flags))
    return _frame(0x10, b"".join(parts))


def _encode_connack(packet: Connack) -> bytes:
    return bytes((0x20, 2, 1 if packet.session_present else 0, packet.return_code))


def publish_topic(topic: str) -> bytes:
    """A topic name as PUBLISH carries it: two length bytes, then UTF-8 (for `publish_frame`)."""
    return _string(topic, "topic")


_FIRST_BYTES = tuple(bytes((first,)) for first in range(256))


def publish_frame(topic: bytes, payload: bytes, first: int = 0x30) -> bytes:
    """A PUBLISH frame from `publish_topic(topic)` (then the packet id if QoS > 0) and a payload.

    `first` is the fixed header's first byte: 0x30 (QoS 0, not retained) gives what
    `encode(Publish(topic, payload))` gives.
    """
    size = len(topic) + len(payload)
    if size < 0x80:
        return bytes((first, size)) + topic + payload
    return b"".join((_FIRST_BYTES[first], encode_remaining_length(size), topic, payload))


def _encode_publish(packet: Publish) -> bytes:
    qos = _qos(packet.qos)
    head = publish_topic(packet.topic)
    if qos:
        head += _packet_id(packet.packet_id)
    elif packet.packet_id is not None:
        raise ValueError("QoS 0 PUBLISH cannot carry a packet id")
    first = 0x30 | (qos << 1) | (0x08 if packet.dup else 0) | (0x01 if packet.retain else 0)
    return publish_frame(head, packet.payload, first)


def _ack_encoder(first: int) -> Callable[[Any], bytes]:
    prefix = bytes((first, 2))

    def encode_ack(packet: Any) -> bytes:
        return prefix + _packet_id(packet.packet_id)

    return encode_ack


def _encode_subscribe(packet: Subscribe) -> bytes:
    parts = [_packet_id(packet.packet_id)]
    for topic_filter, qos in packet.subscriptions:
        parts.append(_string(topic_filter, "topic filter"))
        parts.append(bytes((_qos(qos),)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(packet: Suback) -> bytes:
    return _frame(0x90, _packet_id(packet.packet_id) + bytes(packet.return_codes))


def _encode_unsubscribe(packet: Unsubscribe) -> bytes:
    parts = [_packet_id(packet.packet_id)]
    parts.extend(_string(topic_filter, "topic filter") for topic_filter in packet.topic_filters)
    return _frame(0xA2, b"".join(parts))


_ENCODERS: dict[type[Any], Callable[[Any], bytes]] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish,
    Puback: _ack_encoder(0x40),
    Pubrec: _ack_encoder(0x50),
    Pubrel: _ack_encoder(0x62),
    Pubcomp: _ack_encoder(0x70),
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _ack_encoder(0xB0),
    Pingreq: lambda _packet: b"\xc0\x00",
    Pingresp: lambda _packet: b"\xd0\x00",
    Disconnect: lambda _packet: b"\xe0\x00",
}


def encode(packet: Packet) -> bytes:
    """Serialise any packet to its wire form.

    Raises ValueError only for values that do not fit their wire field (QoS outside 0..2, packet
    id outside 1..65535 or missing/extra for the QoS, strings over 65535 bytes, packets over
    the maximum remaining length). Protocol rules such as wildcard-free topic names are left to
    the receiving `Parser`, so tests can build deliberately bad packets.
    """
    try:
        encoder = _ENCODERS[type(packet)]
    except KeyError:
        raise TypeError(f"not an MQTT packet: {packet!r}") from None
    return encoder(packet)


# --------------------------------------------------------------------------------------------
# Decoding: helpers take (first byte, view, start, end) so nothing is copied but what a
# packet keeps (strings and payloads).


def _read_u16(view: memoryview, index: int, end: int, what: str) -> int:
    if end - index < 2:
        raise MalformedPacket(f"{what}: packet too short")
    return (view[index] << 8) | view[index + 1]


def _read_packet_id(view: memoryview, index: int, end: int, what: str) -> int:
    packet_id = _read_u16(view, index, end, f"{what} packet id")
    if packet_id == 0:
        raise MalformedPacket(f"{what}: packet id 0")
    return packet_id


def _read_binary(view: memoryview, index: int, end: int, what: str) -> tuple[bytes, int]:
    size = _read_u16(view, index, end, what)
    stop = index + 2 + size
    if stop > end:
        raise MalformedPacket(f"{what}: {size}-byte field overruns the packet")
    return view[index + 2 : stop].tobytes(), stop


def _read_string(view: memoryview, index: int, end: int, what: str) -> tuple[str, int]:
    size = _read_u16(view, index, end, what)
    stop = index + 2 + size
    if stop > end:
        raise MalformedPacket(f"{what}: {size}-byte string overruns the packet")
    try:
        text = str(view[index + 2 : stop], "utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what}: invalid UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket(f"{what}: contains U+0000")
    return text, stop


_PROTOCOLS = {("MQTT", 4), ("MQIsdp", 3)}


def _decode_connect(first: int, view: memoryview, index: int, end: int) -> Connect:
    name, index = _read_string(view, index, end, "CONNECT protocol name")
    if index >= end:
        raise MalformedPacket("CONNECT: missing protocol level")
    level = view[index]
    if (name, level) not in _PROTOCOLS:
        raise UnacceptableProtocol(f"unsupported protocol {name[:16]!r} level {level}")
    if end - index < 4:
        raise MalformedPacket("CONNECT: missing connect flags or keepalive")
    flags = view[index + 1]
    keepalive = (view[index + 2] << 8) | view[index + 3]
    index += 4
    if flags & 0x01:
        raise MalformedPacket("CONNECT: reserved flag bit set")
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if will_qos == 3:
            raise MalformedPacket("CONNECT: will QoS 3")
    elif flags & 0x38:
        raise MalformedPacket("CONNECT: will QoS or retain set without the will flag")
    if flags & 0x40 and not flags & 0x80:
        raise MalformedPacket("CONNECT: password flag without username flag")
    client_id, index = _read_string(view, index, end, "CONNECT client id")
    will = None
    if flags & 0x04:
        will_topic, index = _read_string(view, index, end, "CONNECT will topic")
        try:
            validate_topic_name(will_topic)
        except MalformedPacket as exc:
            raise MalformedPacket(f"CONNECT will topic: {exc.reason}") from None
        will_payload, index = _read_binary(view, index, end, "CONNECT will payload")
        will = Will(will_topic, will_payload, will_qos, bool(flags & 0x20))
    # MQTT 3.1 clients may set the username/password flags and omit the fields; tolerate that.
    lenient = level == 3
    username = None
    if flags & 0x80 and not (lenient and index == end):
        username, index = _read_string(view, index, end, "CONNECT username")
    password = None
    if flags & 0x40 and not (lenient and index == end):
        password, index = _read_binary(view, index, end, "CONNECT password")
    if index != end:
        raise MalformedPacket(f"CONNECT: {end - index} unexpected trailing bytes")
    clean_session = bool(flags & 0x02)
    if not client_id and (lenient or not clean_session):
        raise IdentifierRejected(
            "empty client id in MQTT 3.1" if lenient else "empty client id without clean session"
        )
    return Connect(name, level, client_id, clean_session, keepalive, username, password, will)


def _decode_connack(first: int, view: memoryview, index: int, end: int) -> Connack:
    flags = view[index]
    code = view[index + 1]
    if flags & 0xFE:
        raise MalformedPacket("CONNACK: reserved acknowledge flag bits set")
    if code > 5:
        raise MalformedPacket(f"CONNACK: reserved return code {code}")
    if flags and code:
        raise MalformedPacket("CONNACK: session present with a refusal code")
    return Connack(bool(flags), code)


def _decode_publish(first: int, view: memoryview, index: int, end: int) -> Publish:
    topic, index = _read_string(view, index, end, "PUBLISH topic")
    if not topic or "+" in topic or "#" in topic:
        try:
            validate_topic_name(topic)
        except MalformedPacket as exc:
            raise MalformedPacket(f"PUBLISH: {exc.reason}") from None
    qos = (first >> 1) & 0x03
    packet_id = None
    if qos:
        packet_id = _read_packet_id(view, index, end, "PUBLISH")
        index += 2
    return Publish(
        topic, view[index:end].tobytes(), qos, bool(first & 0x01), bool(first & 0x08), packet_id
    )


def _ack_decoder(cls: Callable[[int], Packet], what: str) -> Callable[..., Packet]:
    def decode_ack(first: int, view: memoryview, index: int, end: int) -> Packet:
        packet_id = (view[index] << 8) | view[index + 1]
        if packet_id == 0:
            raise MalformedPacket(f"{what}: packet id 0")
        return cls(packet_id)

    return decode_ack


def _decode_subscribe(first: int, view: memoryview, index: int, end: int) -> Subscribe:
    packet_id = _read_packet_id(view, index, end, "SUBSCRIBE")
    index += 2
    subscriptions = []
    while index < end:
        topic_filter, index = _read_string(view, index, end, "SUBSCRIBE topic filter")
        if index >= end:
            raise MalformedPacket("SUBSCRIBE: missing requested QoS")
        options = view[index]
        index += 1
        if options & 0xFC:
            raise MalformedPacket("SUBSCRIBE: reserved bits set in requested QoS byte")
        if options == 3:
            raise MalformedPacket("SUBSCRIBE: requested QoS 3")
        _check_filter(topic_filter, "SUBSCRIBE")
        subscriptions.append((topic_filter, options))
    if not subscriptions:
        raise MalformedPacket("SUBSCRIBE: no topic filters")
    return Subscribe(packet_id, subscriptions)


_SUBACK_CODES = bytes((0, 1, 2, SUBACK_FAILURE))


def _decode_suback(first: int, view: memoryview, index: int, end: int) -> Suback:
    packet_id = _read_packet_id(view, index, end, "SUBACK")
    codes = view[index + 2 : end].tobytes()
    if not codes:
        raise MalformedPacket("SUBACK: no return codes")
    if codes.translate(None, _SUBACK_CODES):
        raise MalformedPacket("SUBACK: reserved return code")
    return Suback(packet_id, codes)


def _decode_unsubscribe(first: int, view: memoryview, index: int, end: int) -> Unsubscribe:
    packet_id = _read_packet_id(view, index, end, "UNSUBSCRIBE")
    index += 2
    topic_filters = []
    while index < end:
        topic_filter, index = _read_string(view, index, end, "UNSUBSCRIBE topic filter")
        _check_filter(topic_filter, "UNSUBSCRIBE")
        topic_filters.append(topic_filter)
    if not topic_filters:
        raise MalformedPacket("UNSUBSCRIBE: no topic filters")
    return Unsubscribe(packet_id, topic_filters)


def _check_filter(topic_filter: str, what: str) -> None:
    try:
        validate_topic_filter(topic_filter)
    except MalformedPacket as exc:
        raise MalformedPacket(f"{what}: {exc.reason}") from None


def _constant(packet: Packet) -> Callable[..., Packet]:
    def decode_constant(first: int, view: memoryview, index: int, end: int) -> Packet:
        return packet

    return decode_constant


def _reserved(first: int, view: memoryview, index: int, end: int) -> Packet:
    raise MalformedPacket(f"reserved packet type {first >> 4}")  # pragma: no cover


_Decoder = Callable[[int, memoryview, int, int], Packet]

_DECODERS: tuple[_Decoder, ...] = (
    _reserved,
    _decode_connect,
    _decode_connack,
    _decode_publish,
    _ack_decoder(Puback, "PUBACK"),
    _ack_decoder(Pubrec, "PUBREC"),
    _ack_decoder(Pubrel, "PUBREL"),
    _ack_decoder(Pubcomp, "PUBCOMP"),
    _decode_subscribe,
    _decode_suback,
    _decode_unsubscribe,
    _ack_decoder(Unsuback, "UNSUBACK"),
    _constant(Pingreq()),
    _constant(Pingresp()),
    _constant(Disconnect()),
    _reserved,
)

# Exact remaining length of fixed-size packets (-1: variable), checked before the body arrives.
_FIXED_REMAINING = (-1, -1, 2, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1)

_FROM_CLIENT = frozenset({1, 3, 4, 5, 6, 7, 8, 10, 12, 14})
_FROM_SERVER = frozenset({2, 3, 4, 5, 6, 7, 9, 11, 13})


def _first_byte_errors(role: Role | None) -> tuple[str | None, ...]:
    """For each possible first byte, the reason it is refused (None if acceptable)."""
    allowed = {"server": _FROM_CLIENT, "client": _FROM_SERVER, None: _FROM_CLIENT | _FROM_SERVER}
    table: list[str | None] = []
    for first in range(256):
        kind, flags = first >> 4, first & 0x0F
        reason: str | None = None
        if kind in (0, 15):
            reason = f"reserved packet type {kind}"
        elif kind == PacketType.PUBLISH:
            if flags & 0x06 == 0x06:
                reason = "PUBLISH: QoS 3"
            elif flags & 0x08 and not flags & 0x06:
                reason = "PUBLISH: DUP set on a QoS 0 message"
        else:
            expected = 0x02 if kind in (6, 8, 10) else 0
            if flags != expected:
                reason = (
                    f"{PacketType(kind).name}: fixed header flags must be "
                    f"{expected:#06b}, got {flags:#06b}"
                )
        if reason is None and kind not in allowed[role]:
            sender = "a client" if role == "server" else "a server"
            reason = f"{PacketType(kind).name} is never sent by {sender}"
        table.append(reason)
    return tuple(table)


_FIRST_BYTE_ERRORS = {role: _first_byte_errors(role) for role in ("server", "client", None)}

_COMPACT_THRESHOLD = 64 * 1024


class Parser:
    """Incremental decoder for one direction of one connection.

    `role` is the side this parser runs on: "server" (the default) refuses packets only servers
    send, "client" refuses packets only clients send, None accepts every type. Packets larger
    than `max_packet_size` bytes (fixed header included) are refused as soon as their header is
    read. After a MalformedPacket the parser is dead: every later `feed` raises again.
    """

    __slots__ = ("_buffer", "_errors", "_failed", "_offset", "max_packet_size")

    def __init__(
        self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE, role: Role | None = "server"
    ) -> None:
        if max_packet_size < 2:
            raise ValueError("max_packet_size must be at least 2")
        if role not in _FIRST_BYTE_ERRORS:
            raise ValueError(f"unknown role {role!r}")
        self.max_packet_size = max_packet_size
        self._errors = _FIRST_BYTE_ERRORS[role]
        self._buffer = bytearray()
        self._offset = 0
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded (a partial packet)."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Add received bytes; return the packets they complete, in order.

        Raises MalformedPacket (with `preceding` set to the packets decoded from this call
        before the bad one) on any protocol violation.
        """
        if self._failed is not None:
            raise MalformedPacket(f"stream already failed: {self._failed}")
        buffer = self._buffer
        source: bytes | bytearray | memoryview
        if self._offset < len(buffer):
            buffer += data
            source = buffer
        else:
            source = data  # nothing pending: decode straight from the caller's bytes
        packets: list[Packet] = []
        try:
            with memoryview(source) as view:
                offset = self._decode(view, self._offset if source is buffer else 0, packets)
        except MalformedPacket as exc:
            self._failed = exc.reason
            exc.preceding = tuple(packets)
            raise
        size = len(source)
        if source is buffer:
            if offset == size:
                buffer.clear()
                offset = 0
            elif offset >= _COMPACT_THRESHOLD or offset * 2 >= size:
                del buffer[:offset]
                offset = 0
        else:
            buffer.clear()
            if offset < size:
                with memoryview(source) as view:
                    buffer += view[offset:]
            offset = 0
        self._offset = offset
        return packets

    def _decode(self, view: memoryview, offset: int, packets: list[Packet]) -> int:
        errors = self._errors
        limit = self.max_packet_size
        size = len(view)
        while offset < size:
            first = view[offset]
            reason = errors[first]
            if reason is not None:
                raise MalformedPacket(reason)
            if offset + 1 >= size:
                break
            length = view[offset + 1]
            if length < 0x80:
                start = offset + 2
            else:
                decoded = decode_remaining_length(view, offset + 1)
                if decoded is None:
                    break
                length, used = decoded
                start = offset + 1 + used
            kind = first >> 4
            fixed = _FIXED_REMAINING[kind]
            if fixed >= 0 and length != fixed:
                raise MalformedPacket(
                    f"{PacketType(kind).name}: remaining length must be {fixed}, got {length}"
                )
            end = start + length
            if end - offset > limit:
                raise MalformedPacket(
                    f"packet of {end - offset} bytes exceeds max_packet_size {limit}"
                )
            if end > size:
                break
            packets.append(_DECODERS[kind](first, view, start, end))
            offset = end
        return offset
