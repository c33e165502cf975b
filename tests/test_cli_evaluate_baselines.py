"""`petct evaluate --baseline`: threshold baselines beside the predictions on the same studies, each rule given on the
command line or chosen on other labelled studies (never the scored ones), the output saying which."""

from __future__ import annotations

import json
import shutil

import pytest

from modeling_petct.cli import main
from modeling_petct.experiments.baselines import choose_rules, load_study, score_rules
from modeling_petct.inference.threshold import METHODS, ThresholdRule


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """3 scored phantoms (their SEG as the predictions) and 3 validation phantoms of another cohort seed."""
    from modeling_petct.data.synthetic.phantom import write_phantom_cohort

    root = tmp_path_factory.mktemp("evaluate_baselines")
    scored = write_phantom_cohort(root / "scored", 3, 31, size="small", lesion_free_fraction=0.0)
    write_phantom_cohort(root / "val", 3, 32, size="small")
    for folder in scored:
        (root / "pred").mkdir(exist_ok=True)
        shutil.copy(folder / "SEG.nii.gz", root / "pred" / f"{folder.name}.nii.gz")
    return root


def _evaluate(root, *flags, out=None):
    out = out or root / f"metrics{len(flags)}.json"
    code = main(["evaluate", "--pred", str(root / "pred"), "--gt", str(root / "scored"), "--json", str(out),
                 "--bootstrap", "100", *flags])
    return code, out


def test_a_given_rule_is_scored_on_the_same_studies_and_said_to_be_given(studies, capsys):
    code, out = _evaluate(studies, "--baseline", "suv-organs:3.5:2")
    assert code == 0
    printed = capsys.readouterr().out
    assert "baseline suv-organs: SUV >= 3.5 outside physiological organs, >= 2 ml (given on the command line)" in printed
    assert "predictions minus baseline: Dice +" in printed
    saved = json.loads(out.read_text())["baselines"]["suv-organs"]
    folders = sorted(p for p in (studies / "scored").iterdir())
    expected, _ = score_rules({"suv-organs": ThresholdRule("suv-organs", 3.5, 2.0)}, [load_study(f) for f in folders])
    assert saved["rule"] == {"method": "suv-organs", "t": 3.5, "min_ml": 2.0}
    for case, metrics in expected["suv-organs"].items():
        assert saved["per_case"][case]["dice"] == pytest.approx(metrics["dice"])
    assert saved["predictions_minus_baseline"]["n"] == 3  # every scored case has lesions


def test_rules_to_choose_are_chosen_on_the_validation_studies_only(studies, capsys):
    code, out = _evaluate(studies, "--baseline", "all", "--baseline-val", str(studies / "val"))
    assert code == 0
    saved = json.loads(out.read_text())["baselines"]
    on_val, _ = choose_rules(METHODS, [load_study(f) for f in sorted((studies / "val").iterdir())])
    on_scored, _ = choose_rules(METHODS, [load_study(f) for f in sorted((studies / "scored").iterdir())])
    assert any(on_val[m][0] != on_scored[m][0] for m in METHODS)  # the optima differ: the check below can fail
    for method in METHODS:
        assert saved[method]["rule"]["t"] == on_val[method][0].t
        assert saved[method]["rule"]["min_ml"] == on_val[method][0].min_ml
        assert saved[method]["validation_studies"] == sorted(p.name for p in (studies / "val").iterdir())
    assert "chosen on 3 validation studies" in capsys.readouterr().out


def test_organ_rules_are_not_scored_without_organ_maps_and_say_why(studies, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(studies / "scored", bare)
    for organs in bare.glob("*/organs.nii.gz"):
        organs.unlink()
    code = main(["evaluate", "--pred", str(studies / "pred"), "--gt", str(bare), "--bootstrap", "50",
                 "--baseline", "suv:4:3", "suv-organs:3:1"])
    printed = capsys.readouterr().out
    assert code == 0 and "baseline suv: SUV >= 4, >= 3 ml (given on the command line): dice" in printed
    assert "baseline suv-organs: not scored (3 of 3 scored studies have no organ map)" in printed


@pytest.mark.parametrize("flags, problem", [
    (["--baseline", "suv"], "--baseline-val"),  # a rule to choose, and nothing to choose it on
    (["--baseline", "suv:4:3", "--baseline-val", "VAL"], "nothing to choose"),
    (["--baseline", "otsu:1:1"], "is not METHOD"),
    (["--baseline", "suv", "--baseline-val", "SCORED"], "holds scored studies"),
    (["--baseline-val", "VAL"], "only read with --baseline"),
])
def test_refusals_are_one_line_before_any_voxel_is_read(studies, flags, problem, tmp_path, capsys):
    flags = [str(studies / "val") if f == "VAL" else str(studies / "scored") if f == "SCORED" else f for f in flags]
    code, out = _evaluate(studies, *flags, out=tmp_path / "metrics.json")
    err = capsys.readouterr().err
    assert code == 2 and problem in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_single_ground_truth_file_needs_the_study_folder(studies, tmp_path, capsys):
    case = sorted((studies / "scored").iterdir())[0]
    code = main(["evaluate", "--pred", str(studies / "pred" / f"{case.name}.nii.gz"), "--gt", str(case / "SEG.nii.gz"),
                 "--baseline", "suv:4:3"])
    assert code == 2 and "give --studies" in capsys.readouterr().err


def test_the_validation_studies_are_never_the_scored_ones_by_another_name(studies, tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    for folder in (studies / "scored").iterdir():  # the same PET files, reached through links of other names
        (val / f"copy_{folder.name}").symlink_to(folder)
    code, _ = _evaluate(studies, "--baseline", "suv", "--baseline-val", str(val))
    assert code == 2 and "holds scored studies" in capsys.readouterr().err
