#!/usr/bin/env python3
"""The shape of src/, checked: floors, no import circles, folded twins.

Run by scripts/test.sh; exits 1 naming every violation.

1. Floors. Each top-level module of the crate sits on a floor; a module
   imports (`crate::...`, `super::...`) only from its own floor or below:

     0  config, keys, identity, metrics, shutdown, logging, text, files, embedded, message
     1  snmp
     2  discover
     3  collect
     4  report
     5  ops
     6  provision
     7  daemon, cli, main, lib

   and message (the vocabulary) imports nothing of ours but config.
2. No circles: the graph of imports between top-level modules, and between
   the files of each folder, has no cycle.
3. Twins stay folded (each was once written two or three times): see TWINS.

Usage: python3 scripts/layers.py [--graph] [--self-test]
  --graph      prints the edges
  --self-test  first checks that a tree with a violation of each kind fails
"""
import re
import sys
from pathlib import Path


FLOORS = {
    "config": 0, "keys": 0, "identity": 0, "metrics": 0, "shutdown": 0,
    "logging": 0, "text": 0, "files": 0, "embedded": 0, "message": 0,
    "snmp": 1, "discover": 2, "collect": 3, "report": 4, "ops": 5,
    "provision": 6, "daemon": 7, "cli": 7, "main": 7, "lib": 7,
}
ONLY_FROM = {"message": {"message", "config"}}


def module_of(src: Path, path: Path) -> tuple:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def code_of(text: str) -> str:
    """The text without string and char literals and comments, so that a
    path in a string or a comment is not taken for an import."""
    text = re.sub(r'\br(#*)"[\s\S]*?"\1', '""', text)  # raw strings
    text = re.sub(r"'(?:\\.|[^'\\\n])'", "' '", text)  # char literals ('"' among them)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return "\n".join(re.sub(r"//.*$", "", line) for line in text.splitlines())


def use_trees(code: str):
    """Every path named after `crate::` or `super::`, with group imports expanded."""
    for m in re.finditer(r"\b(crate|super(?:::super)*)::", code):
        rest = code[m.end():]
        base = m.group(0)[:-2]
        if rest.startswith("{"):
            depth, i = 0, 0
            for i, ch in enumerate(rest):
                depth += ch == "{"
                depth -= ch == "}"
                if depth == 0:
                    break
            for item in split_top(rest[1:i]):
                yield base, item.strip()
        else:
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", rest)
            if name:
                yield base, name.group(0)


def split_top(group: str):
    depth, start = 0, 0
    for i, ch in enumerate(group):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            yield group[start:i]
            start = i + 1
    yield group[start:]


def resolve(module: tuple, base: str, item: str, modules: set) -> tuple:
    """The deepest module of ours that `base::item` names."""
    if base == "crate":
        target = []
    else:
        # super:: of module a::b (file a/b.rs) is a; of module a (a.rs or a/mod.rs) the crate.
        target = list(module)
        for _ in range(base.count("super")):
            target = target[:-1]
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", item.split("{")[0])
    for w in words:
        if w in ("self", "crate", "super"):
            continue
        if tuple(target + [w]) in modules:
            target.append(w)
        else:
            break
    return tuple(target)


def sccs(nodes, edges):
    """Tarjan's strongly connected components with more than one node."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


# Each twin: (what was folded, file glob, regex, how many matches are allowed, where).
TWINS = [
    ("the sweep is set up in one place (discover::Plan)", "src/**/*.rs",
     r"\bsweep_targets\(|\bexpand\(&|Rules::for_config\(", {"src/discover/sweep.rs"}),
    ("topic and retain are chosen once (Contract::placement)", "src/**/*.rs",
     r"device_topic\(&[a-z_.()]+, \"(inventory|health|events)\"\)", {"src/report/contract.rs"}),
    ("atomic file replace is written once (files::replace)", "src/**/*.rs",
     r"fs::rename\(", {"src/files.rs"}),
    ("threshold crossed/cleared diffing is pure (collect::health::Crossed)", "src/**/*.rs",
     r"contains_key\(key\)", {"src/collect/health.rs"}),
    ("delivery state lives in report::delivery", "src/**/*.rs",
     r"awaiting_pkid|inflight\.(insert|remove)", {"src/report/delivery.rs"}),
    ("one clip for the CLI and diag (text::clip)", "src/**/*.rs",
     r"\bfn clip\(", {"src/text.rs"}),
    ("key parsing lives in keys", "src/**/*.rs",
     r"\bfn parse_public_key\(|\bfn key_id\(", {"src/keys.rs"}),
    ("table rows are read by one walk helper (snmp::walk::rows)", "src/**/*.rs",
     r"rows_from\(&root, walk\.varbinds\)|rows_from\(entry, walk\.varbinds\)", {"src/snmp/walk.rs"}),
]
# The fuzz target must call the agent's inventory assembly, not rebuild it.
FUZZ_EVIDENCE = Path("fuzz") / "fuzz_targets" / "snmp_values.rs"


def check_twins(root: Path, errors: list):
    for what, glob, pattern, allowed in TWINS:
        for path in sorted(root.glob(glob)):
            rel = str(path.relative_to(root))
            code = code_of(path.read_text())
            if rel in allowed:
                continue
            for m in re.finditer(pattern, code):
                line = code[: m.start()].count("\n") + 1
                errors.append(f"{rel}:{line}: twin: {what}, but `{m.group(0)}` is here")
    fuzz = root / FUZZ_EVIDENCE
    if fuzz.exists():
        code = code_of(fuzz.read_text())
        if "inventory::assemble(" not in code or re.search(r"\b(Evidence|Inventory)\s*\{", code):
            errors.append(f"{FUZZ_EVIDENCE}: twin: the fuzz target must call "
                          "inventory::assemble, not build Evidence or Inventory itself")


def check(root: Path, graph: bool = False):
    """The problems found in the tree at `root`, and how many files were read."""
    src = root / "src"
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f) for f in files}
    errors, edges, file_edges = [], {}, {}
    for f in files:
        module = module_of(src, f)
        top = module[0]
        if top not in FLOORS:
            errors.append(f"{f.relative_to(root)}: module `{top}` has no floor: add it to FLOORS in scripts/layers.py")
            continue
        code = code_of(f.read_text())
        for base, item in use_trees(code):
            target = resolve(module, base, item, modules)
            if not target or target == module:
                continue
            to = target[0]
            if to not in FLOORS:
                continue
            if to != top:
                edges.setdefault(top, set()).add(to)
            if to == top and len(module) > 1 and len(target) > 1:
                # Between files of one folder: the file (or sub-folder) each side is in.
                a, b = module[:2], target[:2]
                if a != b:
                    file_edges.setdefault(a, set()).add(b)
            if FLOORS[to] > FLOORS[top]:
                errors.append(f"{f.relative_to(root)}: {'::'.join(module)} imports {'::'.join(target)} "
                              f"(floor {FLOORS[to]} above its own {FLOORS[top]})")
            if top in ONLY_FROM and to not in ONLY_FROM[top]:
                errors.append(f"{f.relative_to(root)}: the vocabulary imports {'::'.join(target)}; "
                              "message types depend on nothing of ours but config")
    for cycle in sccs(set(edges) | {t for v in edges.values() for t in v}, edges):
        errors.append("import circle between top-level modules: " + " <-> ".join(cycle))
    for cycle in sccs(set(file_edges) | {t for v in file_edges.values() for t in v}, file_edges):
        errors.append("import circle between files of a folder: " + " <-> ".join("::".join(c) for c in cycle))
    check_twins(root, errors)
    if graph:
        for a in sorted(edges, key=lambda m: (FLOORS[m], m)):
            print(f"{a} (floor {FLOORS[a]}) -> {', '.join(sorted(edges[a], key=lambda m: (FLOORS[m], m)))}")
        for a in sorted(file_edges):
            print(f"{'::'.join(a)} -> {', '.join('::'.join(b) for b in sorted(file_edges[a]))}")
    return errors, len(files)


def write_tree(root: str, tree: dict):
    for rel, text in tree.items():
        path = Path(root) / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def self_test() -> bool:
    """A small tree with one violation of each kind: each must be reported."""
    import tempfile
    cases = {
        "upward import": {"snmp/mod.rs": "use crate::report::Links;", "report/mod.rs": ""},
        "grouped upward import": {"discover/mod.rs": "use crate::{config, collect};", "collect/mod.rs": "", "config.rs": ""},
        "vocabulary importing a stage": {"message/mod.rs": "use crate::snmp::Oid;", "snmp/mod.rs": ""},
        "circle in a folder": {"report/mod.rs": "mod a; mod b;", "report/a.rs": "use super::b::X;", "report/b.rs": "use super::a::Y;"},
        "twin": {"ops/mod.rs": "fn f() { std::fs::rename(a, b); }"},
        "module without a floor": {"gadgets.rs": ""},
        "upward import after a quote character": {
            "snmp/mod.rs": "const Q: char = '\"';\nuse crate::report::Links;\nconst S: &str = \"x\";",
            "report/mod.rs": "",
        },
    }
    clean = {  # paths in strings, raw strings and comments are not imports
        "snmp/mod.rs": 'const A: &str = "crate::report::x";\n'
        'const B: &str = r#"use crate::report::Links; "quoted""#;\n'
        "// see crate::report::Links\nuse crate::config::X;",
        "report/mod.rs": "",
        "config.rs": "",
    }
    ok = True
    for name, tree in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            write_tree(tmp, tree)
            errors, _ = check(Path(tmp))
            if not errors:
                print(f"layers self-test: a tree with a {name} passed", file=sys.stderr)
                ok = False
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(tmp, clean)
        errors, _ = check(Path(tmp))
        if errors:
            print(f"layers self-test: a clean tree failed: {errors}", file=sys.stderr)
            ok = False
    return ok


def main():
    if "--self-test" in sys.argv and not self_test():
        return 1
    errors, files = check(Path(__file__).resolve().parent.parent, "--graph" in sys.argv)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"layers: {len(errors)} problem(s); the floors and twins are described in scripts/layers.py", file=sys.stderr)
        return 1
    print(f"layers: {files} files: floors hold, no import circles, twins folded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
