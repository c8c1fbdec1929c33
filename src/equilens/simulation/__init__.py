"""Strong-lens simulator: parameter draws -> rendering (lenstronomy) -> generation (batches, files).

Layers (each importable and testable alone):

- :mod:`equilens.simulation.instruments`, :mod:`equilens.simulation.presets`: settings as data;
- :mod:`equilens.simulation.config`: :class:`SimConfig`, presets plus validated overrides;
- :mod:`equilens.simulation.populations`: :func:`draw_parameters`, pure functions of a config, a class name
  and a ``numpy.random.Generator``;
- :mod:`equilens.simulation.render`: the only module importing lenstronomy;
- :mod:`equilens.simulation.rotation`: :func:`rotate_record`, a record turned about the image centre (images
  rendered at any angle).

lenstronomy is imported lazily by the renderer, so importing this package stays cheap.
"""

from equilens.simulation.config import SimConfig, load_overrides_file, parse_set_overrides, resolve_config
from equilens.simulation.populations import (
    CLASS_NAMES,
    draw_parameters,
    flatten_parameters,
    parameter_columns,
)
from equilens.simulation.presets import (
    LEGACY_DIFFERENCES,
    LEGACY_NOT_REPRODUCED,
    PRESET_NAMES,
    PresetInfo,
    list_presets,
)
from equilens.simulation.render import add_noise, render_image, render_noiseless
from equilens.simulation.rotation import rotate_record

__all__ = [
    "SimConfig",
    "resolve_config",
    "parse_set_overrides",
    "load_overrides_file",
    "CLASS_NAMES",
    "draw_parameters",
    "flatten_parameters",
    "parameter_columns",
    "PRESET_NAMES",
    "PresetInfo",
    "LEGACY_DIFFERENCES",
    "LEGACY_NOT_REPRODUCED",
    "list_presets",
    "render_noiseless",
    "add_noise",
    "render_image",
    "rotate_record",
]
