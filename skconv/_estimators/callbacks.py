"""scikit-learn's callbacks (``sklearn.callback``, scikit-learn >= 1.9) for the
estimators (private).

The estimators inherit :class:`CallbackSupportMixin`, which gives them
``set_callbacks``; one :class:`FitReport` per ``fit`` / ``partial_fit`` call reports
the task tree of the training to the callbacks, wired as scikit-learn's own
``LogisticRegression`` is:

.. code-block:: text

    fit                  root; max_subtasks = max_iter (1 for partial_fit)
      epoch #i           max_subtasks = number of minibatches
        minibatch #j     leaf

The root and each epoch report ``X``, ``y`` and ``sample_weight`` (as metadata) and,
at their end, the model "as if fit stopped here" (``ScoringMonitor`` scores it): a
copy made only when a callback asks for it, which shares no array with the training;
minibatches report progress only (``ProgressBar`` advances the epoch's bar), so that
no callback predicts the training set once per minibatch. A ``True`` from a
callback's ``on_fit_task_end`` at the end of an epoch stops training there; at the
end of a minibatch it is ignored (the epoch is the unit that ``n_iter_``,
``loss_curve_`` and the stopping rules count). The engine's minibatch loop knows
nothing of this: it calls two plain hooks (:meth:`FitReport.minibatch_hooks`).

With an older scikit-learn (no ``sklearn.callback``) the mixin below has no
``set_callbacks`` and the report does nothing.
"""

__all__ = ["CALLBACKS_AVAILABLE", "CallbackSupportMixin", "FitReport"]

try:
    from sklearn.callback import CallbackSupportMixin

    CALLBACKS_AVAILABLE = True
except ImportError:  # scikit-learn < 1.9
    CALLBACKS_AVAILABLE = False

    class _NoCallbackContext:
        """A callback context with nothing to call."""

        def subcontext(self, *args, **kwargs):
            return self

        def call_on_fit_task_begin(self, **kwargs):
            return self

        def call_on_fit_task_end(self, **kwargs):
            return False

    class CallbackSupportMixin:
        """scikit-learn < 1.9: no callbacks (and no ``set_callbacks``)."""

        def _init_callback_context(self, *args, **kwargs):
            return _NoCallbackContext()


class FitReport:
    """The task tree of one ``fit`` or ``partial_fit`` call, told to the callbacks.

    Made once per call, after the data are validated: it sets the callbacks up (the
    teardown comes from ``_fit_context``) and begins the root task.

    Parameters
    ----------
    estimator : BaseConvNet
        The estimator being fitted.
    n_epochs : int
        The most epochs the call may run (the root's ``max_subtasks``).
    X : ndarray of shape (n_samples, *image_shape_)
        The validated training data, compute dtype.
    y : ndarray or sparse matrix of shape (n_samples,) or (n_samples, n_outputs)
        The validated targets as fit got them (labels, not their encoding), so that
        a scorer compares them with ``predict``.
    sample_weight : ndarray of shape (n_samples,) or None
        The validated ``sample_weight`` of the call (without class weights).
    """

    def __init__(self, estimator, n_epochs, X, y, sample_weight):
        self._estimator = estimator
        # Sets up the callbacks; merges with a meta-estimator's task if one propagated
        # its context (Pipeline, GridSearchCV).
        self._root = estimator._init_callback_context(max_subtasks=n_epochs)
        self._fit_data = self._epoch_data = self._data(X, y, sample_weight)
        # Minibatch tasks only for an estimator that has callbacks: the context tree
        # keeps every task until fit returns, one object per minibatch, and without
        # callbacks (its own or propagated ones) nothing would read them.
        self._has_callbacks = bool(getattr(estimator, "_skl_callbacks", None))
        self._epoch = self._minibatch = None
        self._root.call_on_fit_task_begin(estimator=estimator, **self._fit_data)

    @staticmethod
    def _data(X, y, sample_weight):
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        return {"X": X, "y": y, "metadata": metadata}

    def restrict_epochs_to(self, rows):
        """Report the epochs on ``rows`` of the data only (the training part that
        early stopping's validation split leaves)."""
        X, y, metadata = (self._fit_data[key] for key in ("X", "y", "metadata"))
        self._epoch_data = self._data(
            X[rows], y[rows], None if metadata is None else metadata["sample_weight"][rows])

    def begin_epoch(self, n_minibatches):
        self._epoch = self._root.subcontext(task_name="epoch",
                                            max_subtasks=n_minibatches)
        self._epoch.call_on_fit_task_begin(estimator=self._estimator,
                                           **self._epoch_data)

    def end_epoch(self, model):
        """End the epoch's task.

        Parameters
        ----------
        model : callable
            Returns the attributes that make a copy of the estimator the model of
            this epoch; called only if a callback asks for that model.

        Returns
        -------
        stop : bool
            Whether a callback asks to stop training.
        """
        epoch, self._epoch = self._epoch, None
        return epoch.call_on_fit_task_end(estimator=self._estimator,
                                          reconstruction_attributes=model,
                                          **self._epoch_data)

    def minibatch_hooks(self):
        """``(begin, end)`` for the engine's minibatch loop, or ``(None, None)``.

        Each takes the index of the minibatch in the epoch.
        """
        if not self._has_callbacks:
            return None, None
        return self._begin_minibatch, self._end_minibatch

    def _begin_minibatch(self, n_batch):
        self._minibatch = self._epoch.subcontext(task_name="minibatch")
        self._minibatch.call_on_fit_task_begin(estimator=self._estimator)

    def _end_minibatch(self, n_batch):
        minibatch, self._minibatch = self._minibatch, None
        # A stop asked for here is not honoured (see the module's docstring).
        minibatch.call_on_fit_task_end(estimator=self._estimator)

    def interrupted(self):
        """End the tasks that a ``KeyboardInterrupt`` left open, as empty tasks."""
        for name in ("_minibatch", "_epoch"):
            context = getattr(self, name)
            if context is not None:
                context.call_on_fit_task_end(estimator=self._estimator)
                setattr(self, name, None)

    def end_fit(self, model):
        """End the root task (``model`` as in :meth:`end_epoch`: the fitted model)."""
        self._root.call_on_fit_task_end(estimator=self._estimator,
                                        reconstruction_attributes=model, **self._fit_data)
