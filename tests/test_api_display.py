"""Figures in a real Jupyter kernel: made through pyplot, shown exactly once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SETUP = (
    "import deapi_ds, matplotlib.pyplot as plt\n"
    "from PIL import Image\n"
    "imgs = [Image.new('RGB', (32, 32), c) for c in ('red', 'blue')]\n"
    "import matplotlib; print(matplotlib.get_backend())"
)

CELLS = {
    "value": "deapi_ds.image_grid(imgs)",
    "assigned": "fig = deapi_ds.image_grid(imgs)",
    "plt.show": "fig = deapi_ds.image_grid(imgs)\nplt.show()",
    "shown again later": "fig",
    "display()": "display(deapi_ds.image_grid(imgs)); print('after')",
    "method": "deapi_ds.ImageResult(__import__('pandas').DataFrame({'image': imgs})).plot()",
}


def _run(kc, code: str) -> list[tuple[str, object]]:
    msg_id = kc.execute(code)
    outs: list[tuple[str, object]] = []
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return outs
        if kind in ("display_data", "execute_result"):
            outs.append((kind, sorted(content["data"])))
        elif kind == "stream":
            outs.append((kind, content["text"]))
        elif kind == "error":
            outs.append((kind, f"{content['ename']}: {content['evalue']}"))


@pytest.mark.slow
def test_figures_show_once_in_a_real_kernel():
    jupyter_client = pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
    try:
        setup = _run(kc, SETUP)
        assert setup == [("stream", "module://matplotlib_inline.backend_inline\n")], setup
        for name, code in CELLS.items():
            outs = _run(kc, code)
            images = [o for o in outs if o[0] != "stream" and "image/png" in o[1]]
            assert len(images) == 1, (name, outs)
            assert not [o for o in outs if o[0] == "error"], (name, outs)
        assert _run(kc, "len(plt.get_fignums())") == [("execute_result", ["text/plain"])]
        # no figure left open by the notebook cells above
        outs = _run(kc, "print(len(plt.get_fignums()))")
        assert outs == [("stream", "0\n")], outs
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_figures_are_made_through_pyplot_and_pickle():
    import pickle

    import matplotlib.pyplot as plt
    from PIL import Image

    import deapi_ds

    fig = deapi_ds.image_grid([Image.new("RGB", (16, 16), "red")])
    assert plt.gcf() is fig and fig.number in plt.get_fignums()
    assert type(fig).__name__ == "DeapiFigure"
    back = pickle.loads(pickle.dumps(fig))
    assert type(back) is type(fig) and len(back.axes) == len(fig.axes)
