"""Checkpoints written by `moe train` load in transformers 5 too: tests/hf/test_train_checkpoint.py (every
standard layout's logits against transformers', its tokenizer, the moe-only checkpoints refused) run
under transformers 5, whose config classes refuse an integer where they declare a float.
Usage: test_hf5_train_checkpoint.py --moe BIN --work DIR"""
import sys

import transformers

import test_train_checkpoint

if __name__ == "__main__":
    assert int(transformers.__version__.split(".")[0]) >= 5, f"needs transformers 5, found {transformers.__version__}"
    sys.exit(test_train_checkpoint.main())
