#!/usr/bin/env python3
"""Checks the Grafana dashboard against a live /metrics scrape of vitalwatch.

    dashboard_metrics.py DASHBOARD.json SCRAPE.txt [--rules-out RULES.yml]

Run by scripts/check-deploy.sh with a scrape of a running `vitalwatch demo`. It fails
(exit 1) when the dashboard JSON does not parse, when a PromQL expression does not parse,
when an expression selects a metric the scrape does not export, or when it matches or
groups by a label that none of the metrics it selects carries (nor Prometheus' target
labels `instance` and `job`, nor `le`). With --rules-out it also writes every expression
as a recording rule, for `promtool check rules` to parse with Prometheus' own parser.

Needs the PyPI package promql-parser (a binding of the Rust promql-parser crate).
"""

import argparse
import json
import re
import sys

import promql_parser as pp

# Grafana's built-in interval variables, replaced by a plain duration before parsing.
GRAFANA_VARS = re.compile(r"\$(__rate_interval|__interval|__range|__auto)\b|\$\{(__rate_interval|__interval|__range|__auto)\}")
TARGET_LABELS = {"instance", "job"}  # added by Prometheus at scrape time


def exported(scrape_text):
    """Metric names in the scrape (declared by `# TYPE` or present as samples), the label
    names seen on each, and the names that have at least one sample."""
    labels, sampled = {}, set()
    for line in scrape_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names = [name]
            if kind.strip() == "histogram":
                names = [name + s for s in ("_bucket", "_sum", "_count")]
            elif kind.strip() == "summary":
                names = [name, name + "_sum", name + "_count"]
            for n in names:
                labels.setdefault(n, set())
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
        if not m:
            continue
        found = labels.setdefault(m.group(1), set())
        sampled.add(m.group(1))
        if m.group(3):
            found.update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3)))
    return labels, sampled


def expressions(dashboard):
    """(where, expr) for every PromQL expression: panel targets, rows' nested panels,
    and query variables."""
    out = []

    def panels(items, prefix=""):
        for p in items:
            title = p.get("title", "?")
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f'{prefix}panel "{title}" {t.get("refId", "")}', t["expr"]))
            panels(p.get("panels", []), prefix=f'{prefix}row "{title}" / ' if p.get("type") == "row" else prefix)

    panels(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and isinstance(q, str) and q:
            m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", q)
            out.append((f'variable "{v.get("name")}"', m.group(1) if m else q))
    return out


def analyse(expr):
    """Metric names selected, label names used in matchers, and label names used in
    by/without/on/ignoring/group_x clauses."""
    names, matcher_labels, grouping_labels, problems = [], set(), set(), []

    def visit(node):
        if isinstance(node, pp.VectorSelector):
            name = node.name
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    if str(m.op) == "MatchOp.Equal":
                        name = m.value
                    else:
                        problems.append(f"selects metric names by pattern ({m.value}): cannot be checked")
                else:
                    matcher_labels.add(m.name)
            if name:
                names.append(name)
            else:
                problems.append("a selector without a metric name")
        elif isinstance(node, pp.AggregateExpr) and node.modifier is not None:
            grouping_labels.update(node.modifier.labels)
        elif isinstance(node, pp.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                grouping_labels.update(node.modifier.matching.labels)
            grouping_labels.update(node.modifier.group_labels or [])
        return True

    pp.walk(pp.parse(expr), visit)
    return names, matcher_labels, grouping_labels, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dashboard")
    ap.add_argument("scrape")
    ap.add_argument("--rules-out")
    args = ap.parse_args()

    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dashboard = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"FAIL {args.dashboard} does not parse as JSON: {e}")
        return 1
    with open(args.scrape, encoding="utf-8") as f:
        metrics, sampled = exported(f.read())

    exprs = expressions(dashboard)
    if not exprs:
        print(f"FAIL {args.dashboard}: no PromQL expression found")
        return 1
    failures, used, rules = 0, set(), []
    for where, raw in exprs:
        expr = GRAFANA_VARS.sub("1m", raw)
        try:
            names, matcher_labels, grouping_labels, problems = analyse(expr)
        except Exception as e:  # the parser raises ValueError and friends
            print(f"FAIL {where}: does not parse: {e}\n     {raw}")
            failures += 1
            continue
        missing = [n for n in names if n not in metrics]
        known_labels = set(TARGET_LABELS) | {"le"}
        unlabelled = [n for n in names if n in metrics and n not in sampled]
        for n in names:
            known_labels |= metrics.get(n, set())
        bad_labels = sorted((matcher_labels | grouping_labels) - known_labels) if not unlabelled else []
        if missing or problems or bad_labels:
            failures += 1
            if missing:
                print(f"FAIL {where}: selects {', '.join(missing)}, not exported by /metrics\n     {raw}")
            for p in problems:
                print(f"FAIL {where}: {p}\n     {raw}")
            if bad_labels:
                print(f"FAIL {where}: uses label(s) {', '.join(bad_labels)}, which no selected metric carries\n     {raw}")
            continue
        used.update(names)
        note = f" (labels not checked: no samples yet for {', '.join(unlabelled)})" if unlabelled else ""
        print(f"ok   {where}: {', '.join(sorted(set(names)))}{note}")
        rules.append(expr)

    contract = {n for n in metrics if n.startswith("vitalwatch_")}
    bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    unused = sorted(n for n in contract if n not in used and n not in bases
                    and not n.endswith(("_sum", "_count", "_bucket")))
    print(f"{len(exprs)} expressions, {len(exprs) - failures} ok; "
          f"{len(bases)} of the scrape's metrics used: {', '.join(sorted(bases))}")
    if unused:
        print(f"exported but not on the dashboard: {', '.join(unused)}")

    if args.rules_out:
        with open(args.rules_out, "w", encoding="utf-8") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for i, e in enumerate(rules):
                f.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(e)}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
