"""`make bench`: every workload side by side in one process; writes results.md.

    python tests/bench/run_all.py --out tests/bench/results.md
    python tests/bench/run_all.py --only B1,B3 --rounds 5      # a quicker look

Each workload lives in its own module (b1_tape.py ... b9_events.py) with a
`run(rounds)` function returning `Section`s (rows, notes, goals). Peers
(autograd, torch, torchdiffeq, scipy) are optional: a missing one is reported
and its comparisons skipped. numpy and torch run on one thread (common.py sets
the variables before numpy is imported). The exit status is 1 when two sides'
gradients disagree, so a fast wrong answer cannot pass unnoticed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

WORKLOADS = {
    "B1": "b1_tape",
    "B2": "b2_mlp",
    "B3": "b3_spiral",
    "B4": "b4_solvers",
    "B5": "b5_memory",
    "B6": "b6_floor",
    "B7": "b7_forward",
    "B8": "b8_stiff",
    "B9": "b9_events",
}


def main(argv=None):
    import argparse
    import importlib
    import time

    import common  # first: pins the thread pools before numpy is imported

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the markdown report here")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="e.g. B1,B3")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per workload")
    args = parser.parse_args(argv)

    sections = []
    start = time.perf_counter()
    for key in [k.strip().upper() for k in args.only.split(",") if k.strip()]:
        module = importlib.import_module(WORKLOADS[key])
        t0 = time.perf_counter()
        print(f"running {key} ({module.__name__}) ...", flush=True)
        kwargs = {} if args.rounds is None else {"rounds": args.rounds}
        new = module.run(**kwargs)
        for s in new:
            print(render_section(s), flush=True)
        print(f"  ({key} took {time.perf_counter() - t0:.1f} s)\n", flush=True)
        sections.extend(new)
    total = time.perf_counter() - start

    report = render_report(sections, total)
    print(render_goals(sections))
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        print(f"wrote {args.out}")
    if common.FAILURES:
        print("\nGRADIENTS DISAGREE:\n  " + "\n  ".join(common.FAILURES))
        return 1
    return 0


def render_section(s):
    import common

    parts = [f"### {s.title}", "", common.markdown_table(s.headers, s.rows)]
    if s.notes:
        parts += [""] + [f"- {n}" for n in s.notes]
    return "\n".join(parts) + "\n"


def render_goals(sections):
    import common

    goals = [g for s in sections for g in s.goals]
    rows = [[g.workload, g.what, g.value, g.goal, common.verdict(g.holds)] for g in goals]
    return common.markdown_table(["", "measure", "measured", "goal", "holds"], rows)


def render_report(sections, total):
    import common

    lines = ["# tinyad / tinyode benchmarks", ""]
    lines += common.machine_lines()
    lines += [
        f"- total run time: {total:.0f} s; times are medians over alternating rounds "
        "after a warm-up (± the interquartile range); ratio = ours / peer",
        "",
        "Regenerate with `make bench` (or `python tests/bench/run_all.py --out "
        "tests/bench/results.md`).",
        "",
    ]
    if common.MISSING:
        lines += ["Skipped peers: " + "; ".join(f"{k} ({v})" for k, v in common.MISSING.items())]
        lines += [""]
    lines += ["## Goals", "", render_goals(sections), ""]
    if common.FAILURES:
        lines += ["**Gradients disagree:** " + "; ".join(common.FAILURES), ""]
    lines += ["## Details", ""]
    lines += [render_section(s) for s in sections]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
