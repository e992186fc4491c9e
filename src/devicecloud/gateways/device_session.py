"""One live EzData device connection, whatever carries it (WebSocket or MQTT)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.events import (
    Change,
    DeviceBound,
    DeviceDeleted,
    DeviceUpdated,
    Event,
    FieldChanged,
)
from devicecloud.core.models import Device, Field
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.hub import Hub, push_body
from devicecloud.gateways.outbox import Outbox, Slot
from devicecloud.protocols import ezdata
from devicecloud.protocols.ezdata import REQUESTS, Command, Login, ProtocolError, Request

log = logging.getLogger(__name__)


class DeviceSession:
    """Logs a device in, answers its requests in order, and queues pushes for it."""

    __slots__ = ("_counters", "_flushed", "_held", "_idle", "_serving", "cloud", "device",
                 "draining", "hub", "outbox", "transport", "value_on_top")

    def __init__(self, cloud: DeviceCloud, hub: Hub, outbox: Outbox, transport: str,
                 flushed: Callable[[], Awaitable[object]], value_on_top: bool = False) -> None:
        self.cloud = cloud
        self.hub = hub
        self.outbox = outbox
        self.transport = transport
        self.value_on_top = value_on_top
        self.device: Device | None = None
        self.draining = False
        self._flushed = flushed
        self._held: deque[tuple[Slot, Login | Request]] | None = None
        self._serving = 0
        self._idle: asyncio.Future[None] | None = None
        self._counters = hub.metrics.requests_of(transport, _COMMAND_NAMES)

    def receive(self, data: bytes | str, before: Callable[[], None] | None = None) -> None:
        """Take one message; its answer goes out in turn, after `before()` if given. Messages
        are carried out in the order received: those that arrive while a login is being
        checked wait for it, in order, and nothing received later overtakes them."""
        try:
            message = ezdata.parse(data)
        except ProtocolError as problem:
            slot = self.outbox.expect(False, before)
            self.outbox.answer(slot, ezdata.error(str(problem), problem.cmd))
            return
        if isinstance(message, ezdata.Ping):
            self.outbox.answer(self.outbox.expect(False, before), ezdata.PONG)
            return
        slot = self.outbox.expect(not isinstance(message, ezdata.Login), before)
        self._serving += 1
        if self._held is not None:
            self._held.append((slot, message))
        else:
            self._begin(slot, message)

    def _begin(self, slot: Slot, message: Login | Request) -> None:
        if isinstance(message, ezdata.Login):
            self._held = deque()
            self._advance(self._log_in(slot, message.token))
        elif self.draining:
            self.outbox.answer(slot, ezdata.error("server is shutting down", message.cmd))
            self._served()
        elif self.device is None:  # refused as not logged in, uncounted
            self._advance(self._serve(slot, message))
        else:
            wait = self.hub.limits.device_messages.check(self.device.id)
            if wait == 0.0:
                self._advance(self._serve(slot, message))
            elif wait is None:  # a lease of the shared count first; what follows waits for it
                self._held = deque()
                self._advance(self._lease(slot, message, self.device))
            else:
                self._limited(slot, message, wait)
                self._served()

    async def _lease(self, slot: Slot, message: Request, device: Device) -> None:
        """Serve `message` once the shared `device.messages` count answers, then what was
        received meanwhile, in order."""
        try:  # in a Task: the Redis client's timeouts need one (`_advance` runs none)
            wait = await asyncio.ensure_future(
                self.hub.limits.device_messages.acquire(device.id))
        except Exception:
            log.exception("device.messages could not be counted")
            wait = 0.0
        if wait:
            self._limited(slot, message, wait)  # `_advance` ends this turn when it returns
        else:
            self._serving += 1  # a turn of its own, ended by `_advance` as for any request
            self._advance(self._serve(slot, message))  # queues its store job before going on
        self._release_held()

    def _limited(self, slot: Slot, message: Request, wait: float) -> None:
        """Answer a request over `device.messages` in its turn, changing nothing."""
        refusal = self.hub.limits.device_messages.refusal(wait)
        self._counters[message.cmd][1] += 1
        self.outbox.answer(slot, ezdata.error(refusal, message.cmd))

    def _release_held(self) -> None:
        """Begin the messages that waited for a login, in order, up to the next login."""
        held, self._held = self._held, None
        while held:
            self._begin(*held.popleft())
            if self._held is not None:  # a later login: what follows it waits for that one
                self._held.extend(held)
                return

    def _advance(self, work: Coroutine[Any, Any, None], _: object = None) -> None:
        """Run a request's coroutine up to its next wait, without a Task: a request mostly waits
        for one future (its commit), and a Task per request was the hot path's largest cost.
        The coroutine resumes from that future's done callback, as a Task would. A request
        queues its store job before its first wait, so requests begun in order are applied in
        order."""
        try:
            waiting = work.send(None)
        except StopIteration:
            self._served()
            return
        except BaseException:
            log.exception("request handling failed")
            self._served()
            return
        if waiting is None:  # a bare yield (asyncio.sleep(0)): resume next iteration
            asyncio.get_running_loop().call_soon(self._advance, work)
        else:
            waiting._asyncio_future_blocking = False
            waiting.add_done_callback(partial(self._advance, work))

    def _served(self) -> None:
        self._serving -= 1
        if not self._serving and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None

    async def _requests_done(self) -> None:
        """Wait until every request received so far is answered (or given up)."""
        if self._serving:
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    def deliver(self, event: Event) -> None:
        """Turn an event about the device into its EzData push (a change this connection made
        is answered instead)."""
        if isinstance(event, FieldChanged):
            if event.origin is not self:
                body = push_body(event)
                self.outbox.push(event.field.name, ezdata.reply(
                    event.change.value, body, body["value"], self.value_on_top))
                if event.change is not Change.DELETED:  # a deletion keeps the old time
                    self.hub.metrics.push_seconds.observe(
                        time.time() - event.field.updated_at / 1000)
        elif isinstance(event, DeviceBound):
            body = {"deviceToken": event.device_token, "userName": event.display_name}
            self.outbox.push("\0bound", ezdata.reply(Command.BOUND, body))
        elif isinstance(event, DeviceDeleted) and self.device is not None:
            self.hub.leave(self.device.token, self)  # its token names nothing now
            self.device = None
        elif isinstance(event, DeviceUpdated) and self.device is not None:
            self.device.downlink_limit = event.downlink_limit

    async def drain(self) -> None:
        self.draining = True
        await self._requests_done()
        await self._flushed()

    async def close(self) -> None:
        """Forget the connection; requests already received are still carried out."""
        if self.device is not None:
            self.hub.leave(self.device.token, self)
        self.outbox.close()
        await self._requests_done()
        if self.device is not None:
            await self.cloud.touch(self.device)

    def attach(self, device: Device) -> None:
        """From now on this connection speaks for `device` and receives its pushes."""
        if self.device is device:
            return
        if self.device is not None:
            self.hub.leave(self.device.token, self)
        self.device = device
        self.hub.join(device.token, self)

    async def _log_in(self, slot: Slot, token: str) -> None:
        try:
            device = await self.cloud.authenticate(token)
        except DeviceCloudError as problem:
            self.outbox.answer(slot, ezdata.error(str(problem)))
            return
        else:
            self.attach(device)
            self.outbox.answer(slot, ezdata.LOGIN_OK)
        finally:
            self._release_held()
        await self.cloud.touch(device)

    async def _serve(self, slot: Slot, request: Request) -> None:
        result = 0  # the index in the command's [answered, refused] counts
        try:
            answer = await _HANDLERS[request.cmd](self, self._speaker(request), request)
        except ProtocolError as problem:
            answer, result = ezdata.error(str(problem), problem.cmd), 1
        except DeviceCloudError as problem:
            answer, result = ezdata.error(str(problem), request.cmd), 1
        except Exception:
            log.exception("request %s failed", request.cmd)
            answer, result = ezdata.error("internal error", request.cmd), 1
        self._counters[request.cmd][result] += 1
        self.outbox.answer(slot, answer)

    def _speaker(self, request: Request) -> Device:
        """The device the request speaks for: the one logged in, if the token names it."""
        device = self.device
        if device is None:
            raise ProtocolError('not logged in: send {"deviceToken": "..."} first', request.cmd)
        if request.token is not None and request.token != device.token:
            raise ProtocolError("deviceToken does not match this connection's login", request.cmd)
        return device

    def _changed(self, cmd: Command, device: Device, field: Field) -> bytes:
        """The answer to a write: the field's name and value as stored."""
        short = {"deviceToken": device.token, "name": field.name, "value": field.value}
        return ezdata.reply(cmd, short, field.value, self.value_on_top)

    async def _add(self, device: Device, request: Request) -> bytes:
        body, cmd = request.body, request.cmd
        name = ezdata.require(body, "name", cmd)
        field = await self.cloud.add_field(device, name, ezdata.require(body, "value", cmd),
                                           data_type=body.get("dataType"), origin=self)
        return self._changed(cmd, device, field)

    async def _modify(self, device: Device, request: Request) -> bytes:
        """MODIFY, or StamPLC's `set(...)`, which creates the field if need be."""
        body, cmd = request.body, request.cmd  # the members, not `Command.X`: see mqtt_session
        name = ezdata.require(body, "name", cmd)
        value = ezdata.require(body, "value", cmd)
        if request.upsert:
            field = await self.cloud.upsert_field(device, name, value,
                                                  data_type=body.get("dataType"),
                                                  source="device", origin=self)
        else:
            field = await self.cloud.modify_field(device, name, value,
                                                  data_type=body.get("dataType"), origin=self)
        return self._changed(cmd, device, field)

    async def _delete(self, device: Device, request: Request) -> bytes:
        name = ezdata.require(request.body, "name", request.cmd)
        field = await self.cloud.delete_field(device, name, origin=self)
        return self._changed(request.cmd, device, field)

    async def _list(self, device: Device, request: Request) -> bytes:
        fields = await self.cloud.list_fields(device)
        return ezdata.reply(Command.LIST, [f.record() for f in fields])

    async def _read(self, device: Device, request: Request) -> bytes:
        field = await self.cloud.get_field(device, ezdata.require(request.body, "name",
                                                                  Command.READ))
        return ezdata.reply(Command.READ, field.record(), field.value, self.value_on_top)

    async def _pair_code(self, device: Device, request: Request) -> bytes:
        code = await self.cloud.issue_pair_code(device)
        return ezdata.reply(Command.PAIR_CODE, {"pairCode": code})


_Handler = Callable[[DeviceSession, Device, Request], Coroutine[Any, Any, bytes]]
_HANDLERS: dict[int, _Handler] = {
    Command.ADD: DeviceSession._add,
    Command.MODIFY: DeviceSession._modify,
    Command.DELETE: DeviceSession._delete,
    Command.LIST: DeviceSession._list,
    Command.READ: DeviceSession._read,
    Command.PAIR_CODE: DeviceSession._pair_code,
}
"""How each request type is answered: one entry per `ezdata.REQUESTS` (the parser refuses
other types)."""
_COMMAND_NAMES = [(number, command.name.lower()) for number, command in REQUESTS.items()]
