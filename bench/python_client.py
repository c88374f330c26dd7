"""`npm run bench -- python [--samples N]`: the Python client against the sidecar.

- a 4M-sample `pack` from Python (lengths from Python lists into uint32 arrays, sent as binary
  attachments, planned, summary read with `encoding: "binary"`: what the client and the sampler
  do), target <= 1.5 s: the first call of a fresh sidecar; the same request again (the sidecar
  shares the stored plan: no solving), which isolates what the client, the wire and the
  sidecar's checks cost from the planner itself, also with the older base64 wire for comparison;
  then three more with other seeds, each plan released before the next (as the sampler does
  each epoch): new plans from a warm sidecar;
- a ~16 MB answer (`planForRank` of a 2M-sample one-rank plan) read and decoded, target <= 1 s:
  as JSON lists (json.loads) and as the binary answer (`encoding: "binary"`, the client's
  default), plus the time to make every micro-batch list from the binary answer;
- sidecar memory for 8 local ranks x N samples (default 10M, read from a length file):
  one sidecar per rank against one node-shared sidecar on a Unix socket.

Prints a table; each figure is one run on whatever machine this is (read the load first).
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

from omnibal import Client, u32_array, u32_values  # noqa: E402


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def hwm_mib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid):
    """User + system CPU seconds of a process so far (a figure the machine's load does not inflate)."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def synthetic(n):
    vision = [1 + (i * 7) % 6 for i in range(n)]
    text = [150 + (i * 7919) % 2400 for i in range(n)]
    return vision, text


def bench_pack(n=4_000_000, later=3):
    """The first `pack` of a fresh sidecar; the same request again (shared: no solving); then
    `later` more with other seeds, each plan released before the next is asked for (as the
    sampler does each epoch): new plans from a warm sidecar."""
    vision, text = synthetic(n)
    runs = []

    def timed(c, seed, wire="binary"):
        cpu0, side0 = time.process_time(), cpu_s(c.pid)
        start = time.perf_counter()
        encode = u32_values if wire == "binary" else u32_array
        params = {"vision": encode(vision), "text": encode(text), "dp": 8, "accum": 1, "samplesPerPack": 4.5, "seed": seed, "encoding": wire}
        encoded = time.perf_counter()
        plan = c.call("pack", params)
        done = time.perf_counter()
        return plan, (done - start, encoded - start, (time.process_time() - cpu0, cpu_s(c.pid) - side0))

    with Client() as c:
        c.call("version")
        first, figures = timed(c, 1)
        runs.append(figures)
        # The same request while the first handle holds the plan: shared, nothing solved.
        again, figures = timed(c, 1)
        assert again["shared"]
        overhead = [("binary attachments (the client's default)", figures[0], figures[2][0], figures[2][1])]
        c.release(again["planId"])
        for wire in ("base64", "binary", "base64"):
            again, figures = timed(c, 1, wire)
            assert again["shared"]
            overhead.append(("binary attachments" if wire == "binary" else "base64 in the line (before)", figures[0], figures[2][0], figures[2][1]))
            c.release(again["planId"])
        c.release(first["planId"])
        for seed in range(2, later + 2):
            plan, figures = timed(c, seed)
            runs.append(figures)
            c.release(plan["planId"])
    return runs, overhead


def bench_answer(n=2_000_000):
    vision, text = synthetic(n)
    with Client() as c:
        plan = c.call("pack", {"vision": u32_array(vision), "text": u32_array(text), "dp": 1, "samplesPerPack": 4.5, "seed": 1})
        rows = []
        for name, get in (("JSON lists", lambda: c.call("planForRank", {"planId": plan["planId"], "rank": 0})),
                          ("binary attachments (default)", lambda: c.plan_for_rank(plan["planId"], 0))):
            cpu0, side0 = time.process_time(), cpu_s(c.pid)
            start = time.perf_counter()
            steps = get()
            took = time.perf_counter() - start
            cpu = (time.process_time() - cpu0, cpu_s(c.pid) - side0)
            if name == "JSON lists":
                # The answer's size on the wire (compact JSON, as the sidecar writes it), and json.loads alone.
                line = json.dumps({"jsonrpc": "2.0", "id": 2, "result": steps}, separators=(",", ":"))
                start = time.perf_counter()
                json.loads(line)
                rows.append((name, len(line), took, cpu, "json.loads alone %.2f s" % (time.perf_counter() - start)))
                want = steps
            else:
                raw = c.call("planForRank", {"planId": plan["planId"], "rank": 0, "encoding": "binary"})
                size = len(json.dumps({"jsonrpc": "2.0", "id": 2, "result": {k: (v if isinstance(v, str) else {"$binary": 0, "dtype": "u32"}) for k, v in raw.items()}}, separators=(",", ":")))
                size += 4 * sum(len(v) for v in raw.values() if not isinstance(v, str)) + 1  # the attachments and their closing newline
                start = time.perf_counter()
                count = sum(1 for _ in steps.micro_batches())
                lists = time.perf_counter() - start
                assert count == sum(len(s) for s in want) and steps.tolist() == want
                rows.append((name, size, took, cpu, "then every micro-batch list (lazy view) %.2f s" % lists))
    return rows


def write_lengths(path, n):
    with open(path, "w") as fh:
        fh.write("vit_num,token_num\n")
        chunk = 1_000_000
        for lo in range(0, n, chunk):
            fh.write("".join("%d,%d\n" % (1 + (i * 7) % 6, 150 + (i * 7919) % 2400) for i in range(lo, min(n, lo + chunk))))


def bench_node_memory(n, ranks=8):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lengths.csv")
        write_lengths(path, n)
        params = {"path": path, "dp": ranks, "accum": 4, "samplesPerPack": 4.5, "seed": 1}
        # One sidecar per rank (what every rank starting its own sampler does).
        clients = [Client(timeout=1800) for _ in range(ranks)]
        try:
            start = time.perf_counter()
            for c in clients:
                c.call("pack", params)
            took = time.perf_counter() - start
            rows.append(("one sidecar per rank", ranks, sum(rss_mib(c.pid) for c in clients), sum(hwm_mib(c.pid) for c in clients), took))
        finally:
            for c in clients:
                c.close()
        # One sidecar for the node, every rank connected to it (each with its own plan handle).
        sock = os.path.join(tmp, "node.sock")
        clients = [Client.node_shared(sock, timeout=1800) for _ in range(ranks)]
        try:
            owner = next(c for c in clients if c.owns_sidecar)
            start = time.perf_counter()
            for c in clients:
                c.call("pack", params)
            took = time.perf_counter() - start
            rows.append(("one node-shared sidecar", 1, rss_mib(owner.pid), hwm_mib(owner.pid), took))
        finally:
            for c in clients:
                if not c.owns_sidecar:
                    c.close()
            owner.close()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10_000_000, help="samples per rank for the memory comparison")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    print("omnibal bench: the Python client (%s, load average %.1f on %d CPUs)" % (sys.version.split()[0], os.getloadavg()[0], os.cpu_count()))
    print("(CPU s = user + system seconds of this Python process / of the sidecar: what the load does not inflate)")
    runs, overhead = bench_pack()
    for k, (total, encode, cpu) in enumerate(runs):
        what = "first call of a fresh sidecar" if k == 0 else "call %d (another seed: a new plan)" % (k + 1)
        print("4M-sample pack from Python, %s: %.2f s wall, CPU %.2f s Python / %.2f s sidecar (target <= 1.5 s wall; encoding the lengths %.2f s wall)" % ((what, total) + cpu + (encode,)))
    for row in overhead:
        print("  the same request again (plan shared, no solving: client + wire + checks), %s: %.2f s wall, CPU %.2f s Python / %.2f s sidecar" % row)
    for name, nbytes, took, cpu, note in bench_answer():
        print("planForRank answer of 2M samples, %s: %.1f MB, made, read and decoded in %.2f s wall, CPU %.2f s Python / %.2f s sidecar (target <= 1 s wall; %s)"
              % ((name, nbytes / 1e6, took) + cpu + (note,)))
    if not args.skip_memory:
        print("\nsidecar memory, 8 local ranks x %s samples each (pack dp 8 accum 4 from a CSV length file)" % format(args.samples, ","))
        print("%-26s %9s %14s %14s %10s" % ("", "sidecars", "RSS MiB", "peak RSS MiB", "pack s"))
        for name, count, rss, hwm, took in bench_node_memory(args.samples):
            print("%-26s %9d %14.0f %14.0f %10.1f" % (name, count, rss, hwm, took))


if __name__ == "__main__":
    main()
