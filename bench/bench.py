#!/usr/bin/env python3
"""Helpers of scripts/bench: free ports, templates, readiness, /proc readings, wrk parsing, the report.

Standard library only. Every subcommand prints its result on stdout and exits non-zero with a message on
stderr when it cannot do its job, so that scripts/bench (set -e) stops with a clear error.
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- setup


def cmd_ports(n):
    """N distinct free loopback ports, all bound at once so that none repeats."""
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def cmd_minify(path):
    """A JSON file on one line, checked to be safe inside an nginx single-quoted string."""
    with open(path) as f:
        text = json.dumps(json.load(f), separators=(",", ":"), ensure_ascii=True)
    if any(c in text for c in "'$\\"):
        die(f"{path}: ' $ and \\ are not allowed (the JSON is inlined in an nginx config)")
    print(text)


def cmd_render(template, out):
    """Copies TEMPLATE to OUT with every ${NAME} replaced by the environment's NAME (unset: error)."""
    with open(template) as f:
        text = f.read()
    missing = sorted({m for m in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text) if m not in os.environ})
    if missing:
        die(f"{template}: unset variables: {', '.join(missing)}")
    text = re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: os.environ[m.group(1)], text)
    with open(out, "w") as f:
        f.write(text)


def http_status(url, timeout=0.5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def cmd_wait_ready(url, pid, timeout_s):
    """Polls URL until it answers 200; fails at once if PID died, or after TIMEOUT_S seconds."""
    deadline = time.monotonic() + float(timeout_s)
    while time.monotonic() < deadline:
        if http_status(url) == 200:
            return
        if not alive(pid):
            die(f"process {pid} exited before {url} answered 200")
        time.sleep(0.01)
    die(f"{url} did not answer 200 within {timeout_s}s")


def cmd_start_timed(url, log, pidfile, *cmd):
    """Starts CMD (output to LOG, pid to PIDFILE) and prints the milliseconds from the spawn to the first
    200 of URL. Polls every millisecond for 10 s at most. CMD keeps running when this returns."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    out = open(log, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    with open(pidfile, "w") as f:
        f.write(str(proc.pid))
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    deadline = t0 + 10
    while time.perf_counter() < deadline:
        try:
            s = socket.create_connection((host, int(port)), timeout=1)
            try:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    print(f"{(time.perf_counter() - t0) * 1000:.1f}")
                    return
            finally:
                s.close()
        except OSError:
            pass
        if proc.poll() is not None:
            die(f"{cmd[0]} exited with {proc.returncode} before {url} answered 200 (see {log})")
        time.sleep(0.001)
    die(f"{url} did not answer 200 within 10s (see {log})")


# ---------------------------------------------------------------- /proc


def tree(pids):
    """The PIDs and all their descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [int(p) for p in pids]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cmd_ticks(*pids):
    """utime + stime, in clock ticks, of the PIDs and their descendants."""
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
        except (OSError, IndexError, ValueError):
            die(f"cannot read /proc/{p}/stat")
    print(total)


def cmd_mem(field, *pids):
    """The sum of /proc/PID/status FIELD (VmRSS, VmHWM) in KiB over the PIDs and their descendants."""
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            die(f"cannot read /proc/{p}/status")
    print(total)


# ---------------------------------------------------------------- wrk


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(path):
    with open(path) as f:
        text = f.read()

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if not m:
            die(f"{path}: no {p}% latency (was wrk run with --latency?)")
        return float(m.group(1)) * UNITS[m.group(2)]

    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if not m:
        die(f"{path}: no request count in wrk's output")
    requests = int(m.group(1))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {
        "requests": requests,
        "rps": float(rps.group(1)),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "errors": errors,
    }


def cpu_times(path):
    """{cpu number: (busy, total)} jiffies from a copy of /proc/stat."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + v[4]  # idle + iowait
                out[int(m.group(1))] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def cmd_record(variant, rnd, wrk_out, ticks0, ticks1, hwm_kib, stat0, stat1, bff_cpu, results):
    """Appends one run to RESULTS (JSON lines): wrk's output, the CPU ticks of the measured processes
    before and after, their peak RSS, and how busy each CPU was (copies of /proc/stat before and after).
    BFF_CPU is the one CPU the measured processes are pinned to ("" if not pinned to one): what other
    processes took of it is recorded as `foreign_percent` (0 on a quiet machine)."""
    run = parse_wrk(wrk_out)
    hz = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(ticks1) - int(ticks0)) / hz
    before, after = cpu_times(stat0), cpu_times(stat1)
    busy = {
        str(c): round(100 * (after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1))
        for c in after
        if c in before
    }
    foreign = None
    if bff_cpu.isdigit() and int(bff_cpu) in after and int(bff_cpu) in before:
        c = int(bff_cpu)
        total = max(after[c][1] - before[c][1], 1)
        foreign = max(0, round(100 * (after[c][0] - before[c][0] - (int(ticks1) - int(ticks0))) / total))
    run.update(
        variant=variant,
        foreign_percent=foreign,
        round=int(rnd),
        cpu_s=cpu_s,
        cpu_per_10k=cpu_s / max(run["requests"], 1) * 10000,
        peak_rss_mib=int(hwm_kib) / 1024,
        cpu_busy_percent=busy,
    )
    with open(results, "a") as f:
        f.write(json.dumps(run) + "\n")
    print(
        f"  {variant} round {rnd}: {run['rps']:.0f} req/s, p50 {run['p50_ms']:.2f} ms, "
        f"p99 {run['p99_ms']:.2f} ms, {run['cpu_per_10k']:.2f} CPU s/10k, "
        f"peak RSS {run['peak_rss_mib']:.1f} MiB, {run['errors']} errors; CPUs busy "
        + ", ".join(f"{c}: {b}%" for c, b in busy.items())
        + ("" if foreign is None else f" (other processes: {foreign}% of CPU {bff_cpu})")
    )


# ---------------------------------------------------------------- checks


def cmd_same_json(*files):
    """Fails unless the JSON bodies in FILES (name=path) are equal; prints a one-line summary."""
    bodies = {}
    for arg in files:
        name, path = arg.split("=", 1)
        try:
            with open(path) as f:
                bodies[name] = json.load(f)
        except (OSError, ValueError) as e:
            die(f"{name}: not a JSON body ({e}); see {path}")
    names = list(bodies)
    first = bodies[names[0]]
    for n in names[1:]:
        if bodies[n] != first:
            die(
                f"{n} and {names[0]} answer different JSON:\n  {names[0]}: {json.dumps(first)}\n"
                f"  {n}: {json.dumps(bodies[n])}"
            )
    for key in ("user", "orders", "recommendations"):
        if not isinstance(first, dict) or first.get(key) in (None, [], {}):
            die(f"the answers lack {key!r}: {json.dumps(first)}")
    if "_errors" in first:
        die(f"the answers are partial: {json.dumps(first['_errors'])}")
    keys = ", ".join(first)
    print(f"{' == '.join(names)}: the same JSON ({keys}; {len(json.dumps(first))} bytes)")


# ---------------------------------------------------------------- report


def fmt_ratio(x):
    return f"{x:.3f}"


def cmd_report(results, footprint, meta, out):
    runs = [json.loads(line) for line in open(results) if line.strip()]
    fp = json.load(open(footprint))
    info = json.load(open(meta))
    variants = {
        "A": "`bff run`, declarative route, policies on, services over h2c (bench/a.toml)",
        "A1": "A with the services over pooled HTTP/1.1, as C calls them",
        "B": "Rust handler on `bff`, services over h2c (examples/bench-bff)",
        "C": "hand-written axum + pooled hyper HTTP/1.1 client, no policies (examples/baseline)",
        "D": "nginx gateway -> C -> haproxy sidecar",
    }
    present = {r["variant"] for r in runs}
    variants = {v: what for v, what in variants.items() if v != "A1" or "A1" in present}
    med = {}
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        if not rs:
            die(f"no runs of {v} in {results}")
        med[v] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50": statistics.median(r["p50_ms"] for r in rs),
            "p99": statistics.median(r["p99_ms"] for r in rs),
            "cpu": statistics.median(r["cpu_per_10k"] for r in rs),
            "rss": max(r["peak_rss_mib"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "busy": {
                c: statistics.median(r["cpu_busy_percent"][c] for r in rs)
                for c in rs[0]["cpu_busy_percent"]
            },
            "foreign": (
                None
                if any(r["foreign_percent"] is None for r in rs)
                else statistics.median(r["foreign_percent"] for r in rs)
            ),
        }
    lines = []
    w = lines.append
    w(f"# bff whole-process benchmark ({info['date']})")
    w("")
    w(
        f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), Linux {info['kernel']}. "
        f"Commit {info['commit']}. {info['nginx']}, {info['haproxy']}, {info['wrk']}."
    )
    w(
        f"Load: `wrk -t1 -c{info['connections']} -d{info['duration']}s --latency` on "
        f"`GET /api/home/42`, {info['rounds']} interleaved rounds ({' '.join(variants)}, ...), medians; "
        f"peak RSS is the maximum. Pinning: {info['pinning']}."
    )
    w("")
    w("| variant | what | req/s | p50 ms | p99 ms | CPU s / 10k req | peak RSS MiB | errors |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for v, what in variants.items():
        m = med[v]
        w(
            f"| {v} | {what} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu']:.2f} | "
            f"{m['rss']:.1f} | {m['errors']} |"
        )
    w("")
    w("CPU and RSS are those of the BFF-side processes: the BFF for A, B and C; nginx gateway + C + haproxy")
    w("for D (each with its worker processes). The downstream services and wrk are not counted.")
    busy = "; ".join(
        f"{v}: " + ", ".join(f"CPU {c} {b:.0f}%" for c, b in med[v]["busy"].items()) for v in variants
    )
    w(f"How busy each CPU was during the runs (whole machine, medians): {busy}.")
    if all(m["foreign"] is not None for m in med.values()):
        foreign = ", ".join(f"{v} {med[v]['foreign']:.0f}%" for v in variants)
        w(
            f"Share of the BFF's CPU taken by other processes during the runs (median): {foreign}. "
            "Above a few percent the machine was shared: req/s and latencies are then lower than it "
            "can do, CPU per request much less affected."
        )
    w("")

    # The rounds interleave the variants so that a drift of the machine hits all alike; the ratio of two
    # variants' runs in the same round cancels the drift, so the median of those per-round ratios is shown
    # beside the ratio of the medians (the value the targets are read on).
    by_round = {(r["variant"], r["round"]): r for r in runs}
    rounds = sorted({r["round"] for r in runs})

    def paired(a, b, key):
        xs = [
            by_round[(a, n)][key] / by_round[(b, n)][key]
            for n in rounds
            if (a, n) in by_round and (b, n) in by_round and by_round[(b, n)][key]
        ]
        return statistics.median(xs) if xs else float("nan")

    run_key = {"rps": "rps", "p99": "p99_ms", "cpu": "cpu_per_10k"}
    summary = {"setup": info.get("setup", "split"), "connections": info["connections"], "ratios": []}
    w("| ratio | value (of the medians) | median of the per-round ratios | target | |")
    w("| --- | ---: | ---: | --- | --- |")
    for name, a, b, key, target, ok in RATIOS:
        if a not in med or b not in med:
            continue
        value = med[a][key] / med[b][key]
        verdict = "" if ok is None else ("met" if ok(value) else "**missed**")
        pair = paired(a, b, run_key[key])
        w(f"| {name} | {fmt_ratio(value)} | {fmt_ratio(pair)} | {target} | {verdict} |")
        summary["ratios"].append(
            {"name": name, "value": value, "paired": pair, "target": target, "verdict": verdict}
        )
    w("")

    w(f"Footprint (a fresh process of each, pinned like above; RSS@{info['footprint_connections']} is the")
    w(f"peak RSS after `wrk -c{info['footprint_connections']} -d{info['footprint_duration']}s`):")
    w("")
    w(f"| variant | start to ready ms | idle RSS MiB | RSS@{info['footprint_connections']} MiB |")
    w("| --- | ---: | ---: | ---: |")
    for v in ("A", "B", "C"):
        f = fp[v]
        w(f"| {v} | {f['ready_ms']:.1f} | {f['idle_kib'] / 1024:.1f} | {f['load_kib'] / 1024:.1f} |")
    w("")
    a = fp["A"]
    targets = [
        ("A: idle RSS", f"{a['idle_kib'] / 1024:.1f} MiB", "<= 20 MiB", a["idle_kib"] <= 20 * 1024),
        (
            f"A: RSS@{info['footprint_connections']}",
            f"{a['load_kib'] / 1024:.1f} MiB",
            "<= 64 MiB",
            a["load_kib"] <= 64 * 1024,
        ),
        ("A: start to /readyz 200", f"{a['ready_ms']:.1f} ms", "<= 200 ms", a["ready_ms"] <= 200),
    ]
    w("| footprint target | value | target | |")
    w("| --- | ---: | --- | --- |")
    for name, value, target, ok in targets:
        w(f"| {name} | {value} | {target} | {'met' if ok else '**missed**'} |")
    w("")
    if any(m["errors"] for m in med.values()):
        w("**Warning**: some runs had non-2xx answers or socket errors (column `errors`); their numbers")
        w("do not measure the aggregation alone.")
        w("")
    text = "\n".join(lines)
    with open(out, "w") as f:
        f.write(text + "\n")
    summary["footprint"] = [{"name": n, "value": v, "target": t, "met": ok} for n, v, t, ok in targets]
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    print(text)


# The targets of the issue "Faster than hand-written" (docs/performance.md): read on the ratio of the medians.
RATIOS = [
    ("A/C throughput", "A", "C", "rps", ">= 1.15", lambda x: x >= 1.15),
    ("B/C throughput", "B", "C", "rps", ">= 1.05", lambda x: x >= 1.05),
    ("A/D throughput", "A", "D", "rps", ">= 2", lambda x: x >= 2.0),
    ("p99 A/C", "A", "C", "p99", "<= 1.0", lambda x: x <= 1.0),
    ("CPU per request A/C", "A", "C", "cpu", "<= 0.85", lambda x: x <= 0.85),
    ("CPU per request B/C", "B", "C", "cpu", "(no target)", None),
    ("CPU per request A/D", "A", "D", "cpu", "(no target)", None),
    ("A1/C throughput (A over HTTP/1.1)", "A1", "C", "rps", "(no target)", None),
    ("CPU per request A1/C", "A1", "C", "cpu", "(no target)", None),
    ("A/A1 throughput (h2c over HTTP/1.1)", "A", "A1", "rps", "(no target)", None),
]


def cmd_setups(split, shared, out):
    """Both setups' ratios side by side, from the report.json of each (scripts/bench with BENCH_SETUP=both)."""
    s, h = json.load(open(split)), json.load(open(shared))
    lines = [
        "# bff benchmark: both setups",
        "",
        f"split: downstream nginx off the BFF's CPU, {s['connections']} connections; "
        f"shared: downstream nginx on the BFF's CPU, {h['connections']} connections. "
        "Ratios of the medians (the per-round medians are in each setup's report.md).",
        "",
        "| ratio | split | shared | target | split | shared |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    hr = {r["name"]: r for r in h["ratios"]}
    for a in s["ratios"]:
        b = hr.get(a["name"])
        if b is None:
            continue
        lines.append(
            f"| {a['name']} | {fmt_ratio(a['value'])} | {fmt_ratio(b['value'])} | {a['target']} | "
            f"{a['verdict']} | {b['verdict']} |"
        )
    lines += ["", "| footprint | split | shared | target |", "| --- | ---: | ---: | --- |"]
    for a, b in zip(s["footprint"], h["footprint"]):
        lines.append(f"| {a['name']} | {a['value']} | {b['value']} | {a['target']} |")
    text = "\n".join(lines)
    with open(out, "w") as f:
        f.write(text + "\n")
    print(text)


# ---------------------------------------------------------------- profile

# Where a sample's time goes: the innermost frame of its stack that names one of these (first match wins).
LAYERS = [
    ("serde_json", "JSON parse and write (serde_json)"),
    ("bff_aggregate", "declarative aggregation (bff_aggregate)"),
    ("legacy::client::Client", "HTTP client (hyper-util pool, hyper)"),
    ("legacy::pool", "HTTP client (hyper-util pool, hyper)"),
    ("role::Client", "HTTP client (hyper-util pool, hyper)"),
    ("client::dispatch", "HTTP client (hyper-util pool, hyper)"),
    ("bff_mesh::", "mesh: call, attempt, policies (bff_mesh)"),
    ("Handler<", "the route's handler (axum handler)"),
    ("bff_edge::policy", "route policy (bff_edge::policy)"),
    ("bff_edge::", "edge (bff_edge)"),
    ("get_json", "the route's handler (axum handler)"),
    ("axum::routing", "router (axum)"),
    ("proto::h1::", "CONNECTION"),
    ("accept_loop", "HTTP server connection (hyper)"),
    ("UpgradeableConnection", "HTTP server connection (hyper)"),
    ("tokio::runtime", "runtime: scheduler, timers, I/O driver (tokio)"),
]


def cmd_profile(script, us_per_request, out):
    """`perf script -F comm,ip,sym` output -> where the CPU time of one request goes, as a markdown report:
    time per layer (each sample charged to the innermost frame that names a layer) and the top functions by
    self time, both in microseconds of CPU per request."""
    stacks, cur = [], None
    with open(script, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("\t") or line.startswith(" "):
                ip, _, sym = line.strip().partition(" ")
                if cur is not None:
                    cur.append((ip, sym or ip))
            else:
                cur = []
                stacks.append(cur)
    stacks = [s for s in stacks if s]
    if not stacks:
        die(f"{script}: no samples")
    per = float(us_per_request) / len(stacks)
    layers, leaves = {}, {}
    for s in stacks:
        kernel = s[0][0].startswith("ffffffff")
        layer = "kernel: network stack, syscalls" if kernel else "other (libc, allocator, ...)"
        # The task: the frame the runtime polls. hyper-util runs each client connection as a `Map` future.
        polls = [i for i, (_, f) in enumerate(s) if f.startswith("tokio::runtime::task::raw::poll")]
        root = s[polls[0] - 1][1] if polls and polls[0] > 0 else ""
        for _, frame in s:
            hit = next((name for key, name in LAYERS if key in frame), None)
            if hit == "CONNECTION":
                client = root.startswith("<futures_util::future::future::Map")
                hit = f"HTTP {'client' if client else 'server'} connection (hyper)"
            if hit:
                layer = f"kernel, under {hit}" if kernel else hit
                break
        layers[layer] = layers.get(layer, 0) + 1
        leaf = ("[k] " if kernel else "") + s[0][1][:110]
        leaves[leaf] = leaves.get(leaf, 0) + 1
    lines = [
        f"{len(stacks)} samples; {float(us_per_request):.1f} us of CPU per request in the profiled run.",
        "",
        "| where (innermost frame that names it) | us per request | share |",
        "| --- | ---: | ---: |",
    ]
    for name, n in sorted(layers.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {n * per:.2f} | {100 * n / len(stacks):.1f}% |")
    lines += ["", "| top functions by self time | us per request |", "| --- | ---: |"]
    for name, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"| `{name.replace('|', '/')}` | {n * per:.2f} |")
    text = "\n".join(lines)
    with open(out, "w") as f:
        f.write(text + "\n")
    print(text)


# ---------------------------------------------------------------- fixed rate


def cmd_median_rps(results, variant):
    """Prints the median throughput (requests/s, an integer) of VARIANT's closed-loop runs in RESULTS."""
    runs = [json.loads(line) for line in open(results)]
    rps = sorted(r["rps"] for r in runs if r["variant"] == variant)
    if not rps:
        die(f"no runs of {variant} in {results}")
    print(int(rps[len(rps) // 2]))


def cmd_fixed_record(variant, pct, rate, rnd, oha_json, results):
    """Appends one open-loop run (oha's JSON output, latencies corrected for coordinated omission) to
    RESULTS: the target and achieved rates and the p50/p99/p99.9 latencies in milliseconds."""
    d = json.load(open(oha_json))
    lat = d.get("latencyPercentiles") or {}
    codes = d.get("statusCodeDistribution") or {}
    errors = sum(d.get("errorDistribution", {}).values()) + sum(
        n for code, n in codes.items() if not str(code).startswith("2")
    )
    run = {
        "variant": variant,
        "percent": int(pct),
        "rate": int(rate),
        "round": int(rnd),
        "achieved": d["summary"].get("requestsPerSec", 0.0),
        "p50_ms": (lat.get("p50") or 0) * 1000,
        "p99_ms": (lat.get("p99") or 0) * 1000,
        "p999_ms": (lat.get("p99.9") or 0) * 1000,
        "errors": errors,
    }
    with open(results, "a") as f:
        f.write(json.dumps(run) + "\n")
    print(
        f"  {variant} at {pct}% ({rate} req/s) round {rnd}: achieved {run['achieved']:.0f} req/s, "
        f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, p99.9 {run['p999_ms']:.2f} ms, "
        f"{errors} errors"
    )


def cmd_fixed_report(results, c_rps, out):
    """Appends to OUT the table of the open-loop runs: per load level and variant, the medians over the
    rounds of p50, p99 and p99.9, and A/C, B/C of p99."""
    runs = [json.loads(line) for line in open(results)]
    levels = sorted({r["percent"] for r in runs})
    lines = [
        "",
        f"## Latency at a fixed rate (open loop, oha -q, corrected for coordinated omission)",
        "",
        f"C's closed-loop saturation throughput (median of its rounds above): {c_rps} req/s.",
        "Each cell: the median over the rounds.",
        "",
        "| load | variant | rate (req/s) | achieved | p50 ms | p99 ms | p99.9 ms | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    p99 = {}
    for pct in levels:
        for v in ("A", "A1", "B", "C", "D"):
            rs = [r for r in runs if r["percent"] == pct and r["variant"] == v]
            if not rs:
                continue
            m = {k: statistics.median(r[k] for r in rs) for k in ("achieved", "p50_ms", "p99_ms", "p999_ms")}
            p99[(pct, v)] = m["p99_ms"]
            lines.append(
                f"| {pct}% of C | {v} | {rs[0]['rate']} | {m['achieved']:.0f} | {m['p50_ms']:.2f} | "
                f"{m['p99_ms']:.2f} | {m['p999_ms']:.2f} | {sum(r['errors'] for r in rs)} |"
            )
    lines.append("")
    for pct in levels:
        c = p99.get((pct, "C"))
        if c:
            ratios = ", ".join(
                f"{v}/C {p99[(pct, v)] / c:.2f}" for v in ("A", "A1", "B", "D") if (pct, v) in p99
            )
            lines.append(f"- p99 at {pct}% of C: {ratios}")
    text = "\n".join(lines)
    with open(out, "a") as f:
        f.write(text + "\n")
    print(text)


COMMANDS = {
    "ports": cmd_ports,
    "minify": cmd_minify,
    "render": cmd_render,
    "wait-ready": cmd_wait_ready,
    "start-timed": cmd_start_timed,
    "ticks": cmd_ticks,
    "mem": cmd_mem,
    "record": cmd_record,
    "same-json": cmd_same_json,
    "report": cmd_report,
    "setups": cmd_setups,
    "profile": cmd_profile,
    "median-rps": cmd_median_rps,
    "fixed-record": cmd_fixed_record,
    "fixed-report": cmd_fixed_report,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(f"usage: bench.py {{{'|'.join(COMMANDS)}}} ARGS...")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
