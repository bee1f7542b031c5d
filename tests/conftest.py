import os
import sys

# One BLAS thread: small arrays run faster, and the notebooks' kernels inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
sys.path.insert(0, os.path.dirname(__file__))  # tests/ helpers (run_notebooks, helpers_*)
