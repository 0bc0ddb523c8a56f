"""Datasets: the synthetic generator (demo data) and the dataset tools.

- :mod:`.synthetic`  the synthetic-data generator (docs/METHOD.md): :func:`generate`, :func:`ensure_demo`,
  :data:`SIZES`, :func:`read_types`;
- :mod:`.importers`  DiffMM/MMSSL pickles and LATTICE/FREEDOM JSON -> MMRec layout;
- :mod:`.split`      MMRec's per-user rule and leave-one-out, :func:`resplit_dataset`;
- :mod:`.checks`     :func:`validate`, :func:`stats`;
- :mod:`.files`      ``.inter`` reading/writing, dataset yaml, atomic dataset folders;
- :mod:`.cli`        ``mmrec-plugin data ...``.
"""
from mmrec_plugin.data.checks import Report, stats, validate
from mmrec_plugin.data.importers import import_dataset
from mmrec_plugin.data.split import loo_split, mmrec_split, resplit_dataset
from mmrec_plugin.data.synthetic import SIZES, TYPES, ensure_demo, generate, read_types

__all__ = ["SIZES", "TYPES", "Report", "ensure_demo", "generate", "import_dataset",
           "loo_split", "mmrec_split", "read_types", "resplit_dataset", "stats", "validate"]
