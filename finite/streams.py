"""The random streams of the reduced samplers: RNG blocks as inlined PCG64 states.

:func:`finite.sample` cuts paths into RNG blocks (:data:`sde.runs.RNG_BLOCK` paths), block k
drawing from ``Generator(PCG64(SeedSequence(seed).spawn(n_blocks)[k]))``. The reduced
samplers do not call those Generators: :class:`BlockStreams` copies the PCG64 states of a
task's blocks into one ``(blocks, 4)`` uint64 array (:func:`sde.pcg64.states`), the numba
kernels draw from its rows with the inlined PCG64 + ziggurat (:mod:`finite.inline_rng`, the
same normals as ``Generator.standard_normal``) and advance them in place.

Iterating a :class:`BlockStreams` gives one :class:`BlockStream` per block: what a layer's
``reduced`` receives for each block. It offers ``standard_normal(size)`` (the block's next
normals in C order, as a Generator would give them), so a layer written against Generators
keeps working, and :func:`as_stream` turns a numpy PCG64 Generator into a stream that writes
its state back, for the functions of :mod:`finite.reduced` called outside a sampler.
"""
import numpy as np

from sde import pcg64

from . import inline_rng


class BlockStream:
    """Row ``k`` of a state array ``rows`` (blocks, 4): one RNG block's stream."""

    def __init__(self, rows, k, on_finish=None):
        self.rows, self.k = rows, k
        self._on_finish = on_finish

    @property
    def row(self):
        """The (4,) uint64 state row the kernels draw from (a view)."""
        return self.rows[self.k]

    def standard_normal(self, size=None):
        """N(0, 1) draws of shape ``size`` (a float if None), filled in C order."""
        out = np.empty(() if size is None else size)
        inline_rng.fill_normals(self.row, out.reshape(-1))
        return float(out) if size is None else out

    def finish(self):
        """Write the advanced state back to the Generator it came from (if any)."""
        if self._on_finish is not None:
            self._on_finish()


class BlockStreams:
    """The inlined streams of the Generators ``gens`` (one per RNG block)."""

    def __init__(self, gens):
        self.gens = list(gens)
        self.rows = pcg64.states(self.gens)

    def __len__(self):
        return len(self.gens)

    def __iter__(self):
        return (BlockStream(self.rows, k) for k in range(len(self.gens)))

    def write_back(self):
        """Set every Generator's state to where the kernels left its row."""
        pcg64.write_back(self.gens, self.rows)


def as_stream(gen):
    """A :class:`BlockStream` as is; a PCG64 ``Generator`` as a one-block stream whose
    ``finish()`` writes the advanced state back to it."""
    if isinstance(gen, BlockStream):
        return gen
    streams = BlockStreams([gen])
    return BlockStream(streams.rows, 0, streams.write_back)
