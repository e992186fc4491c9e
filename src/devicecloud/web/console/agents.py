"""The console's ESP-AI pages: an account's agents (超体) and its firmware images."""

from __future__ import annotations

from starlette.responses import Response

from devicecloud.core.errors import InvalidRequest
from devicecloud.core.espai.firmware import firmware_record
from devicecloud.core.espai.platform import EspAi
from devicecloud.web.console.pages import Visit, page
from devicecloud.web.services import services

AGENTS = "/console/agents"


def _espai(visit: Visit) -> EspAi:
    return services(visit.request).espai


def _agent_id(visit: Visit) -> str:
    return str(visit.request.path_params["agent_id"])


@page()
async def agents(visit: Visit) -> Response:
    espai = _espai(visit)
    base = visit.base_url
    images = [firmware_record(image, base) for image in await espai.firmware.of(visit.me)]
    return visit.render("agents.html", agents=await espai.agents.of(visit.me), firmware=images,
                        default_voice_server=espai.agents.default_voice_server,
                        mask_wifi_pwd=await espai.devices.mask_wifi_pwd(visit.me))


@page()
async def wifi_pwd_choice(visit: Visit) -> Response:
    async def work() -> str:
        hidden = visit.text("mask") == "on"
        await _espai(visit).devices.set_mask_wifi_pwd(visit.me, hidden)
        return f"wifi_pwd is {'hidden as ******' if hidden else 'shown'} in API results."
    return await visit.act(AGENTS, work)


@page()
async def add_agent(visit: Visit) -> Response:
    async def work() -> str:
        agent = await _espai(visit).agents.create(visit.me, visit.text("name"),
                                                 visit.text("server_url"))
        return f"Agent {agent.name} made; devices set up with its api_key join it."
    return await visit.act(AGENTS, work)


@page()
async def edit_agent(visit: Visit) -> Response:
    async def work() -> str:
        agent = await _espai(visit).agents.update(visit.me, _agent_id(visit),
                                                 name=visit.text("name"),
                                                 server_url=visit.text("server_url"))
        return f"Agent {agent.name} saved."
    return await visit.act(AGENTS, work)


@page()
async def new_agent_key(visit: Visit) -> Response:
    async def work() -> str:
        agent = await _espai(visit).agents.regenerate_key(visit.me, _agent_id(visit))
        return (f"New api_key for {agent.name}; devices set up with the old one must be set up "
                "again.")
    return await visit.act(AGENTS, work)


@page()
async def delete_agent(visit: Visit) -> Response:
    async def work() -> str:
        await _espai(visit).agents.delete(visit.me, _agent_id(visit))
        return "Agent deleted; its devices were unbound and told so."
    return await visit.act(AGENTS, work)


@page()
async def upload_firmware(visit: Visit) -> Response:
    async def work() -> str:
        upload = visit.file("file")
        if upload is None:
            raise InvalidRequest("choose a firmware file to upload")
        image = await _espai(visit).firmware.upload(
            visit.me, visit.text("bin_id"), visit.text("version"),
            upload.filename or "firmware.bin", await upload.read())
        return (f"Firmware {image.bin_id} {image.version} uploaded; devices asking for an "
                "update get it.")
    return await visit.act(AGENTS, work)


@page()
async def delete_firmware(visit: Visit) -> Response:
    async def work() -> str:
        image = await _espai(visit).firmware.delete(visit.me,
                                                    visit.request.path_params["firmware_id"])
        return f"Firmware {image.bin_id} {image.version} deleted."
    return await visit.act(AGENTS, work)

