"""Reading a tape: one line per record, the bytes it keeps, and a drawing of the graph."""


def getval(x):
    """The raw value of a record's entry (one held for an outer tape is a Box: unwrap it).

    Written here rather than imported from core.py, which imports this module's
    functions for Tape's printing: the two modules stay free of an import cycle.
    """
    while hasattr(x, "tape") and hasattr(x, "value"):
        x = x.value
    return x


__all__ = ["format_tape", "kept_bytes", "plot_tape"]


def _arrays(record):
    """The arrays a record keeps: its output, its inputs, and residuals its primitive saved."""
    prim, ans, args, kwargs, parents = record
    for x in (ans, *args):
        x = getval(x)
        if hasattr(x, "nbytes"):
            yield x
    if "saved" in kwargs:
        yield from _held(kwargs["saved"])


def _held(x):
    """The arrays inside saved residuals: containers, and objects with __slots__ (a solver's
    recorded steps), walked to their arrays."""
    x = getval(x)
    if hasattr(x, "nbytes") and hasattr(x, "shape"):
        yield x
    elif isinstance(x, (list, tuple)):
        for item in x:
            yield from _held(item)
    elif isinstance(x, dict):
        for item in x.values():
            yield from _held(item)
    elif hasattr(type(x), "__slots__"):
        for name in type(x).__slots__:
            yield from _held(getattr(x, name, None))


def new_bytes(tape):
    """For each record, the bytes of the arrays it is the first to keep (its output, and any
    constant input no earlier record holds): the column sums to what the tape keeps."""
    seen, column = set(), []
    for record in tape.records:
        fresh = [x for x in _arrays(record) if id(x) not in seen]
        seen.update(id(x) for x in fresh)
        column.append(sum(x.nbytes for x in {id(x): x for x in fresh}.values()))
    return column


def kept_bytes(tape):
    """Bytes the whole tape keeps alive, each array counted once."""
    return sum(new_bytes(tape))


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def format_tape(tape):
    rows = [("#", "primitive", "inputs", "shape", "dtype", "keeps")]
    column = new_bytes(tape)
    for i, record in enumerate(tape.records):
        prim, ans, args, kwargs, parents = record
        ans = getval(ans)
        name = "input" if prim is None else prim.name
        inputs = ",".join(str(p) for _, p in parents) or "-"
        dtype = getattr(ans, "dtype", type(ans).__name__)
        rows.append(
            (
                str(i),
                name,
                inputs,
                str(getattr(ans, "shape", ())),
                str(dtype),
                _fmt_bytes(column[i]),
            )
        )
    widths = [max(len(r[k]) for r in rows) for k in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(
        f"{len(tape.records)} records, {_fmt_bytes(kept_bytes(tape))} kept for the backward pass"
    )
    return "\n".join(lines)


def plot_tape(tape, ax=None):
    """Records as labelled nodes in columns by depth, arrows from inputs to outputs."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    depth, rows, pos = {}, {}, {}
    for i, (prim, ans, args, kwargs, parents) in enumerate(tape.records):
        depth[i] = 1 + max((depth[p] for _, p in parents), default=-1)
        rows[depth[i]] = rows.get(depth[i], -1) + 1
        pos[i] = (depth[i], -rows[depth[i]])
    for i, (prim, ans, args, kwargs, parents) in enumerate(tape.records):
        for _, p in parents:
            ax.annotate(
                "",
                xy=pos[i],
                xytext=pos[p],
                arrowprops=dict(
                    arrowstyle="->",
                    color="0.5",
                    shrinkA=14,
                    shrinkB=14,
                    # an edge that skips columns curves around the nodes in between
                    connectionstyle=f"arc3,rad={0.3 if depth[i] - depth[p] > 1 else 0.0}",
                ),
            )
        label = "input" if prim is None else prim.name
        shape = getattr(getval(ans), "shape", ())
        ax.text(
            *pos[i],
            f"{i}: {label}\n{shape}",
            ha="center",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="round", fc="lightyellow" if prim is None else "lightblue"),
        )
    if pos:
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
        ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.set_axis_off()
    ax.set_title(f"tape: {len(tape.records)} records")
    return ax
