"""What a hostile or careless client tried (issue 11), each answered with a clear 4xx in
the error envelope, priced, bounded or refused. The cases that need real sockets (slow
headers, chunked bodies, 431, graceful stop) are in tests/test_server.py."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.cache import cache

from tests.imagefiles import data_url, png_bytes, upload

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "imagehub.settings"}


def _error(response, status: int, *, param=None, code=None) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


def _post_json(api, path: str, raw: bytes | str, **headers):
    return api.generic(
        "POST", path, raw, content_type="application/json", HTTP_PREFER="respond-async", **headers
    )


# --- 500s that were -----------------------------------------------------------------------
@pytest.mark.parametrize("depth", [33, 5_000, 100_000])
def test_deeply_nested_json_is_refused_before_it_recurses(api, depth):
    body = '{"prompt": ' + "[" * depth + "]" * depth + "}"
    error = _error(_post_json(api, "/v1/images/generations", body), 400, code="invalid_json")
    assert "nested deeper than 32" in error["message"]


def test_shallow_nesting_is_still_parsed(api):
    body = json.dumps({"prompt": "x", "extra": [[[[1]]]]})
    _error(_post_json(api, "/v1/images/generations", body), 400, param="extra")


def test_brackets_inside_strings_do_not_count_as_nesting(api):
    body = json.dumps({"prompt": "[" * 500 + "{" * 500, "size": "64x64"})
    assert _post_json(api, "/v1/images/generations", body).status_code == 202


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(api, constant):
    body = f'{{"prompt": "x", "guidance_scale": {constant}}}'
    _error(_post_json(api, "/v1/images/generations", body), 400, code="invalid_json")


@pytest.mark.parametrize("n", [2, 10])
def test_seed_near_2_63_with_several_images_is_a_400(api, n):
    body = {"prompt": "x", "size": "64x64", "n": n, "seed": 2**63 - 1}
    error = _error(_post_json(api, "/v1/images/generations", json.dumps(body)), 400, param="seed")
    assert str(2**63 - n) in error["message"]


def test_the_largest_seed_that_fits_is_accepted(api):
    # The second image is drawn with 2**63 - 1, the largest seed there is.
    body = {"prompt": "x", "size": "64x64", "n": 2, "seed": 2**63 - 2}
    assert _post_json(api, "/v1/images/generations", json.dumps(body)).status_code == 202


@pytest.mark.parametrize("seed", [2**63, 2**64, -1, 10**30])
def test_seeds_out_of_range_are_400(api, seed):
    body = {"prompt": "x", "size": "64x64", "seed": seed}
    _error(_post_json(api, "/v1/images/generations", json.dumps(body)), 400, param="seed")


def test_multipart_with_too_many_files_is_a_400(api):
    files = {f"image{i}": upload(png_bytes((8, 8)), name=f"{i}.png") for i in range(101)}
    response = api.post("/v1/images/edits", {"prompt": "x", **files}, format="multipart")
    _error(response, 400, code="too_many_files")


def test_multipart_with_too_many_fields_is_a_400(api):
    fields = {f"f{i}": "x" for i in range(1_001)}
    response = api.post(
        "/v1/images/edits",
        {"prompt": "x", "image": upload(png_bytes((8, 8))), **fields},
        format="multipart",
    )
    _error(response, 400, code="too_many_fields")


@pytest.mark.parametrize("page", ["99999999999999999999999", "-1", "0", "x", "1e9"])
def test_usage_page_out_of_range_is_a_400(api, page):
    _error(api.get(f"/v1/usage?page={page}"), 400, param="page")


@pytest.mark.parametrize("limit", ["99999999999999999999999", "0", "abc"])
def test_usage_limit_out_of_range_is_a_400(api, limit):
    _error(api.get(f"/v1/usage?limit={limit}"), 400, param="limit")


def test_bad_host_is_a_400_with_one_log_line(api):
    handler = logging.getLogger("django.security.DisallowedHost").handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        response = api.get("/v1/models", HTTP_HOST="evil.example")
    finally:
        handler.setStream(previous)
    _error(response, 400, param="Host", code="invalid_host")
    logged = stream.getvalue().strip().splitlines()
    assert len(logged) == 1 and "evil.example" in logged[0]
    assert "Traceback" not in stream.getvalue()


def test_bad_host_on_a_page_is_a_400_too(client):
    assert client.get("/login/", HTTP_HOST="evil.example").status_code == 400


# --- strict types where the OpenAI spec has them --------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", 123),
        ("prompt", ["a"]),
        ("prompt", True),
        ("n", "2"),
        ("n", True),
        ("n", 2.5),
        ("size", 256),
        ("seed", "42"),
        ("stream", "yes"),
        ("guidance_scale", "5"),
        ("response_format", 1),
        ("user", {"id": 1}),
    ],
)
def test_json_fields_are_not_coerced(api, field, value):
    body = {"prompt": "x", "size": "64x64", field: value}
    error = _error(_post_json(api, "/v1/images/generations", json.dumps(body)), 400, param=field)
    assert "Expected" in error["message"]


def test_form_fields_are_still_read_from_strings(api):
    response = api.post(
        "/v1/images/edits",
        {"prompt": "x", "n": "2", "size": "64x64", "image": upload(png_bytes((64, 64)))},
        format="multipart",
        HTTP_PREFER="respond-async",
    )
    assert response.status_code == 202, response.content
    assert response.json()["n"] == 2


# --- cost follows price ------------------------------------------------------------------------
def _edit_price(api, sizes: list[int]) -> int:
    files = [upload(png_bytes((s, s)), name=f"{i}.png") for i, s in enumerate(sizes)]
    response = api.post(
        "/v1/images/edits",
        {"prompt": "x", "size": "64x64", "image[]": files},
        format="multipart",
        HTTP_PREFER="respond-async",
    )
    assert response.status_code == 202, response.content
    return response.json()["price"]


def test_edit_inputs_are_priced_by_their_pixels(api):
    small = _edit_price(api, [64])
    large = _edit_price(api, [2048])
    # demo-sd: 1000 micro-credits per megapixel-step; 2048² input pixels ≈ 4.2 MP.
    assert large - small >= 4_000


def test_total_input_pixels_are_bounded(api, settings):
    settings.MAX_INPUT_PIXELS = 3 * 64 * 64
    files = [upload(png_bytes((64, 64)), name=f"{i}.png") for i in range(4)]
    response = api.post("/v1/images/edits", {"prompt": "x", "image[]": files}, format="multipart")
    error = _error(response, 400, param="image")
    assert "IMAGEHUB_MAX_INPUT_PIXELS" in error["message"]


# --- limits as documented -------------------------------------------------------------------
def test_json_edits_accept_more_than_the_json_limit(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    noise = os.urandom(96 * 96 * 3)
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (96, 96), noise).resize((256, 256)).save(buffer, "PNG")
    body = json.dumps({"prompt": "x", "size": "64x64", "image": data_url(buffer.getvalue())})
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert _post_json(api, "/v1/images/edits", body).status_code == 202


def test_json_generations_keep_the_json_limit(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body = json.dumps({"prompt": "x" * (70 * 1024)})
    _error(_post_json(api, "/v1/images/generations", body), 413, code="request_too_large")


def test_a_20kb_bearer_token_is_a_401_envelope(client):
    response = client.get("/v1/models", HTTP_AUTHORIZATION="Bearer " + "a" * 20_000)
    _error(response, 401, code="invalid_api_key")


def test_made_up_methods_are_405_in_the_envelope(api):
    _error(api.generic("BREW", "/v1/models"), 405, code="method_not_allowed")


# --- metrics ------------------------------------------------------------------------------
def test_metrics_are_private_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404


def test_metrics_need_the_token(client, settings):
    settings.METRICS_TOKEN = "t0ken"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").status_code == 200


# --- pages ------------------------------------------------------------------------------------
def test_pages_have_a_content_security_policy_without_inline_script(client):
    response = client.get("/login/")
    policy = response["Content-Security-Policy"]
    script_src = policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "'self'" in script_src and "unsafe" not in script_src
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert b"<script>" not in response.content


@pytest.mark.parametrize("path", ["/docs/", "/redoc/"])
def test_docs_pages_use_no_cdn_fonts_or_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert b"https://" not in response.content
    assert b"<script>" not in response.content


def test_docs_start_up_script_is_served(client):
    response = client.get("/docs/?script=")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")


def test_hsts_and_secure_redirect_behind_tls(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_SSL_REDIRECT = True
    secure = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    plain = client.get("/login/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    # Probes keep answering over plain HTTP (orchestrators probe by IP).
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_password_reset_requests_are_throttled(client, tenant, mailoutbox):
    """Per account, three emails an hour; more requests look answered but send nothing
    (whoever asks cannot make the page refuse the owner). Per address, a 429."""
    cache.clear()
    tenant.user.set_password("an old password 1")  # Django mails only usable passwords
    tenant.user.save()
    email = tenant.user.email
    for i in range(5):
        response = client.post("/password-reset/", {"email": email}, REMOTE_ADDR=f"10.0.2.{i}")
        assert response.status_code == 302
        assert response["Location"] == "/password-reset/sent/"
    assert len(mailoutbox) == 3
    for i in range(10):  # one address, many accounts
        client.post("/password-reset/", {"email": f"who{i}@x.example"}, REMOTE_ADDR="10.0.3.1")
    response = client.post("/password-reset/", {"email": email}, REMOTE_ADDR="10.0.3.1")
    assert response.status_code == 429
    assert b"Too many attempts" in response.content


def _settings_process(env: dict, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "imagehub.settings",
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_data_dir_and_sqlite_file_are_private(tmp_path):
    data = tmp_path / "data"
    result = _settings_process({"IMAGEHUB_DATA_DIR": str(data)}, "import django; django.setup()")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "imagehub.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600


def _check_deploy(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "check",
            "--deploy",
            "--tag",
            "security",
            "--fail-level",
            "WARNING",
        ],
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "imagehub.settings",
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _production_env(tmp_path) -> dict:
    return {
        "IMAGEHUB_DATA_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "DJANGO_ALLOWED_HOSTS": "images.example.com",
        "DJANGO_BEHIND_HTTPS_PROXY": "1",
        "IMAGEHUB_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }


def test_check_deploy_passes_with_production_settings(tmp_path):
    result = _check_deploy(_production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_asks_for_a_key_of_the_webhook_secrets(tmp_path):
    """Without IMAGEHUB_SECRET_ENCRYPTION_KEY, a new SECRET_KEY would make the stored
    signing secrets unreadable: `check --deploy` says so, and how to set one."""
    env = _production_env(tmp_path)
    del env["IMAGEHUB_SECRET_ENCRYPTION_KEY"]
    result = _check_deploy(env)
    assert result.returncode != 0
    assert "imagehub.W001" in result.stderr + result.stdout
    assert "IMAGEHUB_SECRET_ENCRYPTION_KEY" in result.stderr + result.stdout


# --- the schema tells the truth ----------------------------------------------------------
def test_schema_documents_every_error_limit_and_media_type(client):
    schema = client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in ("400", "401", "403", "404", "413", "415", "429", "431", "503"):
                content = responses[status]["content"]["application/json"]
                assert content["schema"] == error, (method, path, status)
    create = schema["paths"]["/v1/images/generations"]["post"]["responses"]
    assert {"200", "202", "409", "422", "504"} <= set(create)
    assert "text/event-stream" in create["200"]["content"]
    usage = schema["paths"]["/v1/usage"]["get"]
    assert "text/csv" in usage["responses"]["200"]["content"]
    (fmt,) = [p for p in usage["parameters"] if p["name"] == "format"]
    assert set(fmt["schema"]["enum"]) == {"json", "csv"}
    components = schema["components"]["schemas"]
    generation = components["GenerationRequestRequest"]["properties"]
    assert generation["prompt"]["maxLength"] >= 4000
    assert generation["n"]["maximum"] == 10 and generation["seed"]["maximum"] == 2**63 - 1
    edit = components["EditRequestRequest"]["properties"]
    assert edit["image[]"]["maxItems"] == 16 and edit["image"]["format"] == "binary"
    assert edit["mask"]["format"] == "binary"
