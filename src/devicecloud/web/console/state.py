"""Everything the console's pages share within one process."""

from __future__ import annotations

from devicecloud.config import Settings
from devicecloud.core.accounts import Accounts
from devicecloud.core.ports import Presence
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.hub import Hub
from devicecloud.web.console.live import LiveFeeds
from devicecloud.web.console.rendering import environment
from devicecloud.web.console.sessions import SessionCookies
from devicecloud.web.console.throttle import Throttle

FAILED_LOGINS_PER_EMAIL = 5
FAILED_LOGINS_PER_ADDRESS = 20
LOGIN_WINDOW_SECONDS = 15 * 60
FAILED_PAIRINGS_PER_ACCOUNT = 10
PAIRING_WINDOW_SECONDS = 10 * 60


class Console:
    """Session cookies, throttles, live feeds and templates, next to the core they use.

    Throttles are counted in this process's memory: with several processes each counts its own.
    """

    def __init__(self, settings: Settings, secret: bytes, cloud: DeviceCloud, accounts: Accounts,
                 presence: Presence, hub: Hub) -> None:
        self.settings = settings
        self.cloud = cloud
        self.accounts = accounts
        self.presence = presence
        self.cookies = SessionCookies(secret)
        self.logins_by_email = Throttle(FAILED_LOGINS_PER_EMAIL, LOGIN_WINDOW_SECONDS)
        self.logins_by_address = Throttle(FAILED_LOGINS_PER_ADDRESS, LOGIN_WINDOW_SECONDS)
        self.pairings = Throttle(FAILED_PAIRINGS_PER_ACCOUNT, PAIRING_WINDOW_SECONDS)
        self.feeds = LiveFeeds(hub)
        self.templates = environment()
