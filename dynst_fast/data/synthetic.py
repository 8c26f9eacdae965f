"""A synthetic sensor network with **planted** informative sensors (the default data set).

Construction (all from one ``numpy.random.default_rng(seed)``, deterministic; O(N log N)
time apart from the farthest-point sampling, O(N P); O(N T) memory, three times the
values at the peak; ~10 ms at N = 80, ~6 s at N = 16,384 with 3,000 steps, ~26 s at
N = 100,000 with 1,000 steps; on the CLI ``--data synthetic:N[:T]``). The steps:

1. ``N`` sensors at uniform random (x, y) in the unit square.
2. The planted set P (``num_planted`` sensors) is spread out by farthest-point sampling
   from a random first sensor.
3. Each planted sensor p carries a latent driver ``z_p(t)``: a quasi-periodic AR(2)
   process (pole radius 0.97, period 48 steps, unit variance) plus a small daily cycle
   (amplitude 0.3, random phase, period ``steps_per_day``). Smooth, but its innovations
   make it unpredictable beyond a few steps. A planted sensor reads its driver with a
   little noise (std ``0.1``).
4. Every other sensor i reads a delayed, attenuated mix of its nearest planted driver and,
   if that is not much farther (< 1.5x), its second nearest:
   ``s_i(t) = a_i * sum_p w_ip z_p(t - d_ip) + noise * e_i(t)`` with Gaussian-kernel mixing
   weights ``w_ip``, delays ``d_ip`` in ``1..max_delay`` growing with distance (so the
   drivers LEAD their followers), attenuation ``a_i`` in (0.7, 1], and independent white
   noise ``e_i``. Its own history therefore only tells the drivers' past late and noisily,
   while the planted sensors' histories give the followers' next ``d_ip`` steps almost
   exactly.
5. The adjacency is the symmetrised kNN graph (``knn`` neighbours) plus an edge between
   every follower and each of its drivers (so every sensor is ONE hop from the planted
   sensors that drive it), Gaussian-kernel weights ``exp(-(dist / sigma)^2)`` with sigma
   the mean kNN distance, and self-loops of weight 1.
6. Values are ``50 + 10 * s`` (about 0..100, no units), shape ``[T, N, 1]``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..graph import distance_kernel
from .graph_formats import GraphDataset

_RADIUS, _PERIOD, _DAILY, _PLANTED_NOISE = 0.97, 48.0, 0.3, 0.1
_NOISE_ROWS = 64  # time steps of follower noise drawn at once (same stream as one draw)


def _dist_to(xy: np.ndarray, j: np.ndarray | int) -> np.ndarray:
    """Euclidean distances from every point to point(s) ``j``: ``[N]`` or ``[N, len(j)]``."""
    d = xy[:, None, :] - xy[np.atleast_1d(j)][None, :, :]
    out = np.sqrt((d**2).sum(-1))
    return out[:, 0] if np.ndim(j) == 0 else out


def _pair_dist(xy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the point pairs ``(a[e], b[e])``: ``[E]``."""
    return np.sqrt(((xy[a] - xy[b]) ** 2).sum(-1))


def farthest_points(xy: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k points spread out by farthest-point sampling (first one random);
    O(N k) time, O(N) memory."""
    x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    sel = [int(rng.integers(xy.shape[0]))]
    mind = _dist_to(xy, sel[0])
    dx, dy = np.empty_like(x), np.empty_like(y)
    for _ in range(k - 1):
        j = int(np.argmax(mind))
        sel.append(j)
        np.subtract(x, x[j], out=dx)  # the distances to j as _dist_to gives them, in place
        np.subtract(y, y[j], out=dy)
        dx *= dx
        dy *= dy
        dx += dy
        np.minimum(mind, np.sqrt(dx, out=dx), out=mind)
    return np.sort(np.asarray(sel, dtype=np.int64))


def _ar2(e: np.ndarray, a1: float, a2: float) -> np.ndarray:
    """``z[t] = e[t] + (a1 z[t-1] + a2 z[t-2])`` along axis 0, from rest: the all-pole
    filter ``scipy.signal.lfilter([1], [1, -a1, -a2], e, axis=0)`` with its rounding
    (without importing scipy.signal, which takes seconds)."""
    z = np.empty_like(e)
    prev1 = np.zeros(e.shape[1:])
    prev2 = np.zeros(e.shape[1:])
    for t in range(e.shape[0]):
        z[t] = e[t] + (a1 * prev1 + a2 * prev2)
        prev1, prev2 = z[t], prev1
    return z


def planted_drivers(num_steps: int, k: int, spd: int, rng: np.random.Generator) -> np.ndarray:
    """``[num_steps, k]`` latent drivers: AR(2) quasi-oscillation + a small daily cycle."""
    a1, a2 = 2 * _RADIUS * np.cos(2 * np.pi / _PERIOD), -(_RADIUS**2)
    burn = 300
    e = rng.standard_normal((num_steps + burn, k))
    z = _ar2(e, a1, a2)[burn:]
    z = z / z.std(axis=0, keepdims=True)
    phase = rng.random(k) * 2 * np.pi
    t = np.arange(num_steps)[:, None]
    return z + _DAILY * np.sqrt(2) * np.sin(2 * np.pi * t / spd + phase)


def synthetic_sensor_network(
    num_sensors: int = 80,
    num_planted: int = 16,
    num_steps: int = 3000,
    seed: int = 0,
    *,
    noise: float = 0.4,
    max_delay: int = 4,
    knn: int = 6,
    steps_per_day: int = 288,
) -> GraphDataset:
    """Build the planted sensor network described in the module docstring.

    Returns a `GraphDataset` named ``"synthetic"`` with values ``[num_steps, N, 1]``
    float32, ``planted`` the sorted planted indices, coords ``[N, 2]`` (x, y) in [0, 1].
    """
    n, k, t = int(num_sensors), int(num_planted), int(num_steps)
    if n < 2:
        raise ValueError(f"num_sensors must be >= 2, got {num_sensors}")
    if not 1 <= k <= n:
        raise ValueError(f"num_planted must be in [1, num_sensors={n}], got {num_planted}")
    if t < 2 * max(1, max_delay):
        raise ValueError(f"num_steps must be >= {2 * max(1, max_delay)}, got {num_steps}")
    if max_delay < 1 or knn < 1 or noise < 0 or steps_per_day < 1:
        raise ValueError("max_delay, knn and steps_per_day must be >= 1 and noise >= 0")
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2))
    planted = farthest_points(xy, k, rng)
    z = planted_drivers(t, k, steps_per_day, rng)

    # kNN graph (symmetrised below) and its kernel width
    kk = min(knn, n - 1)
    _, cand = cKDTree(xy).query(xy, k=kk + 1)  # [N, kk + 1], nearest first, self among them
    not_self = cand != np.arange(n)[:, None]
    nbr = np.take_along_axis(cand, np.argsort(~not_self, axis=1, kind="stable")[:, :kk], 1)
    rows = np.repeat(np.arange(n), kk)
    sigma = float(_pair_dist(xy, rows, nbr.ravel()).reshape(n, kk).mean())
    src, dst = [rows], [nbr.ravel()]

    # followers: delayed, attenuated mixtures of their 1-2 nearest drivers
    sig = np.empty((n, t))  # sensor-major while filled (contiguous rows), [T, N] at the end
    sig[planted] = (z + _PLANTED_NOISE * rng.standard_normal((t, k))).T
    zt = np.ascontiguousarray(z.T)
    followers = np.setdiff1d(np.arange(n), planted)
    near = cKDTree(xy[planted]).query(xy[followers], k=min(2, k))[1].reshape(len(followers), -1)
    dnear = _pair_dist(xy, followers[:, None], planted[near])  # [F, <=2] to those drivers
    reach = max(float(dnear[:, 0].max()), 1e-12) if len(followers) else 1.0
    for col, i in enumerate(followers):
        keep = dnear[col] <= 1.5 * dnear[col, 0]
        order, dp = near[col][keep], dnear[col][keep]
        w = np.exp(-((dp / sigma) ** 2))
        w = w / w.sum()
        mix = np.zeros(t)
        for p, dip, wp in zip(order, dp, w, strict=True):
            d = min(max(1 + round((max_delay - 1) * float(dip) / reach), 1), max_delay)
            mix[d:] += wp * zt[p, :-d]
            mix[:d] += wp * zt[p, 0]
        src.append(np.full(len(order), i))
        dst.append(planted[order])
        atten = 0.7 + 0.3 * float(np.exp(-((dp[0] / sigma) ** 2)))
        sig[i] = atten * mix / np.sqrt((w**2).sum())
    for lo in range(0, t, _NOISE_ROWS):  # the followers' white noise, [T, F] in row chunks
        rows_ = rng.standard_normal((min(_NOISE_ROWS, t - lo), len(followers)))
        sig[followers, lo : lo + len(rows_)] += noise * rows_.T

    pairs = np.stack([np.concatenate(src), np.concatenate(dst)])
    sig *= 10.0
    sig += 50.0
    values = np.ascontiguousarray(sig.T, dtype=np.float32)[:, :, None]
    del sig
    return GraphDataset(
        name="synthetic",
        values=values,
        adjacency=distance_kernel(pairs, _pair_dist(xy, pairs[0], pairs[1]), n, sigma, 0.0),
        sensor_ids=[f"s{i:03d}" for i in range(n)],
        coords=xy.astype(np.float32),
        units="",
        planted=planted,
        steps_per_day=int(steps_per_day),
        geographic=False,
    )
