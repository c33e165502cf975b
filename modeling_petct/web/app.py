"""The Gradio page of the demo (used by `petct demo` and by the Space's app.py, web/space_app.py). A thin shell: the
work is done by :mod:`.service`, the checks of uploaded files by :mod:`.uploads`, the file cleanup by :mod:`.workroot`.

What the page promises a reader: a message box that keeps the last message until the next action (no vanishing
pop-ups, no error badges on every panel), results that are cleared whenever an input changes and that say which model
made them, lesion numbers shared by the table and the pictures, and files deleted when the page closes.
"""

from __future__ import annotations

import html
import json
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..errors import PetCtInputError
from .service import (DEFAULT_SUV_WINDOW, NOT_A_DEVICE, SORT_KEYS, TABLE_COLUMNS, DemoSessions, ModelShelf,
                      SessionClosed, clicked_voxel, edit_result, lesion_voxel, run_study)
from .uploads import ACCEPTED, UploadLimits, too_large
from .workroot import create_workroot, use_as_gradio_cache

EXAMPLES = {f"Phantom, seed {seed}": seed for seed in (0, 1, 2)}  # short: the whole choice shows in the box
CLICK_MODES = {"Look": None, "Add a lesion": "add", "Mark a false positive": "false positive"}  # -> edit action
FILE_TYPES = [".nii", ".gz", ".mha", ".zip", ".dcm"]  # .dcm only to say "zip the series"
LOG = logging.getLogger("modeling_petct.demo")
CSS = """
#message .petct-msg {padding: 8px 12px; border-radius: 6px; font-size: 0.95rem}
#message .petct-error {background: #fdecea; border: 1px solid #d93025; color: #8c1d18}
#message .petct-info {background: #eef4fb; border: 1px solid #9ab8dc; color: #1c3b5a}
#message .petct-done {background: #edf7ee; border: 1px solid #7cb987; color: #1e4620}
#pet-upload, #ct-upload {min-height: 0}
.petct-compact input {line-height: 1.5 !important; padding-top: 2px !important; padding-bottom: 2px !important}
"""


def message(kind: str, text: str) -> str:
    """The message box's content: ``kind`` is "error", "info" or "done"; ``text`` is plain text (escaped here)."""
    role = "alert" if kind == "error" else "status"
    return f'<div class="{_message_class(kind)}" role="{role}">{html.escape(text)}</div>'


def _message_class(kind: str) -> str:
    return f"petct-msg petct-{kind}"


def _slider(label: str, elem_id: str) -> gr.Slider:
    return gr.Slider(0, 1, value=0, step=1, label=label, interactive=False, elem_id=elem_id)  # enabled by a result


def _picture(label: str, elem_id: str, alt: str) -> gr.Image:
    return gr.Image(label=label, type="filepath", interactive=False, elem_id=elem_id, buttons=["download"], alt_text=alt)


@dataclass
class Page:
    """The components the handlers read and write."""

    pet: gr.File
    ct: gr.File
    example: gr.Dropdown
    load: gr.Button
    model: gr.Dropdown
    model_info: gr.Markdown
    run: gr.Button
    message: gr.HTML
    header: gr.Markdown
    summary: gr.Markdown
    window: gr.Slider
    min_ml: gr.Number
    sort: gr.Radio
    mip: gr.Image
    axial: gr.Image
    axial_index: gr.Slider
    coronal: gr.Image
    coronal_index: gr.Slider
    table: gr.Dataframe
    mask_out: gr.File
    csv_out: gr.File
    seg_out: gr.File
    record_out: gr.File
    click_mode: gr.Radio
    undo: gr.Button
    reset: gr.Button
    remove: gr.Button

    def results(self) -> list:
        """Everything a result fills in, in the order ``Handlers.cleared`` and ``Handlers.shown`` return it."""
        return [self.header, self.summary, self.mip, self.axial, self.axial_index, self.coronal, self.coronal_index,
                self.table, *self.downloads()]  # fmt: skip

    def downloads(self) -> list:
        """In the order ``downloads`` returns their files."""
        return [self.mask_out, self.csv_out, self.seg_out, self.record_out]

    def view_controls(self) -> list:
        return [self.window, self.min_ml, self.sort]


def _input_panel(shelf: ModelShelf, limits: UploadLimits) -> dict:
    """Left column: the two uploads, the examples, the model and Segment."""
    labels = list(shelf.models)
    pet = gr.File(label="PET (SUV)", file_types=FILE_TYPES, elem_id="pet-upload", height=100)
    ct = gr.File(label="CT (HU)", file_types=FILE_TYPES, elem_id="ct-upload", height=100)
    with gr.Row(equal_height=True):
        example = gr.Dropdown(list(EXAMPLES), label="Or a synthetic example", value=None, scale=3, min_width=180,
                              elem_id="example", elem_classes="petct-compact")  # fmt: skip
        load = gr.Button("Load example", scale=1, min_width=110, elem_id="load-example")
    model = gr.Dropdown(labels, value=labels[0] if labels else None, label="Model (all trained on the data named below)",
                        elem_id="model", elem_classes="petct-compact")  # fmt: skip
    model_info = gr.Markdown(shelf.describe(labels[0] if labels else None), elem_id="model-info")
    run = gr.Button("Segment", variant="primary", elem_id="segment")
    return dict(pet=pet, ct=ct, example=example, load=load, model=model, model_info=model_info, run=run)


def _viewer_panel(limits: UploadLimits) -> dict:
    """Right column: the message box (on top: seen at any window size), whose result, the summary, the display
    controls, the MIP and the two slice views."""
    note = f"Each file: {ACCEPTED}, at most {limits.max_file_bytes // 2**20} MiB."
    msg = gr.HTML(message("info", f"Upload a PET and its CT, or load a synthetic example. {note}"), elem_id="message")
    header = gr.Markdown("", elem_id="result-model")
    summary = gr.Markdown("Results appear here after **Segment**.", elem_id="summary")
    with gr.Row(equal_height=True):
        window = gr.Slider(2, 30, value=DEFAULT_SUV_WINDOW, step=1, label="SUV window (colour bar maximum)",
                           elem_id="suv-window")  # fmt: skip
        min_ml = gr.Number(0.0, minimum=0.0, step=0.1, label="Hide lesions under (ml)", elem_id="min-volume")
        sort = gr.Radio(list(SORT_KEYS), value="Volume", label="Sort table by", elem_id="sort")
    with gr.Row(equal_height=True):
        click_mode = gr.Radio(list(CLICK_MODES), value="Look", label="A click on a slice", elem_id="click-mode")
        undo = gr.Button("Undo edit", elem_id="undo", min_width=90)
        reset = gr.Button("Reset edits", elem_id="reset", min_width=90)
    with gr.Row():
        mip = _picture("PET MIP, lesions numbered", "mip", "PET maximum-intensity projection, front view, with the "
                       "found lesions outlined and numbered as in the lesion table")
        with gr.Column():
            axial = _picture("Axial PET/CT", "axial", "Axial slice: PET in colour over the CT, found lesions outlined")
            axial_index = _slider("Axial slice", "axial-index")
        with gr.Column():
            coronal = _picture("Coronal PET/CT", "coronal", "Coronal slice: PET in colour over the CT, found lesions "
                               "outlined")
            coronal_index = _slider("Coronal slice", "coronal-index")
    return dict(message=msg, header=header, summary=summary, window=window, min_ml=min_ml, sort=sort, mip=mip, axial=axial,
                axial_index=axial_index, coronal=coronal, coronal_index=coronal_index, click_mode=click_mode,
                undo=undo, reset=reset)  # fmt: skip


def _table_panel() -> dict:
    """Below: the lesion table (click a row to show its slices) and the downloads."""
    table = gr.Dataframe(headers=list(TABLE_COLUMNS.values()), label="Lesions (click a row to show its slices)",
                         interactive=False, elem_id="lesion-table")  # fmt: skip
    remove = gr.Button("Remove the selected lesion", elem_id="remove-lesion", size="sm")
    gr.Markdown("Downloads are named study_model_date (`_edited` after edits); the settings record says which model, "
                "settings, uploads and edits made them.", elem_id="downloads-note")
    with gr.Row():
        mask_out = gr.File(label="Lesion mask (NIfTI, PET grid, all lesions; voxel value = lesion # in the table)",
                           interactive=False, elem_id="mask-download")
        csv_out = gr.File(label="Lesion table (CSV, all lesions)", interactive=False, elem_id="csv-download")
        seg_out = gr.File(label="DICOM SEG (when the PET was uploaded as a zipped DICOM series, which it references)",
                          interactive=False, elem_id="seg-download")
        record_out = gr.File(label="Lesion table (JSON, with totals) and settings record", file_count="multiple",
                             interactive=False, elem_id="record-download")
    return dict(table=table, mask_out=mask_out, csv_out=csv_out, seg_out=seg_out, record_out=record_out, remove=remove)


def downloads(result) -> list:
    """The result's files for the four download boxes (no DICOM SEG for a PET that was not DICOM)."""
    files = result.files
    return [str(files.mask), str(files.csv), str(files.dicom_seg) if files.dicom_seg else None,
            [str(files.json), str(files.settings)]]


class Handlers:
    """What each event does; every outcome, good or bad, ends as one line in the message box."""

    def __init__(self, shelf: ModelShelf, sessions: DemoSessions, limits: UploadLimits):
        self.shelf, self.sessions, self.limits = shelf, sessions, limits

    @staticmethod
    def cleared() -> list:
        idle = dict(minimum=0, maximum=1, value=0, interactive=False)
        return ["", "Results appear here after **Segment**.", None, None, gr.Slider(**idle), None, gr.Slider(**idle),
                gr.Dataframe(value=[], headers=list(TABLE_COLUMNS.values())), None, None, None, None]  # fmt: skip

    def shown(self, session, model_label, window, min_ml, sort) -> list:
        result, view = session.result, session.result.view
        visible = result.visible(min_ml)
        n_ax, n_co = view.count("axial"), view.count("coronal")
        return [
            result.header(model_label),
            result.summary(min_ml),
            session.picture("mip", view.mip(visible, window)),
            session.picture("axial", view.render("axial", n_ax // 2, visible, window)),
            gr.Slider(minimum=0, maximum=n_ax - 1, value=n_ax // 2, step=1, interactive=True),
            session.picture("coronal", view.render("coronal", n_co // 2, visible, window)),
            gr.Slider(minimum=0, maximum=n_co - 1, value=n_co // 2, step=1, interactive=True),
            gr.Dataframe(value=result.table(min_ml, sort), headers=result.columns()),
            *downloads(result),
        ]

    def inputs_changed(self, pet, ct, request: gr.Request):
        """A new or removed upload (or a loaded example): the old result no longer belongs to the inputs, nor does
        the result of a run still going (``segment`` checks the count when it ends)."""
        session = self.sessions.get(request.session_hash)
        session.uploads.update(Path(f) for f in (pet, ct) if f)
        session.result = None
        session.inputs_version += 1
        return [message("info", _inputs_note(pet, ct)), *self.cleared()]

    def load_example(self, name, request: gr.Request):
        if name not in EXAMPLES:
            return gr.skip(), gr.skip(), message("error", "Pick an example in the list first, then press Load example.")
        pet, ct = self.sessions.get(request.session_hash).example(EXAMPLES[name])
        return str(pet), str(ct), message("info", f"Loaded {name}.")

    def segment(self, pet, ct, model_label, window, min_ml, sort, request: gr.Request, progress=gr.Progress()):
        session = self.sessions.get(request.session_hash)
        session.result = None
        if not pet or not ct:
            return [message("error", f"Cannot segment yet: {_inputs_note(pet, ct)}"), *self.cleared()]
        session.uploads.update((Path(pet), Path(ct)))
        inputs = session.inputs_version
        try:
            segmenter = self.shelf.get(model_label)
            result = run_study(pet, ct, segmenter, self.shelf.facts[model_label], session, limits=self.limits,
                               progress=progress)  # fmt: skip
        except PetCtInputError as err:
            LOG.warning("demo refused a request: %s", _user_text(err))  # one line, no traceback: not a server fault
            return [message("error", _user_text(err)), *self.cleared()]
        except SessionClosed:
            return [gr.skip()] * (1 + len(self.cleared()))  # the page is gone: nothing to show, nothing kept
        if session.closed:  # closed after the last progress step: its files must not outlive it
            session.close()
            return [gr.skip()] * (1 + len(self.cleared()))
        if session.inputs_version != inputs:
            return [message("info", "The uploads changed while segmenting: that result was of the old files and is "
                                    "not shown. Press Segment for the new ones."), *self.cleared()]
        session.result = result
        done = f"Segmented {Path(pet).name} + {Path(ct).name} with {model_label} in {result.seconds:.1f} s."
        if not result.rows:
            return [message("info", f"No lesion found: review the MIP before trusting this. {done} {NOT_A_DEVICE}"),
                    *self.shown(session, model_label, window, min_ml, sort)]
        return [message("done", f"{done} {NOT_A_DEVICE}"), *self.shown(session, model_label, window, min_ml, sort)]

    def model_changed(self, model_label, request: gr.Request):
        session = self.sessions.find(request.session_hash)
        result = session.result if session else None
        return self.shelf.describe(model_label), (result.header(model_label) if result else "")

    def view_changed(self, window, min_ml, sort, axial_index, coronal_index, request: gr.Request):
        """SUV window, minimum volume or sort order: redraw from the kept result (nothing is recomputed)."""
        session = self.sessions.find(request.session_hash)
        if session is None or session.result is None:
            return [gr.skip()] * 5
        return self._panels(session, window, min_ml, sort, axial_index, coronal_index)

    @staticmethod
    def _panels(session, window, min_ml, sort, axial_index, coronal_index) -> list:
        """Summary, MIP, axial and coronal slices and table of the kept result, as the view settings ask."""
        result, visible = session.result, session.result.visible(min_ml or 0.0)
        return [
            result.summary(min_ml or 0.0),
            session.picture("mip", result.view.mip(visible, window)),
            session.picture("axial", result.view.render("axial", axial_index, visible, window)),
            session.picture("coronal", result.view.render("coronal", coronal_index, visible, window)),
            gr.Dataframe(value=result.table(min_ml or 0.0, sort), headers=result.columns()),
        ]

    def scroller(self, plane: str):
        def scroll(index, window, min_ml, request: gr.Request):
            session = self.sessions.find(request.session_hash)
            if session is None or session.result is None:
                return None
            visible = session.result.visible(min_ml or 0.0)
            return session.picture(plane, session.result.view.render(plane, index, visible, window))

        return scroll

    def row_selected(self, window, min_ml, evt: gr.SelectData, request: gr.Request):
        """A click on a table row shows that lesion's axial and coronal slices."""
        session = self.sessions.find(request.session_hash)
        if session is None or session.result is None or not evt.row_value:
            return [gr.skip()] * 5
        lesion_id = int(float(evt.row_value[0]))
        session.selected = lesion_id
        view, visible = session.result.view, session.result.visible(min_ml or 0.0)
        axial_index, coronal_index = view.slices_through(lesion_id)
        return [
            session.picture("axial", view.render("axial", axial_index, visible, window)),
            gr.Slider(value=axial_index),
            session.picture("coronal", view.render("coronal", coronal_index, visible, window)),
            gr.Slider(value=coronal_index),
            message("info", f"Showing lesion {lesion_id}: axial slice {axial_index}, coronal slice {coronal_index}."),
        ]

    def edited(self, session, done: str, window, min_ml, sort, axial_index, coronal_index) -> list:
        """Message, then everything the edited mask changes: summary, pictures, table, downloads."""
        result = session.result
        return [message("done", f"{done} {len(result.rows)} lesion(s) now ({result.seconds:.1f} s)."),
                *self._panels(session, window, min_ml, sort, axial_index, coronal_index), *downloads(result)]

    def _editable(self, request: gr.Request):
        session = self.sessions.find(request.session_hash)
        return session if session is not None and session.result is not None else None

    def slice_clicked(self, plane: str):
        """A click on a slice picture: in an edit mode, add a lesion or mark a false positive at that voxel."""
        def clicked(mode, index, window, min_ml, sort, axial_index, coronal_index, evt: gr.SelectData,
                    request: gr.Request):
            session, action = self._editable(request), CLICK_MODES.get(mode)
            if session is None or action is None:
                return [gr.skip()] * 10
            voxel = clicked_voxel(session.result, plane, index, *evt.index[:2])
            if voxel is None:
                return [message("info", "That click was off the image: click on the slice itself."), *[gr.skip()] * 9]
            edit_result(session, action, voxel)
            done = f"{mode} at PET voxel {voxel}:"
            return self.edited(session, done, window, min_ml, sort, axial_index, coronal_index)

        return clicked

    def edit_button(self, action: str):
        """Undo, Reset, or remove the lesion of the selected table row."""
        def pressed(window, min_ml, sort, axial_index, coronal_index, request: gr.Request):
            session = self._editable(request)
            if session is None:
                return [message("error", "Nothing to edit yet: press Segment first."), *[gr.skip()] * 9]
            if action == "remove":
                lesion = session.selected
                if lesion is None or lesion not in {r["id"] for r in session.result.rows}:
                    return [message("error", "Click a row of the lesion table first, then Remove."), *[gr.skip()] * 9]
                edit_result(session, "remove", lesion_voxel(session.result, lesion))
                session.selected = None
                done = f"Removed lesion {lesion}:"
            else:
                if action == "undo" and not session.result.editor.edits:
                    return [message("info", "No edit to undo."), *[gr.skip()] * 9]
                edit_result(session, action)
                done = "Undone:" if action == "undo" else "Edits reset to the model's result:"
            return self.edited(session, done, window, min_ml, sort, axial_index, coronal_index)

        return pressed

    def end_session(self, request: gr.Request):
        self.sessions.close(request.session_hash)


def _inputs_note(pet, ct) -> str:
    if pet and ct:
        return f"PET {Path(pet).name} and CT {Path(ct).name} are ready: press Segment."
    if pet or ct:
        have, missing = ("PET", "CT") if pet else ("CT", "PET")
        return f"{have} {Path(pet or ct).name} is in; the {missing} is missing: upload it too (or load an example)."
    return "Upload a PET and its CT, or load a synthetic example."


def _user_text(err: PetCtInputError) -> str:
    """The message without the server's temporary folders: the user knows the file by its name."""
    return f"{Path(err.source).name}: {err.problem}"


UPLOAD_NAMES = {"pet-upload": "PET", "ct-upload": "CT"}  # upload box -> its role, in messages and accessible names
GRADIO_UPLOAD_NAMES = ("File upload", "Click to upload or drop files")  # what Gradio calls every upload


def page_script(limits: UploadLimits) -> str:
    """JavaScript run when the page loads. It names each upload for screen readers ("PET upload", "CT upload"; Gradio
    calls both "File upload"), and refuses a file over the size limit before it is sent, in the message box, naming
    the file and the limit (Gradio's own refusal is a pop-up that vanishes; the server still refuses it too)."""
    return """() => {
  const roles = %(roles)s, generic = %(generic)s, limit = %(limit)d;
  const name = () => {
    for (const [id, role] of Object.entries(roles)) {
      document.querySelectorAll(`#${id} [aria-label]`).forEach((el) => {
        if (generic.includes(el.getAttribute("aria-label"))) el.setAttribute("aria-label", `${role} upload`);
      });
    }
  };
  new MutationObserver(name).observe(document.body, {childList: true, subtree: true});
  name();
  const refuse = (event, files) => {
    const box = event.target.closest && event.target.closest(Object.keys(roles).map((id) => `#${id}`).join(","));
    const big = box && files ? Array.from(files).filter((file) => file.size > limit) : [];
    if (!big.length) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    if (event.type === "drop") event.target.dispatchEvent(new DragEvent("dragleave", {bubbles: true}));
    else event.target.value = "";
    const mib = (big[0].size / 2 ** 20).toFixed(0), text = `${roles[box.id]} ${big[0].name}: %(problem)s`;
    const shown = document.querySelector("#message .petct-msg");  // changed in place: the next message replaces it
    shown.className = %(error)s;
    shown.setAttribute("role", "alert");
    shown.textContent = text;
  };
  document.addEventListener("change", (event) => refuse(event, event.target.files), true);
  document.addEventListener("drop", (event) => refuse(event, event.dataTransfer && event.dataTransfer.files), true);
}""" % dict(roles=json.dumps(UPLOAD_NAMES), generic=json.dumps(GRADIO_UPLOAD_NAMES), limit=limits.max_file_bytes,
           problem=too_large("${mib}", limits), error=json.dumps(_message_class("error")))


def _wire(demo: gr.Blocks, page: Page, h: Handlers) -> None:
    """Connect the events. Progress is drawn in the message box only; redraws show none."""
    quiet = dict(show_progress="hidden", trigger_mode="always_last")
    for upload in (page.pet, page.ct):
        upload.change(h.inputs_changed, [page.pet, page.ct], [page.message, *page.results()], **quiet)
    page.load.click(h.load_example, page.example, [page.pet, page.ct, page.message], api_name="load_example",
                    show_progress_on=[page.message])  # fmt: skip
    page.run.click(h.segment, [page.pet, page.ct, page.model, *page.view_controls()], [page.message, *page.results()],
                   api_name="segment", show_progress_on=[page.message])  # fmt: skip
    page.model.change(h.model_changed, page.model, [page.model_info, page.header], **quiet)
    redraw = [page.summary, page.mip, page.axial, page.coronal, page.table]
    for control in page.view_controls():
        control.change(h.view_changed, [*page.view_controls(), page.axial_index, page.coronal_index], redraw, **quiet)
    for plane, slider, image in (("axial", page.axial_index, page.axial), ("coronal", page.coronal_index, page.coronal)):
        slider.input(h.scroller(plane), [slider, page.window, page.min_ml], image, api_name=f"{plane}_slice", **quiet)
    page.table.select(h.row_selected, [page.window, page.min_ml],
                      [page.axial, page.axial_index, page.coronal, page.coronal_index, page.message], **quiet)  # fmt: skip
    view = [*page.view_controls(), page.axial_index, page.coronal_index]
    edited = [page.message, page.summary, page.mip, page.axial, page.coronal, page.table, *page.downloads()]
    for plane, slider, image in (("axial", page.axial_index, page.axial), ("coronal", page.coronal_index, page.coronal)):
        image.select(h.slice_clicked(plane), [page.click_mode, slider, *view], edited, show_progress="hidden")
    for action, button in (("undo", page.undo), ("reset", page.reset), ("remove", page.remove)):
        button.click(h.edit_button(action), view, edited, show_progress="hidden")
    demo.unload(h.end_session)  # the page was closed: delete the session's files now


def build_demo(
    shelf: ModelShelf, *, limits: UploadLimits = UploadLimits(), workroot: str | Path | None = None
) -> gr.Blocks:
    """The Blocks app. Session files and Gradio's copies of uploads live under ``workroot`` (default: a fresh
    ``petct-demo-*`` temporary folder, removed at exit; stale ones of dead servers are removed now). Serve it with
    ``launch`` and the same ``limits``; one demo per process (``workroot`` is Gradio's cache)."""
    workroot = create_workroot() if workroot is None else Path(workroot)
    use_as_gradio_cache(workroot)
    handlers = Handlers(shelf, DemoSessions(workroot), limits)
    # delete_cache: a backstop for files no session claimed (e.g. an upload whose page never reported back)
    blocks = gr.Blocks(title="petct-fm: PET/CT lesion segmentation", delete_cache=(1800, 3 * 3600),
                       analytics_enabled=False)  # fmt: skip
    with blocks as demo:
        gr.Markdown(f"# petct-fm: whole-body FDG PET/CT lesion segmentation\n{NOT_A_DEVICE} Uploads, pictures and "
                    "downloads are deleted when you close the page.")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                inputs = _input_panel(shelf, limits)
            with gr.Column(scale=3):
                viewer = _viewer_panel(limits)
        page = Page(**inputs, **viewer, **_table_panel())
        _wire(demo, page, handlers)
    demo.petct_workroot, demo.petct_handlers = workroot, handlers  # for launch, and for tests to look inside
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
    """Serve ``demo``; uploads above ``limits.max_file_bytes`` are refused by the server before they reach disk.
    Blocking, SIGTERM stops the server like Ctrl-C, so the exit cleanup of the demo's files runs."""
    if block and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    use_as_gradio_cache(demo.petct_workroot)  # as when it was built, should another Blocks have been made since
    return demo.launch(
        server_name=server_name,
        server_port=server_port,
        share=share,
        max_file_size=limits.max_file_bytes,
        prevent_thread_lock=not block,
        ssr_mode=False,
        quiet=not block,
        footer_links=["api"],
        css=CSS,
        js=page_script(limits),
    )


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def models_from_env(var: str = "PETCT_DEMO_MODELS") -> dict[str, str]:
    """Operator-chosen models from a comma-separated list of folders or Hub ids (how a Space is configured)."""
    import os

    entries = [e.strip() for e in os.environ.get(var, "").split(",") if e.strip()]
    return {Path(e).name if os.path.isdir(e) else e: e for e in entries}
