"""The import rule of DESIGN.md, as a test: data flows down one way.

Layers, bottom to top, each a folder of the package (the top one is the package's
own public modules):

0. kernels (``skconv/_kernels``): compiled modules;
1. ops (``skconv/_ops`` and its public face ``skconv/ops.py``);
2. network engine (``skconv/_nn``);
3. estimators (``skconv/_estimators``);
4. the package's public modules and tools: ``skconv/__init__.py``, ``plot.py``,
   ``datasets.py``, the demo.

A module may import only from its own layer or a lower one. Across layers it uses
public names only: no module and no imported name with a leading underscore below
the layer folder (``from .._ops.conv import _check_conv_inputs`` is refused, so is
``from .._ops import _private``), and no ``something._name`` attribute whose name no
module of its own layer defines (``est._network`` in the plots, ``pool._stride`` in
the network). The checker reads the source with :mod:`ast`; it never imports it.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skconv"

LAYER_FOLDERS = {"_kernels": 0, "_ops": 1, "_nn": 2, "_estimators": 3}
TOP = 4
LAYER_NAMES = {0: "kernels", 1: "ops", 2: "network engine", 3: "estimators", 4: "top"}

#: Private names of other projects that skconv may use (they are not skconv's layers).
FOREIGN_PRIVATE = {"_fit_context", "_check_sample_weight", "_param_validation",
                   "_wrapped", "__wrapped__"}


def layer_of(module):
    """The layer of a dotted module name inside skconv (``skconv.ops`` is ops)."""
    parts = module.split(".")
    if parts[:2] == ["skconv", "ops"]:
        return 1
    if len(parts) >= 2 and parts[1] in LAYER_FOLDERS:
        return LAYER_FOLDERS[parts[1]]
    return TOP


def module_name(path, root):
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(module, level, current, is_package):
    """The absolute name of ``from <level dots><module> import ...`` in ``current``."""
    if level == 0:
        return module
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def private_below_layer_folder(module):
    """Whether a dotted skconv module name has a private part below its layer folder."""
    parts = module.split(".")[1:]
    if parts and parts[0] in LAYER_FOLDERS:
        parts = parts[1:]
    return any(p.startswith("_") and not p.startswith("__") for p in parts)


def sources(root):
    """(module name, layer, path, text, is_package) of every .py and .pyx file."""
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".py", ".pyx") or path.name == "build_config.py":
            continue
        name = module_name(path, root)
        yield name, layer_of(name), path, path.read_text(), path.name == "__init__.py"


def defined_private_names(tree):
    """Every leading-underscore name a module defines or assigns (also as an
    attribute, ``self._x = ...``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # Names kept in strings: _cache_attributes, setattr/getattr, __slots__.
            if re.fullmatch(r"_[A-Za-z]\w*", node.value):
                names.add(node.value)
    return {n for n in names if n.startswith("_")}


_CIMPORT = re.compile(r"^\s*(?:from\s+(\.*)([\w.]*)\s+c?import|cimport\s+([\w.]+))", re.M)


def violations(files):
    """The import-rule violations among ``files`` (as :func:`sources` yields them).

    Returns
    -------
    list of str
        One line per violation, naming the file, the line and what it reaches.
    """
    files = list(files)
    layer_defs = {}
    trees = {}
    for name, layer, path, text, is_package in files:
        if path.suffix == ".py":
            trees[name] = ast.parse(text, str(path))
            layer_defs.setdefault(layer, set()).update(defined_private_names(trees[name]))
    found = []
    for name, layer, path, text, is_package in files:
        where = f"{path.name} ({LAYER_NAMES[layer]})"
        if path.suffix == ".pyx":
            for match in _CIMPORT.finditer(text):
                dots, module = match.group(1), match.group(2) or match.group(3)
                target = (resolve(module, len(dots), name, False) if dots is not None
                          and dots else module)
                if target.split(".")[0] == "skconv" and layer_of(target) > layer:
                    found.append(f"{where}: imports {target} from a higher layer")
            continue
        tree = trees[name]
        module_aliases = {}  # local name -> skconv module of another layer
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [(alias.name, None, alias.asname or alias.name.split(".")[0])
                           for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(node.module or "", node.level, name, is_package)
                targets = [(base, alias.name, alias.asname or alias.name)
                           for alias in node.names]
            for module, imported, local in targets:
                if module.split(".")[0] != "skconv":
                    continue
                full = module if imported is None else f"{module}.{imported}"
                # "from skconv import ops" imports the module skconv.ops (ops layer);
                # "from skconv._nn import layers" the module skconv._nn.layers.
                target_layer = layer_of(full) if imported else layer_of(module)
                if imported:
                    target_layer = min(target_layer, layer_of(module))
                if target_layer > layer:
                    found.append(f"{where}:{node.lineno}: imports {full} from the higher "
                                 f"layer {LAYER_NAMES[target_layer]}")
                if target_layer == layer:
                    continue
                if private_below_layer_folder(module):
                    found.append(f"{where}:{node.lineno}: imports from the private module "
                                 f"{module} of layer {LAYER_NAMES[target_layer]}")
                if imported and imported.startswith("_") and not imported.startswith("__"):
                    found.append(f"{where}:{node.lineno}: imports the private name "
                                 f"{imported} from {module}")
                module_aliases[local] = target_layer
        own = layer_defs.get(layer, set())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") and node.attr.endswith("__"):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in module_aliases:
                found.append(f"{where}:{node.lineno}: uses {value.id}.{node.attr}, a "
                             f"private name of layer {LAYER_NAMES[module_aliases[value.id]]}")
            elif (node.attr not in own and node.attr not in FOREIGN_PRIVATE
                  and not (isinstance(value, ast.Name) and value.id in ("self", "cls"))):
                found.append(f"{where}:{node.lineno}: uses the attribute .{node.attr}, "
                             f"which no module of its layer defines")
    return found


def test_package_keeps_the_import_rule():
    assert violations(sources(PACKAGE)) == []


def test_every_module_has_a_known_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(LAYER_FOLDERS) | {"tests"}, folders


def _with_module(tmp_path, relative, text):
    """A copy of the package with one module added or replaced."""
    root = tmp_path / "skconv"
    for name, layer, path, source, is_package in sources(PACKAGE):
        target = root / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_text(text)
    return root


@pytest.mark.parametrize(
    "relative, text, expected",
    [
        # the engine reaching up to the estimators
        ("_nn/bad.py", "from .._estimators.base import BaseConvNet\n",
         "from the higher layer estimators"),
        # ops importing the engine
        ("_ops/bad.py", "from .._nn import layers\n", "from the higher layer"),
        # a private function of the ops layer used by the engine
        ("_nn/bad.py", "from .._ops.conv import _check_conv_inputs\n",
         "imports the private name _check_conv_inputs"),
        # a private module of another layer
        ("_nn/bad.py", "from .._ops._hidden import thing\n", "from the private module"),
        # a private attribute of a module of another layer
        ("_nn/bad.py", "from .._ops import conv\nconv._conv_geometry((1,), (1,), 1, 0, 1)\n",
         "uses conv._conv_geometry"),
        # the plots reaching into an estimator's private state
        ("plot.py", "def f(est):\n    return est._network\n",
         "the attribute ._network, which no module of its layer defines"),
        # a layer's private setting read from another module of the engine's callers
        ("_estimators/bad.py", "def f(pool):\n    return pool._stride_of_the_layer\n",
         "which no module of its layer defines"),
        # a kernel cimporting from the ops layer
        ("_kernels/bad.pyx", "from skconv._ops.conv cimport thing\n",
         "from a higher layer"),
    ],
)
def test_checker_catches_an_injected_violation(tmp_path, relative, text, expected):
    root = _with_module(tmp_path, relative, text)
    found = violations(sources(root))
    assert any(expected in line for line in found), found
