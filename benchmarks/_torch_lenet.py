"""``ConvNetClassifier()``'s default network in PyTorch, for the benchmark scripts."""


def torch_lenet5(image_size, n_classes=10, init="default"):
    """LeNet-5 as skconv builds it by default, on ``(1, image_size, image_size)`` images.

    conv(6, 5x5, 'same') -> relu -> maxpool 2 -> conv(16, 5x5, 'same') -> relu ->
    maxpool 2 -> dense 120 -> relu -> dense 84 -> relu -> dense ``n_classes``.

    Parameters
    ----------
    image_size : int
        Side of the square images.
    n_classes : int, default=10
    init : {'default', 'skconv'}, default='default'
        'skconv' copies skconv's initialisation: He-uniform (``+-sqrt(6 / fan_in)``)
        for the layers followed by relu, Glorot-uniform for the output layer, zero
        biases. 'default' keeps PyTorch's.

    Returns
    -------
    torch.nn.Sequential
    """
    import torch
    from torch import nn

    # 'same' convolutions keep the size; each pooling floors it by 2, as skconv's.
    flat = 16 * (image_size // 2 // 2) ** 2
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, n_classes),
    )
    if init == "skconv":
        layers = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            for layer in layers[:-1]:
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.xavier_uniform_(layers[-1].weight)
            for layer in layers:
                layer.bias.zero_()
    elif init != "default":
        raise ValueError(f"init must be 'default' or 'skconv', got {init!r}")
    return net
