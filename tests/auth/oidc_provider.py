"""A small but real OpenID Connect provider for the tests, served over HTTP by uvicorn.

It speaks the parts of OpenID Connect tezgah uses: discovery, a JWKS with a freshly generated RSA
key, an authorization endpoint that approves the configured user at once, a token endpoint that
checks the client's credentials, the code (single use), the redirect URI and the PKCE verifier
against the stored S256 challenge, and a user info endpoint. It also answers GitHub's plain OAuth2
shape (``/user`` and ``/user/emails``). ``behaviour`` lets a test make it misbehave (wrong nonce,
expired token, another audience, ...); every request it receives is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "tezgah-test-client"
CLIENT_SECRET = "tezgah-test-client-secret"


@dataclass
class ProviderUser:
    """The person who signs in at the provider."""

    sub: str
    email: str | None
    email_verified: object = True  # sent as is: True, False, "true", or None to leave it out
    name: str = "Ada Lovelace"
    locale: str | None = None


@dataclass
class Behaviour:
    deny: bool = False  # the user refuses: redirect back with error=access_denied
    nonce: str | None = None  # put this nonce in the ID token instead of the requested one
    exp_offset: int = 300  # ID token exp = now + exp_offset
    audience: str | None = None  # ID token aud instead of the client id
    issuer: str | None = None  # ID token iss instead of the provider's issuer
    discovery_issuer: str | None = None  # the issuer named by the discovery document
    sign_with_unknown_key: bool = False  # sign with a key that is not in the JWKS
    email_in_id_token: bool = True  # leave email claims out: the client must ask /userinfo
    userinfo_sub: str | None = None  # /userinfo answers about another subject


@dataclass
class IssuedCode:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    nonce: str | None
    user: ProviderUser


@dataclass
class Recorded:
    authorize: list[dict[str, str]] = field(default_factory=list)
    token: list[dict[str, str]] = field(default_factory=list)
    jwks: int = 0
    userinfo: int = 0


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _oauth_error(error: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers={"Cache-Control": "no-store"})


class OIDCTestProvider:
    def __init__(self, redirect_uri_prefix: str) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.redirect_uri_prefix = redirect_uri_prefix
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"}, private=True)
        self.unknown_key = RSAKey.generate_key(2048, parameters={"kid": "rogue-key"}, private=True)
        self.user: ProviderUser | None = None
        self.behaviour = Behaviour()
        self.recorded = Recorded()
        self._codes: dict[str, IssuedCode] = {}
        self._access_tokens: dict[str, ProviderUser] = {}
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo),
                Route("/user", self.github_user),
                Route("/user/emails", self.github_emails),
            ]
        )
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            access_log=False,
            lifespan="off",
            # Leave the process-wide uvicorn loggers as tezgah configured them (other tests
            # check that set-up): no logging config, no level.
            log_config=None,
            log_level=None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    # Life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test OIDC provider did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def reset(self) -> None:
        with self._lock:
            self.user = None
            self.behaviour = Behaviour()
            self.recorded = Recorded()
            self._codes.clear()
            self._access_tokens.clear()

    # Endpoints ----------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.behaviour.discovery_issuer or self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        self.recorded.jwks += 1
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.recorded.authorize.append(params)
        redirect_uri = params.get("redirect_uri", "")
        # Never redirect to an unregistered place: answer the browser directly.
        if params.get("client_id") != CLIENT_ID:
            return Response("unknown client", status_code=400)
        if not redirect_uri.startswith(self.redirect_uri_prefix):
            return Response("unregistered redirect_uri", status_code=400)
        state = params.get("state", "")

        def back(**values: str) -> Response:
            return RedirectResponse(f"{redirect_uri}?{urlencode({**values, 'state': state})}", 302)

        if self.behaviour.deny:
            return back(error="access_denied")
        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        # PKCE is mandatory here, and only S256.
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return back(error="invalid_request")
        if self.user is None:
            return back(error="login_required")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = IssuedCode(
                client_id=CLIENT_ID,
                redirect_uri=redirect_uri,
                code_challenge=params["code_challenge"],
                scope=params.get("scope", ""),
                nonce=params.get("nonce"),
                user=self.user,
            )
        return back(code=code)

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client_id == CLIENT_ID and secrets.compare_digest(secret, CLIENT_SECRET)

    async def token(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        self.recorded.token.append(form)
        if not self._client_authenticated(request, form):
            return _oauth_error("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        with self._lock:
            issued = self._codes.pop(form.get("code", ""), None)  # single use
        if issued is None or issued.redirect_uri != form.get("redirect_uri"):
            return _oauth_error("invalid_grant")
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(s256(verifier), issued.code_challenge):
            return _oauth_error("invalid_grant")
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access_token] = issued.user
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": issued.scope,
        }
        if "openid" in issued.scope.split():
            body["id_token"] = self._id_token(issued)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _id_token(self, issued: IssuedCode) -> str:
        behaviour, user = self.behaviour, issued.user
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": behaviour.issuer or self.issuer,
            "sub": user.sub,
            "aud": behaviour.audience or issued.client_id,
            # Names this client as the authorized party even when the audience is another one:
            # only the client's own audience check can refuse such a token.
            "azp": issued.client_id,
            "iat": now,
            "exp": now + behaviour.exp_offset,
            "auth_time": now,
            "name": user.name,
        }
        nonce = behaviour.nonce or issued.nonce
        if nonce is not None:
            claims["nonce"] = nonce
        if behaviour.email_in_id_token:
            claims.update(self._email_claims(user))
        if user.locale:
            claims["locale"] = user.locale
        key = self.unknown_key if behaviour.sign_with_unknown_key else self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    @staticmethod
    def _email_claims(user: ProviderUser) -> dict[str, Any]:
        claims: dict[str, Any] = {}
        if user.email is not None:
            claims["email"] = user.email
        if user.email_verified is not None:
            claims["email_verified"] = user.email_verified
        return claims

    def _bearer_user(self, request: Request) -> ProviderUser | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        return self._access_tokens.get(header[7:])

    async def userinfo(self, request: Request) -> Response:
        self.recorded.userinfo += 1
        user = self._bearer_user(request)
        if user is None:
            return _oauth_error("invalid_token", 401)
        body = {
            "sub": self.behaviour.userinfo_sub or user.sub,
            "name": user.name,
            **self._email_claims(user),
        }
        return JSONResponse(body)

    async def github_user(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        # GitHub's ids are numbers, and "email" is the public address (often null).
        return JSONResponse({"id": int(user.sub), "login": "ada", "name": user.name, "email": None})

    async def github_emails(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse(
            [
                {"email": "noreply@users.example.com", "primary": False, "verified": True},
                {"email": user.email, "primary": True, "verified": user.email_verified is True},
            ]
        )
