"""The Gradio layout of the demo (used by `petct demo` and by the Space's demo/app.py). A thin shell: the work is
done by :mod:`.demo_service`, the checks of uploaded files by :mod:`.uploads`, the pictures by :mod:`.viz`."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from .service import NOT_A_DEVICE, TABLE_COLUMNS, DemoSessions, ModelShelf, run_study
from ..errors import PetCtInputError
from .uploads import ACCEPTED, UploadLimits

EXAMPLES = {f"Synthetic phantom, seed {seed}": seed for seed in (0, 1, 2)}
FILE_TYPES = [".nii", ".gz", ".mha", ".zip"]


def _user_error(err: PetCtInputError) -> gr.Error:
    """The message without the server's temporary folders: the user knows the file by its name."""
    return gr.Error(f"{Path(err.source).name}: {err.problem}", print_exception=False)


def _picture(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, type="numpy", interactive=False, format="png", elem_id=elem_id)


def _slice_slider(label: str, elem_id: str) -> gr.Slider:
    return gr.Slider(0, 1, value=0, step=1, label=label, interactive=False, elem_id=elem_id)  # enabled by a result


def build_demo(
    shelf: ModelShelf, *, limits: UploadLimits = UploadLimits(), workroot: str | Path | None = None
) -> gr.Blocks:
    """The Blocks app. Session files live under ``workroot`` (a fresh temporary folder by default, removed at exit).
    Serve it with ``launch`` and the same ``limits``."""
    if workroot is None:
        workroot = tempfile.mkdtemp(prefix="petct-demo-")
        atexit.register(shutil.rmtree, workroot, True)

    sessions = DemoSessions(workroot)

    def load_example(name, request: gr.Request):
        if name not in EXAMPLES:
            raise gr.Error("Pick an example first.")
        pet, ct = sessions.get(request.session_hash).example(EXAMPLES[name])
        return str(pet), str(ct)

    def segment(pet_file, ct_file, model_label, request: gr.Request, progress=gr.Progress()):
        if not pet_file or not ct_file:
            raise gr.Error("Upload both a PET and a CT image (or load a synthetic example) first.")
        session = sessions.get(request.session_hash)
        try:
            model = shelf.get(model_label)
            result = run_study(pet_file, ct_file, model, session, device=shelf.device, limits=limits, progress=progress)
        except PetCtInputError as err:
            raise _user_error(err) from None
        session.view = result.view
        n_ax, n_co = result.view.count("axial"), result.view.count("coronal")
        return (
            result.summary,
            shelf.describe(model_label),
            result.mip,
            result.view.render("axial", n_ax // 2),
            gr.Slider(minimum=0, maximum=n_ax - 1, value=n_ax // 2, step=1, interactive=True),
            result.view.render("coronal", n_co // 2),
            gr.Slider(minimum=0, maximum=n_co - 1, value=n_co // 2, step=1, interactive=True),
            result.table(),
            str(result.mask_path),
            str(result.csv_path),
        )

    def scroller(plane):
        def scroll(index, request: gr.Request):
            session = sessions.find(request.session_hash)
            return None if session is None or session.view is None else session.view.render(plane, index)

        return scroll

    def end_session(request: gr.Request):
        sessions.close(request.session_hash)

    labels = list(shelf.models)
    blocks = gr.Blocks(title="petct-fm: PET/CT lesion segmentation", delete_cache=(1800, 3600), analytics_enabled=False)
    with blocks as demo:  # delete_cache: Gradio's copies of uploads and downloads go after an hour
        gr.Markdown(
            "# petct-fm: whole-body FDG PET/CT lesion segmentation\n"
            f"Upload a PET (in SUV) and its CT (in HU), each as {ACCEPTED}, or load a synthetic example; pick a model; "
            f"press **Segment**. Files are checked before reading (at most {limits.max_file_bytes // 2**20} MiB each) "
            f"and deleted when you close the page. {NOT_A_DEVICE}"
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                pet_in = gr.File(label="PET (SUV)", file_types=FILE_TYPES, elem_id="pet-upload")
                ct_in = gr.File(label="CT (HU)", file_types=FILE_TYPES, elem_id="ct-upload")
                with gr.Row():
                    example = gr.Dropdown(list(EXAMPLES), label="Or a synthetic example", value=None, scale=3)
                    load = gr.Button("Load example", scale=1, elem_id="load-example")
                model = gr.Dropdown(labels, value=labels[0] if labels else None, label="Model", elem_id="model")
                model_info = gr.Markdown(shelf.describe(labels[0] if labels else None))
                run = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column(scale=2):
                summary = gr.Markdown("Results appear here.", elem_id="summary")
                with gr.Row():
                    mip = _picture("Coronal PET MIP, lesions outlined", "mip")
                    with gr.Column():
                        axial = _picture("Axial PET/CT", "axial")
                        axial_index = _slice_slider("Axial slice", "axial-index")
                        coronal = _picture("Coronal PET/CT", "coronal")
                        coronal_index = _slice_slider("Coronal slice", "coronal-index")
                table = gr.Dataframe(
                    headers=list(TABLE_COLUMNS.values()), label="Lesions", interactive=False, elem_id="lesion-table"
                )
                with gr.Row():
                    mask_out = gr.File(
                        label="Lesion mask (NIfTI, PET grid)", interactive=False, elem_id="mask-download"
                    )
                    csv_out = gr.File(label="Lesion table (CSV)", interactive=False, elem_id="csv-download")

        model.change(shelf.describe, model, model_info)
        load.click(load_example, example, [pet_in, ct_in], api_name="load_example")
        run.click(
            segment,
            [pet_in, ct_in, model],
            [summary, model_info, mip, axial, axial_index, coronal, coronal_index, table, mask_out, csv_out],
            api_name="segment",
        )
        for plane, slider, image in (("axial", axial_index, axial), ("coronal", coronal_index, coronal)):
            slider.input(
                scroller(plane), slider, image, api_name=f"{plane}_slice", trigger_mode="always_last",
                show_progress="hidden",
            )
        demo.unload(end_session)  # the page was closed: delete the session's files now
    demo.queue(default_concurrency_limit=1, max_size=16)  # one study at a time per worker; others wait in line
    return demo


def launch(
    demo: gr.Blocks,
    *,
    limits: UploadLimits = UploadLimits(),
    server_name: str = "127.0.0.1",
    server_port: int | None = None,
    share: bool = False,
    block: bool = True,
):
    """Serve ``demo``; uploads above ``limits.max_file_bytes`` are refused by the server before they reach disk."""
    return demo.launch(
        server_name=server_name,
        server_port=server_port,
        share=share,
        max_file_size=limits.max_file_bytes,
        prevent_thread_lock=not block,
        ssr_mode=False,
        quiet=not block,
        footer_links=["api"],
    )


def models_from_env(var: str = "PETCT_DEMO_MODELS") -> dict[str, str]:
    """Operator-chosen models from a comma-separated list of folders or Hub ids (how a Space is configured)."""
    entries = [e.strip() for e in os.environ.get(var, "").split(",") if e.strip()]
    return {Path(e).name if os.path.isdir(e) else e: e for e in entries}
