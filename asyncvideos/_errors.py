"""The exception tree of asyncvideos.

Every failure that reaches a caller is one of these; exceptions of aiohttp and
asyncio are translated in ``_http.py`` and kept as ``__cause__``::

    AsyncVideosError
    ├── APIConnectionError              no usable response arrived
    │   └── APITimeoutError             ... because a timeout ran out
    ├── APIStatusError                  the server answered with an error status
    │   ├── BadRequestError             400
    │   ├── AuthenticationError         401
    │   ├── PermissionDeniedError       403
    │   ├── NotFoundError               404
    │   ├── ConflictError               409
    │   ├── UnprocessableEntityError    422
    │   ├── RateLimitError              429
    │   │   └── QuotaExceededError      429 whose code says the quota is spent
    │   ├── InternalServerError         5xx
    │   └── RedirectError               a 3xx that was not followed
    ├── APIResponseValidationError      a response that cannot be understood
    │   ├── PaginationError             a cursor that leads nowhere
    │   ├── ResponseTooLargeError       a body over the client's size limit, or its parse budget
    │   └── ContentMismatchError        content that is not what was asked for
    ├── WaitTimeoutError                wait() ran out of time (also a TimeoutError)
    ├── VideoFailedError                wait(raise_on_failure=True) saw a failed job
    ├── WebhookVerificationError        a webhook that is not authentic (also a ValueError)
    ├── AmbiguousCreateError            the ledger cannot tell whether a create made a job
    ├── ContentExpiredError             a job's content expired before it was downloaded
    └── LedgerError                     the job ledger's database failed, or is too new
        └── VideoOwnedError             a job another ledger entry owns (also a ValueError;
                                        in asyncvideos.ledger)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from ._models import Video, VideoError

__all__ = [
    "APIConnectionError",
    "AmbiguousCreateError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncVideosError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentExpiredError",
    "ContentMismatchError",
    "InternalServerError",
    "LedgerError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "RedirectError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "VideoFailedError",
    "WaitTimeoutError",
    "WebhookVerificationError",
]


class AsyncVideosError(Exception):
    """Root of every error this library raises.

    Attributes set where they apply:

    ``retries``
        How many retries were taken before giving up (0 when none).
    ``resume_after``
        Set on errors raised out of ``list(all=True)`` / ``pages()``: the
        cursor to pass back as ``after=`` to resume the listing exactly where
        it stopped (``None`` means "from the start").
    ``idempotency_key``
        Set on errors of a POST: the ``Idempotency-Key`` it was sent with, so
        that an ambiguous failure can be reconciled or safely retried.
    """

    retries: int = 0
    resume_after: str | None = None
    idempotency_key: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIConnectionError(AsyncVideosError):
    """No usable response: the connection failed, dropped or was cut short.

    ``request_sent`` is False only when the request certainly never reached the
    server (the connection could not be opened), which makes it safe to repeat.
    ``retry_can_help`` is False for failures a retry cannot mend, such as a
    certificate that does not verify.
    """

    request_sent: bool = True
    retry_can_help: bool = True

    def __init__(
        self, message: str = "Connection error.", *, method: str = "", url: str = ""
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class APITimeoutError(APIConnectionError):
    """A per-attempt timeout ran out before a whole response arrived."""

    def __init__(
        self, message: str = "Request timed out.", *, method: str = "", url: str = ""
    ) -> None:
        super().__init__(message, method=method, url=url)


class APIStatusError(AsyncVideosError):
    """The server answered with a 4xx or 5xx status.

    ``message``, ``code``, ``param`` and ``type`` come from the OpenAI-shaped
    error body when there is one; ``body`` is the parsed body (or the text when
    it is not JSON); ``retry_after`` is the wait in seconds the server asked
    for, when it asked for one; ``request_id`` is the id to give the
    provider's support (from ``x-request-id`` or a gateway's equivalent).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        headers: Mapping[str, str],
        body: object,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers
        self.body = body
        self.code = code
        self.param = param
        self.type = type
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [f"Error code: {self.status_code} - {self.message}"]
        if self.request_id:
            parts.append(f"(request id: {self.request_id})")
        return " ".join(parts)


class BadRequestError(APIStatusError):
    """400: the request was malformed or broke a rule of the API."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such video, character or route."""


class ConflictError(APIStatusError):
    """409: the resource is in a state that conflicts with the request."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests; retried unless the quota is spent."""


class QuotaExceededError(RateLimitError):
    """429 whose error code says the quota is spent: retrying cannot help."""


class InternalServerError(APIStatusError):
    """5xx: the server failed."""


class RedirectError(APIStatusError):
    """A redirect that was not followed: to another origin (outside content
    downloads), from https to http, without a usable ``Location``, or one hop
    too many. The message names the location's origin, never its query."""


class APIResponseValidationError(AsyncVideosError):
    """A response arrived but could not be understood (not JSON, wrong shape)."""

    def __init__(self, message: str, *, body: Any = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.body = body
        self.status_code = status_code


class PaginationError(APIResponseValidationError):
    """A listing that leads nowhere: ``has_more`` with no new cursor, a cursor
    seen before, or a run of empty pages that never ends."""


class ResponseTooLargeError(APIResponseValidationError):
    """A response body grew past the client's ``max_response_bytes`` (counted
    after decompression; the connection was closed, not read to the end), content
    past its ``max_download_bytes``, or a JSON body whose parse could build more
    than 4 x ``max_response_bytes`` (128 MiB by default) in memory: it was
    refused before it was parsed."""


class ContentMismatchError(APIResponseValidationError):
    """Content that is not what was asked for: the wrong bytes of a resumed body,
    a size other than the one announced, the wrong media type for the variant,
    or content that changed between the attempts of one download. The message
    names what was expected and what came; nothing of it was written to a file.
    """


class WaitTimeoutError(AsyncVideosError, TimeoutError):
    """``wait()`` ran out of time; ``video`` is the last state seen (or None)."""

    def __init__(self, message: str, *, video: Video | None, video_id: str) -> None:
        super().__init__(message)
        self.video = video
        self.video_id = video_id


class VideoFailedError(AsyncVideosError):
    """A job ended as ``failed`` and the caller asked for that to raise."""

    def __init__(self, video: Video) -> None:
        detail = f": {video.error.code}: {video.error.message}" if video.error else ""
        super().__init__(f"Video job {video.id} failed{detail}")
        self.video = video
        self.error: VideoError | None = video.error


class WebhookVerificationError(AsyncVideosError, ValueError):
    """A webhook request failed verification: a missing, malformed or wrong signature,
    a timestamp outside the tolerance, or a body that is not an event. The message
    says which; it never contains the secret."""


class AmbiguousCreateError(AsyncVideosError):
    """A paid call whose outcome the job ledger cannot tell: the POST may or may not
    have made a job, and ``AsyncVideos(reconcile="raise")`` (the default) does
    not guess.

    ``key`` is the job's key (its ``Idempotency-Key``); ``candidates`` the ids
    of the server's jobs that could be it (created since the attempt, owned
    by no other entry, matching its fields), possibly none. Settle it with
    ``videos.ledger.resolve(key, video_id=...)`` (that job is the one) or
    ``video_id=None`` (there is none: the next call sends it). The failure
    that made it ambiguous, if any, is the ``__cause__``.
    """

    def __init__(self, message: str, *, key: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.candidates = candidates


class ContentExpiredError(AsyncVideosError):
    """A job's content expired (``expires_at`` passed) before it was downloaded: the
    job was paid for, but its video can no longer be fetched. ``video_id`` is the
    job, ``expires_at`` when the server said the content would expire."""

    def __init__(self, message: str, *, video_id: str, expires_at: datetime | None) -> None:
        super().__init__(message)
        self.video_id = video_id
        self.expires_at = expires_at


class LedgerError(AsyncVideosError):
    """The job ledger's database failed (it cannot be opened, written or read), or
    holds a schema newer than this version of asyncvideos understands. The
    database's own exception is the ``__cause__``."""
