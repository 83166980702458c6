"""asyncvideos: an asyncio client for the OpenAI Videos API and compatible gateways.

Everything public is importable from here; other modules are private, except
``asyncvideos.testing`` (a fake of the API for tests).
"""

from ._client import PostOptions, RawResponse, RequestOptions
from ._config import NOT_GIVEN, NotGiven
from ._download import ContentStream
from ._errors import (
    AmbiguousCreateError,
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncVideosError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentExpiredError,
    ContentMismatchError,
    InternalServerError,
    LedgerError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    UnprocessableEntityError,
    VideoFailedError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from ._models import (
    DEFAULT_WAITING_STATUSES,
    Character,
    DeletedVideo,
    Video,
    VideoError,
    VideoPage,
)
from ._retry import RetryDetails
from ._version import __version__
from ._videos import AsyncVideos, VideosWithRawResponse, WaitOptions
from ._waiting import WaitFailure, WaitResult, WaitSuccess

__all__ = [
    "DEFAULT_WAITING_STATUSES",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousCreateError",
    "AsyncVideos",
    "AsyncVideosError",
    "AuthenticationError",
    "BadRequestError",
    "Character",
    "ConflictError",
    "ContentExpiredError",
    "ContentMismatchError",
    "ContentStream",
    "DeletedVideo",
    "InternalServerError",
    "LedgerError",
    "NotFoundError",
    "NotGiven",
    "PaginationError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "PostOptions",
    "RateLimitError",
    "RawResponse",
    "RedirectError",
    "RequestOptions",
    "ResponseTooLargeError",
    "RetryDetails",
    "UnprocessableEntityError",
    "Video",
    "VideoError",
    "VideoFailedError",
    "VideoPage",
    "VideosWithRawResponse",
    "WaitOptions",
    "WaitFailure",
    "WaitResult",
    "WaitSuccess",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "__version__",
]
