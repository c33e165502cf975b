"""A Hub-ready model folder: what transformers writes (weights, config.json with auto_map, the remote-code files,
by ``register_for_auto_class``; see modeling_petct/__init__.py), plus what it does not: the model card with the
evaluation results.

A plain ``model.save_pretrained(folder)`` / ``model.push_to_hub(repo)`` already gives a repo that loads with
``trust_remote_code=True`` where petct-fm is not installed; this adds the card and checks the shipped code.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from ..errors import PetCtInputError
from ..models.registry import REMOTE_CODE_FILES, model_class
from .card import LICENSE_FILE, CardInputs, license_terms, render_model_card, validate_model_card
from .upload import export_folder

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def _check_imports(path: Path, stems: set[str]) -> None:
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


def remote_code_files(package_dir: Path = MODELS_DIR) -> list[Path]:
    """The model files in ``package_dir`` (the package's models/ or a saved folder), checked to be self-contained:
    relative imports only among themselves, never the package."""
    files = [package_dir / name for name in REMOTE_CODE_FILES if (package_dir / name).is_file()]
    stems = {f.stem for f in files}
    for path in files:
        _check_imports(path, stems)
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


def _card_and_terms(inputs: CardInputs, config: dict, num_parameters: int):
    """The card and the LICENSE.md text (None: a Hub licence id needs none): an nnU-Net import keeps its own card."""
    from .nnunet_card import import_licence_file, is_import, render_import_card

    conversion = inputs.model_dir / "conversion.json"
    provenance = json.loads(conversion.read_text()) if conversion.is_file() else {}
    if is_import(provenance):
        return render_import_card(inputs.repo_id.split("/")[-1], config, provenance), import_licence_file(provenance)
    return render_model_card(inputs, config, num_parameters), license_terms(inputs)[2]


def export_model_folder(model_dir: str | Path, out_dir: str | Path, inputs: CardInputs, *,
                        overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically) from a saved model: the files a Hub model repo needs, and the card. An earlier
    export there (e.g. the --dry-run before the push) is replaced; any other existing folder needs ``overwrite``."""
    model = load_model(model_dir)
    out_dir = Path(out_dir)
    with export_folder(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)  # transformers: weights, config.json + auto_map, the remote-code files
        if "auto_map" not in json.loads((tmp / "config.json").read_text()):
            raise PetCtInputError(model_dir, "save_pretrained wrote no auto_map: the class is not registered for "
                                             "an Auto class (modeling_petct/__init__.py)")
        remote_code_files(tmp)
        config = json.loads((tmp / "config.json").read_text())
        card, terms = _card_and_terms(inputs, config, model.num_parameters())
        if terms is not None:
            (tmp / LICENSE_FILE).write_text(terms)
        validate_model_card(str(card), source=str(out_dir / "README.md"), folder=tmp)
        (tmp / "README.md").write_text(str(card))
    return out_dir
