"""Train the quickstart models with their shipped configs and ship (or check) their weights.

    .venv/bin/python scripts/train_quickstart_models.py            # train both, copy into pointserve/quickstart/weights
    .venv/bin/python scripts/train_quickstart_models.py --check    # train both, compare with what is shipped

Each model trains from scratch with ``pointserve/quickstart/weights/<name>/train.yaml`` (fixed seed, fixed thread
count, torch's deterministic algorithms), so on the same torch build and CPU the weights come out bit for bit the
same: ``--check`` prints the SHA-256 of the trained and the shipped ``model.safetensors`` and fails if they differ.
The run folders are ``runs/quickstart/<name>`` (replaced). About an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

from pointserve.quickstart import MODELS

RUNS = Path("runs") / "quickstart"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(config: Path, out: Path) -> Path:
    from pointserve.cli import main

    shutil.rmtree(out, ignore_errors=True)
    if main(["train", "--config", str(config), "--output-dir", str(out)]) != 0:
        raise SystemExit(f"training {config} failed")
    return out / "best"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped weights, do not replace them")
    parser.add_argument("--models", default=",".join(m.name for m in MODELS), help="which (default: all)")
    args = parser.parse_args(argv)
    wanted = {n.strip() for n in args.models.split(",") if n.strip()}
    failed = False
    for model in MODELS:
        if model.name not in wanted:
            continue
        best = train(model.train_config, RUNS / model.name)
        trained, shipped = best / "model.safetensors", model.shipped_checkpoint / "model.safetensors"
        if args.check:
            same = shipped.is_file() and sha256(trained) == sha256(shipped)
            shipped_hash = sha256(shipped) if shipped.is_file() else "(none shipped)"
            print(f"{model.name}: trained {sha256(trained)}  shipped {shipped_hash}  {'same' if same else 'DIFFER'}")
            failed |= not same
        else:
            for name in ("model.safetensors", "card.json"):
                shutil.copyfile(best / name, model.shipped_checkpoint / name)
            print(f"{model.name}: shipped {shipped} ({shipped.stat().st_size} bytes, sha256 {sha256(shipped)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
