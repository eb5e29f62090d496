"""FastAPI dependencies: the service container, the admin check, the match pipeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.security import token_matches
from app.pipeline.match import MatchPipeline
from app.services import Services

_bearer = HTTPBearer(auto_error=False)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_pipeline(services: ServicesDep) -> MatchPipeline:
    return services.require_pipeline()


PipelineDep = Annotated[MatchPipeline, Depends(get_pipeline)]


def require_admin(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "admin bearer token required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not token_matches(credentials.credentials, services.settings.admin_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the token is not an admin token")


AdminDep = Depends(require_admin)
