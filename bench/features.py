#!/usr/bin/env python3
"""Configs of scripts/bench-features: the benchmark's aggregation with one edge or mesh feature at a time.

`features.py write DIR` writes DIR/NAME.toml for every variant and prints one line per variant:
`NAME<TAB>wrk header arguments` (the headers the variant's requests need, e.g. a JWT or an Origin).
The variables ${BFF_LISTEN} ... stay for `bff run` to expand from the environment, as in bench/a.toml.
Standard library only.
"""

import base64
import hashlib
import hmac
import json
import os
import sys

SERVICES = ("users", "orders", "catalog")

# HS256 secret of the jwt variant (a benchmark fixture, 32 bytes as the validator requires).
JWT_SECRET = "bench-features-hs256-secret-0123"
ORIGIN = "https://app.example.com"

HEAD = """[bff]
name = "bench-features"
listen = "${BFF_LISTEN}"
admin_listen = "${BFF_ADMIN}"
shutdown_grace = "1s"
"""

ROUTE = """
[[routes]]
method = "GET"
path = "/api/home/{user_id}"
%(route_extra)s
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{user_id}"
select = "$.profile"

[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders?userId={user_id}"
select = "$[*].id"
required = false

[[routes.backends]]
name = "recommendations"
service = "catalog"
path = "/recommendations/{user.favoriteCategory}"
depends_on = ["user"]
required = false
"""

RETRY = """
[services.%(s)s.retry]
max_attempts = 3
on = ["connect_error", "reset", "502", "503", "504"]
backoff = "20ms"
max_backoff = "200ms"
budget_ratio = 0.2
min_per_second = 10
"""

BREAKER = """
[services.%(s)s.circuit_breaker]
failure_rate = 0.5
min_requests = 20
window = "10s"
open_for = "5s"
half_open_probes = 3
"""

OUTLIER = """
[services.%(s)s.outlier_detection]
consecutive_failures = 5
base_ejection = "30s"
max_ejected_percent = 50
"""

# Never triggers under the benchmark's load: the check is what costs.
RATE_LIMIT = """
[edge.rate_limit]
per_second = 10000000
burst = 10000000
key = "client_ip"
%s"""


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt():
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": "user-42", "iss": "https://issuer.bench", "aud": "bench", "exp": 4102444800}
    payload = b64url(json.dumps(claims).encode())
    mac = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(mac)}"


def config(lb="round_robin", service_extra="", edge="", telemetry="access_log = false\n",
           route_extra=""):
    out = [HEAD, "\n[telemetry]\n", telemetry, "\n[edge]\nrequest_timeout = \"2s\"\n", edge]
    for s in SERVICES:
        out.append(f"""
[services.{s}]
endpoints = ["${{{s.upper()}_ADDR}}"]
load_balancer = "{lb}"
timeout = "500ms"
connect_timeout = "200ms"
""")
        out.append(service_extra % {"s": s})
    out.append(ROUTE % {"route_extra": route_extra})
    return "".join(out)


def variants():
    """(name, what it adds, config text, wrk headers)."""
    jwt_edge = f"""
[edge.auth.jwt]
issuer = "https://issuer.bench"
audiences = ["bench"]
algorithms = ["HS256"]
secret = "{JWT_SECRET}"
jwks_file = "jwks.json"
"""
    cors_edge = f"""
[edge.cors]
allow_origins = ["{ORIGIN}"]
"""
    redis = os.environ.get("REDIS_URL", "")
    rows = [
        ("base", "round_robin, no policy, access log off", config(), []),
        ("p2c_ewma", "load_balancer = \"p2c_ewma\" (the default)", config(lb="p2c_ewma"), []),
        ("retry", "[services.*.retry] with a budget", config(service_extra=RETRY), []),
        ("breaker", "[services.*.circuit_breaker]", config(service_extra=BREAKER), []),
        ("outlier", "[services.*.outlier_detection]", config(service_extra=OUTLIER), []),
        ("rate_limit", "[edge.rate_limit], local buckets", config(edge=RATE_LIMIT % ""), []),
        ("cors", "[edge.cors], requests with an allowed Origin", config(edge=cors_edge),
         [f"Origin: {ORIGIN}"]),
        ("jwt", "[edge.auth.jwt] HS256, route auth = \"jwt\"",
         config(edge=jwt_edge, route_extra='auth = "jwt"\n'), [f"Authorization: Bearer {jwt()}"]),
        ("access_log", "[telemetry] access_log = true (stdout to a file)",
         config(telemetry="access_log = true\n"), []),
        ("otlp", "[telemetry] otlp_endpoint (a collector that answers 200)",
         config(telemetry='access_log = false\notlp_endpoint = "${OTLP_ENDPOINT}"\n'), []),
    ]
    if redis:
        rows.insert(6, ("rate_limit_redis", "[edge.rate_limit] store = Redis",
                        config(edge=RATE_LIMIT % f'store = "{redis}"\n'), []))
    return rows


def cmd_write(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    # The jwt variant checks HS256 tokens against `secret`; the validator still wants a key set (the
    # tests' RSA public key, unused here).
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "tests", "fixtures", "jwt", "jwks.json")) as f:
        jwks = f.read()
    with open(os.path.join(out_dir, "jwks.json"), "w") as f:
        f.write(jwks)
    for name, what, text, headers in variants():
        with open(os.path.join(out_dir, f"{name}.toml"), "w") as f:
            f.write(f"# scripts/bench-features variant {name}: {what}\n{text}")
        print(name + "\t" + "\t".join(headers))


def cmd_describe():
    for name, what, _, _ in variants():
        print(f"{name}\t{what}")


if __name__ == "__main__":
    commands = {"write": cmd_write, "describe": cmd_describe}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} write DIR | describe")
    commands[sys.argv[1]](*sys.argv[2:])
