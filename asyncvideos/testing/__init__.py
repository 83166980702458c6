"""Testing tools for code that uses asyncvideos: a faithful fake of the Videos API.

``FakeVideosAPI`` serves the OpenAI Videos endpoints over real HTTP on loopback, with
jobs that progress over a (manual or real) clock, deterministic content bytes, request
recording and fault injection. The pytest plugin (``asyncvideos.testing._plugin``)
provides the ``fake_videos_api`` and ``videos_client`` fixtures.
"""

from __future__ import annotations

# The client's retry module owns the switch; re-exported here because tests want it
# next to the fake. (asyncvideos._retry is written by the client's authors.)
from asyncvideos._retry import retry_waits_disabled as no_retry_waits

from ._clock import Clock, ManualClock, RealClock
from ._faults import Fault
from ._ratelimit import RateLimit
from ._recording import RecordedRequest
from ._server import DEFAULT_API_KEY, FakeVideosAPI
from ._webhooks import WebhookDelivery, WebhookFaults, sign_webhook

__all__ = [
    "DEFAULT_API_KEY",
    "Clock",
    "FakeVideosAPI",
    "Fault",
    "ManualClock",
    "RateLimit",
    "RealClock",
    "RecordedRequest",
    "WebhookDelivery",
    "WebhookFaults",
    "no_retry_waits",
    "sign_webhook",
]
