"""The baseline's backend: subscribes to `$ezdata/+/up` on a plain MQTT broker and answers each
request on the device's down topic with the reply devicecloud would send. It stores nothing.

    python -m bench.baseline_echo --port 18830      # prints "ready" once subscribed
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import orjson

from bench.mqttclient import MqttClient, connect

UP_FILTER = "$ezdata/+/up"
_PREFIX = len(b"$ezdata/")
_SUFFIX = len(b"/up")


def _error(message: str, cmd: Any = 500) -> bytes:
    return orjson.dumps({"cmd": cmd, "code": 500, "msg": message, "data": None})


def answer(token: str, payload: bytes) -> bytes:
    """devicecloud's answer shape for 100/101 (`{deviceToken,name,value}` and the value again at
    the top level), `pong` for a heartbeat, an error envelope for anything else."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return _error("invalid JSON")
    body = doc.get("body") if isinstance(doc, dict) else None
    if body == "ping":
        return b"pong"
    if not isinstance(body, dict):
        return _error("body must be an object")
    cmd = body.get("requestType")
    if cmd not in (100, 101) or "name" not in body or "value" not in body:
        return _error("the baseline answers 100 and 101 only", cmd)
    value = body["value"]
    return orjson.dumps({"body": {"deviceToken": token, "name": body["name"], "value": value},
                         "cmd": cmd, "code": 200, "msg": "OK", "value": value})


def attach(client: MqttClient) -> None:
    """Answer every up message `client` receives on the matching down topic."""

    def on_publish(topic: bytes, payload: bytes) -> None:
        token = topic[_PREFIX:-_SUFFIX]
        client.publish(b"$ezdata/" + token + b"/down", answer(token.decode(), payload))

    client.on_publish = on_publish


async def serve(host: str, port: int) -> None:
    client = await connect(host, port, "devicecloud-baseline-echo", None, subscribe=UP_FILTER,
                           keepalive=0)
    attach(client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    waiter = asyncio.ensure_future(stop.wait())
    while not stop.is_set() and not client.closed:
        await asyncio.wait([waiter], timeout=0.5)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
