"""A Hub-ready model folder: weights, config.json with auto_map, the flat remote-code files and the model card.

With the remote code beside the weights, ``AutoModel.from_pretrained(repo, trust_remote_code=True)`` works where
petct-fm is not installed (only torch, transformers, MONAI and dynamic_network_architectures are needed).
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

from ..atomic import atomic_folder
from ..errors import PetCtInputError
from ..models.registry import CONFIG_MODULE, MODEL_CLASSES, REMOTE_CODE_FILES, model_class
from .card import CardInputs, render_model_card, validate_model_card

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def auto_map(config_class: str) -> dict[str, str]:
    """config.json's auto_map for models of one configuration class: the classes the package registers."""
    return {"AutoConfig": f"{CONFIG_MODULE}.{config_class}",
            **{c.auto_class: f"{c.module}.{c.name}" for c in MODEL_CLASSES if c.config == config_class}}


def remote_code_files(package_dir: Path = MODELS_DIR) -> list[Path]:
    """The model files, checked to be self-contained: relative imports only among themselves, never the package."""
    files = [package_dir / name for name in REMOTE_CODE_FILES]
    stems = {f.stem for f in files}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                target = (node.module or "").split(".")[0]
                if node.level != 1 or target not in stems:
                    raise PetCtInputError(path, f"relative import of {'.' * node.level}{node.module or ''} is not "
                                                f"one of the shipped remote-code files {sorted(stems)}")
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if any(n.split(".")[0] == "modeling_petct" for n in names):
                raise PetCtInputError(path, "remote code must not import the modeling_petct package")
    return files


def load_model(model_dir: str | Path):
    """The petct-fm model saved in ``model_dir``, as the class named in its config.json."""
    import modeling_petct

    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise PetCtInputError(model_dir, "not a saved model folder (no config.json)")
    arch = (json.loads(config_path.read_text()).get("architectures") or ["PetCtModel"])[0]
    if model_class(arch) is None:
        raise PetCtInputError(config_path, f"architecture {arch!r} is not a petct-fm model")
    return getattr(modeling_petct, arch).from_pretrained(model_dir)


def export_model_folder(model_dir: str | Path, out_dir: str | Path, inputs: CardInputs, *,
                        overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically) from a saved model: the files a Hub model repo needs, nothing else."""
    model = load_model(model_dir)
    code = remote_code_files()
    with atomic_folder(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        config_path = tmp / "config.json"
        config = json.loads(config_path.read_text())
        config["auto_map"] = auto_map(model_class(type(model).__name__).config)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for path in code:
            shutil.copyfile(path, tmp / path.name)
        card = render_model_card(inputs, config, model.num_parameters())
        validate_model_card(str(card), source=str(Path(out_dir) / "README.md"))
        (tmp / "README.md").write_text(str(card))
    return Path(out_dir)
