"""MLS core benchmark: medians at group sizes 2, 10, 100 and 1000.

Run: ``python benchmarks/bench_mls.py [--sizes 2,10,100,1000] [--repeat 5]``
(also collected by ``python -m pytest -m slow benchmarks``).

Operations, each timed with ``time.perf_counter`` and reported as a median:

* create: create a group and add N-1 members in one commit (incl. Welcome);
* join: one new member joining from that Welcome (tree in the Welcome);
* commit: a member creating a path commit (no proposals);
* process: another member processing it (staged, then merged);
* observer: the hub observer decoding and processing it (no private keys);
* protect / unprotect: one application message.

Two tree shapes are measured for the path-commit rows: ``sparse`` is the group
right after it was built by one commit (the committer, the creator's sibling,
has copath resolutions holding almost every leaf, so its commit carries ~N
ciphertexts; one sample, since the first commit changes the shape), ``full``
is after a member under each of its copath nodes has committed (one
ciphertext per level, the steady state of an active group).

The reference figures in the issue (another pure-Python MLS, same machine):
path commit 131 ms, member processing 15 ms, hub observer 4.9 ms at 1000.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.group import Group, StagedCommit
from mimisim.mls.keypackage import create_key_package
from mimisim.mls.observer import GroupObserver
from mimisim.mls.structs import Add, Credential, MLSMessage, Proposal

REFERENCE_MS = {"commit": 131.0, "process": 15.0, "observer": 4.9}


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def build(n: int, seed: int = 1) -> tuple[list, list, object, object]:
    suite = get_suite(1)
    rng = DeterministicRandom(seed, f"bench-{n}")
    sigs = [suite.generate_signature_key_pair(rng.fork(f"sig{i}"))[0] for i in range(n)]
    kps = [create_key_package(suite, Credential.basic(f"m{i}".encode()), sigs[i], rng.fork(f"kp{i}")) for i in range(n)]
    return suite, rng, sigs, kps  # type: ignore[return-value]


def bench_size(n: int, repeat: int) -> dict[str, float]:
    suite, rng, sigs, kps = build(n)
    res: dict[str, float] = {}

    def create() -> tuple[Group, object]:
        g = Group.create(suite, b"bench", kps[0][0], kps[0][1], rng.fork("creator"))
        out = g.commit([Proposal.of(Add(kp)) for kp, _ in kps[1:]]) if n > 1 else None
        if out is not None:
            g.merge_pending_commit()
        return g, out

    t = time.perf_counter()
    creator, out = create()
    res["create"] = (time.perf_counter() - t) * 1000
    if n == 1:
        return res
    welcome = out.welcome.encode()  # type: ignore[attr-defined]

    def join(i: int) -> Group:
        return Group.join(welcome, kps[i][0], kps[i][1], rng.fork(f"join{i}"))

    res["join"] = median_ms(lambda: join(n - 1), max(1, min(repeat, 3)))
    # Tracked members: a (leaf 1, the creator's sibling), b (the last leaf),
    # and one member under each of a's copath nodes (leaves 2, 4, 8, ...),
    # whose commits fill a's copath for the "full" shape.
    a = join(1) if n > 2 else creator
    b = join(n - 1)
    fillers = [join(1 << k) for k in range(1, n.bit_length()) if (1 << k) < n - 1]
    obs = GroupObserver.from_group_info(creator.group_info(with_tree=True))
    members = [creator, *(g for g in (a, b, *fillers) if g is not creator)]

    def deliver(committer: Group, raw: bytes) -> None:
        obs.merge(obs.stage_commit(raw))
        committer.merge_pending_commit()
        for g in members:
            if g is not committer:
                g.merge(g.process(raw))  # type: ignore[arg-type]

    for shape in ("sparse", "full"):
        if shape == "full":
            for f in fillers:
                deliver(f, f.commit().message.encode())
        times_c, times_p, times_o = [], [], []
        for _ in range(repeat if shape == "full" else 1):
            t = time.perf_counter()
            out_c = a.commit()
            times_c.append((time.perf_counter() - t) * 1000)
            raw = out_c.message.encode()
            t = time.perf_counter()
            staged = b.process(raw)
            assert isinstance(staged, StagedCommit)
            times_p.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            obs_staged = obs.stage_commit(raw)
            times_o.append((time.perf_counter() - t) * 1000)
            b.merge(staged)
            obs.merge(obs_staged)
            a.merge_pending_commit()
            for g in members:
                if g not in (a, b):
                    g.merge(g.process(raw))  # type: ignore[arg-type]
            assert a.epoch_authenticator == b.epoch_authenticator
        res[f"commit_{shape}"] = statistics.median(times_c)
        res[f"process_{shape}"] = statistics.median(times_p)
        res[f"observer_{shape}"] = statistics.median(times_o)
        res[f"ciphertexts_{shape}"] = float(sum(len(p.encrypted_path_secret) for p in out_c.message.body.content.commit.path.nodes))
    msg = a.protect(b"x" * 100)
    res["protect"] = median_ms(lambda: a.protect(b"x" * 100), repeat * 4)
    raws = [a.protect(b"x" * 100).encode() for _ in range(repeat * 4)]
    it = iter(raws)
    res["unprotect"] = median_ms(lambda: b.process(MLSMessage.decode(next(it))), repeat * 4)
    del msg
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2,10,100,1000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {n: bench_size(n, args.repeat) for n in sizes}
    cols = sorted({k for r in rows.values() for k in r}, key=lambda k: list(rows[sizes[-1]]).index(k) if k in rows[sizes[-1]] else 99)
    print("median milliseconds, cipher suite 1 (X25519/AES-128-GCM/SHA-256/Ed25519)")
    print(f"{'operation':20}" + "".join(f"{n:>12}" for n in sizes))
    for c in cols:
        print(f"{c:20}" + "".join(f"{rows[n].get(c, float('nan')):>12.2f}" for n in sizes))
    unit = primitive_unit_ms()
    print(f"\nin units of one HPKE EncryptWithLabel+DecryptWithLabel measured in this run ({unit:.3f} ms):")
    print(f"{'operation':20}" + "".join(f"{n:>12}" for n in sizes))
    for c in cols:
        if c.startswith("ciphertexts"):
            continue
        print(f"{c:20}" + "".join(f"{rows[n].get(c, float('nan')) / unit:>12.1f}" for n in sizes))
    if 1000 in rows:
        big = rows[1000]
        print("\nat N=1000, against the issue's reference pure-Python MLS on this machine (ratio < 1 is faster):")
        for k, ref in REFERENCE_MS.items():
            for shape in ("sparse", "full"):
                v = big.get(f"{k}_{shape}")
                if v is not None:
                    print(f"  {k + '_' + shape:18} {v:9.2f} ms   reference {ref:7.1f} ms   ratio {v / ref:5.2f}")


def primitive_unit_ms() -> float:
    suite = get_suite(1)
    rng = DeterministicRandom(0, "unit")
    priv, pub = suite.generate_hpke_key_pair(rng)

    def once() -> None:
        kem, ct = suite.encrypt_with_label(pub, b"x", b"ctx", b"p" * 32, rng)
        suite.decrypt_with_label(priv, b"x", b"ctx", kem, ct)

    return median_ms(once, 201)


if __name__ == "__main__":
    main()
