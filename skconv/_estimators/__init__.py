"""The estimator layer: the scikit-learn API over the network engine.

Validation, ``fit`` / ``partial_fit``, early stopping, attributes and tags. The shared
base (:mod:`.base`) and the estimators (:mod:`.classifier`) talk to the engine
(``skconv._nn``) through its public surface only, never to the ops or kernels.
:mod:`.inspection` is this layer's surface for the plots.
"""
