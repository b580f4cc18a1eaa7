"""The kernel layer: compiled ``nogil`` loops over C-contiguous memoryviews.

One Cython module per op family (``conv``, ``pool``, ``dense``, ``loss``, ``update``,
``openmp_helpers``), shared Cython declarations (``blas.pxd``, ``sums.pxd``) and the C
headers they include, in ``include/`` by op (``include/conv/``, ``include/pool/``,
``include/update/``, ``include/common/``). Each module is driven by the ops module of
the same name (``skconv._ops.conv`` drives ``conv``...), which checks every shape the
kernels trust: they run with bounds checks off. ``build_config`` is written by
``setup.py`` (whether OpenMP was found, whether this is the debug build).
"""
