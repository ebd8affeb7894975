"""Google API errors, in the JSON shape google.api_core turns into typed exceptions."""

from __future__ import annotations

from aiohttp import web

_STATUS_NAME_BY_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# google.rpc.Code numbers, used where an operation carries a google.rpc.Status.
RPC_CODE_BY_STATUS_NAME = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
# Compute's legacy `errors[].reason` for each status.
_LEGACY_REASON_BY_CODE = {
    400: "invalid",
    401: "required",
    403: "forbidden",
    404: "notFound",
    409: "alreadyExists",
    429: "rateLimitExceeded",
    503: "backendError",
}


def status_name_for_code(code: int) -> str:
    if code in _STATUS_NAME_BY_CODE:
        return _STATUS_NAME_BY_CODE[code]
    return "INTERNAL" if code >= 500 else "UNKNOWN"


class GcpError(Exception):
    """An API error answered to the client (and, inside an operation, its error)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        reason: str | None = None,
        details: list[dict] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or status_name_for_code(code)
        self.reason = reason or _LEGACY_REASON_BY_CODE.get(code, "error")
        self.details = details or []

    def body(self) -> dict:
        error: dict = {
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def rpc_status(self) -> dict:
        """As google.rpc.Status, the error of a google.longrunning or Container operation."""
        status = {"code": RPC_CODE_BY_STATUS_NAME.get(self.status, 2), "message": self.message}
        if self.details:
            status["details"] = self.details
        return status

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.code)


def bad_request(message: str) -> GcpError:
    return GcpError(400, message)


def in_use(resource: str, path: str, user: str) -> GcpError:
    """Compute refusing to delete `resource` at `path` while `user` (a quoted link, or a GKE cluster)
    still uses it."""
    return GcpError(
        400,
        f"The {resource} resource '{path}' is already being used by {user}",
        reason="resourceInUseByAnotherResource",
    )


def not_found(message: str) -> GcpError:
    return GcpError(404, message)


def already_exists(message: str) -> GcpError:
    return GcpError(409, message)


def unauthenticated() -> GcpError:
    return GcpError(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
        reason="authError",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                "domain": "googleapis.com",
            }
        ],
    )


def service_disabled(service: str, title: str, project_number: str) -> GcpError:
    activation_url = (
        f"https://console.developers.google.com/apis/api/{service}/overview?project={project_number}"
    )
    return GcpError(
        403,
        f"{title} has not been used in project {project_number} before or it is disabled. Enable it by "
        f"visiting {activation_url} then retry.",
        reason="accessNotConfigured",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": service,
                    "consumer": f"projects/{project_number}",
                    "activationUrl": activation_url,
                },
            }
        ],
    )


@web.middleware
async def gcp_error_middleware(request: web.Request, handler):
    """Turn GcpError and aiohttp's own 404/405 into Google-style JSON errors."""
    try:
        return await handler(request)
    except GcpError as error:
        return error.response()
    except web.HTTPNotFound:
        return GcpError(404, f"The requested URL {request.path} was not found on this server.").response()
    except web.HTTPMethodNotAllowed:
        # Google front ends answer 404 for a method a path does not support.
        return GcpError(404, f"Method {request.method} is not supported for {request.path}.").response()
