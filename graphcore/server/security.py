"""Who may talk to the server: the auth token, cross-origin writes, DNS rebinding, response headers.

- Loopback by default. Any other address needs a token; with one, every route (the WebSocket too)
  needs `Authorization: Bearer <token>`, the `diffgraph_token` cookie, or `?token=` on the routes an
  `<img>` tag or a WebSocket must reach (and on `/`, which then sets the cookie for the canvas).
  Tokens are compared in constant time.
- A write (POST, PUT, PATCH, DELETE) or a WebSocket whose `Origin` is not this server's own gets 403,
  so a web page the user visits cannot queue prompts or read events on a local server.
- Without a token (loopback only), requests must name a loopback host: a page that rebinds its own
  DNS name to 127.0.0.1 is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from yarl import URL

log = logging.getLogger(__name__)

TOKEN_ENV = "DIFFGRAPH_AUTH_TOKEN"
MIN_TOKEN_LENGTH = 16
TOKEN_COOKIE = "diffgraph_token"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Routes a browser reaches without being able to add a header: <img src>, new WebSocket(), the page.
QUERY_TOKEN_PATHS = frozenset({"/", "/ws", "/api/ws", "/view", "/api/view"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class InsecureBinding(ValueError):
    """Listening beyond loopback without an auth token."""


@dataclass(frozen=True)
class SecurityPolicy:
    token: str | None = None
    # Origins besides the server's own allowed to write (e.g. a front-end dev server).
    allowed_origins: frozenset[str] = field(default_factory=frozenset)

    @property
    def check_host(self) -> bool:
        return not self.token


POLICY_KEY = web.AppKey("security_policy", SecurityPolicy)


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_token(cli_token: str | None) -> str | None:
    token = cli_token or os.environ.get(TOKEN_ENV) or None
    token = token.strip() if token else None
    if token and len(token) < MIN_TOKEN_LENGTH:
        log.warning("the auth token is shorter than %d characters; anyone on the network may guess it",
                    MIN_TOKEN_LENGTH)
    return token or None


def check_binding(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise InsecureBinding(
            f"refusing to listen on {host!r} without an auth token: anyone who can reach this address could queue "
            f"work and read your images. Pass --auth-token TOKEN (or set ${TOKEN_ENV}), or listen on 127.0.0.1."
        )


def token_matches(supplied: str | None, expected: str) -> bool:
    if supplied is None:
        return False
    return hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _supplied_token(request: web.Request) -> tuple[str | None, bool]:
    """The token the request carries, and whether it came from the query string."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie:
        return cookie, False
    if request.path in QUERY_TOKEN_PATHS and "token" in request.query:
        return request.query["token"], True
    return None, False


def _host_port(host: str, scheme: str) -> tuple[str, int | None]:
    url = URL(f"{scheme}://{host}") if host else None
    if url is None or url.host is None:
        return "", None
    return url.host.lower().strip("[]"), url.port or DEFAULT_PORTS.get(scheme)


def origin_allowed(origin: str, request: web.Request, policy: SecurityPolicy) -> bool:
    if origin in policy.allowed_origins:
        return True
    try:
        url = URL(origin)
    except ValueError:
        return False
    if url.scheme not in ("http", "https") or url.host is None or url.path not in ("", "/"):
        return False  # includes "null" (sandboxed frames, file: pages)
    # Behind a TLS-terminating proxy the page's https origin differs from the request's scheme: such
    # set-ups name their origin with --allow-origin.
    origin_host, origin_port = url.host.lower().strip("[]"), url.port or DEFAULT_PORTS[url.scheme]
    host, port = _host_port(request.host, request.scheme)
    return (url.scheme, origin_host, origin_port) == (request.scheme, host, port)


def _refuse(status: int, error_type: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="diffgraph"'} if status == 401 else None
    body = {"error": {"type": error_type, "message": message, "details": "", "extra_info": {}}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def security_middleware(request: web.Request, handler) -> web.StreamResponse:
    policy = request.app[POLICY_KEY]
    if policy.check_host:
        host, _ = _host_port(request.host, "http")
        if not is_loopback(host):
            return _refuse(
                403, "forbidden_host",
                f"this server answers only requests addressed to a loopback name, not {request.host!r} "
                "(start it with --auth-token to serve other names)",
            )
    is_websocket = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    origin = request.headers.get(hdrs.ORIGIN)
    writes = request.method in WRITE_METHODS or is_websocket
    if writes and origin is not None and not origin_allowed(origin, request, policy):
        return _refuse(403, "cross_origin", f"cross-origin request from {origin!r} refused")
    if policy.token:
        supplied, from_query = _supplied_token(request)
        if not token_matches(supplied, policy.token):
            return _refuse(401, "unauthorized", "an auth token is required (Authorization: Bearer TOKEN)")
        if from_query and request.path == "/":
            # The canvas page: keep the token in a cookie and take it out of the address bar.
            response = web.Response(status=302, headers={hdrs.LOCATION: "/"})
            response.set_cookie(TOKEN_COOKIE, policy.token, httponly=True, samesite="Strict", path="/")
            return response
    return await handler(request)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
