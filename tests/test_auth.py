"""Tokens: who may write, read and administer, on Whale and on Hail, through WSGI, on real
Redis (and fakeredis); the token itself as a pure function."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import webtest

from hail.app import create_app as create_hail
from hailwhale import auth
from hailwhale.buffer import Buffer
from hailwhale.config import load_settings
from hailwhale.errors import ConfigurationError, Forbidden, Unauthorized
from hailwhale.store import Store
from whale import create_app as create_whale

SECRET = "test-secret-0123456789-abcdefghijklmnop"
HAILWHALE = str(Path(sys.executable).parent / "hailwhale")


def token(can, pks, dims=(), expires_in=None, secret=SECRET, now=None):
    return auth.issue(secret, can, pks, dims, expires_in, now)


# -- the token, pure ------------------------------------------------------------------------
def test_a_token_says_what_it_can_do_where_and_until_when():
    grant = auth.Verifier(SECRET).verify(token("write", ["shop"], ("pageviews",), 3600))
    assert (grant.can, grant.pks, grant.dims) == ("write", frozenset({"shop"}), ("pageviews",))
    assert grant.expires is not None and grant.id
    assert grant.covers_pk("shop") and not grant.covers_pk("other")
    assert grant.covers_path(("pageviews",)) and grant.covers_path(("pageviews", "a", "b"))
    assert not grant.covers_path(()) and not grant.covers_path(("pageviewsX",))
    assert not grant.covers_path(("sales", "pageviews"))


def test_no_token_is_unauthorized_and_a_bad_one_forbidden():
    verifier = auth.Verifier(SECRET)
    with pytest.raises(Unauthorized):
        verifier.verify(None)
    with pytest.raises(Unauthorized):
        verifier.verify("")
    forged = token("admin", ["*"], secret="another-secret-0123456789-abcdefghijk")
    header, claims, signature = token("read", ["shop"]).split(".")
    widened = base64.urlsafe_b64encode(json.dumps(
        {"can": "admin", "pks": ["*"]}).encode()).decode().rstrip("=")
    unsigned = jwt.encode({"can": "admin", "pks": ["*"]}, key=None, algorithm="none")
    for bad in (forged, f"{header}.{widened}.{signature}", unsigned, "not-a-token",
                "x" * (auth.MAX_TOKEN + 1),
                jwt.encode({"can": "root", "pks": ["*"]}, SECRET, algorithm="HS256"),
                jwt.encode({"can": "read", "pks": "shop"}, SECRET, algorithm="HS256"),
                jwt.encode({"can": "read"}, SECRET, algorithm="HS256")):
        with pytest.raises(Forbidden):
            verifier.verify(bad)


def test_expired_and_revoked_tokens_are_forbidden_on_every_use():
    now = [1_800_000_000.0]
    short = token("read", ["shop"], expires_in=60, now=now[0])
    leaked = token("read", ["shop"])
    kept = token("read", ["shop"])
    verifier = auth.Verifier(SECRET, revoked=[auth.token_id(leaked)], clock=lambda: now[0])
    assert verifier.verify(short).can == "read"  # now cached...
    now[0] += 61
    with pytest.raises(Forbidden, match="expired"):  # ...and still checked for expiry
        verifier.verify(short)
    with pytest.raises(Forbidden, match="revoked"):
        verifier.verify(leaked)
    assert verifier.verify(kept).can == "read"  # revoking one token leaves the others


def test_the_verified_token_cache_is_bounded():
    verifier = auth.Verifier(SECRET, cache_size=8)
    for n in range(50):
        verifier.verify(token("read", [f"pk{n}"]))
    assert len(verifier._cache) == 8


def test_require_checks_ability_pk_and_prefix():
    write = auth.Verifier(SECRET).verify(token("write", ["shop"], ("pageviews",)))
    auth.require(write, "write", "shop", [("pageviews", "home")])
    for can, pk, paths, reason in [("read", "shop", [("pageviews",)], "cannot read"),
                                   ("write", "blog", [("pageviews",)], "pk 'blog'"),
                                   ("write", "shop", [("sales",)], "below"),
                                   ("write", "shop", [()], "root"),
                                   ("admin", None, [], "admin token")]:
        with pytest.raises(Forbidden, match=reason):
            auth.require(write, can, pk, paths)
    auth.require(auth.OPEN, "admin")  # an open service allows everything


def test_secrets_and_durations_are_checked():
    with pytest.raises(ConfigurationError, match="at least 32"):
        auth.issue("short", "read", ["x"])
    with pytest.raises(ConfigurationError, match="at least 32"):
        load_settings(environ={"HAILWHALE_SECRET": "short"})
    assert auth.parse_duration("30d") == 30 * 86400 and auth.parse_duration("never") is None
    with pytest.raises(ConfigurationError, match="--expires"):
        auth.parse_duration("soon")
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("[::1]")
    assert auth.is_loopback("localhost")
    assert not auth.is_loopback("") and not auth.is_loopback("0.0.0.0")
    assert not auth.is_loopback("203.0.113.1")


# -- Whale, through WSGI -------------------------------------------------------------------
@pytest.fixture
def secured():
    return load_settings(environ={"HAILWHALE_SECRET": SECRET})


@pytest.fixture
def whale(client, secured, clock):
    return webtest.TestApp(create_whale(Store(client, secured), clock=clock))


def everything(client) -> dict:
    """Every key and its value: what "nothing stored" is checked against."""
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


def bearer(value):
    return {"Authorization": f"Bearer {value}"}


EVENT = {"pk": "shop", "dimensions": json.dumps(["pageviews", "home"]),
         "metrics": json.dumps({"dollars": 5})}


def test_writes_need_a_write_token_covering_pk_and_dimensions(whale, client):
    beacon = token("write", ["shop"], ("pageviews",))
    # No token: 401 that says why, with a Bearer challenge; nothing stored.
    answer = whale.get("/count", EVENT, status=401)
    assert answer.json["param"] == "token" and "requires a token" in answer.json["error"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    whale.get("/count.gif", EVENT, status=401)
    whale.post("/count", json.dumps({**EVENT, "dimensions": ["pageviews"]}), status=401)
    assert everything(client) == {}
    # Outside the token: another prefix, the root alone, another pk, a forged token.
    before = everything(client)
    for params, reason in [({**EVENT, "dimensions": '["sales"]'}, "below ['pageviews']"),
                           ({**EVENT, "dimensions": ""}, "overall root"),
                           ({**EVENT, "dimensions": '{"pageviews": "a", "sales": "b"}'},
                            "['sales', 'b']"),
                           ({**EVENT, "pk": "blog"}, "pk 'blog'")]:
        answer = whale.get("/count", {**params, "token": beacon}, status=403)
        assert reason in answer.json["error"], answer.json
    whale.get("/count", EVENT, headers=bearer(token("admin", ["*"], secret="x" * 40)),
              status=403)
    whale.get("/count", EVENT, headers=bearer(token("read", ["shop"])), status=403)
    assert everything(client) == before == {}
    # Inside: as a header, as the token parameter (beacons), in a posted form.
    whale.get("/count", EVENT, headers=bearer(beacon))
    whale.get("/count.gif", {**EVENT, "token": beacon})
    whale.post("/count", {**EVENT, "token": beacon})
    whale.post("/count", json.dumps([{"pk": "shop", "dimensions": ["pageviews", "x"]}]),
               headers=bearer(beacon))
    read = whale.get("/totals", {"pk": "shop", "dimensions": '["pageviews"]'},
                     headers=bearer(token("read", ["shop"]))).json
    assert read["totals"][0]["totals"]["hits"] == 4


def test_a_batch_with_one_event_outside_the_token_stores_nothing(whale, client):
    beacon = token("write", ["shop"], ("pageviews",))
    batch = [{"pk": "shop", "dimensions": ["pageviews", "a"]},
             {"pk": "shop", "dimensions": ["admin", "a"]}]
    whale.post("/count", json.dumps(batch), headers=bearer(beacon), status=403)
    assert everything(client) == {}


def test_reads_need_a_read_token_covering_what_they_ask(whale, client):
    whale.get("/count", EVENT, headers=bearer(token("write", ["*"])))
    whale.get("/count", {**EVENT, "pk": "blog"}, headers=bearer(token("write", ["*"])))
    shop = bearer(token("read", ["shop"]))
    for path in ("/plotpoints", "/totals", "/dimensions", "/metrics", "/pks"):
        answer = whale.get(path, {"pk": "shop"}, status=401)
        assert answer.json["param"] == "token"
        whale.get(path, {"pk": "shop"}, headers=shop)
        whale.get(path, {"pk": "shop"}, headers=bearer(token("write", ["shop"])), status=403)
    for path in ("/plotpoints", "/totals", "/dimensions", "/metrics"):
        answer = whale.get(path, {"pk": "blog"}, headers=shop, status=403)
        assert "pk 'blog'" in answer.json["error"]
    # A token sees the pks it covers, and only those.
    assert whale.get("/pks", headers=shop).json == {"pks": ["shop"]}
    assert whale.get("/pks", headers=bearer(token("read", ["*"]))).json == \
        {"pks": ["blog", "shop"]}
    assert whale.get("/pks", headers=bearer(token("read", ["new"]))).json == {"pks": ["new"]}
    # A prefix-confined read token reads there and below, not above.
    confined = bearer(token("read", ["shop"], ("pageviews",)))
    whale.get("/plotpoints", {"pk": "shop", "dimensions": '["pageviews"]', "depth": 1},
              headers=confined)
    whale.get("/plotpoints", {"pk": "shop"}, headers=confined, status=403)
    whale.get("/dimensions", {"pk": "shop"}, headers=confined, status=403)
    # Discovery of the service itself needs no token.
    whale.get("/periods")
    assert whale.get("/health").json["auth"] == "tokens"


def test_batches_need_an_admin_token(whale, client):
    batch = json.dumps({"id": "b1", "events": [{"pk": "shop", "dimensions": "x"}]})
    whale.post("/batch", batch, status=401)
    for can in ("write", "read"):
        answer = whale.post("/batch", batch, headers=bearer(token(can, ["*"])), status=403)
        assert "admin token" in answer.json["error"]
    assert everything(client) == {}
    answer = whale.post("/batch", batch, headers=bearer(token("admin", ["*"]))).json
    assert answer["counted"] == 1


def test_an_open_whale_says_so_and_ignores_tokens(store, clock):
    open_whale = webtest.TestApp(create_whale(store, clock=clock))
    health = open_whale.get("/health").json
    assert health["auth"] == "open" and "no SECRET" in health["warning"]
    # A page written for a guarded Whale still counts on an open one.
    open_whale.get("/count", {**EVENT, "token": "anything"})
    assert open_whale.get("/pks").json == {"pks": ["shop"]}


def test_cors_preflight_allows_the_authorization_header(whale):
    answer = whale.options("/plotpoints", status=204)
    assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]


# -- Hail ----------------------------------------------------------------------------------
def test_hail_checks_write_tokens_before_buffering(client, secured, clock):
    buffer = Buffer(client)
    hail = webtest.TestApp(create_hail(buffer.push, secured, lambda: {}, clock=clock))
    beacon = token("write", ["shop"], ("pageviews",))
    hail.get("/count", EVENT, status=401)
    hail.get("/count", {**EVENT, "dimensions": '["sales"]', "token": beacon}, status=403)
    hail.get("/count.gif", {**EVENT, "pk": "blog", "token": beacon}, status=403)
    assert buffer.stats().waiting == 0
    hail.get("/count.gif", {**EVENT, "token": beacon})
    hail.post("/count", json.dumps([{"pk": "shop", "dimensions": ["pageviews"]}] * 3),
              headers=bearer(beacon))
    assert buffer.stats().waiting == 4
    # The token is a credential, not part of the event: it is not buffered.
    assert all("token" not in json.loads(item) for item in client.lrange(
        buffer_key(), 0, -1))
    assert hail.get("/health").json["auth"] == "tokens"


def buffer_key():
    from hailwhale import keys

    return keys.BUFFER


# -- the command ---------------------------------------------------------------------------
def run_token(*args, **env):
    return subprocess.run([HAILWHALE, "token", *args], capture_output=True, text=True,
                          timeout=30, env={"PATH": str(Path(sys.executable).parent), **env})


def test_hailwhale_token_prints_a_token_and_its_id():
    done = run_token("--can", "write", "--pk", "shop", "--dimensions", '["pageviews"]',
                     "--expires", "30d", HAILWHALE_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    grant = auth.Verifier(SECRET).verify(printed)
    assert (grant.can, set(grant.pks), grant.dims) == ("write", {"shop"}, ("pageviews",))
    assert 29 * 86400 < grant.expires - __import__("time").time() <= 30 * 86400
    assert run_token("--id", printed).stdout.strip() == grant.id
    several = run_token("--can", "read", "--pk", "a", "--pk", "b", "--expires", "never",
                        HAILWHALE_SECRET=SECRET).stdout.strip()
    grant = auth.Verifier(SECRET).verify(several)
    assert grant.pks == {"a", "b"} and grant.expires is None


def test_hailwhale_token_fails_with_one_line():
    for args, env, message in [
        (("--can", "read", "--pk", "x"), {}, "no SECRET is set"),
        (("--can", "read"), {"HAILWHALE_SECRET": SECRET}, "--can and --pk are required"),
        (("--can", "write", "--pk", "x", "--dimensions", '{"a": 1, "b": 2}'),
         {"HAILWHALE_SECRET": SECRET}, "names one path"),
        (("--can", "write", "--pk", "x", "--expires", "soon"),
         {"HAILWHALE_SECRET": SECRET}, "--expires"),
    ]:
        done = run_token(*args, **env)
        assert done.returncode == 1, done
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_open_service_refuses_a_public_address_unless_told():
    env = {"PATH": str(Path(sys.executable).parent), "WHALE_REDIS_URL": "redis://127.0.0.1:1/0"}
    for command in (["whale"], ["hail"], ["demo"]):
        done = subprocess.run([HAILWHALE, *command, "--host", "0.0.0.0", "--port", "0"],
                              capture_output=True, text=True, timeout=30, env=env)
        assert done.returncode == 1
        assert "refusing to serve" in done.stderr and "--allow-open" in done.stderr
    # Told to, it goes on (and here stops at the unreachable Redis instead).
    done = subprocess.run([HAILWHALE, "whale", "--host", "0.0.0.0", "--port", "0",
                           "--allow-open"], capture_output=True, text=True, timeout=30,
                          env=env)
    assert done.returncode == 1 and "Redis is unavailable" in done.stderr
