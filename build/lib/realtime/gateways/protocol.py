"""Validation of what clients send: each client event's payload has one strict shape."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)
ORDER_ID = re.compile(r"^[A-Za-z0-9_.:@|\-]{1,128}$")


class ClientError(Exception):
    """A refused client request: ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _order_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("orderId must be a string or an integer")
    text = str(value)
    if not ORDER_ID.fullmatch(text):
        raise ValueError("orderId must be 1-128 characters of [A-Za-z0-9_.:@|-]")
    return text


OrderId = Annotated[str, BeforeValidator(_order_id)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OrderRequest(_Strict):
    orderId: OrderId


class UserUpdateRequest(_Strict):
    userId: str = Field(min_length=1, max_length=256)
    updates: dict[str, Any] = Field(min_length=1)
    operationId: str = Field(min_length=1, max_length=128)


class TokenRequest(_Strict):
    token: str = Field(min_length=1, max_length=16 * 1024)


class ResumeRequest(_Strict):
    position: str = Field(min_length=1, max_length=100)


def parse_order_id(payload: object) -> str:
    """``subscribe_order_updates`` accepts ``"42"``, ``42`` or ``{"orderId": "42"}``."""
    if isinstance(payload, dict):
        return parse(OrderRequest, payload).orderId
    try:
        return _order_id(payload)
    except ValueError as exc:
        raise ClientError("invalid", str(exc)) from None


def parse_token(payload: object) -> str:
    """Token events accept the token string or ``{"token": ...}``."""
    if isinstance(payload, str):
        payload = {"token": payload}
    return parse(TokenRequest, payload).token


def parse(model: type[M], payload: object) -> M:
    """Validate ``payload`` as ``model``; a mismatch is a ``ClientError("invalid")``."""
    if not isinstance(payload, dict):
        raise ClientError("invalid", f"expected an object for {model.__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise ClientError("invalid", f"{where}: {first['msg']}") from None
