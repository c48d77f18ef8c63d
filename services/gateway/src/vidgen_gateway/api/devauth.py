"""``POST /api/dev/token``: sign in as any user, for development only.

The route is added to the app only when :attr:`GatewaySettings.dev_sign_in` holds (never with
``VIDGEN_ENV=production``, never when tokens are verified against a JWKS): in production it
does not exist, so it is not in ``/openapi.json`` either and answers 404 like any unknown path.
The token is the one ``vidgen token <user>`` prints (HS256, ``VIDGEN_JWT_DEV_TTL_S``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import Field

from vidgen_common.devtokens import SUBJECT
from vidgen_gateway.api.deps import SettingsDep
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.auth import mint_dev_token
from vidgen_gateway.schemas import ApiModel

router = APIRouter(prefix="/api/dev", tags=["development"])


class DevTokenRequest(ApiModel):
    user_id: str = Field(
        pattern=SUBJECT.pattern,
        min_length=1,
        max_length=128,
        description="Who to sign in as (becomes the token's `sub`)",
        examples=["alice"],
    )


class DevTokenResponse(ApiModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`")
    user_id: str
    expires_at: datetime


@router.post(
    "/token",
    response_model=DevTokenResponse,
    summary="Development only: a token for any user (absent in production)",
    responses=error_responses(400, 422),
)
async def dev_token(body: DevTokenRequest, settings: SettingsDep) -> DevTokenResponse:
    expires = int(time.time()) + settings.jwt_dev_ttl_s
    token = mint_dev_token(settings, body.user_id)
    return DevTokenResponse(
        token=token, user_id=body.user_id, expires_at=datetime.fromtimestamp(expires, UTC)
    )
