"""bench-numpy.py — the naive NumPy reference for `make bench` (experiments/bench-exact.c).

    python3 bench-numpy.py N D

Exact softmax attention the textbook way, in float64: materialize the n x n logits
S = Q K^T / sqrt(d), subtract each row's maximum, exponentiate, divide by the row sums and multiply
by V (d = dv).  Memory O(n^2).  Prints the best of 3 wall times in seconds (time.perf_counter) as
one float on stdout.  Inputs are uniform on [-1, 1) from a fixed seed.  Thread counts are the
caller's business: bench-exact sets OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1 for this process.
Failures (no NumPy, bad arguments) go to stderr with a non-zero exit status.
"""
import sys
import time

REPEATS = 3
SEED = 20240607


def naive_attention(Q, K, V, np):
    S = (Q @ K.T) * (1.0 / np.sqrt(Q.shape[1]))
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    return S @ V


def main(argv):
    if len(argv) != 3:
        print("usage: bench-numpy.py N D", file=sys.stderr)
        return 2
    try:
        n, d = int(argv[1]), int(argv[2])
    except ValueError:
        print(f"bench-numpy.py: N and D must be integers, got {argv[1]!r} {argv[2]!r}",
              file=sys.stderr)
        return 2
    if n < 1 or d < 1:
        print(f"bench-numpy.py: N and D must be >= 1, got {n} {d}", file=sys.stderr)
        return 2
    try:
        import numpy as np
    except ImportError as exc:
        print(f"no numpy in {sys.executable}: {exc}", file=sys.stderr)
        return 3

    rng = np.random.default_rng(SEED)
    Q = rng.uniform(-1.0, 1.0, (n, d))
    K = rng.uniform(-1.0, 1.0, (n, d))
    V = rng.uniform(-1.0, 1.0, (n, d))
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        O = naive_attention(Q, K, V, np)
        best = min(best, time.perf_counter() - t0)
        del O
    print(f"{best:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
