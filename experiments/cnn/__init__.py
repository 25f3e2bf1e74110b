"""Training a LeNet built on jconv, as an importable package (after Flax's mnist example).

- config.py: `Config`, every field with its help, and the one validator of runs;
- main.py: the command line, derived from Config's fields, and `main(argv)`;
- train.py: `train_and_evaluate(config, workdir)`, the whole loop;
- parallel.py: where a run computes (devices, mesh, pmap) and how batches get there;
- models.py, data.py, checkpoints.py, metrics.py: the network, the datasets, trusted
  checkpoints, metrics.jsonl and its plot.

The logic lives here, where tests import it; `python experiments/train_cnn.py` runs
`main`. Modules import each other relatively, so the package works both as
`experiments.cnn` (tests, from the repository root) and as `cnn` (the script, whose
directory Python puts first on the path).
"""
