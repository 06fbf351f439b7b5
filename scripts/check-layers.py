#!/usr/bin/env python3
"""The module graph of src/ has no cycle (CI runs this).

Every module file of src/ is a node. A module depends on another when its code (not its
comments, strings, tests, `mod` declarations or re-exports) names an item of it through a
`crate::`, `super::` or `self::` path or a `use` of one. An item is attributed to the
module that defines it, so `use super::Severity` where the parent re-exports `Severity`
from `rules/event.rs` is a dependency on `rules::event`, not on `rules`. A child using its
parent's own items is a dependency like any other: facade `mod.rs` files only declare and
re-export.

The tools wing (src/tools) stands beside the service: only the composition root (`cli`,
`app`) may name it, so a service-only build (`--no-default-features`) needs nothing of it.

    scripts/check-layers.py            # exits 1 and prints each cycle
    scripts/check-layers.py --graph    # also prints every module's dependencies

Written for this project's code (rustfmt-formatted, no macros that define modules); it
errs towards seeing a dependency, never towards missing one.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
ITEM = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+fn|async\s+fn|unsafe\s+fn|fn|struct|enum|trait|type|const|static|macro_rules!)\s+([A-Za-z_][A-Za-z0-9_]*)",
    re.M,
)
WING = "tools"
COMPOSITION_ROOT = {("cli",), ("app",), ()}
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def code_of(text):
    # Test modules and files of tests are not part of the layering.
    text = re.split(r"#\[cfg\(test\)\]\s*\n\s*mod tests", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    # The tools name the service as a client does (`vitalwatch::`, the crate itself).
    text = re.sub(r"\bvitalwatch::", "crate::", text)
    text = re.sub(r'r#+"(?:.|\n)*?"#+', '""', text)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    text = re.sub(r"'(?:[^'\\]|\\.)'", "''", text)
    return text


def main():
    files = {}
    for d, _, names in os.walk(ROOT):
        for n in names:
            if n.endswith(".rs") and n != "tests.rs":
                p = os.path.join(d, n)
                files[module_of(p)] = code_of(open(p, encoding="utf-8").read())
    modules = set(files)
    defined = {m: set(ITEM.findall(code)) for m, code in files.items()}

    def resolve(base, parts):
        """The module an item path names: the longest module prefix, then the module in
        that subtree that defines the item (re-exports point there)."""
        path = list(base)
        rest = list(parts)
        while rest and tuple(path + [rest[0]]) in modules:
            path.append(rest.pop(0))
        target = tuple(path)
        if not rest:
            return target
        item = rest[0]
        if item in defined.get(target, ()):
            return target
        below = sorted(
            m for m in modules if m[: len(target)] == target and item in defined[m]
        )
        return below[0] if below else target

    edges = {m: set() for m in modules}
    for m, code in files.items():
        # Re-exports and module declarations say what a module is made of, not what it
        # depends on.
        lines = [
            l
            for l in code.split("\n")
            if not re.match(r"\s*pub(\([^)]*\))?\s+use\b", l)
            and not re.match(r"\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*;", l)
        ]
        body = "\n".join(lines)
        # `use a::{b, c::{d, E}}` lists: expand into single paths.
        for stmt in re.findall(r"\buse\s+([^;]+);", body):
            for path in expand(stmt.replace("\n", " ")):
                add_edge(edges, m, path, resolve)
        for kw, rest in PATH.findall(re.sub(r"\buse\s+[^;]+;", "", body)):
            add_edge(edges, m, kw + rest, resolve)

    cycles = strongly_connected(edges)
    wing = [
        (m, t)
        for m in sorted(edges)
        for t in sorted(edges[m])
        if t[:1] == (WING,) and m[:1] != (WING,) and m not in COMPOSITION_ROOT
    ]
    if "--graph" in sys.argv:
        for m in sorted(edges):
            print("::".join(m) or "crate", "->", ", ".join(sorted("::".join(t) for t in edges[m])))
    for c in cycles:
        print("cycle: " + " <-> ".join(sorted("::".join(m) for m in c)))
    for m, t in wing:
        print(f"service module {'::'.join(m)} depends on the tools wing ({'::'.join(t)})")
    if cycles or wing:
        print(
            f"{len(cycles)} cycle(s) among the modules of src/, "
            f"{len(wing)} service dependency(ies) on the tools wing",
            file=sys.stderr,
        )
        return 1
    service = sum(1 for m in modules if m[:1] != (WING,))
    print(
        f"no cycle among the {len(modules)} modules of src/; "
        f"none of the {service} service modules depends on the tools wing"
    )
    return 0


def expand(stmt):
    """`a::{b, c::{d, E}}` -> a::b, a::c::d, a::c::E (self and globs kept)."""
    stmt = stmt.strip()
    m = re.match(r"^(.*?)\{(.*)\}$", stmt)
    if not m:
        return [re.sub(r"\s+as\s+\w+$", "", stmt).strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        if p == "self":
            out.append(prefix.rstrip(":"))
        else:
            out.extend(expand(prefix + p))
    return out


def add_edge(edges, module, path, resolve):
    parts = path.split("::")
    head, rest = parts[0], [p for p in parts[1:] if p and p != "*"]
    if head == "crate":
        base = ()
    elif head == "super":
        base = module[:-1]
        while rest and rest[0] == "super":
            rest.pop(0)
            base = base[:-1]
    elif head == "self":
        base = module
    else:
        return
    target = resolve(base, rest)
    if target != module and target != ():
        edges[module].add(target)


def strongly_connected(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
