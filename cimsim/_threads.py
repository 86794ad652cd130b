"""Keep BLAS single-threaded in the command line: the simulator's many small matrix
products run several times slower when two BLAS threads share the cores with SimPy.
Set OPENBLAS_NUM_THREADS yourself to override. Imported before numpy by `cimsim.cli`."""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
