"""Data files and their readers.

* :mod:`refnets.data.idx` reads and writes the IDX format of MNIST and
  Fashion-MNIST (gzipped or raw), checking magic number, dims and size.
* :mod:`refnets.data.download` fetches a file, verifies its SHA-256 and writes
  it atomically (opt-in only; nothing here touches the network on import).
* ``fashion_mnist_small.npz`` is the embedded default image set, made by
  :mod:`refnets.data.make_small`; its origin and licence are in ``ORIGIN.md``.

The public loaders live in :mod:`refnets.datasets`.
"""
