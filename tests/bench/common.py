"""Shared pieces of the benchmark suite: one thread, optional peers, timing, tables.

Importing this module pins numpy's and torch's thread pools to one thread, so it
must be imported before numpy (run_all.py does that first). Nothing here imports
numpy at module level.
"""

import os

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def limit_threads():
    """One thread for every BLAS and OpenMP pool (read when numpy or torch is first imported)."""
    for var in THREAD_VARS:
        os.environ[var] = "1"


limit_threads()

import gc  # noqa: E402  (after the thread variables, on purpose)
import importlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

# ----------------------------------------------------------------------------- peers

MISSING = {}  # peer name -> why it is skipped
FAILURES = []  # gradient disagreements: a fast wrong answer must not win


def peer(name):
    """The module `name` (autograd, torch, torchdiffeq, scipy.integrate), or None if absent."""
    if name in MISSING:
        return None
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken install
        MISSING[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return None
    if name == "torch":
        module.set_num_threads(1)
        try:
            module.set_num_interop_threads(1)
        except RuntimeError:  # already set (or torch already ran parallel work)
            pass
    return module


def skipped(what, name):
    return f"{what}: skipped, {name} is not installed ({MISSING.get(name, 'missing')})"


# ----------------------------------------------------------------------------- timing


@dataclass
class Timing:
    median: float  # seconds per call
    q1: float
    q3: float
    number: int  # calls per sample
    samples: int
    values: tuple = ()  # seconds per call of each round's sample, in round order

    @property
    def spread(self):
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median else 0.0


def compare(candidates, rounds=9, warmup=2, min_sample=0.05):
    """Time several callables side by side; {name: Timing} of seconds per call.

    Each candidate is warmed up, then calibrated so that one sample (`number`
    back-to-back calls) lasts at least `min_sample` seconds. Then `rounds` rounds
    each take one sample of every candidate, the order reversed every other round,
    so drifts of the machine (frequency, other load) hit every candidate alike.
    """
    names = list(candidates)
    numbers = {}
    for name in names:
        fun = candidates[name]
        for _ in range(warmup):
            fun()
        start = time.perf_counter()
        fun()
        once = time.perf_counter() - start
        numbers[name] = max(1, int(min_sample / max(once, 1e-9)))
    samples = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fun, number = candidates[name], numbers[name]
            gc.collect()
            start = time.perf_counter()
            for _ in range(number):
                fun()
            samples[name].append((time.perf_counter() - start) / number)
    out = {}
    for name, xs in samples.items():
        qs = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
        out[name] = Timing(statistics.median(xs), qs[0], qs[2], numbers[name], len(xs), tuple(xs))
    return out


def paired_ratio(a, b):
    """The median over rounds of a's sample / b's sample in the same round (two Timings of
    one `compare`): samples taken next to each other share the machine's state, so a slow
    spell of a busy machine cancels in their ratio where it shifts one median alone."""
    return statistics.median(x / y for x, y in zip(a.values, b.values))


# ----------------------------------------------------------------------------- checks


def rel_error(a, b):
    """max |a − b| / max |b| over every leaf (pytrees of arrays flattened in order)."""
    import numpy

    a = numpy.concatenate([numpy.ravel(numpy.asarray(x, dtype=float)) for x in _leaves(a)])
    b = numpy.concatenate([numpy.ravel(numpy.asarray(x, dtype=float)) for x in _leaves(b)])
    scale = float(numpy.max(numpy.abs(b))) if b.size else 0.0
    return float(numpy.max(numpy.abs(a - b))) / (scale if scale > 0 else 1.0)


def _leaves(tree):
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in _leaves(item)]
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _leaves(tree[k])]
    return [tree]


def agree(what, ours, theirs, rtol):
    """Relative error of `ours` against `theirs`; a disagreement beyond rtol is recorded."""
    err = rel_error(ours, theirs)
    if not err <= rtol:
        FAILURES.append(f"{what}: gradients disagree, relative error {err:.3g} > {rtol:g}")
    return err


# ----------------------------------------------------------------------------- tables


@dataclass
class Goal:
    workload: str
    what: str
    value: str  # the measured ratio (or saving), formatted
    goal: str
    holds: bool | None  # None: not measured (a peer is missing)


@dataclass
class Section:
    title: str
    headers: list
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    goals: list = field(default_factory=list)


def goal(workload, what, value, target, holds, fmt="{:.2f}×"):
    """A Goal row; `value` None means the peer was missing."""
    if value is None:
        return Goal(workload, what, "—", target, None)
    return Goal(workload, what, fmt.format(value), target, bool(holds))


def verdict(holds):
    return {True: "yes", False: "**no**", None: "skipped"}[holds]


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(str(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines)


def us(seconds):
    """Seconds as a short string in µs or ms."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def timed(t):
    """A Timing as 'median ±IQR%' (or '(1 run)')."""
    if t.samples == 1:
        return f"{us(t.median)} (1 run)"
    return f"{us(t.median)} ±{100 * t.spread:.0f}%"


# ----------------------------------------------------------------------------- machine


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(name):
    try:
        from importlib.metadata import version as dist_version

        return dist_version(name)
    except Exception:
        return "not installed"


def git_revision():
    """The commit benchmarked, and whether tinyad/ or tinyode/ had uncommitted changes."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tinyad", "tinyode"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes in tinyad/tinyode" if dirty else "")


def machine_lines():
    import numpy

    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, code: {git_revision()}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()} ({platform.machine()})",
        f"- Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"torch {version('torch')}, autograd {version('autograd')}, "
        f"torchdiffeq {version('torchdiffeq')}, scipy {version('scipy')}",
        f"- load average (1, 5, 15 min) at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
        "inflates absolute times; the alternating rounds keep the ratios fair)",
        "- threads: numpy/BLAS and torch limited to 1 ("
        + ", ".join(f"{v}=1" for v in THREAD_VARS[:3])
        + ", torch.set_num_threads(1))",
    ]
