"""The served OpenAPI document lists the error responses the API really gives, in OpenAI's error shape."""

from __future__ import annotations

from api.app import create_app


def test_every_v1_operation_documents_its_errors_and_no_422() -> None:
    doc = create_app().openapi()
    assert doc["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    operations = [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items() if p.startswith("/v1/")]
    assert len(operations) > 30
    for path, method, op in operations:
        codes = set(op["responses"])
        assert "422" not in codes, (path, method)  # validation errors are 400s
        assert {"400", "401", "403", "404", "429", "503"} <= codes, (path, method, codes)
        ref = op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorResponse"


def test_real_errors_match_the_documented_body(api) -> None:  # type: ignore[no-untyped-def]
    from tests.contract.openai_spec import assert_conforms

    for r in (
        api.get("/v1/fine_tuning/jobs/ftjob-nope"),
        api.post("/v1/fine_tuning/jobs", json={"model": ""}),
        api.get("/v1/files", params={"limit": "x"}),
    ):
        assert r.status_code in (400, 404)
        assert_conforms("ErrorResponse", r.json())
