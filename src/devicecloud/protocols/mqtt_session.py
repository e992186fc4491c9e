"""Sans-I/O MQTT 3.1.1 session: the protocol rules of one connection, for either role.

Bytes go in (`receive(data, now)`) and events come out; the bytes the session's methods and its
`Send` events return are the caller's to write, in order. Time is passed in: the caller asks
`next_deadline()` when to call `timeout(now)`. Nothing here does I/O or keeps a timer.

The events are the received packets the application acts on (`Connect` to check, then `accept`
or `refuse`; `Publish` to deliver, then `acknowledge` when QoS > 0; `Subscribe`, `Unsubscribe`,
`Connack`, `Suback`, `Unsuback`, `Puback`, `Pubcomp`, `Pingresp`, `Disconnect`, and the
acknowledgements of packet ids it did not send here), and two of the session's own: `Send`, an
answer the protocol gives by itself (PINGRESP, PUBREL, PUBCOMP, a repeated PUBREC), and `Close`,
a violation or an expired deadline, with the reason.

Rules: a client's first packet must be CONNECT and a server's CONNACK, and either only once;
packets arriving while a CONNECT is checked wait for the answer; nothing follows DISCONNECT. A
server hears from its client within 1.5 keepalives or closes; a client pings every 0.75
keepalive. A QoS 2 message is delivered once however often it is resent until its PUBREL, and
its PUBREC (like a QoS 1 PUBACK) goes out when the application acknowledges it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from devicecloud.protocols import mqtt
from devicecloud.protocols.mqtt import MalformedPacket, Packet, Pingreq, Publish, Pubrec, Pubrel

__all__ = ["Close", "Event", "MqttSession", "Send", "State"]


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes the protocol answers with by itself: write them."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The connection must close (write what came before first); `reason` says why."""

    reason: str


Event = Packet | Send | Close


class State(Enum):
    """Where the session is; CLOSED takes nothing more."""

    CONNECTING = "connecting"  # no CONNECT (server) or CONNACK (client) yet
    CHECKING = "checking"  # server: CONNECT received, not yet accepted or refused
    OPEN = "open"
    CLOSED = "closed"


# Python 3.11 looks an enum member up on its class in ~150 ns, a module global in ~20: the hot
# path reads these.
_CONNECTING, _CHECKING, _OPEN, _CLOSED = State.CONNECTING, State.CHECKING, State.OPEN, State.CLOSED

_NOTHING: tuple[Event, ...] = ()
_SEND_PINGRESP = Send(mqtt.encode(mqtt.Pingresp()))
_SEND_PINGREQ = Send(mqtt.encode(Pingreq()))
_PUBACK, _PUBREC, _PUBREL, _PUBCOMP = b"\x40\x02", b"\x50\x02", b"\x62\x02", b"\x70\x02"
_Answer = mqtt.Puback | Pubrec | mqtt.Pubcomp | mqtt.Suback | mqtt.Unsuback  # to a packet sent here
_ANSWERS = frozenset({mqtt.Puback, Pubrec, mqtt.Pubcomp, mqtt.Suback, mqtt.Unsuback})
_MAX_PACKET_ID = 0xFFFF
PING_INTERVAL = 0.75  # of the keepalive, for a client


class MqttSession:
    """One connection's MQTT state. Role "server": the peer is a client (a device connected to
    the listener); "client": the peer is a server (a broker, or the listener under test)."""

    __slots__ = ("_connect_timeout", "_grace", "_held", "_last_id", "_next_ping", "_parser",
                 "_released", "_sent", "_started", "keepalive", "last_heard", "role", "state")

    def __init__(self, role: mqtt.Role, now: float,
                 max_packet_size: int = mqtt.DEFAULT_MAX_PACKET_SIZE, *,
                 connect_timeout: float = 10.0, keepalive_grace: float = 1.5) -> None:
        self.role = role
        self.state = _CONNECTING
        self.keepalive = 0
        self.last_heard = now
        self._parser = mqtt.Parser(max_packet_size, role)
        self._started = now
        self._connect_timeout = connect_timeout
        self._grace = keepalive_grace
        self._next_ping = 0.0
        self._held: list[Packet] | None = None
        self._released: dict[int, bool] | None = None  # QoS 2 received: PUBREC sent yet?
        self._sent: dict[int, type[Packet]] | None = None  # packet id -> the answer awaited
        self._last_id = 0

    # receiving ---------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> Sequence[Event]:
        """Take received bytes; return the events they make, in order."""
        if self.state is _CLOSED:
            return _NOTHING
        self.last_heard = now
        try:
            packets = self._parser.feed(data)
        except MalformedPacket as problem:
            return self._malformed(problem, now)
        if self.state is _OPEN:
            for packet in packets:  # the hot path: QoS 0 messages need nothing from the session
                if type(packet) is not Publish or packet.qos:
                    return self._events(packets, now)
            return packets
        return self._events(packets, now)

    def _malformed(self, problem: MalformedPacket, now: float) -> list[Event]:
        """The events of the packets before the bad one, then the close (after a CONNACK if the
        bad packet is a CONNECT the spec has refused that way)."""
        events = self._events(problem.preceding, now)
        state = self.state
        if state is not _CLOSED:
            self.state = _CLOSED
            if problem.connack_code is not None and state is not _OPEN:
                events.append(Send(mqtt.encode(mqtt.Connack(False, problem.connack_code))))
            events.append(Close(f"malformed packet: {problem.reason}"))
        return events

    def _events(self, packets: Iterable[Packet], now: float) -> list[Event]:
        events: list[Event] = []
        for packet in packets:
            state = self.state
            if state is _OPEN:
                event = self._open(packet)
            elif state is _CHECKING:
                if self._held is None:
                    self._held = []
                self._held.append(packet)
                continue
            elif state is _CONNECTING:
                event = self._first(packet, now)
            else:
                break
            if event is not None:
                events.append(event)
        return events

    def _first(self, packet: Packet, now: float) -> Event:
        if self.role == "server":
            try:
                connect = mqtt.require_connect(packet)
            except MalformedPacket as problem:
                return self._close(problem.reason)
            self.state = _CHECKING
            self.keepalive = connect.keepalive
            return connect
        if not isinstance(packet, mqtt.Connack):
            return self._close(f"first packet must be CONNACK, got {_name(packet)}")
        if packet.return_code == mqtt.ConnackCode.ACCEPTED:
            self.state = _OPEN
            self._next_ping = now + self.keepalive * PING_INTERVAL
        else:
            self.state = _CLOSED
        return packet

    def _open(self, packet: Packet) -> Event | None:
        kind = type(packet)
        if kind is Publish:
            assert isinstance(packet, Publish)
            return self._publish(packet)
        if kind is Pingreq:
            return _SEND_PINGRESP
        if kind is Pubrel:
            assert isinstance(packet, Pubrel)
            if self._released is not None:
                self._released.pop(packet.packet_id, None)
            return Send(_PUBCOMP + packet.packet_id.to_bytes(2, "big"))
        if kind in _ANSWERS:
            return self._settle(packet)  # type: ignore[arg-type]
        if kind is mqtt.Disconnect:
            self.state = _CLOSED
            return packet
        if kind is mqtt.Connect or kind is mqtt.Connack:
            return self._close(f"second {_name(packet)}")
        return packet

    def _publish(self, packet: Publish) -> Event | None:
        if packet.qos == 2:
            pid = packet.packet_id
            assert pid is not None
            released = self._released
            if released is None:
                released = self._released = {}
            elif pid in released:  # resent before its PUBREL: delivered once
                return Send(_PUBREC + pid.to_bytes(2, "big")) if released[pid] else None
            released[pid] = False
        return packet

    def _settle(self, packet: _Answer) -> Event | None:
        """An answer to a packet sent here settles it; any other passes on as an event."""
        sent = self._sent
        pid = packet.packet_id
        awaited = sent.get(pid) if sent is not None else None
        if sent is None or awaited is None:
            return packet
        if type(packet) is Pubrec and awaited in (Pubrec, mqtt.Pubcomp):
            sent[pid] = mqtt.Pubcomp
            return Send(_PUBREL + pid.to_bytes(2, "big"))
        if type(packet) is not awaited:
            return packet
        del sent[pid]
        return packet

    def _close(self, reason: str) -> Close:
        self.state = _CLOSED
        return Close(reason)

    # answering -----------------------------------------------------------------------------------

    def accept(self) -> tuple[bytes, Sequence[Event]]:
        """Server: accept the CONNECT; return the CONNACK and the events of the packets received
        while it was checked."""
        assert self.state is _CHECKING
        self.state = _OPEN
        held, self._held = self._held, None
        connack = mqtt.encode(mqtt.Connack(False, mqtt.ConnackCode.ACCEPTED))
        return connack, self._events(held, self.last_heard) if held else _NOTHING

    def refuse(self, code: int) -> bytes:
        """Server: refuse the CONNECT with CONNACK `code`; the connection then closes."""
        self.state = _CLOSED
        self._held = None
        return mqtt.encode(mqtt.Connack(False, code))

    def acknowledge(self, packet: Publish) -> bytes:
        """The PUBACK (QoS 1) or PUBREC (QoS 2) of a delivered message, once it is handled."""
        pid = packet.packet_id
        assert pid is not None and packet.qos
        if packet.qos == 1:
            return _PUBACK + pid.to_bytes(2, "big")
        released = self._released
        if released is not None and pid in released:
            released[pid] = True
        return _PUBREC + pid.to_bytes(2, "big")

    # sending -------------------------------------------------------------------------------------

    def connect(self, packet: mqtt.Connect) -> bytes:
        """Client: the CONNECT opening the session."""
        self.keepalive = packet.keepalive
        return mqtt.encode(packet)

    def publish(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False,
                packet_id: int | None = None) -> bytes:
        """A message to send; at QoS 1 or 2 it takes `packet_id` (the next free one if None)
        until its PUBACK or PUBCOMP."""
        if not qos and not retain:
            return mqtt.publish_frame(mqtt.publish_topic(topic), payload)
        if qos:
            packet_id = self._reserve(packet_id, mqtt.Puback if qos == 1 else Pubrec)
        return mqtt.encode(Publish(topic, payload, qos, retain, packet_id=packet_id))

    def subscribe(self, filters: Sequence[tuple[str, int]]) -> tuple[int, bytes]:
        """A SUBSCRIBE and its packet id, reserved until the SUBACK."""
        packet_id = self._reserve(None, mqtt.Suback)
        return packet_id, mqtt.encode(mqtt.Subscribe(packet_id, filters))

    def _reserve(self, packet_id: int | None, awaited: type[Packet]) -> int:
        sent = self._sent
        if sent is None:
            sent = self._sent = {}
        if packet_id is None:
            for _ in range(_MAX_PACKET_ID):
                self._last_id = self._last_id % _MAX_PACKET_ID + 1
                if self._last_id not in sent:
                    break
            else:
                raise RuntimeError("every packet id is in use")
            packet_id = self._last_id
        elif packet_id in sent:
            raise ValueError(f"packet id {packet_id} is in use")
        sent[packet_id] = awaited
        return packet_id

    # time ----------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `timeout` must be called next (None: no deadline)."""
        state = self.state
        if self.role == "server":
            if state is _CONNECTING or state is _CHECKING:
                return self._started + self._connect_timeout
            if state is _OPEN and self.keepalive:
                return self.last_heard + self.keepalive * self._grace
        elif state is _OPEN and self.keepalive:
            return self._next_ping
        return None

    def timeout(self, now: float) -> Sequence[Event]:
        """The events due at `now`: a server's `Close` when the CONNECT or the keepalive is
        overdue, a client's PINGREQ to `Send`."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return _NOTHING
        if self.role == "client":
            self._next_ping = now + self.keepalive * PING_INTERVAL
            return (_SEND_PINGREQ,)
        if self.state is _OPEN:
            return (self._close("keepalive expired"),)
        return (self._close(f"no CONNECT within {self._connect_timeout:g} s"),)


def _name(packet: Packet) -> str:
    return type(packet).__name__.upper()
