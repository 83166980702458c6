"""Webhook events for video jobs: verify them, receive them, and wait on them.

``verify_webhook(body, headers, secret)`` checks one request (Standard Webhooks
signatures, as OpenAI sends them); ``WebhookReceiver(secret)`` receives them
for a service (``receiver.handle`` is an ``aiohttp.web`` handler) and, given to
``AsyncVideos(webhooks=receiver)``, makes waits finish as soon as their job's
``video.completed`` or ``video.failed`` event arrives.
"""

from ._errors import WebhookVerificationError
from ._webhooks import WebhookEvent, WebhookReceiver, verify_webhook

__all__ = [
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookVerificationError",
    "verify_webhook",
]
