"""The pure protocol rules, tested without a network: ids, statuses, waits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import urlencode

import pytest
from yarl import URL

from asyncvideos import (
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    UnprocessableEntityError,
)
from asyncvideos._protocol import (
    decipher,
    parse_retry_after,
    path_segment,
    poll_after,
    query_string,
    request_id,
    request_url,
    status_error,
)
from asyncvideos._retry import should_retry_header, status_is_retryable


class TestPathSegment:
    @pytest.mark.parametrize(
        ("value", "encoded"),
        [
            ("video_123", "video_123"),
            ("a/b", "a%2Fb"),
            ("a?b#c", "a%3Fb%23c"),
            ("50%", "50%25"),
            ("..a", "..a"),
            ("é", "%C3%A9"),
            (" x ", "%20x%20"),
        ],
    )
    def test_encodes_into_one_segment(self, value: str, encoded: str) -> None:
        """Every character but the unreserved ones is percent-encoded, '/' included."""
        assert path_segment(value, "video") == encoded

    @pytest.mark.parametrize("value", ["", "   ", ".", "..", "a\nb", "a\x00", "\x7f"])
    def test_rejects_ids_that_cannot_be_a_segment(self, value: str) -> None:
        """Empty, dot segments and control characters are refused, naming the argument."""
        with pytest.raises(ValueError, match="video"):
            path_segment(value, "video")

    @pytest.mark.parametrize("value", [None, 123, b"video_1", ["a"]])
    def test_rejects_non_strings(self, value: object) -> None:
        """A non-string id is a TypeError that names the argument."""
        with pytest.raises(TypeError, match="video"):
            path_segment(value, "video")


class TestRequestUrl:
    @pytest.mark.parametrize(
        "base",
        [
            "https://api.openai.com/v1",
            "http://127.0.0.1:8089/1/v1",
            "http://localhost",
            "HTTP://Gateway.Example:8080/A%2Fb/openai",
            "http://[::1]:8080/x",
            "https://h:443/p;v=1/v1",
            "https://h//double",
            "https://h/%7Euser/caf%C3%A9",
            "https://xn--bcher-kva.example/v1",
        ],
    )
    @pytest.mark.parametrize("path", ["/videos", "/videos/a%2Fb/content", "/videos/characters/c"])
    @pytest.mark.parametrize("query", ["", "limit=10&after=x%2By", "variant=thumbnail"])
    def test_is_what_parsing_the_joined_string_gives(
        self, base: str, path: str, query: str
    ) -> None:
        """Built from parts, the URL is the one ``base_url + path + ?query`` parses to."""
        built = request_url(URL(base, encoded=True), path, query)
        parsed = URL(base + path + (f"?{query}" if query else ""), encoded=True)
        assert built == parsed
        assert str(built) == str(parsed)
        assert (built.raw_host, built.port, built.raw_path, built.raw_query_string) == (
            parsed.raw_host,
            parsed.port,
            parsed.raw_path,
            parsed.raw_query_string,
        )


class TestQueryString:
    @pytest.mark.parametrize(
        "query",
        [
            {},
            {"limit": "100", "order": "asc"},
            {"limit": "100", "order": "asc", "after": "video_68d7512d07848190b3e45da0ecbebcde"},
            {"after": "a b+c&d=e/f?g#h%i"},
            {"after": "caf\u00e9 \U0001f3ac", "x": ""},
            {"": "", "a.b~c-d_e": "~._-"},
            {"variant": "thumbnail", "api-version": "2025-04-01-preview"},
        ],
    )
    def test_is_urlencode(self, query: dict[str, str]) -> None:
        """Plain names and values are joined as they are, and the rest is quoted: the
        same string as urlencode gives."""
        assert query_string(query) == urlencode(query)


class TestStatusError:
    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, BadRequestError),
            (401, AuthenticationError),
            (403, PermissionDeniedError),
            (404, NotFoundError),
            (409, ConflictError),
            (422, UnprocessableEntityError),
            (429, RateLimitError),
            (500, InternalServerError),
            (503, InternalServerError),
            (418, APIStatusError),
        ],
    )
    def test_maps_status_to_class(self, status: int, cls: type[APIStatusError]) -> None:
        """Each status becomes its own subclass; others the base class."""
        error = status_error(status, {}, b"")
        assert type(error) is cls
        assert error.status_code == status

    def test_reads_openai_shaped_body(self) -> None:
        """message, code, param, type and the request id come from the response."""
        body = (
            b'{"error": {"message": "Invalid size", "type": "invalid_request_error",'
            b' "param": "size", "code": "invalid_value"}}'
        )
        error = status_error(400, {"x-request-id": "req_1"}, body)
        assert (error.message, error.code, error.param, error.type) == (
            "Invalid size",
            "invalid_value",
            "size",
            "invalid_request_error",
        )
        assert error.request_id == "req_1"
        assert error.body == {
            "error": {
                "message": "Invalid size",
                "type": "invalid_request_error",
                "param": "size",
                "code": "invalid_value",
            }
        }
        assert str(error) == "Error code: 400 - Invalid size (request id: req_1)"

    @pytest.mark.parametrize("code", ["insufficient_quota", "quota_exceeded"])
    def test_spent_quota_is_its_own_class(self, code: str) -> None:
        """A 429 whose code says the quota is spent is a QuotaExceededError."""
        body = f'{{"error": {{"message": "quota", "type": "x", "code": "{code}"}}}}'.encode()
        assert isinstance(status_error(429, {}, body), QuotaExceededError)

    def test_html_body_keeps_a_preview(self) -> None:
        """A body that is not JSON gives a message with a preview, not a crash."""
        error = status_error(502, {}, b"<html><body>Bad gateway</body></html>")
        assert isinstance(error, InternalServerError)
        assert "Bad gateway" in error.message
        assert error.code is None

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b'{"error": "plain text error"}', "plain text error"),
            (b'{"message": "top-level message"}', "top-level message"),
            (b'{"detail": 1}', 'HTTP 500: {"detail": 1}'),
            (b"", "HTTP 500"),
            (b'{"error": {"message": 42, "code": 7}}', "42"),
        ],
    )
    def test_error_bodies_that_are_not_openai_shaped(self, body: bytes, message: str) -> None:
        """Gateways shape errors differently; each still gives a readable message."""
        assert status_error(500, {}, body).message == message


class TestRetryAfter:
    def test_milliseconds_win(self) -> None:
        """retry-after-ms is read first, in milliseconds."""
        assert parse_retry_after({"retry-after-ms": "200", "retry-after": "5"}) == 0.2

    def test_seconds(self) -> None:
        assert parse_retry_after({"retry-after": "3"}) == 3.0

    def test_http_date(self) -> None:
        """An HTTP date is turned into the seconds until then."""
        when = datetime.now(timezone.utc) + timedelta(seconds=30)
        wait = parse_retry_after({"retry-after": format_datetime(when, usegmt=True)})
        assert wait is not None
        assert 25 < wait <= 30

    def test_past_date_is_zero(self) -> None:
        when = datetime.now(timezone.utc) - timedelta(seconds=30)
        assert parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}) == 0.0

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"retry-after": "soon"},
            {"retry-after": "-1"},
            {"retry-after-ms": "x"},
            {"retry-after-ms": "-5"},
            {"retry-after": "Mon, 99 Foo 2020"},
        ],
    )
    def test_garbage_is_ignored(self, headers: dict[str, str]) -> None:
        assert parse_retry_after(headers) is None


class TestRetryHeadersStatusesAndBodies:
    """x-should-retry, the retryable statuses, openai-poll-after-ms, and JSON decoding."""

    def test_should_retry_header(self) -> None:
        assert should_retry_header({"x-should-retry": "true"}) is True
        assert should_retry_header({"x-should-retry": "false"}) is False
        assert should_retry_header({"x-should-retry": "maybe"}) is None
        assert should_retry_header({}) is None

    @pytest.mark.parametrize(
        ("status", "retry"),
        [
            (408, True),
            (409, True),
            (429, True),
            (500, True),
            (599, True),
            (400, False),
            (404, False),
            (401, False),
        ],
    )
    def test_status_rule(self, status: int, retry: bool) -> None:
        assert status_is_retryable(status) is retry

    def test_poll_after(self) -> None:
        assert poll_after({"openai-poll-after-ms": "250"}) == 0.25
        assert poll_after({"openai-poll-after-ms": "soon"}) is None
        assert poll_after({"openai-poll-after-ms": "-1"}) is None
        assert poll_after({}) is None

    def test_decode_json_rejects_non_json(self) -> None:
        with pytest.raises(APIResponseValidationError, match="text/html"):
            decipher(200, {"content-type": "text/html"}, b"<html>")


class TestGatewayHeaderFallbacks:
    def test_retry_after_is_read_as_litellm_forwards_it(self) -> None:
        assert parse_retry_after({"llm_provider-retry-after-ms": "250"}) == 0.25
        assert parse_retry_after({"llm_provider-retry-after": "3"}) == 3.0
        assert parse_retry_after({"retry-after": "1", "llm_provider-retry-after": "3"}) == 1.0

    def test_request_id_order(self) -> None:
        assert request_id({"request-id": "b", "x-litellm-call-id": "c"}) == "b"
        assert request_id({"apim-request-id": "d", "llm_provider-x-request-id": "e"}) == "d"
        assert request_id({"llm_provider-x-request-id": "e"}) == "e"
        assert request_id({"x-request-id": ""}) is None
