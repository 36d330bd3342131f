"""The server's account routes: register, verify, forgot and reset password."""

from __future__ import annotations

import re

from _support import PASSWORD, Server, csrf_of


def link_token(server: Server, path: str) -> str:
    body = server.mailer.sent[-1].body
    found = re.search(re.escape(path) + r"\?token=([A-Za-z0-9_.\-]+)", body)
    assert found, body
    return found.group(1)


async def test_register_201_then_409_for_the_same_name(server: Server) -> None:
    client = server.json_client()
    created = await client.post("/register", json={"username": "dora", "password": PASSWORD})
    assert created.status_code == 201
    body = created.json()
    assert body["username"] == "dora"
    assert body["verified"] is False
    taken = await client.post("/register", json={"username": "DORA", "password": PASSWORD})
    assert taken.status_code == 409
    assert taken.json()["error"] == "username_taken"
    assert (await client.post("/auth", json={"username": "dora", "password": PASSWORD})).status_code == 200


async def test_register_a_look_alike_of_a_taken_name_is_409_with_the_reason(server: Server) -> None:
    client = server.json_client()
    created = await client.post("/register", json={"username": "dora", "password": PASSWORD})
    assert created.status_code == 201
    for spelling in ("d\u043era", "D\u041eRA"):  # Cyrillic о, small and capital
        look_alike = await client.post("/register", json={"username": spelling, "password": PASSWORD})
        assert look_alike.status_code == 409
        assert look_alike.json() == {
            "error": "username_taken",
            "error_description": "this username looks like one that is taken; choose another"}
    browser = server.browser()
    csrf = csrf_of((await browser.get("/register")).text)
    page = await browser.post("/register", data={"username": "d\u043era", "password": PASSWORD,
                                                 "csrf_token": csrf})
    assert page.status_code == 409
    assert "looks like one that is taken" in page.text


async def test_register_weak_password_is_400_with_the_reason(server: Server) -> None:
    client = server.json_client()
    short = await client.post("/register", json={"username": "erin", "password": "short"})
    assert short.status_code == 400
    assert short.json()["error"] == "weak_password"
    assert "8" in short.json()["error_description"]
    common = await client.post("/register", json={"username": "erin", "password": "password123"})
    assert common.status_code == 400
    assert common.json()["error"] == "weak_password"


async def test_register_bad_username_email_and_missing_fields(server: Server) -> None:
    client = server.json_client()
    bad_name = await client.post("/register", json={"username": "a b/<c>", "password": PASSWORD})
    assert bad_name.status_code == 400
    assert bad_name.json()["error"] == "invalid_username"
    bad_email = await client.post("/register", json={"username": "fay", "password": PASSWORD,
                                                     "email": "nope"})
    assert bad_email.status_code == 400
    assert bad_email.json()["error"] == "invalid_email"
    missing = await client.post("/register", json={"password": PASSWORD})
    assert missing.status_code == 400
    assert missing.json() == {"error": "missing_field", "field": "username",
                              "error_description": "The field 'username' is required"}


async def test_register_form_and_page(server: Server) -> None:
    browser = server.browser()
    page = await browser.get("/register")
    assert page.status_code == 200
    csrf = csrf_of(page.text)
    created = await browser.post("/register", data={"username": "gus", "password": PASSWORD,
                                                    "csrf_token": csrf})
    assert created.status_code == 201
    assert "Account gus created" in created.text
    weak = await browser.post("/register", data={"username": "hal", "password": "x", "csrf_token": csrf})
    assert weak.status_code == 400
    assert 'id="register-form"' in weak.text
    assert 'value="hal"' in weak.text


async def test_verify_email_once(server: Server) -> None:
    client = server.json_client()
    await client.post("/register", json={"username": "ivy", "password": PASSWORD, "email": "ivy@example.org"})
    token = link_token(server, "/verify")
    first = await client.get(f"/verify?token={token}")
    assert first.status_code == 200
    assert first.json() == {"verified": True, "username": "ivy"}
    assert first.headers["referrer-policy"] == "no-referrer"
    user = await server.service.find_user("ivy")
    assert user is not None and user.verified
    again = await client.get(f"/verify?token={token}")
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_link"
    assert again.json()["reason"] == "used"
    assert again.headers["referrer-policy"] == "no-referrer"
    assert (await client.get("/verify")).status_code == 400
    assert (await client.get("/verify?token=garbage")).status_code == 400


async def test_verify_page_in_a_browser(server: Server) -> None:
    await server.json_client().post("/register", json={"username": "joan", "password": PASSWORD,
                                                        "email": "joan@example.org"})
    page = await server.browser().get(f"/verify?token={link_token(server, '/verify')}")
    assert page.status_code == 200
    assert "your email is confirmed" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_forgot_password_answers_the_same_either_way(server: Server) -> None:
    await server.user("kim", email="kim@example.org")
    client = server.json_client()
    known = await client.post("/password/forgot", json={"username": "kim"})
    unknown = await client.post("/password/forgot", json={"username": "nobody-here"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert known.content == unknown.content
    browser = server.browser()
    assert (await browser.post("/password/forgot", data={"username": "kim"})).text == \
        (await browser.post("/password/forgot", data={"username": "nobody-here"})).text
    assert (await client.post("/password/forgot", json={})).status_code == 400


async def test_reset_password_sets_it_ends_sessions_and_is_single_use(server: Server) -> None:
    await server.user("lea", email="lea@example.org")
    old = await server.login("lea")
    client = server.json_client()
    await client.post("/password/forgot", json={"username": "lea"})
    token = link_token(server, "/password/reset")
    page = await server.browser().get(f"/password/reset?token={token}")
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert f'value="{token}"' in page.text
    weak = await client.post("/password/reset", json={"token": token, "password": "123"})
    assert weak.status_code == 400
    assert weak.json()["error"] == "weak_password"
    done = await client.post(f"/password/reset?token={token}", json={"password": "a brand new passphrase"})
    assert done.status_code == 200
    assert done.json() == {"status": "password_reset"}
    assert done.headers["referrer-policy"] == "no-referrer"
    again = await client.post("/password/reset", json={"token": token, "password": "another new passphrase"})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_link"
    assert again.json()["reason"] in ("used", "stale")
    assert (await client.post("/auth", json={"username": "lea", "password": PASSWORD})).status_code == 401
    assert (await client.post("/auth", json={"username": "lea", "password": "a brand new passphrase"})
            ).status_code == 200
    assert (await client.get("/private", headers={"Authorization": f"Bearer {old['access_token']}"})
            ).status_code == 401


async def test_reset_without_token_or_password(server: Server) -> None:
    client = server.json_client()
    no_token = await client.post("/password/reset", json={"password": "whatever passphrase"})
    assert no_token.status_code == 400
    assert no_token.json()["field"] == "token"
    bad = await client.post("/password/reset", json={"token": "x.y.z", "password": "whatever passphrase"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_link"


async def test_a_failing_mailer_changes_no_answer(server: Server) -> None:
    from jwtkit.service import Message

    class DownMailer:
        async def send(self, message: Message) -> None:
            raise ConnectionRefusedError("smtp is down")

    await server.user("max", email="max@example.org")
    server.service.mailer = DownMailer()
    client = server.json_client()
    known = await client.post("/password/forgot", json={"username": "max"})
    unknown = await client.post("/password/forgot", json={"username": "nobody-at-all"})
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    created = await client.post("/register", json={"username": "nia", "password": PASSWORD,
                                                   "email": "nia@example.org"})
    assert created.status_code == 201


async def test_password_pages_in_a_browser(server: Server) -> None:
    await server.user("ola", email="ola@example.org")
    browser = server.browser()
    form = await browser.get("/password/forgot")
    assert form.status_code == 200
    csrf = csrf_of(form.text)
    sent = await browser.post("/password/forgot", data={"username": "ola", "csrf_token": csrf})
    assert sent.status_code == 202
    assert "Check your email" in sent.text
    token = link_token(server, "/password/reset")
    weak = await browser.post("/password/reset", data={"token": token, "password": "short",
                                                       "csrf_token": csrf})
    assert weak.status_code == 400
    assert 'name="token"' in weak.text
    done = await browser.post("/password/reset", data={"token": token, "password": "a fresh passphrase here",
                                                       "csrf_token": csrf})
    assert done.status_code == 200
    assert "Your password was changed" in done.text
    assert done.headers["referrer-policy"] == "no-referrer"
    again = await browser.post("/password/reset", data={"token": token, "password": "yet another passphrase",
                                                        "csrf_token": csrf})
    assert again.status_code == 400
