"""Rewrite a moodscope checkpoint in the current format (zip of JSON and numpy arrays).

    python tools/convert_checkpoint.py OLD.ckpt NEW.ckpt

OLD may be a moodscope 0.1 checkpoint (a ``torch.save`` file, read with
``torch.load(weights_only=True)``: needs the research extra) or one already converted; NEW
may be OLD itself (written through a temporary file, then renamed). Predictions from NEW are
the same numbers as from OLD.
"""

from __future__ import annotations

import argparse
import sys

from moodscope.errors import MoodscopeError
from moodscope.inference.checkpoint import convert_checkpoint, load_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the checkpoint to read")
    parser.add_argument("new", help="where to write it in the current format")
    args = parser.parse_args(argv)
    try:
        path = convert_checkpoint(args.old, args.new)
        model = load_checkpoint(path)
    except MoodscopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({model.model_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
