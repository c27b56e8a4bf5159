"""``python -m lmzip.train CONFIG [CONFIG ...]``: train students, checkpoint, resume, export."""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, builtin, load


def _config_path(spec: str) -> str:
    """A config file, or the name of one shipped in lmzip/train/configs (``tiny``, ``student-s``)."""
    from pathlib import Path

    if Path(spec).is_file():
        return spec
    p = builtin(spec)
    return str(p) if p.is_file() else spec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lmzip.train",
        description="Distil students from the teacher (lmzip/train/__init__.py explains the kit). Several configs "
                    "train in one process on the same batches, sharing the teacher's forward pass.")
    ap.add_argument("configs", nargs="+", metavar="CONFIG", help="JSON/TOML config files, or names in lmzip/train/configs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of every config (JSON value), e.g. train.steps=100 or data.path=X")
    ap.add_argument("--out", action="append", default=[], metavar="DIR",
                    help="run directory of each config in order (default: the config's out)")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoints in the run directories")
    ap.add_argument("--stop-at", type=int, metavar="STEP", help="checkpoint and stop at this step (no export)")
    ap.add_argument("--check", action="store_true", help="check the configs and print them; train nothing")
    args = ap.parse_args(argv)
    try:
        cfgs = [load(_config_path(p), args.set) for p in args.configs]
        if args.out:
            if len(args.out) != len(cfgs):
                raise ConfigError("give one --out per config")
            for c, o in zip(cfgs, args.out):
                c.out = o
        if args.check:
            for c in cfgs:
                print(json.dumps(c.to_dict(), indent=1, sort_keys=True))
            return 0
        from .trainer import run

        results = run(cfgs, resume=args.resume, stop_at=args.stop_at)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"lmzip.train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmzip.train: interrupted (the last checkpoint stands; continue with --resume)", file=sys.stderr)
        return 130
    for r in results:
        print(json.dumps({k: r[k] for k in r if k not in ("config", "data")}, sort_keys=True))
    return 0
