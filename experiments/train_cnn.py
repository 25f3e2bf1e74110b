"""Train a LeNet built on jconv on the handwritten digits (or Fashion-MNIST) with optax.

    python experiments/train_cnn.py                      # digits, no network needed
    python experiments/train_cnn.py --conv flax          # the same with flax.nnx.Conv
    python experiments/train_cnn.py --dataset fashion_mnist --data-dir data/fashion_mnist
    python experiments/train_cnn.py --help               # every flag

The command line is cnn/main.py's and the training cnn/train.py's, in a package that
tests import; this file only runs it. Python puts this file's directory first on the
path, which is what makes `cnn` importable here.
"""

from cnn.main import main

if __name__ == "__main__":
    main()
