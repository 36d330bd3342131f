"""API fuzzing: schemathesis drives a real ``jwtkit serve`` process with requests generated from the server's
own OpenAPI document (``GET /openapi.json``), operation by operation and then along its links (stateful), and
checks every answer against that document: no 5xx, the documented status codes, content types, headers and
bodies, invalid input refused, authentication enforced where it is declared.

The run is derandomized and bounded: ``JWTKIT_FUZZ_EXAMPLES`` examples per operation (100 by default, which
keeps ``make test`` short) and half as many linked scenarios; ``make fuzz`` runs the same tests with more
(docs/http.md, "Fuzzing the API"). At the end the server's log must hold no traceback.

The fuzzer signs in as a registered user for the secured operations, so that its requests reach the handlers
rather than stopping at 401. Each request comes from its own client address (the server believes
``X-Forwarded-For`` from loopback, as behind a proxy): the per-address limits (10 registrations an hour, 100
failed sign-ins) would otherwise turn most of a run into 429s. The per-account and per-username limits still
apply, and the document lists the 429s they give.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from _support import PASSWORD, ServeProcess, add_user, start_serve, stop_serve
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from jwtkit.web._openapi import openapi_document

EXAMPLES = int(os.environ.get("JWTKIT_FUZZ_EXAMPLES", "100"))
USERNAME = "fuzzer"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, ignored_auth, unsupported_method,
          allow_header_conformance, use_after_free, ensure_resource_availability]
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])
# Client addresses (documentation ranges: only ever a header value): the fuzzer's own sign-ins, and one
# per fuzzed request.
SIGN_IN_ADDRESS = "2001:db8:ffff::1"
CLIENT_ADDRESSES = (f"2001:db8::{n:x}" for n in itertools.count(1))
# Schemathesis builds some cases (its coverage phase) while pytest collects, before any server runs: they get
# this stand-in, which each test swaps for the fuzz user's live token just before the request leaves.
STAND_IN = "Bearer fuzz-user-token"

# The configuration in full (no schemathesis.toml is read): a refusal at the edge (408, 413, 431) is a
# rejection of invalid input too.
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 422, 428, 429, 431]}}})
# The document the server serves (the first test checks that it is this one), loaded at import so that each
# operation is a test of its own.
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


class FuzzUser:
    """The registered user's access token, signed in again whenever a fuzzed request ended its session
    (logout, a revoked session, a password change): each call to :meth:`bearer` hands out a live one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = ""
        self.device = ""  # the known-device token: fuzzed wrong passwords lock out unknown devices only
        self.http = requests.Session()
        self.http.headers.update({"Accept": "application/json", "X-Forwarded-For": SIGN_IN_ADDRESS})

    def bearer(self) -> str:
        if self.token:
            alive = self.http.get(f"{self.url}/private", headers={"Authorization": f"Bearer {self.token}"},
                                  timeout=30)
            if alive.status_code == 200:
                return self.token
        body = {"username": USERNAME, "password": PASSWORD}
        if self.device:
            body["device_token"] = self.device
        answer = self.http.post(f"{self.url}/auth", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        pair = answer.json()
        self.token, self.device = pair["access_token"], pair["device_token"]
        return self.token


class Fuzzed:
    """The running server and what the fuzz tests share: its URL, the signed-in user, client addresses."""

    def __init__(self, process: ServeProcess) -> None:
        self.process = process
        self.url = process.url
        self.user = FuzzUser(process.url)

    def sign_in(self, case: schemathesis.Case) -> None:
        """The fuzz user's live token in place of the stand-in."""
        if case.headers and case.headers.get("Authorization") == STAND_IN:
            case.headers = {**case.headers, "Authorization": f"Bearer {self.user.bearer()}"}

    @staticmethod
    def client_headers() -> dict[str, str]:
        """Headers for one fuzzed request: a client address of its own."""
        return {"X-Forwarded-For": next(CLIENT_ADDRESSES)}


FUZZED: list[Fuzzed] = []  # the module's server, for the state machine (schemathesis builds it, not pytest)


@schema.auth(refresh_interval=None, retry_on=[])
class FuzzUserAuth:
    """Secured operations are sent as the fuzz user."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str | None:
        return STAND_IN if context.operation.definition.raw.get("security") else None

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**{name: value for name, value in (case.headers or {}).items()
                           if name.lower() != "authorization"}, "Authorization": data}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    process = start_serve(workdir, "--forwarded-allow-ips", "127.0.0.1")
    try:
        add_user(process, USERNAME)
        FUZZED[:] = [Fuzzed(process)]
        yield FUZZED[0]
        log = process.log()
        assert "Traceback" not in log and "unhandled error" not in log, log[-4000:]
    finally:
        FUZZED.clear()
        stop_serve(process)


def test_the_fuzzed_document_is_the_one_the_server_serves(fuzzed: Fuzzed) -> None:
    served = requests.get(f"{fuzzed.url}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == openapi_document()


@schema.parametrize()
@SETTINGS
def test_every_operation_answers_as_documented(case: schemathesis.Case, fuzzed: Fuzzed) -> None:
    fuzzed.sign_in(case)
    case.call_and_validate(base_url=fuzzed.url, headers=fuzzed.client_headers(), checks=CHECKS)


class Workflows(schema.as_state_machine()):  # type: ignore[misc]
    """Sequences along the document's links: sign in, then use the pair (private, sessions, refresh, logout,
    one session revoked by its ``sid``, ...). Sign-ins use the fuzz user's credentials and known-device
    token (its wrong current passwords lock the account for unknown devices), so the links out of
    ``POST /auth`` have a pair to follow."""

    def before_call(self, case: schemathesis.Case) -> None:
        FUZZED[0].sign_in(case)
        if case.operation.method.upper() == "POST" and case.operation.path == "/auth":
            user = FUZZED[0].user
            user.bearer()  # signed in once, so that it has a known-device token
            case.body = {**(case.body if isinstance(case.body, dict) else {}),
                         "username": USERNAME, "password": PASSWORD, "device_token": user.device}

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"base_url": FUZZED[0].url, "headers": FUZZED[0].client_headers()}

    def validate_response(self, response: schemathesis.Response, case: schemathesis.Case,
                          additional_checks: Any = None, **kwargs: Any) -> None:
        case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None,
                               recorder=self.recorder)


def test_linked_workflows_answer_as_documented(fuzzed: Fuzzed) -> None:
    Workflows.run(settings=settings(SETTINGS, max_examples=max(5, EXAMPLES // 2), stateful_step_count=6))
    assert fuzzed.user.token  # the scenarios signed in
