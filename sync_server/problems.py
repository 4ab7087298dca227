"""Refusals of the sync server's API as RFC 9457 problem details (``application/problem+json``).

Each refusal has a stable ``type`` (a URN ending in its slug), an HTTP status and a title; ``detail`` says what
was wrong in this case and extra members carry data a client acts on (``expected_first``, ``seq``).
"""

from __future__ import annotations

PROBLEM_TYPE_PREFIX = "urn:station-kit:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"

#: slug -> (HTTP status, title). The slugs are the contract; tests and docs/protocol.md list them.
PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The request is not well-formed"),
    "malformed-batch": (400, "The batch is not well-formed"),
    "undecryptable": (400, "The batch or request does not decrypt"),
    "bad-signature": (401, "Not signed with the station's key"),
    "unknown-station": (404, "No such station"),
    "station-not-enrolled": (403, "The station has not enrolled yet"),
    "station-revoked": (403, "The station is revoked"),
    "station-flagged": (409, "The station is flagged after a fork; an operator must look at it"),
    "fork": (409, "The batch contradicts entries the bank already holds"),
    "gap": (409, "The batch does not start right after the last acknowledged entry"),
    "invalid-entry": (422, "An entry of the batch does not verify"),
    "too-large": (413, "The batch or request is too large"),
    "rate-limited": (429, "Too many requests; retry after the time Retry-After says"),
    "malformed-authorization": (400, "The authorization request is not well-formed"),
    "clock-skew": (400, "The request's time is too far from the bank's"),
    "replayed": (409, "The request's nonce has been used before"),
    "authorization-conflict": (409, "The txn was asked for with other fields"),
    "enrollment-code-invalid": (403, "The enrollment code is not valid"),
    "enrollment-code-used": (409, "The enrollment code has already been used"),
    "enrollment-code-expired": (410, "The enrollment code has expired"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "database-unavailable": (503, "The bank's database cannot be reached just now; retry after Retry-After"),
    "internal-error": (500, "The server could not complete the request"),
}


class Problem(Exception):
    """A refusal the API turns into a problem+json response."""

    def __init__(self, slug: str, detail: str, **extra):
        if slug not in PROBLEMS:
            raise ValueError(f"unknown problem {slug!r}")
        super().__init__(detail)
        self.slug = slug
        self.detail = detail
        self.extra = extra

    @property
    def status(self) -> int:
        """The HTTP status of this refusal."""
        return PROBLEMS[self.slug][0]

    def body(self, instance: str | None = None) -> dict:
        """The problem+json body (RFC 9457)."""
        status, title = PROBLEMS[self.slug]
        body = {"type": PROBLEM_TYPE_PREFIX + self.slug, "title": title, "status": status, "detail": self.detail}
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body
