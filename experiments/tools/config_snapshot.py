"""Every experiment config of a checkout, resolved, as JSON; and a comparison of two snapshots.

    python experiments/tools/config_snapshot.py dump --repo=. --out=after.json
    python experiments/tools/config_snapshot.py compare before.json after.json

`dump` calls `get_config` of every `experiments/*/*.py` that has one with no argument, each
known argument and every pair of them (the known set is read from the "unknown config
arguments ...; known: [...]" error of a bad argument). `compare` lists every key of the
first snapshot whose value differs or is missing in the second (keys only the second has are
new defaults). Run with PYTHONHASHSEED=0: a config given two conflicting arguments resolves
in set order. Used to check that a refactor leaves every config as it was, e.g. against an
older commit checked out with `git worktree add /tmp/old <rev>` (dump there with
`PYTHONPATH=/tmp/old`).
"""
from __future__ import annotations

import argparse
import ast
import glob
import importlib.util
import itertools
import json
import os
import re
import sys


def dump(repo: str) -> dict:
    sys.path.insert(0, repo)
    out = {}
    for path in sorted(glob.glob(os.path.join(repo, "experiments/*/*.py"))):
        with open(path) as f:
            if "def get_config" not in f.read():
                continue
        rel = os.path.relpath(path, repo)
        spec = importlib.util.spec_from_file_location("cfg_" + rel.replace("/", "_")[:-3], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        try:
            mod.get_config("__probe__")
            known = []
        except Exception as e:  # noqa: BLE001 - the error lists the known arguments
            m = re.search(r"known: (\[.*\])", str(e))
            known = ast.literal_eval(m.group(1)) if m else []
        for arg in [""] + known + [",".join(p) for p in itertools.combinations(known, 2)]:
            try:
                c = mod.get_config(arg) if arg else mod.get_config()
            except Exception:  # noqa: BLE001 - combinations a config refuses
                continue
            out[f"{rel}:{arg}"] = json.loads(c.to_json_best_effort())
    return out


def differences(old, new, path: str = "") -> list[str]:
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [f"{path}: {old!r} -> {new!r}"]
        out = []
        for k in old:
            out += ([f"{path}.{k}: missing (was {old[k]!r})"] if k not in new
                    else differences(old[k], new[k], f"{path}.{k}"))
        return out
    same_number = (isinstance(old, (int, float)) and isinstance(new, (int, float))
                   and not isinstance(old, bool) and not isinstance(new, bool)
                   and float(old) == float(new))
    return [] if old == new or same_number else [f"{path}: {old!r} -> {new!r}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--repo", default=".")
    d.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    a = ap.parse_args()
    if a.cmd == "dump":
        snap = dump(os.path.abspath(a.repo))
        with open(a.out, "w") as f:
            json.dump(snap, f, indent=1, sort_keys=True)
        print(json.dumps({"configs": len(snap), "out": a.out}))
        return
    with open(a.before) as f:
        before = json.load(f)
    with open(a.after) as f:
        after = json.load(f)
    bad = {name: differences(cfg, after[name]) if name in after else ["missing"]
           for name, cfg in before.items()}
    bad = {k: v for k, v in bad.items() if v}
    for name, diffs in bad.items():
        print(name, *diffs[:10], sep="\n    ")
    print(json.dumps({"configs": len(before), "differ": len(bad)}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
