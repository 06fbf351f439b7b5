#!/usr/bin/env python3
"""Readiness of consumer-group members without a partition (scripts/check-deploy.sh 7).

    standby_ready.py --member NAME URL [LOG] ... --fresh NAME URL LOG --wait SECS
                     --input-partitions N

Every --member is a vitalwatch process of one consumer group (URL: its http.listen, as
http://127.0.0.1:PORT; LOG: its JSON log, if it has one). The group has more members than
partitions, so once it has settled at least one member holds none. The rule checked:

  * a member whose assignment is EMPTY answers /readyz 200 (a standby is ready: a
    StatefulSet rollout waits for each pod to be ready, and a static member that stood
    by comes back from its restart with nothing, so the rollout must not wait for it);
  * the --fresh member, whose brokers never answer, has had no assignment at all: it
    answers 503, never 200, and (once its pipeline runs) names the reason "waiting for the
    group's first assignment".

What a member holds: the sum of its vitalwatch_assigned_partitions samples; from a binary
without that metric, the `assigned` field of the last "partitions assigned" line of its
log; for the one member with neither (the demo of such a binary), the input partitions
the others do not hold. A standby counts only if it still holds nothing after answering,
and while another member holds partitions (so the group is consuming). Polls once a
second until both rules are seen or SECS pass. Exit 0 when both hold, 1 otherwise.
"""

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request

METRIC = "vitalwatch_assigned_partitions"
WAITING = "waiting for the group's first assignment"


def get(url):
    """(status, body) of a GET; (None, why) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(getattr(e, "reason", e))


def from_metric(url):
    status, text = get(url + "/metrics")
    if status != 200:
        return None
    values = [float(m.group(1)) for m in
              re.finditer(rf"^{METRIC}(?:\{{[^}}]*\}})?\s+(\S+)\s*$", text, re.M)]
    return int(sum(values)) if values else None


def from_log(path):
    assigned = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    fields = json.loads(line).get("fields", {})
                except (ValueError, AttributeError):
                    continue
                if fields.get("message") == "partitions assigned" and "assigned" in fields:
                    assigned = int(fields["assigned"])
    except OSError:
        return None
    return assigned


def holdings(members, input_partitions):
    """NAME -> (partitions or None, where the number comes from)."""
    held = {}
    for name, url, log in members:
        n = from_metric(url)
        if n is not None:
            held[name] = (n, METRIC)
        elif log and (n := from_log(log)) is not None:
            held[name] = (n, "its log")
        else:
            held[name] = (None, "unknown")
    unknown = [name for name, (n, _) in held.items() if n is None]
    any_metric = any(src == METRIC for _, src in held.values())
    if len(unknown) == 1 and not any_metric:
        rest = input_partitions - sum(n for n, _ in held.values() if n is not None)
        if rest >= 0:
            held[unknown[0]] = (rest, "the input partitions the others do not hold")
    return held


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--member", nargs="+", action="append", required=True)
    ap.add_argument("--fresh", nargs=3, required=True)
    ap.add_argument("--wait", type=float, required=True)
    ap.add_argument("--input-partitions", type=int, required=True)
    args = ap.parse_args()
    members = [(m[0], m[1], m[2] if len(m) > 2 else None) for m in args.member]
    fresh_name, fresh_url, _ = args.fresh

    deadline = time.monotonic() + args.wait
    standby_ok = None     # (name, body) of a standby seen ready
    fresh_reason = None   # the fresh member's 503 naming the reason
    fresh_ready = None    # a 200 from the fresh member: wrong
    last, last_line = {}, None
    while time.monotonic() < deadline and not (standby_ok and fresh_reason) and not fresh_ready:
        status, body = get(fresh_url + "/readyz")
        if status == 200:
            fresh_ready = body.strip()
        elif status == 503 and WAITING in body:
            fresh_reason = body.strip()
        last[fresh_name] = (status, body.strip())

        held = holdings(members, args.input_partitions)
        holders = [n for n, (p, _) in held.items() if p]
        standbys = [n for n, (p, _) in held.items() if p == 0]
        line = ", ".join(f"{n} {p if p is not None else '?'}" for n, (p, _) in held.items())
        if line != last_line:
            print(f"  partitions held: {line}", flush=True)
            last_line = line
        if holders and standbys and not standby_ok:
            urls = {name: url for name, url, _ in members}
            for name in standbys:
                status, body = get(urls[name] + "/readyz")
                last[name] = (status, body.strip())
                again = holdings(members, args.input_partitions)[name][0]
                if status == 200 and again == 0:
                    standby_ok = (name, body.strip())
                    break
        time.sleep(1)

    held = holdings(members, args.input_partitions)
    for name, (p, src) in held.items():
        answer = last.get(name)
        said = f"; /readyz {answer[0]} {answer[1]!r}" if answer else ""
        print(f"  {name}: {p if p is not None else '?'} partition(s) (from {src}){said}")
    fresh = last.get(fresh_name, (None, ""))
    print(f"  {fresh_name}: no broker answers; last /readyz {fresh[0]} {fresh[1]!r}")

    ok = True
    if standby_ok:
        print(f"ok   {standby_ok[0]} holds no partition and answers /readyz 200 {standby_ok[1]!r}: "
              f"an empty assignment is ready")
    else:
        ok = False
        seen = [n for n, (p, _) in held.items() if p == 0]
        if seen:
            answers = ", ".join("%s: %r" % (n, last.get(n, (None, "not asked"))[1]) for n in seen)
            print(f"FAIL no member without a partition answered /readyz 200 within {args.wait:g} s "
                  f"({answers}): readiness requires partitions, so a rollout could stop at a standby")
        else:
            print(f"FAIL within {args.wait:g} s the group did not settle with a member holding no partition")
    if fresh_ready:
        ok = False
        print(f"FAIL {fresh_name} answered /readyz 200 ({fresh_ready!r}) without ever having an assignment")
    elif fresh_reason:
        print(f"ok   {fresh_name}, before its first assignment: /readyz 503 {fresh_reason!r}")
    else:
        ok = False
        print(f"FAIL {fresh_name}, before its first assignment: /readyz never named {WAITING!r} within "
              f"{args.wait:g} s (last: {fresh[0]} {fresh[1]!r})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
