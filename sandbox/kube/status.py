"""Kubernetes `Status` errors: what the API server returns instead of an object when a request fails."""

from __future__ import annotations

from typing import Any


class KubeApiError(Exception):
    """A failed request, rendered to the client as a `meta/v1 Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def _details(resource: str, name: str, group: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> KubeApiError:
    return KubeApiError(
        404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', _details(resource, name, group)
    )


def already_exists(resource: str, name: str, group: str = "") -> KubeApiError:
    return KubeApiError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        _details(resource, name, group),
    )


def conflict(resource: str, name: str, group: str, why: str) -> KubeApiError:
    return KubeApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        _details(resource, name, group),
    )


def invalid(resource: str, name: str, group: str, why: str) -> KubeApiError:
    return KubeApiError(
        422,
        "Invalid",
        f'{_qualified(resource, group)} "{name}" is invalid: {why}',
        _details(resource, name, group),
    )


def bad_request(message: str) -> KubeApiError:
    return KubeApiError(400, "BadRequest", message)


def unauthorized() -> KubeApiError:
    return KubeApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(message: str) -> KubeApiError:
    return KubeApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(accepted: tuple[str, ...]) -> KubeApiError:
    # k8s.io/apiserver pkg/endpoints/handlers/negotiation/errors.go errUnsupportedMediaType
    return KubeApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def not_acceptable(accepted: tuple[str, ...]) -> KubeApiError:
    # k8s.io/apiserver pkg/endpoints/handlers/negotiation/errors.go errNotAcceptable
    return KubeApiError(
        406, "NotAcceptable", "only the following media types are accepted: " + ", ".join(accepted)
    )


def gone(message: str) -> KubeApiError:
    return KubeApiError(410, "Expired", message)


def resource_not_served(path: str) -> KubeApiError:
    return KubeApiError(404, "NotFound", f"the server could not find the requested resource ({path})")


def success_status(resource: str, name: str, group: str, uid: str) -> dict[str, Any]:
    details = _details(resource, name, group)
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
