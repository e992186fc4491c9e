"""The ESP-AI open platform's device management, on devicecloud's own devices.

A device here is the same row EzData knows by its token: `/devices/add` binds its MAC to an agent
(and so to the agent's account), third parties list, change and unbind an account's devices, and
the firmware's WebSocket keeps the record filled in. A device is online while any live connection
of it exists, whatever the transport.

`agents` holds the agents, `devices` the device records and the firmware's side of them,
`firmware` the images and the updates offered; `platform.EspAi` is the three together.
"""
