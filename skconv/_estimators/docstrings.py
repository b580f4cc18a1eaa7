"""The parts of the estimators' docstrings that the three estimators share.

``ConvNetClassifier``, ``ConvNetRegressor`` and ``ConvNetTransformer`` take the same
architecture, solver, stopping and run parameters; they are documented once, here, and
each class docstring is filled in by :func:`fill` (``{name}`` placeholders on lines of
their own, so that the braces of numpydoc option sets need no escaping).
"""

import textwrap

__all__ = ["fill"]

INPUT = """\
The same estimator handles 1-D signals, 2-D images (gray or multi-channel, e.g.
RGB) and 3-D volumes: the number of spatial axes of ``image_shape_`` picks 1-D,
2-D or 3-D convolution and pooling.

**Input.** The standard ``X`` is 2-D, ``(n_samples, n_features)``, each row one
sample flattened in C order from ``(C, *spatial)`` (channels first: an RGB image
stored as ``(H, W, 3)`` must be transposed to ``(3, H, W)`` before flattening).
This is what pipelines, scalers and cross-validation pass around. N-d ``X`` of
shape ``(n_samples, C, *spatial)`` is accepted too (e.g. ``(n, 3, 32, 32)``
RGB images or ``(n, 1, 16, 16, 16)`` volumes); it is flattened on entry, so
``n_features_in_`` is always the number of values per sample,
``prod(image_shape_)``, and the prediction methods accept either form. Note that a
3-D ``X`` ``(n, H, W)`` is read as ``(n, C, L)`` (multi-channel signals) unless
``image_shape`` says otherwise, e.g. ``image_shape=(H, W)``.

**Scaling.** The initialisation (He-uniform for relu) and the Adam step size
assume inputs of order one: raw pixel values in [0, 255] train poorly and may
diverge. ``input_scaling='max_abs'`` divides ``X`` by its largest absolute value
(one number, from the training data), which puts 0-255 or 0-16 pixels in
[0, 1] (the classifier's 'auto' does so for non-negative ``X``); otherwise
scale the inputs yourself (e.g. pixel values / 255) or standardize them
(``StandardScaler`` in a pipeline).

**dtype.** float32 ``X`` is trained and predicted in float32 (weights, activations
and gradients); float64 ``X`` - numpy's default - and every other numeric dtype
in float64, the rule of scikit-learn's MLP estimators. Why not always float32:
float32 results change in the last bits with the order of the sums, so a sample
weight of 2 and a duplicated sample give models that agree only to about 1e-6,
and scikit-learn's estimator checks (rightly) ask for more. For speed on large
data pass ``X.astype(np.float32)``: it trains faster (README, "Performance") in
half the memory, for the same accuracy.
"""

ARCHITECTURE_AND_SOLVER = """\
image_shape : tuple of int, default=None
    Shape of one sample. ``(L,)``: a 1-D signal, one channel. ``(H, W)``: a
    gray image. ``(C, H, W)``: an image with C channels (``(3, H, W)`` for
    RGB). ``(C, D, H, W)``: a volume with C channels. (So a 1-D signal with
    several channels, ``(C, L)``, or a one-channel volume ``(1, D, H, W)``, must
    be given with its channel axis: ``(C, L)`` is read as an image, hence pass
    multi-channel signals as N-d ``X`` ``(n, C, L)``.) Its product must equal
    the number of values per sample. None: inferred - from N-d ``X`` its
    ``X.shape[1:]``; from 2-D ``X`` a perfect square ``n_features = s * s``
    (s >= 2) becomes the image ``(1, s, s)`` and anything else the 1-D signal
    ``(1, n_features)``.

filters : int, tuple of int or 'auto', default=(6, 16)
    Number of kernels (output channels) of each conv layer; its length is the
    number of conv (and pool) layers. 'auto': ``(16, 32, 64)`` for signals,
    ``(16, 32)`` for images (two spatial axes) when the fit plans fewer than
    4,000 updates, LeNet-5's ``(6, 16)`` otherwise (see ``auto_options_``).

kernel_size : int, tuple or 'auto', default=5
    Kernel size of the conv layers; 'auto': 7 for signals, 3 for images when
    the fit plans fewer than 4,000 updates, 5 otherwise (see
    ``auto_options_``). Rule for every conv/pool parameter
    (``kernel_size``, ``stride``, ``padding``, ``dilation``, ``pooling``,
    ``pool_size``, ``pool_stride``): a scalar applies to every layer and every
    spatial axis; a tuple with one entry per conv layer gives per-layer
    values, and each entry may itself be a per-axis tuple, e.g.
    ``kernel_size=((5, 3), (3, 3))``; a tuple of ints with one entry per
    spatial axis (and a length different from the number of layers) applies
    per axis to every layer. When the length equals both (e.g. ``(5, 3)`` with
    two conv layers on images), it is read per layer.

stride : int or tuple, default=1
    Stride of the conv layers (same rule).

padding : int, tuple, 'same' or 'valid', default='same'
    Zero padding of the conv layers (same rule). 'same' keeps
    ``out = ceil(in / stride)`` (TensorFlow's rule, the extra cell at the end);
    'valid' pads nothing. 'same' (LeNet-5 used 'valid' on 32x32 inputs) keeps
    7x7 maps on 28x28 images and lets tiny inputs through. A configuration that
    cannot give a valid network (a 'valid' 5x5 kernel on a 2x2 map) raises a
    ValueError naming the layer and the shapes.

dilation : int or tuple, default=1
    Dilation of the conv kernels (same rule).

activation : {'relu', 'tanh', 'logistic', 'identity', 'leaky_relu'}, \
        default='relu'
    Activation after every conv and hidden dense layer. Weights feeding relu
    and leaky relu units get He-uniform initialisation, the others (and the
    output layer) Glorot-uniform; biases start at zero.

pooling : {'max', 'avg', 'min'} or tuple of them, default='max'
    Pooling after each conv layer (one value, or one per layer).

pool_size : int or tuple, default=2
    Pooling window (same rule as ``kernel_size``). Pooling never shrinks an
    axis below 1: on an axis smaller than the window, the window is clipped to
    the axis, so an axis of size 1 passes through unchanged and an axis of 3
    with window 2 gives 1 cell. Tiny inputs, such as 2 features, train.

pool_stride : None, int or tuple, default=None
    Pooling stride (same rule); None means the (unclipped) window.

hidden_layer_sizes : tuple of int, default=(120, 84)
    Units of the dense layers between the last pool and the output layer. The
    size feeding the first one is computed at fit time from ``image_shape_``.

batch_norm : bool or {'all', 'conv', 'auto'}, default=False
    Batch normalisation after every conv and hidden dense layer (True, or
    its explicit spelling ``'all'``) or after every conv layer only
    (``'conv'``; the dense layers then train without it), before the
    activation: each channel (each unit of a dense layer) is normalised with
    its mean and variance over the minibatch (and the spatial axes) in
    training, with running averages of them (momentum 0.1, PyTorch's rule)
    in prediction, then scaled and shifted by two learned parameters that
    ``alpha`` does not penalise. It makes training less sensitive to the
    scale of ``X`` and of the initialisation. The running averages are part
    of the fitted model (early stopping restores them with the best epoch's
    weights). The statistics are weighted by the samples' weights
    (``sample_weight``, times ``class_weight`` in a classifier; each sample's
    cells weigh its weight, and the running variance's unbiased correction
    counts the weights), so a weight of 2 trains what a duplicated sample
    trains and a weight of 0 what the sample's absence trains. 'auto': True
    for signals; for images (two spatial axes) True when the fit plans at
    least 4,000 updates (as ``learning_rate`` counts them), with
    ``learning_rate_init`` and ``augment_shift`` at 'auto'; False otherwise
    (see ``auto_options_``).

batch_norm_position : {'before_pool', 'after_pool', 'auto'}, default='auto'
    Where a conv block's batch normalisation goes: 'before_pool', conv ->
    batch norm -> pooling -> activation (or activation -> pooling when they do
    not commute); 'after_pool', conv -> pooling -> batch norm -> activation,
    which normalises the pooled map (a quarter of the cells with 2x2 windows)
    and leaves the convolution free to pool its own output in cache: about a
    quarter less time per minibatch for LeNet-5 with batch norm, and the same
    accuracy on Fashion-MNIST (README, "Learning options"). The two are
    different functions. The dense layers' batch norm is the same in both.
    No effect without ``batch_norm``. 'auto': 'before_pool' for signals, as
    their defaults were measured, 'after_pool' otherwise.

dropout : float, default=0.0
    Rate, in [0, 1), of the dropout after every hidden dense layer: in
    training each unit is zeroed with this probability and the others are
    scaled by ``1 / (1 - dropout)``; prediction uses every unit. 0: no
    dropout. The masks are drawn from ``random_state``, so they do not depend
    on ``n_jobs``, and keyed by each sample's content, so that the two copies
    of a duplicated sample get the same mask and a weight of 2 trains exactly
    what a duplicated sample trains.

spatial_dropout : float, default=0.0
    Rate, in [0, 1), of the channel-wise dropout at the end of every conv
    block: whole feature maps of a sample are zeroed (Tompson et al., 2015),
    the dropout that suits convolutional maps, whose neighbouring cells are
    correlated. 0: none. Masks as for ``dropout``.

head : {'flatten', 'avg', 'max', 'min', 'auto'}, default='flatten'
    What turns the maps of the last conv block into the input of the dense
    layers. 'flatten': every cell, as LeNet-5 does, so the dense part depends
    on the input's size. 'avg', 'max' or 'min': a global pooling over the
    spatial axes, one value per channel (``filters[-1]`` features), which
    keeps whether a pattern occurs and drops where; global average pooling is
    the usual head of convolutional networks for time series. 'auto': 'avg'
    for signals, 'flatten' otherwise.

augment_shift : float or 'auto', default=0.0
    Training-time augmentation: each sample of each minibatch is moved by a
    random whole number of cells along every spatial axis, up to this fraction
    of the axis (``round(augment_shift * n)`` cells of an axis of ``n``; 8x8
    digits with 0.1: one pixel, 28x28 images: three), zeros filling the edge:
    the "pad and random crop" of images, a random delay of signals. In [0,
    0.5); 0: none. Prediction sees the samples as given. The moves are drawn
    from ``random_state`` and keyed by each sample's content, like the
    dropout masks, so they do not depend on ``n_jobs`` and a weight of 2 is a
    duplicated sample. 'auto': 0.1 for signals; for images, 0.04 (one pixel of
    28) with the long-budget options of ``batch_norm``; 0 otherwise.

augment_flip : bool, default=False
    Also mirror a random half of the samples of each minibatch along the last
    spatial axis (left-right for images, time reversed for signals). Off by
    default: a mirrored digit or letter is another symbol.

augment_scale : float, default=0.0
    Training-time augmentation of the amplitude ("scaling"): each sample of
    each minibatch is multiplied by a random factor drawn uniformly from
    ``[1 - augment_scale, 1 + augment_scale)``. In [0, 1); 0: none. Keyed by
    each sample's content like the shifts, so independent of ``n_jobs``, and a
    weight of 2 is a duplicated sample; prediction sees the samples as given.

augment_noise : float, default=0.0
    Training-time augmentation ("jitter"): Gaussian noise of this standard
    deviation added to every value of every sample of each minibatch, after
    ``augment_scale``, in the units the network sees (after
    ``input_scaling``). >= 0; 0: none. Keyed like the shifts.

input_scaling : {'max_abs', 'auto'} or None, default=None
    'max_abs': the network divides its input by ``input_scale_``, the largest
    absolute value of the first fit's training ``X`` (of the rows of positive
    weight), one number for every feature, as ``X / 16`` or ``X / 255`` would;
    ``predict``, ``transform`` and the ONNX graph divide alike. A sample shape
    stays what it was, unlike a per-feature scaler's, and a model fitted on
    ``X`` is bit for bit the one fitted on ``X / input_scale_`` without it
    when that division is exact. None: ``X`` as given. 'auto': 'max_abs' for
    non-negative ``X`` (pixel intensities, counts) that is not a signal, None
    for signals and for data with negative values (centred or standardized
    already: an outlier there would shrink the rest).

solver : {'adam', 'sgd'}, default='adam'
    'adam' (Kingma and Ba) or 'sgd' with momentum, as in scikit-learn's MLP.

learning_rate : {'constant', 'invscaling', 'adaptive', 'cosine', 'auto'}, \
        default='constant'
    Learning-rate schedule, for both solvers (``MLPClassifier`` uses its
    schedules for 'sgd' only; here they set Adam's step size too, to which
    Adam's bias correction then applies).

    - 'constant': ``learning_rate_init`` throughout.
    - 'invscaling': after each epoch, ``learning_rate_init / (t_ + 1) **
      power_t``, ``t_`` being the training samples seen so far
      (scikit-learn's rule, so the rate falls fast: about 30 times after an
      epoch of 1,000 samples with ``power_t=0.5``).
    - 'adaptive': divided by 5 whenever the stopping rule sees
      ``n_iter_no_change`` epochs without an improvement of ``tol`` (of the
      training loss, or with ``early_stopping`` of the validation score),
      instead of stopping; training stops once the rate is at most 1e-6
      (scikit-learn's rule).
    - 'cosine': ``learning_rate_init * (1 + cos(pi * p / n_epochs)) / 2``
      before every update, ``p`` being the update's position in epochs
      (``e + i / n_minibatches`` for minibatch ``i`` of epoch ``e``) and
      ``n_epochs`` the epochs a fit may run, ``max_iter`` (or more, see
      ``min_updates``): from ``learning_rate_init`` at the first update down
      to almost 0 at the last, as PyTorch's ``CosineAnnealingLR`` stepped
      after every minibatch. A fit that stops earlier (``n_iter_no_change``,
      ``early_stopping``) ends part-way down.

    Every ``fit``, a warm start included, starts its schedule again (with a
    new optimizer). ``partial_fit`` keeps the schedule across calls, each
    call being one epoch of the plan that its first call's data gives (the
    cosine's ``n_epochs`` as ``fit`` would take them); after ``n_epochs``
    calls the cosine starts a new cycle (a warm restart) rather than staying
    at 0. 'auto': 'cosine' for signals; otherwise 'cosine' when the fit plans
    at least 4,000 updates (``n_epochs`` times the minibatches of an epoch, as
    ``min_updates`` counts them; e.g. 10 epochs of 60,000 images) and
    'constant' on shorter budgets, which cosine's smaller mean step leaves
    less converged.

learning_rate_init : float or 'auto', default=1e-3
    Initial step size (the schedule's start). 1e-3 is Adam's published
    default; for 'sgd' try 0.01-0.1. 'auto': 5e-3 for images with the
    long-budget options of ``batch_norm`` (batch norm lets the higher rate
    train stably), 1e-3 otherwise.

power_t : float, default=0.5
    Exponent of the 'invscaling' schedule.

alpha : float, default=1e-4
    L2 penalty ``0.5 * alpha * sum ||W||^2 / batch_weight`` on the weights (not
    the biases), scaled by the minibatch's total sample weight as in
    scikit-learn's MLP.

batch_size : int, default=64
    Minibatch size, clipped to the number of training samples. 64 is the
    usual LeNet/MNIST batch.

max_iter : int, default=100
    Maximum number of epochs (passes over the training data). Training usually
    stops earlier, when the training loss (or, with ``early_stopping``, the
    validation score) has not improved by ``tol`` for ``n_iter_no_change``
    epochs; hitting ``max_iter`` gives a ``ConvergenceWarning``. 100 rather than
    scikit-learn's MLP's 200: LeNet-5 reaches its accuracy on MNIST-size data in
    about 10 epochs, while small data sets need many epochs for enough updates
    (``load_digits``: about 90); ``min_updates`` raises it on small data.

min_updates : int or 'auto', default=0
    Least number of updates (minibatches) of a ``fit``, for small data sets,
    on which ``max_iter`` epochs of a few minibatches each are too few updates
    to converge. A fit then runs at least ``ceil(min_updates /
    n_minibatches)`` epochs, ``n_minibatches = ceil(n_train / batch_size)``
    being the minibatches per epoch (``n_train``: the training samples, less
    early stopping's validation part), and ``max_iter`` is raised to that
    number where it is smaller. Before it, the stopping rule does not stop
    training (a stall still lowers an 'adaptive' rate); after it, it works as
    usual. ``n_iter_`` and ``loss_curve_`` count the epochs run, and a fit
    that reaches the raised number gets the ``ConvergenceWarning`` of
    ``max_iter``, naming that number. 0: off. ``partial_fit`` runs one epoch
    per call whatever it is. 'auto': 2000 for signals, 0 otherwise.

tol : float, default=1e-4
    Tolerance of the stopping rule above.

n_iter_no_change : int, default=10
    Epochs without an improvement of at least ``tol`` before stopping.

early_stopping : bool, default=False
    Hold out ``validation_fraction`` of the training data, stop when its score
    (see ``validation_scores_``) stops improving and keep the weights of the
    best epoch. Not available in ``partial_fit``.

validation_fraction : float, default=0.1
    Share of the training data held out for early stopping (in (0, 1)).

shuffle : bool, default=True
    Shuffle the training data before each epoch.

momentum : float, default=0.9
    Momentum of 'sgd'.

nesterovs_momentum : bool, default=True
    Nesterov momentum for 'sgd'.

beta_1 : float, default=0.9
    Adam's decay rate of the first moment.

beta_2 : float, default=0.999
    Adam's decay rate of the second moment.

epsilon : float, default=1e-8
    Adam's numerical-stability term. It must stay non-zero and finite in the
    compute dtype (see ``compute_dtype``; in float32 e.g. 1e-50 is 0).
"""

RUN = """\
random_state : int, RandomState instance or None, default=None
    The one source of randomness: weight initialisation, shuffling, the
    dropout masks and the validation split. An int gives identical results on every fit, whatever
    ``n_jobs`` is.

warm_start : bool, default=False
    Reuse the network of the previous fit as the starting point (the
    architecture parameters of that fit stay in force) with a fresh
    optimizer and learning-rate schedule; otherwise start again.

verbose : bool, default=False
    Print the loss (and validation score) after every epoch.

compute_dtype : {'auto', 'float32', 'float64'}, default='auto'
    The dtype the network trains and predicts in, fixed by the first fit.
    'auto': float32 when ``X`` is float32 or has more than
    ``AUTO_FLOAT32_SAMPLES`` (10,000) samples, float64 otherwise (as
    ``HistGradientBoostingClassifier``'s ``early_stopping='auto'`` reads the data
    size): a large float64 ``X``, such as ``X / 255.0``, then trains at float32
    speed (2-3x faster) and gives bitwise the model that ``X.astype(np.float32)``
    gives, while small data keeps float64's precision. 'float32' or 'float64'
    forces either. Inputs are cast to it one batch at a time.

n_jobs : int, default=None
    OpenMP threads of the convolution and pooling kernels, decided once per
    call to fit / predict. None or -1: all usable cores, as limited by
    ``OMP_NUM_THREADS`` and threadpoolctl, so that inside a parallel
    ``GridSearchCV`` (whose workers are given a share of the cores) nothing is
    oversubscribed; a positive int: that many, at most the usable cores.
    Results do not depend on it.
"""

INPUT_ATTRIBUTES = """\
n_features_in_ : int
    Values per sample seen during fit, ``prod(image_shape_)`` (also for N-d X).

feature_names_in_ : ndarray of shape (n_features_in_,)
    Feature names, when X was a data frame with string column names.

image_shape_ : tuple of int
    Shape of one sample as the network sees it, ``(C, *spatial)``.

input_scale_ : float
    What the network divides its input by (``input_scaling``); 1.0 when off.

auto_options_ : dict
    The value each of ``filters``, ``kernel_size``, ``batch_norm``,
    ``batch_norm_position``, ``head``, ``augment_shift``, ``input_scaling``,
    ``learning_rate``, ``learning_rate_init`` and ``min_updates`` left at
    'auto' stands for, set by the first fit. Signals - samples declared with
    one spatial axis, by N-d ``X`` of shape ``(n_samples, C, L)`` or by
    ``image_shape=(L,)`` - get ``filters=(16, 32, 64), kernel_size=7,
    batch_norm=True, batch_norm_position='before_pool', head='avg',
    augment_shift=0.1, input_scaling=None, learning_rate='cosine',
    learning_rate_init=1e-3, min_updates=2000`` (the time-series study in the
    README, "Learning options"); everything else - images, volumes, and flat
    ``X`` without ``image_shape``, as tabular data comes - gets LeNet-5's
    ``(6, 16), 5, False, 'after_pool', 'flatten', 0.0``,
    ``input_scaling='max_abs'`` (None when ``X`` has negative values),
    ``learning_rate='constant'``, ``learning_rate_init=1e-3`` and
    ``min_updates=0``, with ``learning_rate='cosine'`` instead when the first
    fit plans at least 4,000 updates; images (two spatial axes, also flat
    ``X`` read as square images) then get ``batch_norm=True``,
    ``learning_rate_init=5e-3`` and ``augment_shift=0.04`` as well, and on
    fewer planned updates two wider blocks of 3x3 kernels instead,
    ``filters=(16, 32), kernel_size=3``.

conv_weights_ : list of ndarray
    Kernels of the conv layers; entry i has shape
    ``(filters[i], C_i, *kernel_size_i)`` where ``C_0 = image_shape_[0]`` and
    ``C_i = filters[i - 1]``.

conv_biases_ : list of ndarray
    Biases of the conv layers; entry i has shape ``(filters[i],)``.

coefs_ : list of ndarray
    Weights of the dense layers, hidden then output; entry i has shape
    ``(n_in_i, n_out_i)``, with ``n_in_0`` the size of the flattened last pool
    output (``filters[-1]`` with a global pooling ``head``) and ``n_out_last``
    the number of outputs.

intercepts_ : list of ndarray
    Biases of the dense layers; entry i has shape ``(n_out_i,)``.
"""

TRAINING_ATTRIBUTES = """\
loss_curve_ : list of float
    Training loss of every epoch.

best_validation_score_ : float or None
    Best of ``validation_scores_``; its weights are the ones kept.

best_loss_ : float or None
    Lowest training loss (None with ``early_stopping``).

n_iter_ : int
    Epochs run by the last ``fit`` (``partial_fit`` adds one per call).

t_ : int
    Training samples seen by the optimizer (summed over fits when warm
    starting and over ``partial_fit`` calls).
"""

NOTES = """\
The weights are float32 or float64 like the training data (see dtype above).
Prediction runs 512 samples at a time, so its memory does not grow with
``n_samples`` beyond the output (and the validated input: lists and
non-float arrays are converted once, float arrays are used as they are).

A ``KeyboardInterrupt`` during fit stops training with a warning and keeps the
model of the last finished epoch. A loss that becomes non-finite stops fit
with a ValueError suggesting a smaller ``learning_rate_init``.

With scikit-learn >= 1.9, ``set_callbacks`` takes ``sklearn.callback``'s
callbacks (``ProgressBar``, ``ScoringMonitor``...). Each fit reports a ``fit``
task, one ``epoch`` task per epoch and one ``minibatch`` task per minibatch;
the model a callback gets at the end of an epoch is a copy with that epoch's
weights, and a ``True`` returned there stops training. Callbacks do not change
the fitted model.
"""

PIECES = {
    "input": INPUT,
    "architecture_and_solver": ARCHITECTURE_AND_SOLVER,
    "run": RUN,
    "input_attributes": INPUT_ATTRIBUTES,
    "training_attributes": TRAINING_ATTRIBUTES,
    "notes": NOTES,
}


def fill(doc, defaults=None):
    """``doc`` with each line ``{name}`` replaced by the shared piece ``name``,
    indented like the placeholder.

    Parameters
    ----------
    doc : str
    defaults : dict, default=None
        ``{parameter: (default, why)}`` for an estimator whose default differs from
        the shared entry's: the entry's ``default=...`` becomes ``default``, and
        ``why`` (a sentence) ends the entry.
    """
    defaults = dict(defaults or {})
    lines = []
    for line in doc.split("\n"):
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}") and stripped[1:-1] in PIECES:
            indent = line[: len(line) - len(line.lstrip())]
            piece = _with_defaults(PIECES[stripped[1:-1]].rstrip("\n"), defaults)
            lines.extend(indent + p if p else "" for p in piece.split("\n"))
        else:
            lines.append(line)
    if defaults:
        raise ValueError(f"no shared entry with a default for {sorted(defaults)}")
    return "\n".join(lines)


def _with_defaults(piece, defaults):
    """``piece`` with the entries it has of ``defaults`` given their own default and
    note; those entries are removed from ``defaults``."""
    lines = piece.split("\n")
    for name in list(defaults):
        header = next((i for i, line in enumerate(lines)
                       if line.startswith(f"{name} : ")), None)
        if header is None:
            continue
        # The default ends the header line, or the next one when the option set
        # wraps (a line ending with a backslash).
        at = header + 1 if lines[header].endswith("\\") else header
        if "default=" not in lines[at]:
            continue
        default, why = defaults.pop(name)
        lines[at] = lines[at].rsplit("default=", 1)[0] + f"default={default}"
        end = at + 1
        while end < len(lines) and (lines[end].startswith(" ") or (
                not lines[end] and end + 1 < len(lines)
                and lines[end + 1].startswith(" "))):
            end += 1
        note = textwrap.wrap(why, width=76, initial_indent="    ",
                             subsequent_indent="    ")
        lines[end:end] = [""] + note
    return "\n".join(lines)
