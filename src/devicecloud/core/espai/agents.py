"""ESP-AI agents ("超体"): an account's named keys that devices are set up with, each with the
address of its voice server."""

from __future__ import annotations

from typing import Any

from devicecloud.core.errors import InvalidRequest, NotFound
from devicecloud.core.espai import values as v
from devicecloud.core.espai.devices import released
from devicecloud.core.espai.models import Agent
from devicecloud.core.ids import is_token, new_token, now_ms
from devicecloud.core.models import Account
from devicecloud.core.ports import Bus, EspAiStore


class Agents:
    """Create, change and delete an account's agents; tell where an agent's voice server is."""

    def __init__(self, store: EspAiStore, bus: Bus, default_voice_server: str = "") -> None:
        self.store = store
        self.bus = bus
        self.default_voice_server = default_voice_server

    async def create(self, account: Account, name: object, server_url: object = "") -> Agent:
        """A new agent with a fresh 32-hex `api_key`; `server_url` is its voice server."""
        now = now_ms()
        agent = Agent(new_token(), account.id, _agent_name(name), new_token(),
                      _server_url(server_url), now, now)
        await self.store.create_agent(agent)
        return agent

    async def of(self, account: Account) -> list[Agent]:
        return await self.store.agents_of(account.id)

    async def get(self, account: Account, agent_id: object) -> Agent:
        """The account's agent with this id (equipment_id); NotFound otherwise."""
        agent = await self.store.agent_by_id(agent_id) if is_token(agent_id) else None
        if agent is None or agent.account_id != account.id:
            raise NotFound("超体不存在")
        return agent

    async def update(self, account: Account, agent_id: object, *, name: object = None,
                     server_url: object = None) -> Agent:
        """Rename the agent or change its voice server (None: leave as is)."""
        agent = await self.get(account, agent_id)
        changes: dict[str, str] = {}
        if name is not None:
            changes["name"] = agent.name = _agent_name(name)
        if server_url is not None:
            changes["server_url"] = agent.server_url = _server_url(server_url)
        if changes:
            agent.updated_at = now_ms()
            await self.store.update_agent(agent.id, changes, agent.updated_at)
        return agent

    async def regenerate_key(self, account: Account, agent_id: object) -> Agent:
        """A new `api_key`; devices set up with the old one must be set up again."""
        agent = await self.get(account, agent_id)
        agent.api_key, agent.updated_at = new_token(), now_ms()
        await self.store.update_agent(agent.id, {"api_key": agent.api_key}, agent.updated_at)
        return agent

    async def delete(self, account: Account, agent_id: object) -> None:
        """Delete the agent; its devices are unbound and told so."""
        agent = await self.get(account, agent_id)
        released(self.bus, await self.store.delete_agent(agent.id, now_ms()))

    async def server_info(self, api_key: object) -> dict[str, Any]:
        """Where the voice server of the agent owning `api_key` lives."""
        if not isinstance(api_key, str) or not api_key:
            raise v.MissingParameter("api_key")
        agent = await self.store.agent_by_api_key(api_key)
        if agent is None:
            raise NotFound(v.AGENT_NOT_FOUND)
        url = agent.server_url or self.default_voice_server
        if not url:
            raise NotFound(v.NO_VOICE_SERVER)
        return v.voice_server(url)


def _agent_name(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequest("an agent needs a name")
    if len(raw.strip()) > 100:
        raise InvalidRequest("an agent's name has at most 100 characters")
    return raw.strip()


def _server_url(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidRequest("the voice server address must be text")
    url = raw.strip()
    if url:
        v.voice_server(url)
    return url
