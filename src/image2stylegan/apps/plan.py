"""An application ready to run: its recipe, where it starts, and how its result is measured.

Every application is split the same way: ``prepare_*`` checks the inputs and builds the recipe (no optimisation),
the engine runs it, and the plan's ``finish`` turns the engine's result into the application's
:class:`~.outputs.EditResult` (metrics against the naive baseline, the panel). The library functions
(``crossover()``, ``inpaint()``, ...) are ``prepare_*(...).run(...)``; :mod:`.requests` rebuilds a plan from the
JSON that ``metrics.json`` records, which is how the browser editor and the cluster runner send work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..embed import Callback, Embedding, EmbeddingResult, embed
from ..generators.base import StyleGenerator
from ..recipe import Recipe
from .outputs import EditResult


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    finish: Callable[[EmbeddingResult], EditResult]
    start: Embedding | Mapping[str, Embedding] | None = None
    lpips: Callable | None = None  # the metric, for stages that stop at an LPIPS target

    def run(self, generator: StyleGenerator, perceptual=None, callback: Callback | None = None) -> EditResult:
        """Run the recipe through the engine (``perceptual`` is needed when a W+ stage has a VGG term) and
        measure the result; a run the callback stopped is measured as far as it went (``stopped=True``)."""
        result = embed(generator, self.recipe, perceptual=perceptual, start=self.start, callback=callback,
                       lpips=self.lpips)
        return self.finish(result)
