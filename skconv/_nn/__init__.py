"""The network engine: layers, the network and its plan of steps, losses, optimizers,
the training epoch and the LeNet-5 builder.

Public to the estimators (the layer above) through its modules without a leading
underscore: :mod:`.layers`, :mod:`.network`, :mod:`.lenet`, :mod:`.optimizers`,
:mod:`.loss`, :mod:`.activations` and :mod:`.training`. It computes only through the
ops layer (``skconv._ops``) and imports nothing from above.
"""
