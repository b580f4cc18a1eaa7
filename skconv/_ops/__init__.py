"""The ops layer: argument checks, shapes, dtypes and thread counts around the kernels.

Public to the layers above (the network engine) through the modules without a leading
underscore: :mod:`.conv`, :mod:`.pool` (the functional API that :mod:`skconv.ops`
publishes), :mod:`.blocks` (prepared fused blocks), :mod:`.dense`, :mod:`.loss`,
:mod:`.update` (the dense products, the loss and the optimizer passes the engine
runs), :mod:`.threads` (the thread policy) and :mod:`.validation` (shared checks).
Nothing here imports from above.
"""
