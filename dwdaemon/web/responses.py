"""Small response helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest


def json_body(request: IRequest, value: Any, status: int = 200,
              content_type: str = "application/json") -> bytes:
    """Serialise ``value`` as the response body (pretty, as Orthanc answers)."""
    body = json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader("Content-Type", content_type + ("; charset=utf-8"
                                                      if content_type.endswith("json") else ""))
    request.setHeader("Content-Length", str(len(body)))
    return body
