"""Errors the core raises; each transport turns them into its own error format."""


class DeviceCloudError(Exception):
    """A request that cannot be carried out; `str(error)` is a message fit for the client."""


class InvalidRequest(DeviceCloudError):
    """The request is malformed or breaks a rule."""


class NotFound(DeviceCloudError):
    """The thing named does not exist (or is not visible to the caller)."""


class Unauthorized(DeviceCloudError):
    """The token or key is unknown."""


class TooLarge(DeviceCloudError):
    """The request or the message it would cause exceeds a size limit."""


class Conflict(DeviceCloudError):
    """The request collides with existing state (an email taken, a device bound elsewhere)."""


class Unavailable(DeviceCloudError):
    """Something the service depends on (the database) cannot be reached now; nothing was done
    that the client was told of, and trying again later may succeed."""


class StorageFull(DeviceCloudError):
    """The disk that keeps files is full: nothing was stored; trying again later may succeed."""


class TooMany(DeviceCloudError):
    """A limit on how often something may be done was reached; `retry_after` seconds from now it
    may be done again."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
