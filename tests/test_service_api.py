"""Property-based API tests generated from the OpenAPI document (schemathesis) against a real
server: for every operation, generated requests (valid and not) get no 5xx, and every response
matches the document (its status, content type, headers and schema); a request the document
does not allow is refused with a 4xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service_server import Server, cli, serving

OPENAPI = Path(__file__).parents[1] / "schemas" / "openapi.json"
schema = schemathesis.openapi.from_path(OPENAPI)


@schemathesis.serializer("application/pdf")
def _pdf(ctx: object, value: object) -> bytes:
    """A generated PDF body (a string of the binary format) as bytes; most are no PDF at all."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@schemathesis.serializer("application/zip", "application/x-tar", "application/gzip")
def _archive(ctx: object, value: object) -> bytes:
    """A generated archive body (a job's) as bytes; most are no archive at all."""
    value = getattr(value, "data", value)  # schemathesis's Binary for format: binary
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("api")
    made = cli("keys", "create", "--name", "api", "--store", str(tmp / "service.sqlite"))
    with serving(tmp, "--letter-workers", "1", "--max-body", "1M") as srv:
        srv.key = made.stdout.strip()
        yield srv


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_document(case, live: Server):
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {live.key}"},
        # A request of the right shape may carry a file that is no letter: its 4xx problem is
        # the right answer, not a rejection of valid data.
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
