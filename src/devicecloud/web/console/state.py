"""Everything the console's pages share within one process."""

from __future__ import annotations

from devicecloud.config import Settings
from devicecloud.core.accounts import Accounts
from devicecloud.core.ports import Presence
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.hub import Hub
from devicecloud.limits import DEFAULTS, Rate, parse_limits, parse_rate
from devicecloud.web.console.live import LiveFeeds
from devicecloud.web.console.rendering import environment
from devicecloud.web.console.sessions import SessionCookies
from devicecloud.web.console.throttle import Rule, Throttle

# Log-ins (docs/console.md explains the numbers): failures of one email from one address, of any
# email from one address, and of one email from anywhere (this bounds guessing from many
# addresses; a browser that logged in to the account before is not held by it).
LOGINS_PER_EMAIL_AND_ADDRESS = Rule("login:email+address", 5, 15 * 60)


def logins_per_address(rate: Rate | None) -> Rule | None:
    """The `ip.logins` limit as a window rule: its burst within the time the rate takes to
    refill it (`80/h:20`: 20 within 15 minutes); None when it is off."""
    if rate is None:
        return None
    return Rule("login:address", rate.burst, rate.burst / rate.per_second)


_DEFAULT_LOGINS = parse_rate(DEFAULTS["ip.logins"])
assert _DEFAULT_LOGINS is not None
LOGINS_PER_ADDRESS = Rule("login:address", _DEFAULT_LOGINS.burst,
                          _DEFAULT_LOGINS.burst / _DEFAULT_LOGINS.per_second)
LOGINS_PER_EMAIL = Rule("login:email", 100, 60 * 60)
# Wrong pairing codes: per account, per address, and across the whole service.
PAIRINGS_PER_ACCOUNT = Rule("pair:account", 10, 10 * 60)
PAIRINGS_PER_ADDRESS = Rule("pair:address", 20, 10 * 60)
PAIRINGS_EVERYWHERE = Rule("pair:all", 300, 10 * 60)


class Console:
    """Session cookies, throttles, live feeds and templates, next to the core they use.

    The throttle counts in Redis when a bus URL is set, so every process sees the same counts.
    """

    def __init__(self, settings: Settings, secret: bytes, cloud: DeviceCloud, accounts: Accounts,
                 presence: Presence, hub: Hub) -> None:
        self.settings = settings
        self.cloud = cloud
        self.accounts = accounts
        self.presence = presence
        self.cookies = SessionCookies(secret)
        self.throttle = Throttle.for_url(settings.bus_url)
        chosen = parse_limits(settings.limit)["ip.logins"]
        self.logins_per_address = logins_per_address(
            chosen if isinstance(chosen, Rate) else None)
        self.hub = hub
        self.feeds = LiveFeeds(hub)
        self.templates = environment()

    async def close(self) -> None:
        await self.throttle.close()
