"""Pictures of a fitted skconv network: learned kernels, feature maps, loss curve.

Optional: needs matplotlib, the ``plot`` extra (``pip install "skconv[plot]"``).
Importing this module does not import matplotlib; each display imports it when it
draws, and raises an ImportError naming the extra when it is missing.

The displays follow scikit-learn's Display convention (as
:class:`sklearn.metrics.ConfusionMatrixDisplay`): the constructor stores the data,
:meth:`plot` draws it and returns the display with ``figure_`` and ``ax_`` set, and
the ``from_estimator`` class method takes the data from a fitted skconv estimator
(``ConvNetClassifier``, ``ConvNetRegressor``, ``ConvNetTransformer``, or a
:class:`~sklearn.pipeline.Pipeline` with one: its last skconv step) and calls
:meth:`plot`.

===========================  ========================================================
:class:`FiltersDisplay`      the kernels of one conv layer, one small image per filter
:class:`FeatureMapsDisplay`  one sample through the conv blocks, a row per stage
:class:`LossCurveDisplay`    training loss per epoch (+ validation score, twin axis)
===========================  ========================================================

Where the pictures go (``plot(ax=..., fig=...)`` and ``from_estimator`` alike):

- nothing: a new figure (constrained layout) sized to the picture;
- ``fig=`` a :class:`~matplotlib.figure.Figure` or a
  :class:`~matplotlib.figure.SubFigure` (``fig.subfigures(...)``): the display fills
  it, so several displays can share one figure;
- ``ax=`` a single Axes: :class:`LossCurveDisplay` draws into it; the grid displays
  hide it and split its area into their grid (it must come from a grid, e.g.
  ``plt.subplots`` or ``fig.add_subplot``), as scikit-learn's
  ``PartialDependenceDisplay`` does;
- ``ax=`` an array of Axes (grid displays only): used as given, extra axes hidden.

For the grid displays ``ax_`` is always a 2-D object array of Axes, ``None`` in the
cells of a grid the display created but had nothing to put in.
"""

import math

import numpy as np

from ._estimators.inspection import (
    fitted_estimator,
    network_of,
    steps_before,
    validated_sample,
)
from ._ops.validation import is_int

__all__ = ["FeatureMapsDisplay", "FiltersDisplay", "LossCurveDisplay"]

_INSTALL_HINT = 'pip install "skconv[plot]"'


# -------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------
def _check_matplotlib(caller):
    """Raise an ImportError naming the ``plot`` extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib, the optional 'plot' extra of skconv. "
            f"Install it with: {_INSTALL_HINT}"
        ) from exc


def _check_conv_index(index, n_conv, name):
    """A conv-layer index in [-n_conv, n_conv), returned non-negative."""
    if not is_int(index) or not -n_conv <= index < n_conv:
        valid = (f"0 to {n_conv - 1} (or negative from the end)" if n_conv
                 else "none: it has no conv layer")
        raise ValueError(
            f"{name}={index!r} is not a conv layer index: the network has {n_conv} "
            f"conv layer{'s' if n_conv != 1 else ''}, valid indices are {valid}"
        )
    return int(index) % n_conv


def _symmetric_limit(values):
    """max |values| (1.0 when it is zero or not finite), for a scale centred on 0."""
    vmax = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return vmax if vmax > 0 and math.isfinite(vmax) else 1.0


def _to_pictures(a, n_spatial):
    """(N, *spatial) -> (N, h, w) 2-D pictures.

    1-D: one row, (N, 1, L). 2-D: unchanged. 3-D: the middle slice of the first
    spatial axis (depth), ``a[:, D // 2]``.
    """
    if n_spatial == 1:
        return a[:, None, :]
    if n_spatial == 2:
        return a
    if n_spatial == 3:
        return a[:, a.shape[1] // 2]
    raise ValueError(f"expected 1 to 3 spatial axes, got {n_spatial}")


def _grid_axes(ax, fig, used, figsize, caller, flat=False):
    """Axes for a grid whose row ``r`` holds ``used[r]`` panels.

    Parameters
    ----------
    ax : None, Axes or array-like of Axes
    fig : None, Figure or SubFigure
    used : list of int
        Number of panels in each row; the grid has ``max(used)`` columns.
    figsize : tuple of float
        Size of a new figure.
    caller : str
        For error messages.
    flat : bool, default=False
        An array passed as ``ax`` is filled in row-major order, whatever its shape
        (filters); otherwise panel ``(r, c)`` goes to ``ax[r, c]`` (feature maps).

    Returns
    -------
    figure : Figure or SubFigure
    axes : ndarray of object, 2-D
        In a grid made here, the cells without a panel are None; in an array passed
        as ``ax``, the axes without a panel are hidden.
    positions : list of list of tuple
        ``axes[positions[r][c]]`` is where panel ``(r, c)`` goes.
    bounding_ax : Axes or None
        The single Axes that was split, if any.
    """
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    n_rows, n_cols = len(used), max(used)
    if ax is not None and fig is not None:
        raise ValueError(f"{caller}: pass ax or fig, not both")

    if ax is not None and not isinstance(ax, Axes):  # an array of axes
        axes = np.asarray(ax, dtype=object)
        if axes.ndim == 0 or not all(isinstance(a, Axes) for a in axes.flat):
            raise ValueError(
                f"{caller}: ax must be a matplotlib Axes or an array of Axes, got "
                f"{type(ax).__name__}")
        if axes.ndim == 1:
            axes = axes[None, :]
        if flat:
            if axes.ndim != 2 or axes.size < sum(used):
                raise ValueError(
                    f"{caller}: ax must hold at least {sum(used)} axes (one per "
                    f"panel), got an array of shape {np.shape(ax)}")
            order = iter(np.ndindex(axes.shape))
            positions = [[next(order) for _ in range(u)] for u in used]
        else:
            if axes.ndim != 2 or axes.shape[0] < n_rows or axes.shape[1] < n_cols:
                raise ValueError(
                    f"{caller}: ax must be a 2-D array of at least {n_rows} x "
                    f"{n_cols} axes (one row per stage, one column per panel), got "
                    f"an array of shape {np.shape(ax)}")
            positions = [[(r, c) for c in range(u)] for r, u in enumerate(used)]
        taken = {p for row in positions for p in row}
        for p in np.ndindex(axes.shape):
            if p not in taken:
                axes[p].set_visible(False)
        return axes.flat[0].figure, axes, positions, None

    axes = np.empty((n_rows, n_cols), dtype=object)
    bounding_ax = None
    if ax is not None:
        spec = ax.get_subplotspec()
        if spec is None:
            raise ValueError(
                f"{caller}: a single ax is split into the grid and must therefore "
                "be part of a grid (made by plt.subplots, fig.add_subplot or a "
                "GridSpec); pass fig= or an array of Axes instead")
        ax.set_axis_off()
        bounding_ax = ax
        figure = ax.figure
        grid = spec.subgridspec(n_rows, n_cols)
    else:
        if fig is None:
            fig = plt.figure(figsize=figsize, layout="constrained")
        figure = fig
        grid = figure.add_gridspec(n_rows, n_cols)
    positions = [[(r, c) for c in range(u)] for r, u in enumerate(used)]
    for row in positions:
        for p in row:
            axes[p] = figure.add_subplot(grid[p])
    return figure, axes, positions, bounding_ax


def _grid_title(figure, bounding_ax, text):
    """Title a grid: over its bounding axes when drawn into one, else the figure's."""
    if bounding_ax is not None:
        bounding_ax.set_title(text)
    else:
        figure.suptitle(text)


def _bare(ax):
    """An image panel: no ticks (but room for a y label)."""
    ax.set_xticks([])
    ax.set_yticks([])


# -------------------------------------------------------------------------------------
# Filters
# -------------------------------------------------------------------------------------
class FiltersDisplay:
    """The kernels of a conv layer as a grid of small images, one per filter.

    Use :meth:`from_estimator` to take them from a fitted estimator.

    What is drawn: filter ``d`` is panel ``d`` (row-major in a grid of ``n_cols``
    columns), titled ``#d``. All panels share one colour scale, symmetric around 0
    (``[-m, m]`` with ``m`` the largest absolute weight shown), with a diverging
    colormap: positive weights red, negative blue, zero white. Kernels of

    - several input channels show one channel (``channel=c``) or, by default
      (``channel=None``), the mean over the input channels (for RGB input, the
      response to grey);
    - one spatial axis (signals) are one-row images of shape ``(1, k)``;
    - three spatial axes (volumes) show the middle slice of the first (depth) axis,
      ``w[d, c, k_d // 2]``, of shape ``(k_h, k_w)``.

    Parameters
    ----------
    weights : array-like of shape (D, C, *kernel)
        The weights of one conv layer (``estimator.conv_weights_[layer]``), with 1
        to 3 spatial axes.
    channel : int or None, default=None
        Input channel to show; None shows the mean over the C input channels.
    layer : int or None, default=None
        Index of the conv layer, used in the title only.

    Attributes
    ----------
    kernels_ : ndarray of shape (D, h, w)
        The pictures drawn (see above), float64.
    images_ : ndarray of object, shape like ``ax_``
        The :class:`~matplotlib.image.AxesImage` of each filter, None elsewhere.
    ax_ : ndarray of matplotlib Axes, 2-D
        The grid, filled row-major; cells without a filter are None (grid made
        here). An array of axes passed as ``ax`` is kept (a 1-D one as one row),
        its axes without a filter hidden.
    colorbar_ : matplotlib Colorbar or None
    figure_ : matplotlib Figure or SubFigure
        Where the grid was drawn.
    bounding_ax_ : matplotlib Axes or None
        The single Axes passed as ``ax`` and split into the grid.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconv import ConvNetClassifier
    >>> from skconv.plot import FiltersDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = ConvNetClassifier(max_iter=2, random_state=0).fit(X / 16, y)
    >>> disp = FiltersDisplay.from_estimator(clf, layer=0)  # doctest: +SKIP
    """

    def __init__(self, weights, *, channel=None, layer=None):
        self.weights = weights
        self.channel = channel
        self.layer = layer

    def _kernels(self):
        w = np.asarray(self.weights, dtype=np.float64)
        if not 3 <= w.ndim <= 5:
            raise ValueError(
                "weights must have shape (D, C, *kernel) with 1 to 3 spatial axes, "
                f"got shape {w.shape}")
        n_channels = w.shape[1]
        if self.channel is None:
            k = w.mean(axis=1)
        else:
            if not is_int(self.channel) or not 0 <= self.channel < n_channels:
                raise ValueError(
                    f"channel={self.channel!r} is not an input channel: the kernels "
                    f"have {n_channels} input channel{'s' if n_channels != 1 else ''}"
                    f" (0 to {n_channels - 1}); None shows their mean")
            k = w[:, self.channel]
        return _to_pictures(k, w.ndim - 2)

    def _title(self):
        w_shape = np.shape(self.weights)
        n_filters, n_channels, kernel = w_shape[0], w_shape[1], w_shape[2:]
        where = "conv layer" + (f" {self.layer}" if self.layer is not None else "")
        size = "x".join(str(k) for k in kernel)
        title = f"{where}: {n_filters} filters of size {size}"
        if n_channels > 1:
            title += (f", mean of {n_channels} input channels" if self.channel is None
                      else f", input channel {self.channel} of {n_channels}")
        if len(kernel) == 3:
            title += f", middle depth slice {kernel[0] // 2}"
        return title

    def plot(self, ax=None, *, fig=None, n_cols=8, cmap="RdBu_r", colorbar=True,
             title=True, imshow_kw=None):
        """Draw the kernels.

        Parameters
        ----------
        ax : matplotlib Axes or array-like of Axes, default=None
            A single Axes is hidden and its area split into the grid; an array of
            axes (at least one per filter, row-major) is used as given. None: see
            ``fig``.
        fig : matplotlib Figure or SubFigure, default=None
            Figure (region) to fill when ``ax`` is None; None makes a new figure.
        n_cols : int, default=8
            Panels per row.
        cmap : str or Colormap, default='RdBu_r'
            A diverging colormap suits the scale symmetric around 0.
        colorbar : bool, default=True
            One colour bar for the whole grid.
        title : bool or str, default=True
            True: a title naming the layer, the kernel size and the channel rule;
            a string: that title; False: none.
        imshow_kw : dict, default=None
            Extra keywords for ``Axes.imshow`` (they override the defaults).

        Returns
        -------
        display : FiltersDisplay
        """
        _check_matplotlib(f"{type(self).__name__}.plot")
        kernels = self._kernels()
        n_filters = kernels.shape[0]
        if not is_int(n_cols) or n_cols < 1:
            raise ValueError(f"n_cols must be a positive int, got {n_cols!r}")
        n_cols = min(n_cols, n_filters)
        n_rows = -(-n_filters // n_cols)
        used = [min(n_cols, n_filters - r * n_cols) for r in range(n_rows)]
        h, w = kernels.shape[1:]
        aspect = "auto" if h == 1 else "equal"
        panel = 1.0
        figsize = (n_cols * panel + (1.0 if colorbar else 0.3),
                   n_rows * panel * (0.5 if h == 1 else 1.0) + 0.8)
        figure, axes, positions, bounding_ax = _grid_axes(
            ax, fig, used, figsize, f"{type(self).__name__}.plot", flat=True)

        vmax = _symmetric_limit(kernels)
        kw = dict(cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest",
                  aspect=aspect)
        kw.update(imshow_kw or {})
        images = np.empty(axes.shape, dtype=object)
        cells = [p for row in positions for p in row]
        for d, p in enumerate(cells):
            images[p] = axes[p].imshow(kernels[d], **kw)
            axes[p].set_title(f"#{d}", fontsize="small", pad=2)
            _bare(axes[p])

        self.colorbar_ = None
        if colorbar:
            self.colorbar_ = figure.colorbar(images[cells[0]],
                                             ax=[axes[p] for p in cells], shrink=0.9,
                                             aspect=max(10, 10 * n_rows))
            self.colorbar_.ax.tick_params(labelsize="small")
        if title:
            text = self._title() if title is True else str(title)
            _grid_title(figure, bounding_ax, text)

        self.kernels_ = kernels
        self.images_ = images
        self.ax_ = axes
        self.bounding_ax_ = bounding_ax
        self.figure_ = figure
        return self

    @classmethod
    def from_estimator(cls, estimator, *, layer=0, channel=None, ax=None, fig=None,
                       **plot_kw):
        """Draw the kernels of conv layer ``layer`` of a fitted estimator.

        Parameters
        ----------
        estimator : skconv estimator or Pipeline with one
            Fitted.
        layer : int, default=0
            Index of the conv layer (0 is the one next to the input; negative counts
            from the end).
        channel : int or None, default=None
            Input channel of the kernels to show; None: their mean.
        ax, fig
            Where to draw, see :meth:`plot`.
        **plot_kw
            Other keywords of :meth:`plot` (``n_cols``, ``cmap``, ``colorbar``,
            ``title``, ``imshow_kw``).

        Returns
        -------
        display : FiltersDisplay

        Raises
        ------
        NotFittedError
            When the estimator is not fitted.
        ValueError
            When ``layer`` is not a conv layer index (the message gives their
            number) or ``channel`` not an input channel of that layer.
        """
        caller = f"{cls.__name__}.from_estimator"
        _check_matplotlib(caller)
        est = fitted_estimator(estimator, caller)
        n_conv = len(est.conv_weights_)
        index = _check_conv_index(layer, n_conv, "layer")
        display = cls(est.conv_weights_[index], channel=channel, layer=index)
        return display.plot(ax=ax, fig=fig, **plot_kw)


# -------------------------------------------------------------------------------------
# Feature maps
# -------------------------------------------------------------------------------------
def _feature_maps(estimator, x, layers=None):
    """The input sample and the output of each conv block, as the network computes.

    A conv block is a conv layer and the layers after it up to the next conv layer
    or the first non-spatial layer (in a LeNet: conv, activation and pooling, the
    activation after the pooling when they commute, see ``build_lenet5``).

    Parameters
    ----------
    estimator : fitted skconv estimator or Pipeline with one
    x : array-like
        One sample: a row of X as given to ``predict`` (``n_features`` values), or
        an array of shape ``image_shape_``. A Pipeline's steps before the skconv
        estimator transform it first (then ``x`` must be one row of the Pipeline's
        input).
    layers : None, int or sequence of int, default=None
        Conv blocks to return (indices as for :class:`FiltersDisplay`); None: all.

    Returns
    -------
    maps : list of ndarray
        ``maps[0]`` is the validated input sample, shape ``image_shape_``, in the
        network's dtype; then one ``(C_k, *spatial_k)`` array per selected block.
    names : list of str
        Stage names (``"input"``, ``"block 0: conv + max pool + relu"``...).
    """
    caller = "FeatureMapsDisplay.from_estimator"
    est = fitted_estimator(estimator, caller)
    before = steps_before(estimator)
    if before is not None:
        x = np.asarray(x)
        x = before.transform(x.reshape((1,) + x.shape))
        if getattr(x, "ndim", 2) == 2 and x.shape[0] == 1:
            x = x[0]
    network = network_of(est)
    n_conv = len(network.params_of("conv"))
    if layers is None:
        selected = set(range(n_conv))
    else:
        seq = [layers] if is_int(layers) else list(layers)
        selected = {_check_conv_index(i, n_conv, "layers") for i in seq}

    X = np.ascontiguousarray(validated_sample(est, x), dtype=network.dtype)
    maps, names = [X[0].copy()], ["input"]
    # One sample: one thread is all a batch of one can use.
    for block, (block_layers, out) in enumerate(network.block_outputs(X, n_jobs=1)):
        if block in selected:
            maps.append(out[0])
            names.append(f"block {block}: "
                         + " + ".join(layer.describe() for layer in block_layers))
    return maps, names


class FeatureMapsDisplay:
    """Feature maps of one sample: the input, then the output of each conv block.

    Use :meth:`from_estimator` to compute them with a fitted estimator.

    What is drawn: one row per stage, the first row the input sample, each next row
    the output of one conv block (after the activation and the pooling: in a LeNet,
    the maps the next conv layer sees). One panel per channel, at most
    ``max_channels`` per row (the first ones), titled ``ch c``; the row's y label
    names the stage, its shape ``C x *spatial`` and its value range. The panels of a
    row share one colour scale (the row's min and max), so channels compare.
    Signals (one spatial axis) are one-row images ``(1, L)``; volumes (three spatial
    axes) show the middle slice of the depth axis, ``map[c, D // 2]``.

    Parameters
    ----------
    maps : list of array-like
        One array of shape ``(C_k, *spatial_k)`` per stage (1 to 3 spatial axes),
        the first normally the input sample.
    stage_names : list of str, default=None
        One name per stage; None: ``"input"``, ``"stage 1"``, ...

    Attributes
    ----------
    images_ : ndarray of object, shape like ``ax_``
        The :class:`~matplotlib.image.AxesImage` of each channel shown, None
        elsewhere; ``images_[k, c].get_array()`` is channel ``c`` of stage ``k``
        as drawn.
    ax_ : ndarray of matplotlib Axes, shape (n_stages, n_cols)
        The grid; cells without a channel are None (grid made here) or hidden
        (an array of axes passed as ``ax``).
    figure_ : matplotlib Figure or SubFigure
    bounding_ax_ : matplotlib Axes or None
        The single Axes passed as ``ax`` and split into the grid.
    """

    def __init__(self, maps, *, stage_names=None):
        self.maps = maps
        self.stage_names = stage_names

    def plot(self, ax=None, *, fig=None, max_channels=16, cmap="viridis",
             input_cmap="gray_r", title=True, imshow_kw=None):
        """Draw the feature maps.

        Parameters
        ----------
        ax : matplotlib Axes or array-like of Axes, default=None
            A single Axes is hidden and its area split into the grid; a 2-D array
            of axes (at least n_stages x panels of the widest row) is used as
            given. None: see ``fig``.
        fig : matplotlib Figure or SubFigure, default=None
            Figure (region) to fill when ``ax`` is None; None makes a new figure.
        max_channels : int, default=16
            Channels shown per stage (the first ones).
        cmap : str or Colormap, default='viridis'
            Colormap of the feature maps.
        input_cmap : str or Colormap, default='gray_r'
            Colormap of the first row (the input sample).
        title : bool or str, default=True
            True: "Feature maps of one sample"; a string: that title; False: none.
        imshow_kw : dict, default=None
            Extra keywords for ``Axes.imshow``.

        Returns
        -------
        display : FeatureMapsDisplay
        """
        _check_matplotlib(f"{type(self).__name__}.plot")
        if not is_int(max_channels) or max_channels < 1:
            raise ValueError(
                f"max_channels must be a positive int, got {max_channels!r}")
        maps = [np.asarray(m) for m in self.maps]
        if not maps:
            raise ValueError("maps must hold at least one stage")
        for k, m in enumerate(maps):
            if not 2 <= m.ndim <= 4:
                raise ValueError(
                    f"maps[{k}] must have shape (C, *spatial) with 1 to 3 spatial "
                    f"axes, got shape {m.shape}")
        names = (["input"] + [f"stage {k}" for k in range(1, len(maps))]
                 if self.stage_names is None else list(self.stage_names))
        if len(names) != len(maps):
            raise ValueError(
                f"stage_names has {len(names)} names for {len(maps)} stages")

        pictures = [_to_pictures(m[:max_channels], m.ndim - 1) for m in maps]
        used = [p.shape[0] for p in pictures]
        n_cols = max(used)
        one_row = all(p.shape[1] == 1 for p in pictures)
        figsize = (1.6 + 0.85 * n_cols,
                   0.6 + len(maps) * (0.85 if one_row else 1.05))
        figure, axes, positions, bounding_ax = _grid_axes(
            ax, fig, used, figsize, f"{type(self).__name__}.plot")

        images = np.empty(axes.shape, dtype=object)
        for k, (m, p) in enumerate(zip(maps, pictures)):
            lo, hi = (float(p.min()), float(p.max())) if p.size else (0.0, 1.0)
            kw = dict(cmap=input_cmap if k == 0 else cmap, vmin=lo, vmax=hi,
                      interpolation="nearest",
                      aspect="auto" if p.shape[1] == 1 else "equal")
            kw.update(imshow_kw or {})
            for c, pos in enumerate(positions[k]):
                a = axes[pos]
                images[pos] = a.imshow(p[c], **kw)
                _bare(a)
                a.set_title(f"ch {c}", fontsize="x-small", pad=2)
            shape = "x".join(str(s) for s in m.shape)
            more = (f", first {p.shape[0]} shown" if m.shape[0] > p.shape[0]
                    else "")
            depth = (f"\ndepth slice {m.shape[1] // 2}" if m.ndim == 4 else "")
            axes[positions[k][0]].set_ylabel(
                f"{_wrap(names[k])}\n{shape}{more}{depth}\n[{lo:.3g}, {hi:.3g}]",
                fontsize="small", rotation=0, ha="right", va="center",
                labelpad=4)
        if title:
            text = "Feature maps of one sample" if title is True else str(title)
            _grid_title(figure, bounding_ax, text)

        self.images_ = images
        self.ax_ = axes
        self.bounding_ax_ = bounding_ax
        self.figure_ = figure
        return self

    @classmethod
    def from_estimator(cls, estimator, x, *, layers=None, ax=None, fig=None,
                       **plot_kw):
        """Run one sample through a fitted estimator's conv blocks and draw the maps.

        The maps are computed with the estimator's own network layers (inference
        mode), after the estimator's input checks and reshaping: exactly what
        ``predict`` computes on the way.

        Parameters
        ----------
        estimator : skconv estimator or Pipeline with one
            Fitted.
        x : array-like
            One sample: one row of X as given to ``predict`` (1-D, ``n_features``
            values), or an array of shape ``image_shape_`` (``(H, W)`` also works
            for one channel). With a Pipeline, one row of the Pipeline's input
            (its steps before the skconv estimator transform it).
        layers : None, int or sequence of int, default=None
            Conv blocks to show (0 is the one next to the input); None: all. The
            input row is always shown.
        ax, fig
            Where to draw, see :meth:`plot`.
        **plot_kw
            Other keywords of :meth:`plot` (``max_channels``, ``cmap``,
            ``input_cmap``, ``title``, ``imshow_kw``).

        Returns
        -------
        display : FeatureMapsDisplay

        Raises
        ------
        NotFittedError
            When the estimator is not fitted.
        ValueError
            For a bad ``layers`` index (naming the number of conv layers) or an
            ``x`` that is not one sample.
        """
        _check_matplotlib(f"{cls.__name__}.from_estimator")
        maps, names = _feature_maps(estimator, x, layers=layers)
        return cls(maps, stage_names=names).plot(ax=ax, fig=fig, **plot_kw)


def _wrap(name):
    """Break ``"block 0: conv + max pool + relu"`` after the colon."""
    return name.replace(": ", ":\n", 1)


# -------------------------------------------------------------------------------------
# Loss curve
# -------------------------------------------------------------------------------------
class LossCurveDisplay:
    """Training loss per epoch and, when available, the validation score.

    What is drawn: the loss of each epoch against the epoch number (1, 2, ...) on
    the left axis; with early stopping, the validation score of each epoch on a
    second y axis on the right (``ax2_``, a twin of ``ax_``), with a star on the
    best epoch (the weights early stopping keeps). When there are fewer scores
    than losses (a warm start that turned early stopping on), the scores are
    aligned with the last epochs. One legend for both.

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        ``estimator.loss_curve_``.
    validation_scores : array-like of shape (n_scores,) or None, default=None
        ``estimator.validation_scores_``; None or empty: no second axis.
    estimator_name : str, default=None
        Used in the title.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The loss curve.
    score_line_ : matplotlib Line2D or None
    ax_ : matplotlib Axes
        The axes of the loss.
    ax2_ : matplotlib Axes or None
        The twin axes of the validation score.
    figure_ : matplotlib Figure or SubFigure
    """

    def __init__(self, loss_curve, validation_scores=None, *, estimator_name=None):
        self.loss_curve = loss_curve
        self.validation_scores = validation_scores
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, fig=None, title=True, loss_kw=None, score_kw=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw in; None: see ``fig``.
        fig : matplotlib Figure or SubFigure, default=None
            Figure (region) in which to add one Axes when ``ax`` is None; None makes
            a new figure.
        title : bool or str, default=True
            True: "Training loss" (+ "and validation score", + the estimator name);
            a string: that title; False: none.
        loss_kw, score_kw : dict, default=None
            Extra keywords for ``Axes.plot`` of the loss and of the score.

        Returns
        -------
        display : LossCurveDisplay
        """
        _check_matplotlib(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt
        from matplotlib.axes import Axes
        from matplotlib.ticker import MaxNLocator

        if ax is not None and fig is not None:
            raise ValueError(f"{type(self).__name__}.plot: pass ax or fig, not both")
        if ax is not None and not isinstance(ax, Axes):
            raise ValueError(
                f"{type(self).__name__}.plot: ax must be one matplotlib Axes, got "
                f"{type(ax).__name__}")
        if ax is None:
            if fig is None:
                fig = plt.figure(figsize=(6.4, 4.0), layout="constrained")
            ax = fig.add_subplot()

        loss = np.asarray(self.loss_curve, dtype=np.float64).ravel()
        scores = (np.empty(0) if self.validation_scores is None else
                  np.asarray(self.validation_scores, dtype=np.float64).ravel())
        if scores.size > loss.size:
            raise ValueError(
                f"validation_scores has {scores.size} values for {loss.size} epochs "
                "of loss_curve")
        epochs = np.arange(1, loss.size + 1)
        kw = dict(color="C0", label="training loss")
        kw.update(loss_kw or {})
        (self.line_,) = ax.plot(epochs, loss, **kw)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)

        self.score_line_ = self.ax2_ = None
        handles = [self.line_]
        if scores.size:
            ax2 = ax.twinx()
            score_epochs = epochs[loss.size - scores.size:]
            kw = dict(color="C1", label="validation score")
            kw.update(score_kw or {})
            (self.score_line_,) = ax2.plot(score_epochs, scores, **kw)
            best = int(np.argmax(scores))
            (star,) = ax2.plot(score_epochs[best], scores[best], marker="*",
                               markersize=12, linestyle="none",
                               color=self.score_line_.get_color(),
                               label=f"best score {scores[best]:.4g} "
                                     f"(epoch {score_epochs[best]})")
            ax2.set_ylabel("validation score")
            handles += [self.score_line_, star]
            self.ax2_ = ax2
        ax.legend(handles=handles, loc="center right", fontsize="small")

        if title:
            if title is True:
                text = "Training loss" + (" and validation score" if scores.size
                                          else "")
                if self.estimator_name:
                    text = f"{self.estimator_name}: {text[0].lower()}{text[1:]}"
            else:
                text = str(title)
            ax.set_title(text)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, fig=None, **plot_kw):
        """Draw ``loss_curve_`` and ``validation_scores_`` of a fitted estimator.

        Parameters
        ----------
        estimator : skconv estimator or Pipeline with one
            Fitted.
        ax, fig
            Where to draw, see :meth:`plot`.
        **plot_kw
            Other keywords of :meth:`plot` (``title``, ``loss_kw``, ``score_kw``).

        Returns
        -------
        display : LossCurveDisplay

        Raises
        ------
        NotFittedError
            When the estimator is not fitted.
        """
        caller = f"{cls.__name__}.from_estimator"
        _check_matplotlib(caller)
        est = fitted_estimator(estimator, caller)
        display = cls(list(est.loss_curve_), est.validation_scores_,
                      estimator_name=type(est).__name__)
        return display.plot(ax=ax, fig=fig, **plot_kw)
